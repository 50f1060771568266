//! What the generator writes so that the running systemd catches up with the
//! unit files: the check service and its path unit (a unit annotated after
//! the last daemon-reload), and blocking drop-ins that wait for the check
//! (a store mounted after the generator ran at boot). Every unit written is
//! checked with `systemd-analyze verify`; what they do in a running systemd
//! is proven in the booted-systemd suite (`tests/e2e`: `unit-file-after-reload`,
//! `store-mounted-late`, `store-missing-at-boot`).

mod support;

use std::process::Command;
use support::{GENERATOR, TestRoot, assignments, store_path};

const CHECK_SERVICE: &str = "nix-confinement-check.service";
const CHECK_PATH: &str = "nix-confinement-check.path";
const STORE_VIEW_UNIT: &str = "run-nix\\x2dconfinement\\x2dstore.mount";

fn program(root: &TestRoot, seed: u64, name: &str) -> String {
    let path = store_path(seed, name);
    root.register(&[(&path, &[])]);
    root.write_executable(&format!("{path}/bin/{name}"), "#!/bin/sh\n");
    path
}

fn read(root: &TestRoot, name: &str) -> String {
    let path = root.out.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The link `NORMAL/<target>.wants/<unit>`, if there is one.
fn wanted_by(root: &TestRoot, target: &str, unit: &str) -> Option<String> {
    std::fs::read_link(root.out.join(format!("{target}.wants/{unit}")))
        .ok()
        .map(|target| target.display().to_string())
}

#[test]
fn a_path_unit_watches_the_unit_directories_even_when_nothing_is_annotated() {
    let root = TestRoot::new("watch");
    let app = program(&root, 1, "app");
    root.unit(
        "plain.service",
        &format!("[Service]\nExecStart={app}/bin/app\n"),
    );
    root.write(
        "/etc/systemd/system/plain.service.d/override.conf",
        "[Service]\nNice=5\n",
    );
    root.write("/etc/systemd/system/service.d/all.conf", "[Unit]\n");
    root.write("/etc/systemd/system/t.timer.d/x.conf", "[Unit]\n");
    // Systemd's own directories: transient units and set-property.
    root.write("/run/systemd/transient/run-u1.service", "[Service]\n");
    assert_eq!(root.generate().status, 0);
    let path = read(&root, CHECK_PATH);
    let watched: Vec<String> = assignments(&path)
        .into_iter()
        .filter_map(|a| a.strip_prefix("PathChanged=").map(str::to_owned))
        .collect();
    for dir in [
        "/etc/systemd/system",
        "/run/systemd/system",
        "/usr/local/lib/systemd/system",
        "/usr/lib/systemd/system",
        "/etc/systemd/system/plain.service.d",
        "/etc/systemd/system/service.d",
    ] {
        assert!(watched.iter().any(|w| w == dir), "{dir} not in {watched:?}");
    }
    for dir in [
        "/run/systemd/transient",
        "/etc/systemd/system.control",
        "/etc/systemd/system/t.timer.d",
    ] {
        assert!(!watched.iter().any(|w| w == dir), "{dir} in {watched:?}");
    }
    assert!(
        path.contains(&format!("\nUnit={CHECK_SERVICE}\n")),
        "{path}"
    );
    assert_eq!(
        wanted_by(&root, "paths.target", CHECK_PATH).as_deref(),
        Some("../nix-confinement-check.path")
    );
    // Nothing is annotated: the check does not run at boot.
    assert_eq!(wanted_by(&root, "multi-user.target", CHECK_SERVICE), None);
    assert_eq!(root.verify(CHECK_PATH), "");
}

#[test]
fn the_check_service_runs_the_generator_after_the_store_is_mounted() {
    let root = TestRoot::new("check-service");
    let app = program(&root, 2, "app");
    root.unit(
        "a.service",
        &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"),
    );
    assert_eq!(root.generate().status, 0);
    let service = read(&root, CHECK_SERVICE);
    let lines = assignments(&service);
    for line in [
        "DefaultDependencies=no",
        "After=local-fs.target",
        "RequiresMountsFor=/nix/store /nix/var/nix",
        "StartLimitIntervalSec=0",
        "Type=oneshot",
        // The test runs the binary by its absolute path, as systemd does.
        &format!("ExecStart={GENERATOR} check --loaded --reload"),
    ] {
        assert!(
            lines.iter().any(|l| l == line),
            "{line:?} not in:\n{service}"
        );
    }
    // Something is annotated: the check also runs once at boot.
    assert_eq!(
        wanted_by(&root, "multi-user.target", CHECK_SERVICE).as_deref(),
        Some("../nix-confinement-check.service")
    );
    assert_eq!(root.verify(CHECK_SERVICE), "");
}

#[test]
fn a_unit_blocked_while_the_store_is_missing_waits_for_the_check() {
    // The store and the database are not there (a file system not mounted
    // yet when the generator runs at boot).
    let root = TestRoot::new("store-missing");
    let app = store_path(3, "app");
    root.write_executable(&format!("{app}/bin/app"), "#!/bin/sh\n");
    root.unit(
        "a.service",
        &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"),
    );
    assert!(!root.path("/nix/var/nix/db").exists());
    let run = root.generate();
    assert_eq!(run.status, 1, "{}", run.stderr);
    let dropin = root.dropin("a.service");
    assert!(
        dropin.contains("\nDescription=BLOCKED by nix-confinement-generator: "),
        "{dropin}"
    );
    let lines = assignments(&dropin);
    for line in [
        format!("Wants={CHECK_SERVICE} {STORE_VIEW_UNIT}"),
        format!("After={CHECK_SERVICE} {STORE_VIEW_UNIT}"),
        "AssertPathExists=!/".to_owned(),
    ] {
        assert!(lines.contains(&line), "{line:?} not in:\n{dropin}");
    }
    // The check it waits for comes after the store's mounts.
    assert!(
        assignments(&read(&root, CHECK_SERVICE))
            .contains(&"RequiresMountsFor=/nix/store /nix/var/nix".to_owned())
    );
    assert_eq!(root.verify("a.service"), "");
    // And the store view is not mounted from an empty or missing store.
    assert!(
        assignments(&read(&root, STORE_VIEW_UNIT))
            .contains(&"ConditionDirectoryNotEmpty=/nix/store".to_owned())
    );
}

#[test]
fn the_pending_drop_in_waits_for_the_check_too() {
    // A generator killed before it finished leaves the pending drop-in: a
    // start then waits for the check, which reloads systemd.
    let pending = nix_confinement_generator::confine::pending_text();
    assert!(
        pending.contains(&format!("\nWants={CHECK_SERVICE} {STORE_VIEW_UNIT}\n")),
        "{pending}"
    );
    assert!(
        pending.contains(&format!("\nAfter={CHECK_SERVICE} {STORE_VIEW_UNIT}\n")),
        "{pending}"
    );
}

#[test]
fn check_loaded_arguments() {
    let root = TestRoot::new("check-loaded-args");
    let run = root.run(&["check", "--loaded"]);
    assert_eq!(run.status, 2, "--root with --loaded: {}", run.stderr);
    assert!(
        run.stderr.contains("cannot be combined with --root"),
        "{}",
        run.stderr
    );
    let run = bare(&["check", "--reload"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    let run = bare(&["check", "--loaded", "--bogus"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
}

#[test]
fn check_loaded_without_a_running_systemd_fails_and_says_so() {
    // A mount namespace whose /run is empty: no systemd runs there.
    let output = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            &format!("mount -t tmpfs tmpfs /run && exec '{GENERATOR}' check --loaded"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("cannot ask the running systemd: systemd is not running"),
        "{stdout}"
    );
}

/// The binary run without `--root`.
fn bare(args: &[&str]) -> support::Run {
    support::Run::from(Command::new(GENERATOR).args(args).output().unwrap())
}
