//! The fault matrix (issue 8): every bad input or hostile environment ends in
//! a correctly confined unit or a blocked one with a reason naming the unit,
//! the file and line, and the path — never a panic, never an annotated unit
//! left open. The database faults are in `generator.rs`.

mod support;

use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use support::{TestRoot, store_path};

fn annotated(root: &TestRoot, seed: u64) -> String {
    let app = store_path(seed, "app");
    root.register(&[(&app, &[])]);
    root.unit(
        "a.service",
        &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"),
    );
    app
}

fn assert_no_panic(run: &support::Run) {
    assert!(
        !run.stderr.contains("panicked") && run.status != 101 && run.status != -1,
        "status {}: {}",
        run.status,
        run.stderr
    );
}

#[test]
fn an_unwritable_output_directory_is_an_error_naming_it() {
    let root = TestRoot::new("out-ro");
    annotated(&root, 1);
    let out = root.out.display().to_string();
    let run = root.generate_in_namespace(&format!(
        "mount --bind '{out}' '{out}' && mount -o remount,bind,ro '{out}'"
    ));
    assert_no_panic(&run);
    assert_eq!(run.status, 1);
    assert!(
        run.stderr.contains(&format!("cannot write {out}/")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Read-only file system"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_full_output_directory_leaves_units_blocked_not_open() {
    let root = TestRoot::new("out-full");
    // A closure too large for the tiny file system: the small blocking
    // drop-in fits, the real one does not.
    let libs: Vec<String> = (0..200)
        .map(|i| store_path(100 + i, "library-with-a-long-name"))
        .collect();
    let no_refs: &[&str] = &[];
    let registrations: Vec<(&str, &[&str])> = libs.iter().map(|l| (l.as_str(), no_refs)).collect();
    root.register(&registrations);
    let app = store_path(99, "app");
    let refs: Vec<&str> = libs.iter().map(String::as_str).collect();
    root.register(&[(&app, &refs)]);
    root.unit(
        "a.service",
        &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"),
    );
    let out = root.out.display().to_string();
    let copy = root.dir.parent().unwrap().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=12k none '{out}' && {{ '{g}' --root '{r}' '{out}'; status=$?; \
         cp -a '{out}/.' '{c}/'; exit $status; }}",
        g = support::GENERATOR,
        r = root.dir.display(),
        c = copy.display()
    );
    let output = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env("SYSTEMD_LOG_TARGET", "console")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    // And the summary says so: blocked, not confined.
    assert!(stderr.contains("0 units confined, 1 blocked"), "{stderr}");
    // The blocking drop-in written first is still there: blocked, not open.
    let dropin = std::fs::read_to_string(copy.join("a.service.d/zz-confinement.conf")).unwrap();
    assert!(
        dropin.contains("the generator did not finish computing the confinement"),
        "{dropin}"
    );
    assert!(dropin.contains("AssertPathExists=!/"), "{dropin}");
}

#[test]
fn planted_symlinks_in_the_output_are_never_followed() {
    let root = TestRoot::new("planted");
    let app = annotated(&root, 2);
    root.unit(
        "b.service",
        &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"),
    );
    let victim_dir = root.dir.parent().unwrap().join("victim");
    std::fs::create_dir_all(&victim_dir).unwrap();
    let victim_file = victim_dir.join("precious");
    std::fs::write(&victim_file, "precious").unwrap();
    // Plant after the output directory is made fresh: run the binary by hand.
    std::fs::create_dir_all(root.out.join("a.service.d")).unwrap();
    std::os::unix::fs::symlink(
        &victim_file,
        root.out.join("a.service.d/zz-confinement.conf"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&victim_dir, root.out.join("b.service.d")).unwrap();
    let out = root.out.to_str().unwrap().to_owned();
    let run = root.run(&[&out]);
    assert_no_panic(&run);
    assert_eq!(std::fs::read_to_string(&victim_file).unwrap(), "precious");
    assert_eq!(
        std::fs::read_dir(&victim_dir).unwrap().count(),
        1,
        "nothing written through the link"
    );
    assert_eq!(root.binds(&root.dropin("a.service")), [app]);
    assert_eq!(
        run.status, 1,
        "b.service could not be written: {}",
        run.stderr
    );
    assert!(run.stderr.contains("b.service.d"), "{}", run.stderr);
}

#[test]
fn odd_unit_file_names_are_ignored_without_panicking() {
    let root = TestRoot::new("names");
    annotated(&root, 3);
    let dir = root.path("/etc/systemd/system");
    let text = "[Service]\nExecStart=/nix/store/x\nX-ConfinementEnable=yes\n";
    let names: Vec<Vec<u8>> = vec![
        b"..service".to_vec(),
        b"...service".to_vec(),
        b"\xff\xfe.service".to_vec(),
        b"bad name.service".to_vec(),
        b".service".to_vec(),
        b"@.service".to_vec(),
    ];
    for name in &names {
        std::fs::write(dir.join(std::ffi::OsStr::from_bytes(name)), text).unwrap();
    }
    std::fs::create_dir_all(dir.join(std::ffi::OsStr::from_bytes(b"\xff.service.d"))).unwrap();
    let run = root.generate();
    assert_no_panic(&run);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let written = support::written_besides_check_units(&root.out);
    // `..service` and `...service` are valid unit names (a prefix may be
    // made of dots), so they are processed like any other; the rest are not
    // unit names and are ignored, as systemd ignores them.
    assert_eq!(
        written,
        [
            "...service.d",
            "..service.d",
            "a.service.d",
            "nix-confinement-view@.service",
            "run-nix\\x2dconfinement\\x2dstore.mount"
        ]
    );
}

#[test]
fn a_unit_name_too_long_for_a_dropin_directory_is_a_loud_error() {
    // Valid unit names of 254 and 255 bytes: systemd loads such a unit (the
    // verify below), but `NAME.d` cannot exist on Linux (names are at most
    // 255 bytes), so neither systemd nor we can give it a drop-in: it would
    // start unconfined, and that is an error everywhere, never "confined".
    for length in [254, 255] {
        let root = TestRoot::new("long-name");
        let app = annotated(&root, 8);
        root.write_executable(&format!("{app}/bin/app"), "#!/bin/sh\n");
        let name = format!("{}.service", "b".repeat(length - ".service".len()));
        assert_eq!(name.len(), length);
        root.unit(
            &name,
            &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"),
        );
        let run = root.generate();
        assert_no_panic(&run);
        assert_eq!(run.status, 1, "{}", run.stderr);
        let error = format!(
            "/etc/systemd/system/{name}:3: {name}: NOT CONFINED: no drop-in can be written for it"
        );
        assert!(run.stderr.contains(&error), "{}", run.stderr);
        assert!(
            run.stderr
                .contains("1 unit confined, 0 blocked, 1 NOT confined"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("cannot write"), "{}", run.stderr);
        let check = root.run(&["check"]);
        assert_eq!(check.status, 1, "{}", check.stdout);
        assert!(
            check.stdout.contains(&format!(
                "{name}: NOT CONFINED: no drop-in can be written for it (mode"
            )),
            "{}",
            check.stdout
        );
        assert!(check.stdout.contains(&error), "{}", check.stdout);
        assert!(
            check
                .stdout
                .contains("2 annotated units, 0 blocked, 1 NOT confined, 1 problem"),
            "{}",
            check.stdout
        );
        // What systemd does with it: loads it, cleanly, and would start it
        // (without any drop-in).
        assert_eq!(root.verify(&name), "", "systemd loads {name}");
    }
}

#[test]
fn an_instance_too_long_for_its_own_dropin_directory_is_a_loud_error() {
    // The instance has a unit file of its own (so its own drop-in would
    // be needed), but `NAME.d` cannot exist: systemd gives it only its
    // template's drop-in, made from the template's files, not its own.
    let root = TestRoot::new("long-instance");
    let app = annotated(&root, 10);
    let unit = format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n");
    root.unit("t@.service", &unit);
    let instance = format!("t@{}.service", "i".repeat(254 - "t@.service".len()));
    assert_eq!(instance.len(), 254);
    root.unit(&instance, &unit);
    let run = root.generate();
    assert_no_panic(&run);
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "{instance}: NOT CONFINED: no drop-in can be written for it, and systemd loads it \
             with its template's drop-in only"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("2 units confined, 0 blocked, 1 NOT confined"),
        "{}",
        run.stderr
    );
    assert!(root.has_dropin("t@.service"));
}

#[test]
fn a_dropin_no_name_can_follow_is_a_loud_error() {
    // 250 `~`: no file name of at most 255 bytes sorts after it, so any
    // drop-in of ours would be applied before it (and could be undone).
    let root = TestRoot::new("no-later-name");
    annotated(&root, 9);
    let late = format!("{}.conf", "~".repeat(250));
    root.write(
        &format!("/etc/systemd/system/a.service.d/{late}"),
        "[Service]\nBindReadOnlyPaths=\n",
    );
    let run = root.generate();
    assert_no_panic(&run);
    assert_eq!(run.status, 1, "{}", run.stderr);
    let error = format!(
        "/etc/systemd/system/a.service.d/{late}: a.service: NOT CONFINED: no drop-in can be written for it"
    );
    assert!(run.stderr.contains(&error), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("0 units confined, 0 blocked, 1 NOT confined"),
        "{}",
        run.stderr
    );
    assert!(!root.has_dropin("a.service"));
    let check = root.run(&["check"]);
    assert_eq!(check.status, 1, "{}", check.stdout);
    assert!(check.stdout.contains(&error), "{}", check.stdout);
}

#[test]
fn over_long_lines_block_an_annotated_unit_with_file_and_line() {
    let root = TestRoot::new("long-line");
    annotated(&root, 4);
    let mut text = String::from("[Service]\nX-ConfinementEnable=yes\nEnvironment=X=");
    text.push_str(&"x".repeat(1024 * 1024 + 10));
    text.push('\n');
    root.unit("long.service", &text);
    let run = root.generate();
    assert_no_panic(&run);
    assert_eq!(run.status, 1);
    assert!(
        run.stderr.contains(
            "/etc/systemd/system/long.service:3: long.service: line of 1048576 bytes or more"
        ),
        "{}",
        run.stderr
    );
    assert!(root.dropin("long.service").contains("AssertPathExists="));
}

#[test]
fn a_hundred_mebibyte_unit_file_is_read() {
    let root = TestRoot::new("huge");
    let app = annotated(&root, 5);
    let line = format!("Environment=FILLER={}\n", "y".repeat(1000));
    let mut text = String::with_capacity(100 * 1024 * 1024 + 4096);
    text.push_str(&format!(
        "[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"
    ));
    while text.len() < 100 * 1024 * 1024 {
        text.push_str(&line);
    }
    root.unit("huge.service", &text);
    let run = root.generate();
    assert_no_panic(&run);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(root.binds(&root.dropin("huge.service")), [app]);
}

#[test]
fn symlink_loops_in_unit_directories_and_store_resolution() {
    let root = TestRoot::new("loops");
    let app = annotated(&root, 6);
    root.symlink("loop-b.service", "/etc/systemd/system/loop-a.service");
    root.symlink("loop-a.service", "/etc/systemd/system/loop-b.service");
    root.symlink(
        "/usr/lib/systemd/system",
        "/usr/lib/systemd/system/self.service.d",
    );
    root.symlink("/opt/loop2", "/opt/loop1");
    root.symlink("/opt/loop1", "/opt/loop2");
    root.unit(
        "pkg.service",
        &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\nX-ConfinementPackages=/opt/loop1\n"),
    );
    let run = root.generate();
    assert_no_panic(&run);
    assert_eq!(run.status, 1);
    assert!(!root.has_dropin("loop-a.service") && !root.has_dropin("loop-b.service"));
    let dropin = root.dropin("pkg.service");
    assert!(
        dropin.contains(
            "/opt/loop1 does not resolve into the Nix store: too many levels of symbolic links"
        ),
        "{dropin}"
    );
    assert_eq!(root.binds(&root.dropin("a.service")), [app]);
}

#[test]
fn ten_thousand_dropins_for_one_unit() {
    let root = TestRoot::new("many-dropins");
    let app = annotated(&root, 7);
    let dir = root.path("/etc/systemd/system/a.service.d");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..10_000 {
        std::fs::write(
            dir.join(format!("{i:05}.conf")),
            format!("[Service]\nEnvironment=N={i}\n"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("09999.conf"),
        "[Service]\nX-ConfinementMode=chroot-only\n",
    )
    .unwrap();
    let run = root.generate();
    assert_no_panic(&run);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let dropin = root.dropin("a.service");
    assert!(
        dropin.contains("mode chroot-only"),
        "the last drop-in applies"
    );
    assert!(dropin.contains("#   /etc/systemd/system/a.service.d/09999.conf\n"));
    assert_eq!(root.binds(&dropin), [app]);
}

#[test]
fn a_view_record_that_cannot_be_written_leaves_its_unit_binding_each_path() {
    // The scratch directory on a tmpfs with room for one record (each of
    // these two closures makes a record of two pages): the other unit's
    // record cannot be written, and that unit binds each store path, with a
    // warning naming the record. No drop-in names a view without a record.
    let root = TestRoot::new("record-full");
    let mut units = Vec::new();
    for (unit, seed) in [("a.service", 1000), ("b.service", 2000)] {
        let libs: Vec<String> = (0..120).map(|i| store_path(seed + i, "lib")).collect();
        let no_refs: &[&str] = &[];
        let registrations: Vec<(&str, &[&str])> =
            libs.iter().map(|l| (l.as_str(), no_refs)).collect();
        root.register(&registrations);
        let app = store_path(seed + 999, "app");
        let refs: Vec<&str> = libs.iter().map(String::as_str).collect();
        root.register(&[(&app, &refs)]);
        root.unit(
            unit,
            &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"),
        );
        units.push((unit, app));
    }
    let scratch = root.dir.join("run/nix-confinement-generator");
    std::fs::create_dir_all(&scratch).unwrap();
    let run = root.generate_in_namespace(&format!(
        "mount -t tmpfs -o size=12k,mode=700 none '{}'",
        scratch.display()
    ));
    assert_no_panic(&run);
    assert!(
        run.stderr.contains("2 units confined, 0 blocked"),
        "{}",
        run.stderr
    );
    let records = "/run/nix-confinement-generator/views/";
    let warned: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("its closure's view cannot be recorded"))
        .collect();
    assert_eq!(warned.len(), 1, "{}", run.stderr);
    assert!(
        warned[0].contains(records) && warned[0].contains("No space left on device"),
        "{}",
        warned[0]
    );
    let mut through_views = 0;
    for (unit, app) in &units {
        let dropin = root.dropin(unit);
        if support::view_of(&dropin).is_some() {
            through_views += 1;
            assert!(!warned[0].contains(&format!("{unit}:")), "{}", warned[0]);
        } else {
            // Bound path by path (from the store's read-only view): the
            // app and its 120 libraries.
            assert!(dropin.contains(&format!(":{app}\n")), "{dropin}");
            assert_eq!(dropin.matches("\nBindPaths=").count(), 121, "{dropin}");
            assert!(warned[0].contains(unit), "{}", warned[0]);
        }
    }
    assert_eq!(through_views, 1);
}
