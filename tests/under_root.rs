//! `--root DIR`: everything read or written stays inside DIR, whatever the
//! configured paths say (`..` stops at DIR) and wherever links in DIR point
//! (an absolute target is resolved inside DIR), as the man page promises for
//! link targets. Each test puts something on the host right where the old,
//! textual joining would have led, and checks it is never touched or read.

mod support;

use std::path::{Path, PathBuf};
use support::{TestRoot, assert_logged, store_path};

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

/// `path` (absolute, on the host) as a configured path that climbs out of
/// the root with `..` when joined to it as text.
fn climbing(root: &TestRoot, path: &Path) -> String {
    let depth = root.dir.components().count();
    format!("{}{}", "/..".repeat(depth + 2), path.display())
}

/// Where a logical path lands inside the root.
fn inside(root: &TestRoot, logical: &Path) -> PathBuf {
    root.path(logical.to_str().unwrap())
}

/// The names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
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
fn a_closure_cache_path_climbing_out_is_placed_inside_the_root() {
    let (root, lib, app) = system("cache-climb", 13000);
    let victim = outside(&root, "victim").join("passwd");
    std::fs::write(&victim, "precious").unwrap();
    root.write(
        "/etc/systemd/nix-confinement-generator.conf",
        &format!("[Generator]\nClosureCache={}\n", climbing(&root, &victim)),
    );
    generate_ok(&root);
    let second = generate_ok(&root);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(names(victim.parent().unwrap()), ["passwd"]);
    // The cache is inside the root, where `..` stopped, and it is used.
    let cache = camino::Utf8PathBuf::from_path_buf(inside(&root, &victim)).unwrap();
    let cached = nix_confinement_generator::store::cache::read(&cache)
        .unwrap()
        .expect("the cache inside the root");
    assert_eq!(cached.len(), 2);
    assert_logged(&second, "read 2 store paths");
    assert_eq!(
        sorted(root.binds(&root.dropin("app.service"))),
        sorted(vec![app, lib])
    );
}

#[test]
fn a_views_directory_climbing_out_is_placed_inside_the_root() {
    let (root, _, _) = system("views-climb", 13100);
    let victim = outside(&root, "victim2");
    for file in ["a", "b"] {
        std::fs::write(victim.join(file), "precious").unwrap();
    }
    root.write(
        "/etc/systemd/nix-confinement-generator.conf",
        &format!("[Generator]\nViews={}\n", climbing(&root, &victim)),
    );
    let run = generate_ok(&root);
    assert!(
        support::view_of(&root.dropin("app.service")).is_some(),
        "{}",
        run.stderr
    );
    // The next run removes the records no unit names: none of the victim's.
    generate_ok(&root);
    assert_eq!(names(&victim), ["a", "b"], "nothing made or removed there");
    let records = inside(&root, &victim);
    assert_eq!(names(&records).len(), 1, "the record inside the root");
}

#[test]
fn a_run_directory_linked_out_of_the_root_is_resolved_inside_it() {
    let (root, _, _) = system("run-link", 13200);
    let host_run = outside(&root, "host-run");
    std::fs::write(host_run.join("pid"), "1").unwrap();
    // An absolute link: inside the root, it names DIR/<host_run>.
    std::os::unix::fs::symlink(&host_run, root.path("/run")).unwrap();
    for _ in 0..3 {
        generate_ok(&root);
    }
    assert_eq!(names(&host_run), ["pid"], "nothing made there");
    let scratch = inside(&root, &host_run).join("nix-confinement-generator");
    // The closure cache, the summaries of its closures and the closure
    // views' records.
    assert_eq!(names(&scratch), ["closures", "closures.summaries", "views"]);
    assert_eq!(names(&scratch.join("views")).len(), 1);
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
    assert!(root.binds(&dropin).contains(&app));
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
        sorted(root.binds(&root.dropin("app.service"))),
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
