//! The closure cache (`[Generator] ClosureCache=`, `src/store/cache.rs`):
//! a second run takes closures from it and writes the same bytes; after any
//! change to the database or the store directory it is not used; a cache
//! that is not the generator's own, or damaged, is not used; the summaries
//! of its closures are used only with the very cache they were made with.
//! (That a run with the cache always writes what a run without it writes,
//! whatever happened in between, is `tests/differential.rs`.)

mod support;

use nix_confinement_generator::store::cache::{self, ClosureCache};
use std::os::unix::fs::PermissionsExt;
use support::{TestRoot, VIEW_RECORDS, assert_logged, settle, store_path, view_of};

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
    // A cache is written only when the database and the store changed a
    // clock tick or more before the run.
    settle();
    System {
        root,
        libc,
        lib,
        app,
    }
}

fn assert_exact_closure(root: &TestRoot, unit: &str, roots: &[&str]) {
    assert_eq!(
        root.binds(&root.dropin(unit)),
        root.requisites(roots),
        "{unit}"
    );
}

fn read_cache(root: &TestRoot) -> ClosureCache {
    let path = camino::Utf8PathBuf::from_path_buf(root.path(CACHE)).unwrap();
    cache::read(&path).unwrap().expect("a cache was written")
}

fn write_cache(root: &TestRoot, cache: &ClosureCache) {
    let path = camino::Utf8PathBuf::from_path_buf(root.path(CACHE)).unwrap();
    cache::write(&path, cache).unwrap();
}

/// `cache` with no references for entry `index`: a cache whose claim a run
/// would follow while it trusts the cache.
fn without_references_of(cache: &ClosureCache, index: usize) -> ClosureCache {
    let mut forged = ClosureCache::new(cache.sources, &cache.store_dir);
    for i in 0..cache.len() {
        let references = if i == index {
            Vec::new()
        } else {
            cache.references(i).to_vec()
        };
        forged.push(
            cache.db_ids[i],
            cache.registration_times[i],
            cache.symlinks[i],
            cache.path(i),
            references,
        );
    }
    forged
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
    let written = paths.clone();
    paths.sort();
    // Written in path order: the next run ranks the paths without a sort.
    assert_eq!(written, paths);
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
    settle();
    let run = s.root.generate_debug();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_logged(
        &run,
        format!(
            "closure cache not used: {CACHE}: the Nix database or the store directory changed since it was made"
        ),
    );
    assert_logged(&run, "the references of 4 read from the database");
    assert_exact_closure(&s.root, "app.service", &[&app2]);
    assert_eq!(
        read_cache(&s.root).len(),
        4,
        "the cache holds this run's closures"
    );
    // The next run, with nothing changed, takes them from the cache.
    let run = s.root.generate_debug();
    assert_logged(&run, format!("closure cache {CACHE}: read 4 store paths"));
    assert_logged(&run, "the references of 0 read from the database");
    assert_exact_closure(&s.root, "app.service", &[&app2]);
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
        s.root.binds(&s.root.dropin("app.service")).contains(&extra),
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
    let without_lib = without_references_of(&good, app);
    write_cache(&s.root, &without_lib);
    assert_eq!(s.root.generate().status, 0);
    assert!(!s.root.dropin("app.service").contains(&s.lib));

    // The same claim with a registration time the database does not have:
    // not the database it was made from, nothing of it is used.
    let mut forged = without_lib.clone();
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

    // Made from another database file (the same rows in a new file), or
    // from the same file before it was restored from a copy (the same
    // inode).
    let db = s.root.path("/nix/var/nix/db/db.sqlite");
    let copy = db.with_extension("copy");
    for restore in [
        |copy: &std::path::Path, db: &std::path::Path| std::fs::rename(copy, db),
        |copy: &std::path::Path, db: &std::path::Path| std::fs::copy(copy, db).map(drop),
    ] {
        std::fs::copy(&db, &copy).unwrap();
        assert_eq!(s.root.generate().status, 0);
        let made = read_cache(&s.root);
        write_cache(
            &s.root,
            &without_references_of(&made, index_of(&made, &s.app)),
        );
        restore(&copy, &db).unwrap();
        settle();
        let run = s.root.generate_debug();
        assert_logged(&run, "changed since it was made");
        assert_exact_closure(&s.root, "app.service", &[&s.app]);
    }

    // A path that is not a store path (a cache is written unescaped into
    // drop-ins): none of it is used, and the closure comes from the
    // database.
    let lib = index_of(&good, &s.lib);
    let mut outside = ClosureCache::new(read_cache(&s.root).sources, &good.store_dir);
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
    assert!(!s.root.path(CACHE).exists());
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
    settle();
    let run = s.root.generate_debug();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_logged(
        &run,
        format!(
            "closure cache not used: {CACHE}: the Nix database or the store directory changed since it was made"
        ),
    );
    assert!(s.root.binds(&s.root.dropin("app.service")).contains(&extra));
    assert_exact_closure(&s.root, "app.service", &[&s.app]);
    // The cache written then is used by the next run.
    let run = s.root.generate_debug();
    assert_logged(&run, format!("closure cache {CACHE}: read 4 store paths"));
    assert_exact_closure(&s.root, "app.service", &[&s.app]);
}

#[test]
fn any_change_to_the_database_or_the_store_stops_the_cache_once() {
    let s = system("cache-any-change", 9600);
    assert_eq!(s.root.generate().status, 0);
    // Something else installed meanwhile: new paths, new references.
    let other = store_path(9610, "other");
    s.root.register(&[(&other, &[&s.libc])]);
    settle();
    let run = s.root.generate_debug();
    assert_logged(&run, "changed since it was made");
    assert_logged(&run, "the references of 3 read from the database");
    assert_exact_closure(&s.root, "app.service", &[&s.app]);
    let run = s.root.generate_debug();
    assert_logged(&run, format!("closure cache {CACHE}: read 3 store paths"));
    // An entry of the store directory added, without the database.
    std::fs::create_dir(s.root.path(&store_path(9620, "unregistered"))).unwrap();
    settle();
    let run = s.root.generate_debug();
    assert_logged(&run, "changed since it was made");
    assert_exact_closure(&s.root, "app.service", &[&s.app]);
}

#[test]
fn a_store_path_missing_at_one_run_and_a_symlink_at_the_next_is_bound_as_a_symlink() {
    let s = system("cache-symlink-later", 9700);
    // Binding each path (a closure view shows the symlink as it is).
    s.root.bind_each_path();
    // Valid in the database, not on disk.
    std::fs::remove_dir_all(s.root.path(&s.lib)).unwrap();
    settle();
    assert_eq!(s.root.generate().status, 0);
    assert!(read_cache(&s.root).len() == 3, "the cache was written");
    // Now a symlink to a host directory: it must be bound from its target,
    // read-only, never through the store view (where systemd would follow
    // the link to the host's directory and bind it writable).
    std::fs::create_dir_all(s.root.path("/etc/hostdir")).unwrap();
    s.root.symlink("/etc/hostdir", &s.lib);
    settle();
    assert_eq!(s.root.generate().status, 0);
    let dropin = s.root.dropin("app.service");
    assert!(
        dropin.contains(&format!("BindReadOnlyPaths=/etc/hostdir:{}\n", s.lib)),
        "{dropin}"
    );
    let through_the_view = s.lib.replace("/nix/store", support::STORE_VIEW);
    assert!(!dropin.contains(&through_the_view), "{dropin}");
}

const SUMMARIES: &str = "/run/nix-confinement-generator/closures.summaries";

#[test]
fn a_warm_run_takes_closures_from_the_summaries_of_the_cache_it_trusts_only() {
    let s = system("cache-summaries", 9800);
    assert_eq!(s.root.generate().status, 0);
    let first = s.root.dropin("app.service");
    let warm = s.root.generate_debug();
    assert_logged(
        &warm,
        format!("{SUMMARIES}: the closures of 1 unit taken from it"),
    );
    assert_eq!(s.root.dropin("app.service"), first, "the same bytes");
    // The summaries and the view's record as they are now, put back below:
    // what a run killed between writing the cache and the summaries could
    // leave, with a record that some other unit still names.
    let old_view = view_of(&first).expect("bound through a view");
    let record = s.root.path(VIEW_RECORDS).join(&old_view);
    let (old_summaries, old_record) = (
        std::fs::read(s.root.path(SUMMARIES)).unwrap(),
        std::fs::read(&record).unwrap(),
    );
    // The same roots, another closure: the library needs one more.
    let extra = store_path(9803, "libextra");
    s.root.register(&[(&extra, &[])]);
    s.root.register(&[(&s.lib, &[&s.libc, &extra])]);
    settle();
    let changed = s.root.generate_debug();
    assert!(
        !changed.stderr.contains("taken from it"),
        "{}",
        changed.stderr
    );
    assert_exact_closure(&s.root, "app.service", &[&s.app]);
    let new_view = view_of(&s.root.dropin("app.service")).expect("bound through a view");
    assert_ne!(new_view, old_view);
    std::fs::write(s.root.path(SUMMARIES), old_summaries).unwrap();
    std::fs::write(&record, old_record).unwrap();
    let after = s.root.generate_debug();
    assert!(!after.stderr.contains("taken from it"), "{}", after.stderr);
    assert_eq!(view_of(&s.root.dropin("app.service")), Some(new_view));
    assert_exact_closure(&s.root, "app.service", &[&s.app]);
}

#[test]
fn a_summary_lists_the_closures_symlinks_and_is_used_only_while_each_resolves() {
    let s = system("cache-summary-symlink", 9900);
    // The library is a symlink store path, to a directory of the host.
    std::fs::remove_dir_all(s.root.path(&s.lib)).unwrap();
    std::fs::create_dir_all(s.root.path("/etc/hostdir")).unwrap();
    s.root.symlink("/etc/hostdir", &s.lib);
    settle();
    assert_eq!(s.root.generate().status, 0);
    let first = s.root.dropin("app.service");
    assert!(view_of(&first).is_some(), "{first}");
    let summaries = std::fs::read_to_string(s.root.path(SUMMARIES)).unwrap();
    assert!(summaries.contains(&format!(" 1 {} ", s.lib)), "{summaries}");
    let warm = s.root.generate_debug();
    assert_logged(
        &warm,
        format!("{SUMMARIES}: the closures of 1 unit taken from it"),
    );
    assert_eq!(s.root.dropin("app.service"), first, "the same bytes");
    // The target goes: nothing the cache stands for changed, but the
    // symlink dangles, and the unit is blocked for it as a walk finds.
    std::fs::remove_dir(s.root.path("/etc/hostdir")).unwrap();
    let dangling = s.root.generate_debug();
    assert!(
        !dangling.stderr.contains("taken from it"),
        "{}",
        dangling.stderr
    );
    assert_ne!(dangling.status, 0);
    assert!(
        dangling.stderr.contains(&format!(
            "store path {} is a symbolic link that does not resolve",
            s.lib
        )),
        "{}",
        dangling.stderr
    );
    assert!(view_of(&s.root.dropin("app.service")).is_none());
}
