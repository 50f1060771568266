//! Reading the Nix database only, as nix-confinement-generator(8) promises:
//! without creating or changing any file, through the WAL when a writer is or was
//! active, and on a read-only file system. Databases are written by real
//! `nix-store`; a Python `sqlite3` connection only holds the database open
//! (as a running nix-daemon would), so that Nix's writes stay in the WAL.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use support::{TestRoot, store_path};

fn db_dir(root: &TestRoot) -> std::path::PathBuf {
    root.path("/nix/var/nix/db")
}

fn listing(root: &TestRoot) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(db_dir(root))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Keeps a connection to the database open until dropped.
struct Holder(Child);

impl Holder {
    fn open(root: &TestRoot) -> Holder {
        let script = "import sqlite3, sys\n\
                      c = sqlite3.connect(sys.argv[1])\n\
                      c.execute('select count(*) from ValidPaths').fetchall()\n\
                      print('ready', flush=True)\n\
                      sys.stdin.read()\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(db_dir(root).join("db.sqlite"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// A root with one registered program and a unit running it.
fn root_with_unit(name: &str, seed: u64) -> (TestRoot, String) {
    let root = TestRoot::new(name);
    let app = store_path(seed, "app");
    root.register(&[(&app, &[])]);
    root.unit(
        "a.service",
        &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"),
    );
    (root, app)
}

/// Runs the generator in a mount namespace where the database directory is
/// mounted read-only.
fn generate_read_only(root: &TestRoot) -> support::Run {
    let dir = db_dir(root);
    root.generate_in_namespace(&format!(
        "mount --bind '{d}' '{d}' && mount -o remount,bind,ro '{d}' && ! touch '{d}/probe' 2>/dev/null",
        d = dir.display()
    ))
}

#[test]
fn a_closed_database_is_read_without_creating_files() {
    let (root, app) = root_with_unit("closed", 1);
    let before = listing(&root);
    assert!(!before.iter().any(|n| n.ends_with("-wal")), "{before:?}");
    let run = root.generate();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(root.binds(&root.dropin("a.service")), [app]);
    assert_eq!(listing(&root), before, "no -wal or -shm was created");
}

#[test]
fn rows_only_in_the_wal_are_seen_and_nothing_is_created() {
    let (root, _) = root_with_unit("wal", 2);
    let holder = Holder::open(&root);
    // Registered while another connection is open: the rows stay in the WAL.
    let late = store_path(3, "registered-late");
    root.register(&[(&late, &[])]);
    root.unit(
        "late.service",
        &format!("[Service]\nExecStart={late}/bin/x\nX-ConfinementEnable=yes\n"),
    );
    let before = listing(&root);
    assert!(before.contains(&"db.sqlite-wal".to_owned()), "{before:?}");
    let wal_size = std::fs::metadata(db_dir(&root).join("db.sqlite-wal"))
        .unwrap()
        .len();
    assert!(wal_size > 0);
    let run = root.generate();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(root.binds(&root.dropin("late.service")), [late]);
    assert_eq!(listing(&root), before);
    drop(holder);
}

#[test]
fn a_writer_holding_a_transaction_does_not_stop_the_generator() {
    let (root, app) = root_with_unit("writer", 4);
    let script = "import sqlite3, sys\n\
                  c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
                  c.execute('begin immediate')\n\
                  print('ready', flush=True)\n\
                  sys.stdin.read()\n\
                  c.execute('rollback')\n";
    let mut writer = Command::new("python3")
        .args(["-c", script])
        .arg(db_dir(&root).join("db.sqlite"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(writer.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let started = std::time::Instant::now();
    let run = root.generate();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    writer.stdin.take().unwrap().write_all(b"").unwrap();
    let _ = writer.wait();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(root.binds(&root.dropin("a.service")), [app]);
}

#[test]
fn a_read_only_database_directory_without_wal() {
    let (root, app) = root_with_unit("ro-closed", 5);
    let run = generate_read_only(&root);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(root.binds(&root.dropin("a.service")), [app]);
}

#[test]
fn a_read_only_database_directory_with_wal_and_shm() {
    let (root, app) = root_with_unit("ro-wal", 6);
    let holder = Holder::open(&root);
    let late = store_path(7, "registered-late");
    root.register(&[(&late, &[])]);
    root.unit(
        "late.service",
        &format!("[Service]\nExecStart={late}/bin/x\nX-ConfinementEnable=yes\n"),
    );
    let before = listing(&root);
    let run = generate_read_only(&root);
    // SQLite reads the WAL of a read-only directory when -shm exists; rows
    // still only in the WAL are then seen.
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(root.binds(&root.dropin("a.service")), [app]);
    assert_eq!(root.binds(&root.dropin("late.service")), [late]);
    assert_eq!(listing(&root), before);
    drop(holder);
}

#[test]
fn a_wal_without_shm_is_not_read_through_and_says_so() {
    let (root, app) = root_with_unit("wal-no-shm", 8);
    let mut holder = Holder::open(&root);
    let late = store_path(9, "registered-late");
    root.register(&[(&late, &[])]);
    root.unit(
        "late.service",
        &format!("[Service]\nExecStart={late}/bin/x\nX-ConfinementEnable=yes\n"),
    );
    // A writer that crashed: its -wal is left, its -shm is gone. Reading the
    // WAL would make SQLite create a new -shm, which we must not do.
    holder.0.kill().unwrap();
    let _ = holder.0.wait();
    std::fs::remove_file(db_dir(&root).join("db.sqlite-shm")).unwrap();
    let before = listing(&root);
    let run = root.generate();
    assert_eq!(listing(&root), before, "no -shm was created");
    assert!(
        run.stderr
            .contains("a -wal file exists but could not be read through"),
        "{}",
        run.stderr
    );
    assert_eq!(root.binds(&root.dropin("a.service")), [app]);
    // The late path is not seen: its unit is blocked, never open.
    assert_eq!(run.status, 1);
    assert!(
        root.dropin("late.service")
            .contains("is not a valid path in the Nix database")
    );
}

#[test]
fn a_real_nix_store_registering_paths_at_the_same_time() {
    let (root, app) = root_with_unit("concurrent", 10);
    // A registration large enough to keep nix-store writing for a while.
    let mut registration = String::new();
    for i in 0..20_000u64 {
        let path = store_path(1_000 + i, "concurrent");
        registration.push_str(&format!(
            "{path}\nsha256:{}\n1024\n\n1\n{app}\n",
            "0".repeat(64)
        ));
    }
    let mut writer = Command::new("nix-store")
        .args(["--store", &root.store_uri(), "--load-db"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = writer.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(registration.as_bytes()));
    let mut runs = 0;
    while writer.try_wait().unwrap().is_none() || runs == 0 {
        let run = root.generate();
        assert_eq!(
            run.status, 0,
            "run {runs} while nix-store writes: {}",
            run.stderr
        );
        assert_eq!(
            root.binds(&root.dropin("a.service")),
            std::slice::from_ref(&app)
        );
        runs += 1;
    }
    feeder.join().unwrap().unwrap();
    assert!(writer.wait().unwrap().success());
    eprintln!("{runs} generator runs while nix-store registered 20,000 paths");
}
