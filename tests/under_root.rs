//! `--root DIR`: everything read stays inside DIR, whatever the configured
//! paths say (`..` stops at DIR) and wherever links in DIR point (an
//! absolute target is resolved inside DIR), as the man page promises for
//! link targets. Each test puts something on the host right where the old,
//! textual joining would have led, and checks it is never read.

mod support;

use std::path::{Path, PathBuf};
use support::{TestRoot, binds, store_path};

/// An app with a library; the unit runs the app.
fn system(name: &str, seed: u64) -> (TestRoot, String, String) {
    let root = TestRoot::new(name);
    let lib = store_path(seed, "libfoo");
    let app = store_path(seed + 1, "app");
    root.register(&[(&lib, &[]), (&app, &[&lib])]);
    root.write_executable(&format!("{app}/bin/app"), "#!/bin/sh\n");
    root.unit(
        "app.service",
        &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"),
    );
    (root, lib, app)
}

/// A directory next to the root, outside it.
fn outside(root: &TestRoot, name: &str) -> PathBuf {
    let path = root.dir.parent().unwrap().join(name);
    std::fs::create_dir_all(&path).unwrap();
    path
}

/// Where a logical path lands inside the root.
fn inside(root: &TestRoot, logical: &Path) -> PathBuf {
    root.path(logical.to_str().unwrap())
}

fn generate_ok(root: &TestRoot) -> support::Run {
    let run = root.generate_debug();
    assert_eq!(run.status, 0, "{}", run.stderr);
    run
}

fn sorted(mut paths: Vec<String>) -> Vec<String> {
    paths.sort();
    paths
}

#[test]
fn configuration_files_are_read_inside_the_root() {
    let (root, _, app) = system("config-link", 13300);
    // On the host, where the links lead when followed there: invalid
    // values, which would block the unit.
    let host = outside(&root, "host-etc");
    std::fs::write(host.join("main.conf"), "[Defaults]\nMode=paranoid\n").unwrap();
    std::fs::create_dir_all(host.join("conf.d")).unwrap();
    std::fs::write(host.join("conf.d/10-x.conf"), "[Nix]\nStateDir=relative\n").unwrap();
    // Inside the root, at the same paths: what applies.
    root.write(
        host.join("main.conf").to_str().unwrap(),
        "[Defaults]\nMode=chroot-only\n",
    );
    root.write(
        host.join("conf.d/10-x.conf").to_str().unwrap(),
        "[Defaults]\nBinSh=\n",
    );
    let etc = "/etc/systemd/nix-confinement-generator.conf";
    root.symlink(host.join("main.conf").to_str().unwrap(), etc);
    root.symlink(host.join("conf.d").to_str().unwrap(), &format!("{etc}.d"));
    let run = generate_ok(&root);
    assert!(!run.stderr.contains("paranoid"), "{}", run.stderr);
    let dropin = root.dropin("app.service");
    assert!(
        dropin.contains("PrivateDevices=no\n"),
        "chroot-only: {dropin}"
    );
    assert!(!dropin.contains(":/bin/sh"), "no /bin/sh: {dropin}");
    assert!(binds(&dropin).contains(&app));
}

#[test]
fn the_nix_database_is_read_inside_the_root() {
    let (root, lib, app) = system("state-link", 13400);
    // The host's database, where the link leads when followed there, does
    // not know the app: reading it would block the unit.
    let host = TestRoot::new("state-link-host");
    host.register(&[(&store_path(13410, "other"), &[])]);
    let host_state = host.path("/nix/var/nix");
    root.symlink(host_state.to_str().unwrap(), "/state");
    // Inside the root, the same path leads to the root's own database.
    root.symlink("/nix/var/nix", host_state.to_str().unwrap());
    root.write(
        "/etc/systemd/nix-confinement-generator.conf",
        "[Nix]\nStateDir=/state\n",
    );
    generate_ok(&root);
    assert_eq!(
        sorted(binds(&root.dropin("app.service"))),
        sorted(vec![app, lib])
    );
}

#[test]
fn unit_directories_linked_out_of_the_root_are_read_inside_it() {
    // Already so before: a guard.
    let (root, _, app) = system("units-link", 13500);
    let host = outside(&root, "host-units");
    std::fs::write(
        host.join("evil.service"),
        "[Service]\nExecStart=/nix/store/x\nX-ConfinementEnable=yes\n",
    )
    .unwrap();
    root.unit(
        "good.service",
        &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"),
    );
    // The root's units move to where the link leads inside the root.
    let moved = inside(&root, &host);
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(root.path("/etc/systemd/system"), &moved).unwrap();
    root.symlink(host.to_str().unwrap(), "/etc/systemd/system");
    generate_ok(&root);
    assert!(root.has_dropin("good.service"));
    assert!(!root.has_dropin("evil.service"));
}
