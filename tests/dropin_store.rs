//! The drop-in store (`[Generator] DropinStore=`, `src/dropin_store.rs`):
//! a run links the drop-in of a unit whose inputs did not change from the
//! store, renders again every unit whose inputs changed (its files, a
//! symlink's target in its closure), keeps only what it used, and does
//! without a store it cannot trust or a file it cannot link.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use support::{TestRoot, assert_logged, binds, store_path};

const STORE: &str = "/run/nix-confinement-generator/dropins";

/// An app with a library; the unit runs the app.
fn system(name: &str, seed: u64) -> (TestRoot, String, String) {
    let root = TestRoot::new(name);
    // The store keeps drop-ins that bind each path: with closure views it
    // is not used.
    root.bind_each_path();
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

/// The files in the store, sorted.
fn kept(root: &TestRoot) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.path(STORE))
        .map(|dir| dir.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// The names in a directory, sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn dropin_path(root: &TestRoot, unit: &str) -> PathBuf {
    root.out.join(format!("{unit}.d/zz-confinement.conf"))
}

fn inode(path: &std::path::Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

fn sorted(mut paths: Vec<String>) -> Vec<String> {
    paths.sort();
    paths
}

fn generate_ok(root: &TestRoot) -> support::Run {
    let run = root.generate_debug();
    assert_eq!(run.status, 0, "{}", run.stderr);
    run
}

#[test]
fn a_run_links_the_kept_dropin_with_the_same_bytes() {
    let (root, lib, app) = system("store-reuse", 12000);
    // Nothing is kept without a closure cache: the first run leaves one.
    let first_run = generate_ok(&root);
    let first = root.dropin("app.service");
    assert_eq!(sorted(binds(&first)), sorted(vec![app, lib]));
    assert!(kept(&root).is_empty(), "{}", first_run.stderr);
    // The second run keeps what it writes, the third links it.
    let second = generate_ok(&root);
    let files = kept(&root);
    assert_eq!(files.len(), 1, "{files:?}");
    let kept_inode = inode(&files[0]);
    let third = generate_ok(&root);
    assert_eq!(root.dropin("app.service"), first);
    assert_eq!(kept(&root), files);
    assert_eq!(inode(&files[0]), kept_inode, "not written again");
    assert_eq!(
        inode(&dropin_path(&root, "app.service")),
        kept_inode,
        "the output is a link to the kept file"
    );
    for run in [&second, &third] {
        assert_logged(run, "1 drop-in(s) in use, 0 removed");
    }
}

#[test]
fn a_changed_unit_is_rendered_again_and_its_old_dropin_removed() {
    let (root, lib, app) = system("store-change", 12100);
    generate_ok(&root);
    generate_ok(&root);
    let before = kept(&root);
    assert_eq!(before.len(), 1);
    assert!(root.dropin("app.service").contains("PrivateTmp=yes\n"));
    // A drop-in of the administrator's changes a setting ours depends on.
    root.write(
        "/etc/systemd/system/app.service.d/tmp.conf",
        "[Service]\nPrivateTmp=no\n",
    );
    let run = generate_ok(&root);
    let text = root.dropin("app.service");
    assert!(!text.contains("PrivateTmp=yes\n"), "{text}");
    assert!(text.contains("InaccessiblePaths=-+/tmp\n"), "{text}");
    assert!(
        text.contains("/etc/systemd/system/app.service.d/tmp.conf"),
        "{text}"
    );
    assert_eq!(sorted(binds(&text)), sorted(vec![app, lib]));
    let after = kept(&root);
    assert_eq!(after.len(), 1, "the old drop-in is removed: {after:?}");
    assert_ne!(after, before);
    assert_logged(&run, "1 drop-in(s) in use, 1 removed");
    // And the same text as a run without any store writes.
    root.write(
        "/etc/systemd/nix-confinement-generator.conf",
        "[Generator]\nDropinStore=\n",
    );
    generate_ok(&root);
    assert_eq!(root.dropin("app.service"), text);
}

#[test]
fn a_changed_symlink_target_in_the_closure_is_rendered_again() {
    // A store path that is a symlink is bound from its target, resolved
    // through the host's files, which can change between runs.
    let root = TestRoot::new("store-symlink");
    root.bind_each_path();
    let one = store_path(12200, "one");
    let two = store_path(12201, "two");
    let link = store_path(12202, "link");
    let app = store_path(12203, "app");
    root.register(&[(&one, &[]), (&two, &[])]);
    root.symlink(&one, "/etc/current");
    root.symlink("/etc/current", &link);
    root.register(&[(&link, &[]), (&app, &[&link])]);
    root.write_executable(&format!("{app}/bin/app"), "#!/bin/sh\n");
    root.unit(
        "app.service",
        &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"),
    );
    generate_ok(&root);
    generate_ok(&root);
    assert!(
        root.binds(&root.dropin("app.service"))
            .contains(&format!("{one}:{link}")),
        "{}",
        root.dropin("app.service")
    );
    root.symlink(&two, "/etc/current");
    generate_ok(&root);
    let bound = root.binds(&root.dropin("app.service"));
    assert!(bound.contains(&format!("{two}:{link}")), "{bound:?}");
    assert!(!bound.contains(&format!("{one}:{link}")), "{bound:?}");
}

#[test]
fn a_store_others_can_write_is_not_used() {
    let (root, _, _) = system("store-mode", 12300);
    generate_ok(&root);
    let expected = root.dropin("app.service");
    std::fs::set_permissions(root.path(STORE), std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = generate_ok(&root);
    assert_logged(&run, "drop-in store not used");
    assert_logged(&run, "mode 777");
    assert_eq!(root.dropin("app.service"), expected);
    assert_eq!(
        std::fs::metadata(dropin_path(&root, "app.service"))
            .unwrap()
            .nlink(),
        1,
        "written, not linked"
    );
}

#[test]
fn a_kept_name_that_is_not_a_file_refuses_the_store_and_renders() {
    let (root, lib, app) = system("store-unlinkable", 12400);
    generate_ok(&root);
    generate_ok(&root);
    let expected = root.dropin("app.service");
    let files = kept(&root);
    assert_eq!(files.len(), 1);
    // The name is the store's, but not a file it made: a directory.
    std::fs::remove_file(&files[0]).unwrap();
    std::fs::create_dir(&files[0]).unwrap();
    let run = generate_ok(&root);
    assert_logged(&run, "which is not a regular file");
    assert_eq!(root.dropin("app.service"), expected);
    assert_eq!(sorted(binds(&expected)), sorted(vec![app, lib]));
    assert_logged(&run, "1 unit(s) confined, 0 blocked");
    assert!(files[0].is_dir(), "left alone");
}

#[test]
fn a_shared_directory_is_refused_and_nothing_in_it_removed() {
    let (root, lib, app) = system("store-shared", 12600);
    let shared = root.path("/run/systemd");
    std::fs::create_dir_all(&shared).unwrap();
    let _notify = std::os::unix::net::UnixListener::bind(shared.join("notify")).unwrap();
    nix::unistd::mkfifo(&shared.join("initctl"), nix::sys::stat::Mode::S_IRUSR).unwrap();
    std::fs::write(shared.join("daemon.pid"), "1\n").unwrap();
    std::os::unix::fs::symlink("/dev/null", shared.join("link")).unwrap();
    let before = names(&shared);
    root.write(
        "/etc/systemd/nix-confinement-generator.conf",
        "[Generator]\nDropinStore=/run/systemd\n",
    );
    for _ in 0..3 {
        let run = generate_ok(&root);
        // A warning, not a debug message: an administrator set it.
        assert!(
            run.stderr
                .lines()
                .any(|line| line.contains("drop-in store not used")
                    && line.contains("/run/systemd holds")
                    && line.contains("which it did not make")),
            "{}",
            run.stderr
        );
        assert_eq!(names(&shared), before, "nothing removed, nothing added");
        assert_eq!(
            sorted(root.binds(&root.dropin("app.service"))),
            sorted(vec![app.clone(), lib.clone()])
        );
    }
    let quiet = root.generate();
    assert!(
        quiet.stderr.contains("drop-in store not used"),
        "logged at warning level: {}",
        quiet.stderr
    );
}

#[test]
fn the_closure_caches_directory_is_refused_as_a_store() {
    // The default places share /run/nix-confinement-generator: a store
    // there would remove the cache as a file it did not use.
    let (root, _, _) = system("store-cache-dir", 12700);
    root.write(
        "/etc/systemd/nix-confinement-generator.conf",
        "[Generator]\nDropinStore=/run/nix-confinement-generator\n",
    );
    let first = generate_ok(&root);
    assert_logged(&first, "wrote 2 store paths");
    for _ in 0..3 {
        let run = generate_ok(&root);
        assert_logged(&run, "is also the directory of the closure cache");
        assert_logged(&run, "closures: read 2 store paths");
        assert!(
            root.path("/run/nix-confinement-generator/closures")
                .is_file()
        );
    }
}

#[test]
fn what_a_killed_run_left_in_the_store_is_removed() {
    let (root, _, _) = system("store-leftover", 12800);
    generate_ok(&root);
    generate_ok(&root);
    let files = kept(&root);
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    // The temporary name a killed run writes a drop-in under.
    let leftover = root.path(STORE).join(format!(".{name}.4194304.tmp"));
    std::fs::write(&leftover, "half").unwrap();
    let run = generate_ok(&root);
    assert_logged(&run, "1 drop-in(s) in use, 1 removed");
    assert!(!leftover.exists());
    assert_eq!(kept(&root), files);
}

#[test]
fn a_cache_written_again_still_holds_the_closures_of_linked_units() {
    // Linked units' closures are not walked; when a run reads something
    // new and writes the closure cache again, it must still hold them, or
    // the next runs would read them from the database again.
    let (root, lib, app) = system("store-rewrite", 12500);
    for _ in 0..3 {
        generate_ok(&root);
    }
    let other = store_path(12510, "other");
    root.register(&[(&other, &[])]);
    root.write_executable(&format!("{other}/bin/other"), "#!/bin/sh\n");
    root.unit(
        "other.service",
        &format!("[Service]\nExecStart={other}/bin/other\nX-ConfinementEnable=yes\n"),
    );
    let run = generate_ok(&root);
    assert_logged(&run, "wrote 3 store paths");
    let cache_path =
        camino::Utf8PathBuf::from_path_buf(root.path("/run/nix-confinement-generator/closures"))
            .unwrap();
    let cache = nix_confinement_generator::store::cache::read(&cache_path)
        .unwrap()
        .expect("a cache");
    let mut cached: Vec<String> = (0..cache.len()).map(|i| cache.path(i).to_owned()).collect();
    cached.sort();
    assert_eq!(cached, sorted(vec![lib.clone(), app.clone(), other]));
    // And the next runs take both units from the cache, then link both.
    let run = generate_ok(&root);
    assert_logged(&run, "unchanged");
    let run = generate_ok(&root);
    assert_logged(&run, "2 drop-in(s) in use, 0 removed");
    assert_eq!(
        sorted(root.binds(&root.dropin("app.service"))),
        sorted(vec![app, lib])
    );
}
