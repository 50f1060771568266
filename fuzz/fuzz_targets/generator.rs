//! The whole generator over a generated root: the input is split into a few
//! unit files and drop-ins (separated by NUL bytes) under a root that has a
//! real Nix database (made once by `nix-store --load-db`). Never a panic, and
//! every unit that asks for confinement ends up confined or blocked.
#![no_main]

use camino::{Utf8Path, Utf8PathBuf};
use libfuzzer_sys::fuzz_target;
use nix_confinement_generator::cli::run_generator;
use nix_confinement_generator::logging::Logger;
use nix_confinement_generator::rootfs::Root;
use std::sync::OnceLock;

const STORE_PATH: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-app";

fn base() -> &'static Utf8PathBuf {
    static BASE: OnceLock<Utf8PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let base = Utf8PathBuf::from(format!("/tmp/ncg-fuzz-generator-{}", std::process::id()));
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
        child.stdin.take().unwrap().write_all(registration.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
        base
    })
}

fuzz_target!(|data: &[u8]| {
    let base = base();
    let root_dir = base.join("root");
    let units = root_dir.join("etc/systemd/system");
    let out = base.join("out");
    let _ = std::fs::remove_dir_all(&units);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(units.join("a.service.d")).unwrap();
    std::fs::create_dir_all(units.join("t@.service.d")).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let targets = ["a.service", "a.service.d/x.conf", "t@.service", "t@i.service", "t@.service.d/y.conf"];
    for (part, target) in data.split(|&b| b == 0).zip(targets) {
        let mut text = part.to_vec();
        text.extend_from_slice(format!("\n[Service]\nExecStart={STORE_PATH}/bin/app\n").as_bytes());
        std::fs::write(units.join(target), &text).unwrap();
    }
    let _ = run_generator(&Root::new(root_dir.clone()), &out, None, &Logger::stderr(0));
    // Every drop-in written is complete: confined or blocked.
    for entry in std::fs::read_dir(&out).unwrap().flatten() {
        let path = Utf8PathBuf::from_path_buf(entry.path()).unwrap();
        if !path.as_str().ends_with(".d") {
            continue;
        }
        for file in std::fs::read_dir(&path).unwrap().flatten() {
            let text = std::fs::read_to_string(file.path()).unwrap();
            assert!(
                text.is_empty() || text.contains("\n[Service]\nRootDirectory=") || text.contains("\nAssertPathExists=!/\n"),
                "{}: {text}",
                Utf8Path::new(path.as_str())
            );
        }
    }
});
