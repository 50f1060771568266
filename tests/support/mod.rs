//! Test roots built with real Nix: store paths registered with
//! `nix-store --load-db` or added with `nix-store --add`, unit files written
//! under `etc/` and `usr/lib/`, and the real generator binary run on them.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const GENERATOR: &str = env!("CARGO_BIN_EXE_nix-confinement-generator");
const NIX_BASE32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A store path name with a hash made from `seed` (valid Nix base32).
pub fn store_path(seed: u64, name: &str) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
    let hash: String = (0..32)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            NIX_BASE32[(x % 32) as usize] as char
        })
        .collect();
    format!("/nix/store/{hash}-{name}")
}

/// Waits until changes made so far are a clock tick old: the generator
/// writes its closure cache only from a database and store that changed at
/// least a tick (4 ms here) before it read them.
pub fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(20));
}

pub struct TestRoot {
    pub dir: PathBuf,
    pub out: PathBuf,
}

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The run logged `text` (at debug level the log says what happened to
/// the caches).
pub fn assert_logged(run: &Run, text: impl AsRef<str>) {
    let text = text.as_ref();
    assert!(
        run.stderr.contains(text),
        "{text:?} not in:\n{}",
        run.stderr
    );
}

impl From<std::process::Output> for Run {
    fn from(output: std::process::Output) -> Run {
        Run {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl TestRoot {
    pub fn new(name: &str) -> TestRoot {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let base = std::env::temp_dir().join(format!("ncg-test-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("root");
        let out = base.join("out");
        std::fs::create_dir_all(dir.join("etc/systemd/system")).unwrap();
        std::fs::create_dir_all(dir.join("usr/lib/systemd/system")).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        TestRoot { dir, out }
    }

    pub fn store_uri(&self) -> String {
        format!("local?root={}", self.dir.display())
    }

    /// Registers store paths with their references using real Nix
    /// (`nix-store --load-db`), and creates each as a directory so that it
    /// exists like a real one.
    pub fn register(&self, paths: &[(&str, &[&str])]) {
        let mut registration = String::new();
        for (path, references) in paths {
            let _ = writeln!(
                registration,
                "{path}\nsha256:{}\n1024\n\n{}",
                "0".repeat(64),
                references.len()
            );
            for reference in *references {
                let _ = writeln!(registration, "{reference}");
            }
            let on_disk = self.path(path);
            if std::fs::symlink_metadata(&on_disk).is_err() {
                std::fs::create_dir_all(&on_disk).unwrap();
            }
        }
        let mut child = Command::new("nix-store")
            .args(["--store", &self.store_uri(), "--load-db"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nix-store must be installed (apt-get install nix-bin)");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(registration.as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "nix-store --load-db failed"
        );
    }

    /// `nix-store --store <this root> ARGS…`, which must succeed; its
    /// standard output.
    fn nix_store(&self, args: &[&OsStr]) -> String {
        let output = Command::new("nix-store")
            .args(["--store", &self.store_uri()])
            .args(args)
            .output()
            .expect("nix-store must be installed");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Adds a file (or directory or symlink) to the store with real Nix.
    pub fn add(&self, source: &Path) -> String {
        self.nix_store(&["--add".as_ref(), source.as_ref()])
            .trim()
            .to_owned()
    }

    /// `nix-store --delete` of store paths (they must be unreferenced).
    pub fn delete(&self, paths: &[&str]) {
        let mut args: Vec<&OsStr> = vec!["--delete".as_ref()];
        args.extend(paths.iter().map(OsStr::new));
        self.nix_store(&args);
    }

    /// `nix-store --query --requisites` of `paths`, sorted.
    pub fn requisites(&self, paths: &[&str]) -> Vec<String> {
        let mut args: Vec<&OsStr> = vec!["--query".as_ref(), "--requisites".as_ref()];
        args.extend(paths.iter().map(OsStr::new));
        let mut list: Vec<String> = self.nix_store(&args).lines().map(str::to_owned).collect();
        list.sort();
        list
    }

    /// The real path of a logical one.
    pub fn path(&self, logical: &str) -> PathBuf {
        self.dir.join(logical.trim_start_matches('/'))
    }

    pub fn write(&self, logical: &str, text: &str) {
        let path = self.path(logical);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn write_executable(&self, logical: &str, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        self.write(logical, text);
        std::fs::set_permissions(self.path(logical), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }

    pub fn symlink(&self, target: &str, logical: &str) {
        let path = self.path(logical);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(target, path).unwrap();
    }

    /// Turns closure views off under this root: each store path is bound
    /// on its own, as on a machine that cannot mount views.
    pub fn bind_each_path(&self) {
        self.write(
            "/etc/systemd/nix-confinement-generator.conf.d/per-path.conf",
            "[Generator]\nViews=\n",
        );
    }

    pub fn unit(&self, name: &str, text: &str) {
        self.write(&format!("/etc/systemd/system/{name}"), text);
    }

    /// The generator under this root, logging to standard error.
    fn generator(&self) -> Command {
        let mut command = Command::new(GENERATOR);
        command
            .arg("--root")
            .arg(&self.dir)
            .env_remove("SYSTEMD_UNIT_PATH")
            .env_remove("SYSTEMD_IN_INITRD")
            .env("SYSTEMD_LOG_TARGET", "console");
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.generator().args(args).output().unwrap())
    }

    /// [`TestRoot::run`], logging at debug level.
    pub fn run_debug(&self, args: &[&str]) -> Run {
        let mut generator = self.generator();
        generator.args(args).env("SYSTEMD_LOG_LEVEL", "debug");
        Run::from(generator.output().unwrap())
    }

    /// An emptied output directory.
    fn fresh_out(&self) -> &Path {
        let _ = std::fs::remove_dir_all(&self.out);
        std::fs::create_dir_all(&self.out).unwrap();
        &self.out
    }

    /// Runs the generator into a fresh output directory.
    pub fn generate(&self) -> Run {
        let out = self.fresh_out();
        Run::from(self.generator().arg(out).output().unwrap())
    }

    /// [`TestRoot::generate`], logging at debug level.
    pub fn generate_debug(&self) -> Run {
        let out = self.fresh_out();
        let mut generator = self.generator();
        generator.arg(out).env("SYSTEMD_LOG_LEVEL", "debug");
        Run::from(generator.output().unwrap())
    }

    /// Runs the generator into a fresh output directory inside a mount
    /// namespace, after the shell commands `setup` ran there (to mount
    /// something read-only, say).
    pub fn generate_in_namespace(&self, setup: &str) -> Run {
        self.fresh_out();
        let script = format!(
            "{setup} && exec '{GENERATOR}' --root '{}' '{}'",
            self.dir.display(),
            self.out.display()
        );
        let output = Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .env("SYSTEMD_LOG_TARGET", "console")
            .output()
            .unwrap();
        Run::from(output)
    }

    /// The drop-in written for `unit` (panics when there is none).
    pub fn dropin(&self, unit: &str) -> String {
        self.dropin_named(unit, "zz-confinement.conf")
    }

    pub fn dropin_named(&self, unit: &str, file: &str) -> String {
        let path = self.out.join(format!("{unit}.d/{file}"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    pub fn has_dropin(&self, unit: &str) -> bool {
        self.out.join(format!("{unit}.d")).exists()
    }

    /// `systemd-analyze verify` of `unit` with the generated drop-ins and
    /// units, in a mount namespace where the test store is `/nix` (so Exec
    /// programs exist); `--man=no`: the generated units name the generator's
    /// man page, which is not installed here. Returns everything it printed:
    /// a clean verify prints nothing.
    pub fn verify(&self, unit: &str) -> String {
        let unit_path = format!(
            "{}:{}:{}:",
            self.out.display(),
            self.path("/etc/systemd/system").display(),
            self.path("/usr/lib/systemd/system").display()
        );
        std::fs::create_dir_all(self.path("/nix")).unwrap();
        let script = format!(
            "mount --bind '{}' /nix && exec systemd-analyze verify --man=no '{unit}'",
            self.path("/nix").display()
        );
        let output = Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .env("SYSTEMD_UNIT_PATH", unit_path)
            .env("SYSTEMD_LOG_COLOR", "0")
            .output()
            .unwrap();
        let mut printed = String::from_utf8_lossy(&output.stdout).into_owned();
        printed.push_str(&String::from_utf8_lossy(&output.stderr));
        if !output.status.success() && printed.is_empty() {
            printed = format!("systemd-analyze exited with {}", output.status);
        }
        printed
    }
}

/// Test roots are removed when the test is done (one writes a 100 MiB unit
/// file); `NCG_KEEP_TEST_ROOTS=1` keeps them for a look.
impl Drop for TestRoot {
    fn drop(&mut self) {
        if std::env::var_os("NCG_KEEP_TEST_ROOTS").is_none()
            && let Some(base) = self.dir.parent()
        {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

/// What the generator writes on every run, annotated units or not: the
/// check service, its path unit, and the link that starts the path unit.
pub const CHECK_UNITS: [&str; 3] = [
    "nix-confinement-check.path",
    "nix-confinement-check.service",
    "paths.target.wants",
];

/// The entries of an output directory, sorted, without [`CHECK_UNITS`]
/// and the `multi-user.target.wants/` link that starts the check at boot.
pub fn written_besides_check_units(out: &Path) -> Vec<String> {
    let mut written: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !CHECK_UNITS.contains(&name.as_str()) && name != "multi-user.target.wants")
        .collect();
    written.sort();
    written
}

/// The store view the generated mount unit provides.
pub const STORE_VIEW: &str = "/run/nix-confinement-store";
/// Where closure views are mounted, and where their closures are recorded.
pub const VIEWS: &str = "/run/nix-confinement-views";
pub const VIEW_RECORDS: &str = "/run/nix-confinement-generator/views";

impl TestRoot {
    /// What a drop-in makes visible in the service, in store terms (see
    /// [`binds`]): with a closure view, the store paths of the closure
    /// recorded for it (each as `PATH`: the view shows a symlink store path
    /// as the symlink it is), then the other binds.
    pub fn binds(&self, dropin: &str) -> Vec<String> {
        let Some(digest) = view_of(dropin) else {
            return binds(dropin);
        };
        let record = self.path(&format!("{VIEW_RECORDS}/{digest}"));
        let text = std::fs::read_to_string(&record)
            .unwrap_or_else(|e| panic!("{}: {e}", record.display()));
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("nix-confinement-generator closure view 1")
        );
        let store_dir = lines.next().expect("the store directory").to_owned();
        let mut bound: Vec<String> = lines.map(|name| format!("{store_dir}/{name}")).collect();
        bound.extend(binds(dropin));
        bound
    }
}

/// The digest of the closure view a drop-in binds, if it binds one.
pub fn view_of(dropin: &str) -> Option<String> {
    dropin.lines().find_map(|line| {
        let value = line.strip_prefix("BindReadOnlyPaths=")?;
        let (source, target) = value.split_once(':')?;
        let digest = source
            .strip_prefix(VIEWS)?
            .strip_prefix('/')?
            .strip_suffix("/s")?;
        (target == "/nix/store:norbind").then(|| digest.to_owned())
    })
}

/// A bind source in the read-only store view or a closure view, as the
/// store path it shows.
fn in_store_terms(source: &str) -> Option<String> {
    let rest = source.strip_prefix(STORE_VIEW).or_else(|| {
        let in_view = source.strip_prefix(VIEWS)?.strip_prefix('/')?;
        Some(&in_view[in_view.find("/s/")? + 2..])
    })?;
    Some(format!("/nix/store{rest}"))
}

/// What a drop-in binds, in order and in store terms: `PATH` for a path bound
/// at itself, `SOURCE:TARGET` otherwise. A `BindPaths=` source must be in the
/// read-only store view (it is read back as the store path it shows), and
/// `/bin/sh` is left out.
pub fn binds(dropin: &str) -> Vec<String> {
    dropin
        .lines()
        .filter_map(|line| {
            let (source, target) = if let Some(value) = line.strip_prefix("BindPaths=") {
                let (source, target) = value.split_once(':').expect("BindPaths= with a target");
                let source = in_store_terms(source).unwrap_or_else(|| {
                    panic!("BindPaths= not from the read-only store view or a closure view: {line}")
                });
                (source, target.to_owned())
            } else if view_of(line).is_some() {
                return None;
            } else if let Some(value) = line.strip_prefix("BindReadOnlyPaths=") {
                match value.split_once(':') {
                    Some((source, target)) => (
                        in_store_terms(source).unwrap_or_else(|| source.to_owned()),
                        target.to_owned(),
                    ),
                    None => (value.to_owned(), value.to_owned()),
                }
            } else {
                return None;
            };
            if target == "/bin/sh" {
                None
            } else if source == target {
                Some(target)
            } else {
                Some(format!("{source}:{target}"))
            }
        })
        .collect()
}

/// The `[Service]` assignments (not comments) of a drop-in.
pub fn assignments(dropin: &str) -> Vec<String> {
    dropin
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && !l.is_empty())
        .map(str::to_owned)
        .collect()
}
