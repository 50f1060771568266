//! The closure cache (`[Generator] ClosureCache=`, `src/store/cache.rs`):
//! a second run takes closures from it and writes the same bytes; whatever
//! changed in the database since is read from the database; a cache that
//! does not belong to this database is not used.

mod support;

use nix_confinement_generator::store::cache::{self, ClosureCache};
use std::os::unix::fs::PermissionsExt;
use support::{TestRoot, assert_logged, binds, store_path};

const CACHE: &str = "/run/nix-confinement-generator/closures";

/// An app with a library that needs libc; the unit runs the app.
struct System {
    root: TestRoot,
    libc: String,
    lib: String,
    app: String,
}

fn system(name: &str, seed: u64) -> System {
    let root = TestRoot::new(name);
    let libc = store_path(seed, "glibc");
    let lib = store_path(seed + 1, "libfoo");
    let app = store_path(seed + 2, "app");
    root.register(&[(&libc, &[]), (&lib, &[&libc]), (&app, &[&lib])]);
    root.write_executable(&format!("{app}/bin/app"), "#!/bin/sh\n");
    root.unit(
        "app.service",
        &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"),
    );
    System {
        root,
        libc,
        lib,
        app,
    }
}

fn assert_exact_closure(root: &TestRoot, unit: &str, roots: &[&str]) {
    assert_eq!(binds(&root.dropin(unit)), root.requisites(roots), "{unit}");
}

fn read_cache(root: &TestRoot) -> ClosureCache {
    let path = camino::Utf8PathBuf::from_path_buf(root.path(CACHE)).unwrap();
    cache::read(&path).unwrap().expect("a cache was written")
}

fn write_cache(root: &TestRoot, cache: &ClosureCache) {
    let path = camino::Utf8PathBuf::from_path_buf(root.path(CACHE)).unwrap();
    cache::write(&path, cache).unwrap();
}

fn index_of(cache: &ClosureCache, path: &str) -> usize {
    (0..cache.len())
        .find(|&i| cache.path(i) == path)
        .unwrap_or_else(|| panic!("{path} is not in the cache"))
}

#[test]
fn a_second_run_takes_closures_from_the_cache_and_writes_the_same_bytes() {
    let s = system("cache-reuse", 9000);
    let first = s.root.generate_debug();
    assert_eq!(first.status, 0, "{}", first.stderr);
    assert!(
        first
            .stderr
            .contains(&format!("closure cache {CACHE}: none yet")),
        "{}",
        first.stderr
    );
    assert!(
        first
            .stderr
            .contains(&format!("closure cache {CACHE}: wrote 3 store paths")),
        "{}",
        first.stderr
    );
    assert!(
        first
            .stderr
            .contains("the references of 3 read from the database"),
        "{}",
        first.stderr
    );
    let dropin = s.root.dropin("app.service");
    assert_exact_closure(&s.root, "app.service", &[&s.app]);

    let file = std::fs::metadata(s.root.path(CACHE)).unwrap();
    assert_eq!(file.permissions().mode() & 0o777, 0o600);
    let dir = std::fs::metadata(s.root.path("/run/nix-confinement-generator")).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    let cached = read_cache(&s.root);
    let mut paths: Vec<&str> = (0..cached.len()).map(|i| cached.path(i)).collect();
    paths.sort();
    let mut expected = vec![s.libc.as_str(), s.lib.as_str(), s.app.as_str()];
    expected.sort();
    assert_eq!(paths, expected);

    let second = s.root.generate_debug();
    assert_eq!(second.status, 0, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains(&format!("closure cache {CACHE}: read 3 store paths")),
        "{}",
        second.stderr
    );
    assert!(
        second
            .stderr
            .contains("the references of 0 read from the database"),
        "{}",
        second.stderr
    );
    assert!(
        second
            .stderr
            .contains(&format!("closure cache {CACHE}: unchanged")),
        "{}",
        second.stderr
    );
    assert_eq!(s.root.dropin("app.service"), dropin, "the same bytes");
}

#[test]
fn what_changed_in_the_database_since_is_read_from_the_database() {
    let s = system("cache-new-paths", 9100);
    assert_eq!(s.root.generate().status, 0);
    // A new version of the app with a new library, sharing libc.
    let lib2 = store_path(9110, "libbar");
    let app2 = store_path(9111, "app-2");
    s.root
        .register(&[(&lib2, &[&s.libc]), (&app2, &[&lib2, &s.lib])]);
    s.root
        .write_executable(&format!("{app2}/bin/app"), "#!/bin/sh\n");
    s.root.unit(
        "app.service",
        &format!("[Service]\nExecStart={app2}/bin/app\nX-ConfinementEnable=yes\n"),
    );
    let run = s.root.generate_debug();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_logged(&run, "the references of 2 read from the database");
    assert_exact_closure(&s.root, "app.service", &[&app2]);
    assert_eq!(
        read_cache(&s.root).len(),
        4,
        "the cache holds this run's closures"
    );
}

#[test]
fn a_path_deleted_and_registered_again_with_other_references_is_read_again() {
    let s = system("cache-reregistered", 9200);
    assert_eq!(s.root.generate().status, 0);
    // The app is deleted and registered again, now also referring to an
    // extra path: a new id and registration time.
    let extra = store_path(9210, "extra");
    s.root.delete(&[&s.app]);
    s.root
        .register(&[(&extra, &[]), (&s.app, &[&s.lib, &extra])]);
    s.root
        .write_executable(&format!("{}/bin/app", s.app), "#!/bin/sh\n");
    let run = s.root.generate_debug();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        s.root.dropin("app.service").contains(&extra),
        "{}",
        run.stderr
    );
    assert_exact_closure(&s.root, "app.service", &[&s.app]);
}

#[test]
fn a_cache_is_trusted_only_for_the_database_it_was_made_from() {
    let s = system("cache-trust", 9300);
    assert_eq!(s.root.generate().status, 0);
    let good = read_cache(&s.root);
    let app = index_of(&good, &s.app);

    // The cache's claim about the app's references is what the next run
    // uses while the app's id and registration time match: the cache is
    // trusted for a root that did not change (this is what makes it fast,
    // and it shows that the checks below can fail).
    let mut forged = good.clone();
    let mut without_lib = ClosureCache::new(forged.database, &forged.store_dir);
    for i in 0..forged.len() {
        let references: Vec<u32> = if i == app {
            Vec::new()
        } else {
            forged.references(i).to_vec()
        };
        without_lib.push(
            forged.db_ids[i],
            forged.registration_times[i],
            forged.symlinks[i],
            forged.path(i),
            references,
        );
    }
    write_cache(&s.root, &without_lib);
    assert_eq!(s.root.generate().status, 0);
    assert!(!s.root.dropin("app.service").contains(&s.lib));

    // The same claim with a registration time the database does not have:
    // not the database it was made from, nothing of it is used.
    forged = without_lib.clone();
    forged.registration_times[app] += 1;
    write_cache(&s.root, &forged);
    let run = s.root.generate_debug();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_logged(&run, "does not match the database");
    assert_exact_closure(&s.root, "app.service", &[&s.app]);
    assert_eq!(
        read_cache(&s.root)
            .references(index_of(&read_cache(&s.root), &s.app))
            .len(),
        1
    );

    // Made for another database file (the same rows in a new file).
    write_cache(&s.root, &without_lib);
    let db = s.root.path("/nix/var/nix/db/db.sqlite");
    let copy = db.with_extension("copy");
    std::fs::copy(&db, &copy).unwrap();
    std::fs::rename(&copy, &db).unwrap();
    let run = s.root.generate_debug();
    assert_logged(&run, "made for another database file");
    assert_exact_closure(&s.root, "app.service", &[&s.app]);

    // A path that is not a store path (a cache is written unescaped into
    // drop-ins): none of it is used, and the closure comes from the
    // database.
    let lib = index_of(&good, &s.lib);
    let mut outside = ClosureCache::new(good.database, &good.store_dir);
    for i in 0..good.len() {
        let path = if i == lib {
            "/etc/shadow"
        } else {
            good.path(i)
        };
        outside.push(
            good.db_ids[i],
            good.registration_times[i],
            good.symlinks[i],
            path,
            good.references(i).to_vec(),
        );
    }
    write_cache(&s.root, &outside);
    let run = s.root.generate_debug();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_logged(&run, "holds \"/etc/shadow\", which is not a store path");
    assert!(!s.root.dropin("app.service").contains("/etc/shadow"));
    assert_exact_closure(&s.root, "app.service", &[&s.app]);

    // Damaged.
    std::fs::write(s.root.path(CACHE), b"NCGCLOS\x02 and then nothing sensible").unwrap();
    let run = s.root.generate_debug();
    assert_logged(&run, "closure cache not used");
    assert_exact_closure(&s.root, "app.service", &[&s.app]);
    assert_eq!(read_cache(&s.root).len(), 3, "written again");
}

#[test]
fn the_cache_can_be_turned_off() {
    let s = system("cache-off", 9400);
    s.root.write(
        "/etc/systemd/nix-confinement-generator.conf.d/cache.conf",
        "[Generator]\nClosureCache=\n",
    );
    for _ in 0..2 {
        let run = s.root.generate_debug();
        assert_eq!(run.status, 0, "{}", run.stderr);
        assert_logged(&run, "the references of 3 read from the database");
        assert!(!run.stderr.contains("closure cache"), "{}", run.stderr);
    }
    assert!(!s.root.path("/run/nix-confinement-generator").exists());
    assert_exact_closure(&s.root, "app.service", &[&s.app]);
}

#[test]
fn references_added_to_a_cached_path_are_seen() {
    let s = system("cache-added-references", 9500);
    assert_eq!(s.root.generate().status, 0);
    // Registering the app again with one more reference: Nix keeps its id
    // and registration time and adds the row to Refs.
    let extra = store_path(9510, "extra");
    s.root
        .register(&[(&extra, &[]), (&s.app, &[&s.lib, &extra])]);
    let run = s.root.generate_debug();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_logged(
        &run,
        format!(
            "closure cache not used: {CACHE}: references were added to {} since it was made",
            s.app
        ),
    );
    assert!(s.root.dropin("app.service").contains(&extra));
    assert_exact_closure(&s.root, "app.service", &[&s.app]);
    // The cache written then is used by the next run.
    let run = s.root.generate_debug();
    assert_logged(&run, format!("closure cache {CACHE}: read 4 store paths"));
    assert_exact_closure(&s.root, "app.service", &[&s.app]);
}

#[test]
fn paths_registered_since_do_not_stop_the_cache() {
    let s = system("cache-new-registrations", 9600);
    assert_eq!(s.root.generate().status, 0);
    // Something else installed meanwhile: new paths, new references.
    let other = store_path(9610, "other");
    s.root.register(&[(&other, &[&s.libc])]);
    let run = s.root.generate_debug();
    assert_logged(&run, format!("closure cache {CACHE}: read 3 store paths"));
    assert_logged(&run, "the references of 0 read from the database");
    assert_exact_closure(&s.root, "app.service", &[&s.app]);
}
