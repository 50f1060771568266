//! The bodies of the fuzz targets: `fuzz/fuzz_targets/*.rs` (cargo-fuzz,
//! nightly) call them on what libFuzzer makes up, and `tests/fuzz_corpus.rs`
//! (stable `cargo test`) calls them on every file of `fuzz/corpus/<target>/`,
//! so that the corpus is a regression test. Each body panics when the
//! property it checks does not hold; each takes bytes (a target on text
//! ignores what is not UTF-8, as libFuzzer's `&str` targets do).
#![allow(dead_code)]

use camino::{Utf8Path, Utf8PathBuf};
use nix_confinement_generator::annotation::read_annotations;
use nix_confinement_generator::config::{Config, apply_text};
use nix_confinement_generator::diag::Location;
use nix_confinement_generator::store::cache::ClosureCache;
use nix_confinement_generator::store::{Found, StoreDir};
use nix_confinement_generator::unit::exec::split_exec_value;
use nix_confinement_generator::unit::syntax::parse_unit_file;
use nix_confinement_generator::unit::{MergedUnit, Setting};

/// The values `X-ConfinementEnable=` takes for no (systemd's booleans).
fn is_false_spelling(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "0" | "no" | "n" | "false" | "f" | "off"
    )
}

/// The unit-file parser on arbitrary bytes: never a panic, and every
/// assignment it returns is well formed.
pub fn unit_syntax(data: &[u8]) {
    if let Ok(parsed) = parse_unit_file(data, Utf8Path::new("/fuzz.service")) {
        let lines = 1 + data
            .iter()
            .filter(|&&b| matches!(b, b'\n' | b'\r' | 0))
            .count();
        for a in &parsed.assignments {
            assert!(!a.key.is_empty());
            assert!(a.line >= 1 && a.line as usize <= lines);
            assert!(!a.key.contains('='));
            assert!(!a.value.starts_with([' ', '\t']));
        }
    }
}

/// Exec line splitting on arbitrary text: never a panic; a program is never
/// empty.
pub fn exec_split(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(commands) = split_exec_value(text) {
        for command in commands {
            assert!(!command.program.is_empty());
        }
    }
}

/// Annotations of a parsed unit: never a panic; a unit that asks to be
/// confined with invalid values still yields a request (blocked, never open).
pub fn annotations(data: &[u8]) {
    let Ok(parsed) = parse_unit_file(data, Utf8Path::new("/fuzz.service")) else {
        return;
    };
    let unit = MergedUnit {
        name: "fuzz.service".into(),
        sources: vec!["/fuzz.service".into()],
        settings: parsed
            .assignments
            .into_iter()
            .map(|a| Setting {
                section: a.section,
                key: a.key,
                value: a.value,
                location: Location::new("/fuzz.service", a.line),
            })
            .collect(),
        dropin_names: Default::default(),
        warnings: Vec::new(),
    };
    let annotations = read_annotations(&unit, true);
    let asks = unit
        .settings
        .iter()
        .rev()
        .find(|s| s.section == "Service" && s.key == "X-ConfinementEnable")
        .is_some_and(|s| {
            // An empty assignment resets to the default (no); anything but a
            // false spelling asks for confinement (invalid values block).
            !s.value.is_empty() && !is_false_spelling(&s.value)
        });
    if asks {
        assert!(annotations.request.is_some());
    }
    // A request the valid key did not make comes from a key that only shows
    // the intent to confine (misspelt, misplaced): blocked, never confined.
    if annotations.request.is_some() && !asks {
        assert!(!annotations.errors.is_empty());
    }
}

/// The store-path scanner on arbitrary text: never a panic, and every path
/// it finds is a store path by `store_path_of`.
pub fn store_scan(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let store = StoreDir::new("/nix/store");
    for found in store.scan(text, true) {
        if let Found::Path(path) = found {
            assert_eq!(store.store_path_of(path), Some(path));
        }
    }
    let _ = store.scan(text, false);
    let _ = store.store_path_of(text);
}

/// The generator's configuration on arbitrary text: never a panic; whatever
/// is accepted is absolute.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut config = Config::default();
    let _ = apply_text(
        &mut config,
        text,
        Utf8Path::new("/etc/systemd/nix-confinement-generator.conf"),
    );
    assert!(config.store_dir.as_str().starts_with('/'));
    assert!(config.state_dir.as_str().starts_with('/'));
    if let Some(path) = &config.default_bin_sh {
        assert!(path.as_str().starts_with('/'));
    }
}

/// Arbitrary bytes as a closure cache file: decoding never panics, never
/// allocates beyond the input's size, and what decodes is a well-formed
/// graph (every reference names an entry; encoding it again gives the same
/// bytes).
pub fn closure_cache(bytes: &[u8]) {
    let Ok(cache) = ClosureCache::decode(bytes) else {
        return;
    };
    for i in 0..cache.len() {
        let _ = cache.path(i);
        for &reference in cache.references(i) {
            assert!((reference as usize) < cache.len());
        }
    }
    assert_eq!(cache.encode(), bytes);
}

/// The store path every unit file of the generator target runs.
pub const STORE_PATH: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-app";

/// The files the generator target's input is split into (at NUL bytes), in
/// this order: a unit and its drop-in, a template, an instance of it with a
/// file of its own, and the template's drop-in (which applies to the
/// instance too).
const FILES: [&str; 5] = [
    "a.service",
    "a.service.d/x.conf",
    "t@.service",
    "t@i.service",
    "t@.service.d/y.conf",
];

/// The units of the generator target: each with the indexes of its files in
/// [`FILES`] (the unit file first), and the drop-in directories of the
/// output that apply to it, the first one winning.
const UNITS: [(&str, &[usize], &[&str]); 3] = [
    ("a.service", &[0, 1], &["a.service.d"]),
    ("t@.service", &[2, 4], &["t@.service.d"]),
    ("t@i.service", &[3, 4], &["t@i.service.d", "t@.service.d"]),
];

/// A root with a real Nix database (made once by `nix-store --load-db`)
/// for the whole generator, and an output directory beside it.
pub struct GeneratorRoot {
    base: Utf8PathBuf,
}

impl GeneratorRoot {
    pub fn new(base: Utf8PathBuf) -> GeneratorRoot {
        let root = base.join("root");
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(root.join("nix/store")).unwrap();
        let registration = format!("{STORE_PATH}\nsha256:{}\n1\n\n0\n", "0".repeat(64));
        let mut child = std::process::Command::new("nix-store")
            .args(["--store", &format!("local?root={root}"), "--load-db"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nix-store (apt-get install nix-bin)");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(registration.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        GeneratorRoot { base }
    }

    /// The whole generator over unit files made of `data`: never a panic,
    /// every drop-in written is complete (confined or blocked; empty only
    /// where an instance opts out of its template's), and every unit that
    /// asks for confinement has a complete drop-in that applies to it.
    pub fn run(&self, data: &[u8]) {
        let root_dir = self.base.join("root");
        let units_dir = root_dir.join("etc/systemd/system");
        let out = self.base.join("out");
        let _ = std::fs::remove_dir_all(&units_dir);
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(units_dir.join("a.service.d")).unwrap();
        std::fs::create_dir_all(units_dir.join("t@.service.d")).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        let mut files: Vec<Option<Vec<u8>>> = vec![None; FILES.len()];
        for ((part, file), slot) in data.split(|&b| b == 0).zip(FILES).zip(&mut files) {
            let mut text = part.to_vec();
            text.extend_from_slice(
                format!("\n[Service]\nExecStart={STORE_PATH}/bin/app\n").as_bytes(),
            );
            std::fs::write(units_dir.join(file), &text).unwrap();
            *slot = Some(text);
        }
        let _ = nix_confinement_generator::generator::run_generator(
            &nix_confinement_generator::rootfs::Root::new(root_dir.clone()),
            &out,
            None,
            &nix_confinement_generator::logging::Logger::stderr(0),
        );
        // Every drop-in written is complete.
        for entry in std::fs::read_dir(&out).unwrap().flatten() {
            let path = Utf8PathBuf::from_path_buf(entry.path()).unwrap();
            if !path.as_str().ends_with(".d") {
                continue;
            }
            for file in std::fs::read_dir(&path).unwrap().flatten() {
                let text = std::fs::read_to_string(file.path()).unwrap();
                assert!(
                    text.is_empty() || is_complete(&text),
                    "{path}: an incomplete drop-in:\n{text}"
                );
            }
        }
        // Every unit that asks has one.
        for (unit, indexes, dirs) in UNITS {
            if files[indexes[0]].is_none() {
                continue; // no unit file: no unit
            }
            let unit_files: Vec<&[u8]> = indexes
                .iter()
                .filter_map(|&i| files[i].as_deref())
                .collect();
            if !must_be_confined_or_blocked(&unit_files) {
                continue;
            }
            let applied = dirs
                .iter()
                .map(|dir| out.join(dir).join("zz-confinement.conf"))
                .find(|path| path.exists());
            let text = applied
                .as_ref()
                .map(|path| std::fs::read_to_string(path).unwrap())
                .unwrap_or_default();
            assert!(
                is_complete(&text),
                "{unit} asks for confinement, and the drop-in that applies to it ({}) is not complete:\n{text}",
                applied.as_deref().map_or("none", |p| p.as_str())
            );
        }
    }
}

/// Removed when dropped (the fuzz target's never is).
impl Drop for GeneratorRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// A complete drop-in of the generator: confined or blocked, whole.
fn is_complete(text: &str) -> bool {
    let blocked = text.contains("\n[Unit]\n") && text.contains("\nAssertPathExists=!/\n");
    // The store: bound path by path onto an empty one, or the closure's
    // view bound whole.
    let store = text.contains("\nTemporaryFileSystem=")
        || text.contains("\nBindReadOnlyPaths=/run/nix-confinement-views/");
    let confined = text.contains("\n[Service]\nRootDirectory=/run/confinement/%n\n")
        && store
        && text.ends_with('\n');
    text.starts_with("# Generated by nix-confinement-generator") && (blocked || confined)
}

/// Whether a unit made of `files` (its unit file first, then its drop-ins in
/// order) must end up confined or blocked, decided without the generator's
/// code: its last `X-ConfinementEnable=` in `[Service]` is neither empty (a
/// reset) nor a false spelling; or systemd refuses one of its files and
/// one of them mentions confinement (it cannot be told whether it asks).
/// A lower bound: other spellings of the key may block the unit too.
fn must_be_confined_or_blocked(files: &[&[u8]]) -> bool {
    let mut enable: Option<String> = None;
    for file in files {
        match parse_unit_file(file, Utf8Path::new("/fuzz.service")) {
            Ok(parsed) => {
                for a in parsed.assignments {
                    if a.section == "Service" && a.key == "X-ConfinementEnable" {
                        enable = Some(a.value);
                    }
                }
            }
            Err(_) => {
                return files
                    .iter()
                    .any(|file| file.windows(6).any(|w| w.eq_ignore_ascii_case(b"confin")));
            }
        }
    }
    enable.is_some_and(|value| !value.is_empty() && !is_false_spelling(&value))
}
