//! The log targets for real: the kernel log (`/dev/kmsg`, where systemd
//! runs generators and where a run with no terminal logs) and the journal
//! (`SYSTEMD_LOG_TARGET=journal`, stderr connected to the journal, the
//! per-unit copies sent at `daemon-reload`, and everything at a reload where
//! there is no `/dev/kmsg`, as in a container).
//!
//! The kernel log is this machine's own (the tests run as root): its records
//! are read back from `/dev/kmsg`, those of the generator's pid only, a
//! handful a run. The journal is a datagram socket the test binds, mounted
//! at `/run/systemd/journal/socket` in a mount namespace of the generator's
//! own (`unshare -m`): what the generator sends is read back field by field
//! in the journal's native protocol.

mod support;

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use support::{TestRoot, store_path};

const IDENTIFIER: &str = "nix-confinement-generator";

/// A root with one unit that is confined with a warning, one that is
/// blocked, and one that is confined without a word. Returns it and the
/// store path the blocked unit names.
fn root_with_problems(name: &str) -> (TestRoot, String) {
    let root = TestRoot::new(name);
    let app = store_path(810, "app");
    root.register(&[(&app, &[])]);
    root.write_executable(&format!("{app}/bin/app"), "");
    root.write_executable("/usr/bin/tool", "");
    root.unit(
        "warned.service",
        &format!("[Service]\nExecStartPre=/usr/bin/tool\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"),
    );
    let unregistered = store_path(811, "not-registered");
    root.unit(
        "blocked.service",
        &format!("[Service]\nExecStart={unregistered}/bin/x\nX-ConfinementEnable=yes\n"),
    );
    root.unit(
        "quiet.service",
        &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"),
    );
    (root, unregistered)
}

/// What the generator logs on the console (the reference for the other
/// targets): one message a line, without the `nix-confinement-generator: `
/// prefix.
fn console_messages(root: &TestRoot) -> Vec<String> {
    let run = root.generate();
    assert_eq!(run.status, 1, "{}", run.stderr);
    let prefix = format!("{IDENTIFIER}: ");
    run.stderr
        .lines()
        .map(|line| {
            line.strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("a console line without the prefix: {line}"))
                .to_owned()
        })
        .collect()
}

/// One record of `/dev/kmsg` as read back: the priority with the facility
/// (user, 1, for what a process writes: `8 + level`), and the text.
#[derive(Debug)]
struct KmsgRecord {
    priority: u32,
    text: String,
}

/// The kernel log from now on.
struct Kmsg(std::fs::File);

impl Kmsg {
    fn open() -> Kmsg {
        use std::io::{Seek, SeekFrom};
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .expect("/dev/kmsg must be readable (the tests run as root)");
        file.seek(SeekFrom::End(0)).unwrap();
        Kmsg(file)
    }

    /// The records written since [`Kmsg::open`] whose text starts with
    /// `prefix`. Each read() is one record: `PRIORITY,SEQ,TIME,FLAGS;TEXT`
    /// and continuation lines (` KEY=VALUE`) for what the kernel split off.
    fn records(&mut self, prefix: &str) -> Vec<KmsgRecord> {
        use std::io::Read;
        let mut records = Vec::new();
        let mut buffer = vec![0; 16 * 1024];
        loop {
            match self.0.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    let record = String::from_utf8_lossy(&buffer[..n]).into_owned();
                    let (header, rest) = record.split_once(';').unwrap();
                    let text = rest.strip_suffix('\n').unwrap_or(rest);
                    if text.starts_with(prefix) {
                        assert!(
                            !text.contains('\n'),
                            "a record with more than one line: {record:?}"
                        );
                        records.push(KmsgRecord {
                            priority: header.split(',').next().unwrap().parse().unwrap(),
                            text: text.to_owned(),
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // EPIPE: records were overwritten while we read; go on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) => panic!("/dev/kmsg: {e}"),
            }
        }
        records
    }
}

/// The generator under `root`, with the environment a run by systemd has:
/// no terminal, no log target unless `target`.
fn generator(root: &TestRoot, target: Option<&str>) -> Command {
    let _ = std::fs::remove_dir_all(&root.out);
    std::fs::create_dir_all(&root.out).unwrap();
    let mut command = Command::new(support::GENERATOR);
    command
        .arg("--root")
        .arg(&root.dir)
        .arg(&root.out)
        .env_remove("SYSTEMD_UNIT_PATH")
        .env_remove("SYSTEMD_LOG_LEVEL")
        .env_remove("JOURNAL_STREAM")
        .env_remove("SYSTEMD_LOG_TARGET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(target) = target {
        command.env("SYSTEMD_LOG_TARGET", target);
    }
    command
}

/// `generator` in a mount namespace where `/run/systemd/journal` is
/// `journal_dir` (which holds the test's socket) on a private `/run`.
fn in_namespace_with_journal(generator: &Command, journal_dir: &std::path::Path) -> Command {
    in_namespace(generator, Some(journal_dir), true)
}

/// `generator` in a mount namespace with a private `/run`, where
/// `/run/systemd/journal` is `journal_dir` (which holds the test's socket)
/// when there is one, and `/dev` is an empty tmpfs unless `kmsg` (no
/// `/dev/kmsg`, as in a container).
fn in_namespace(generator: &Command, journal_dir: Option<&std::path::Path>, kmsg: bool) -> Command {
    let mut script = "mount -t tmpfs tmpfs /run".to_owned();
    if let Some(journal_dir) = journal_dir {
        script.push_str(&format!(
            " && mkdir -p /run/systemd/journal && mount --bind '{}' /run/systemd/journal",
            journal_dir.display()
        ));
    }
    if !kmsg {
        script.push_str(" && mount -t tmpfs tmpfs /dev");
    }
    script.push_str(" && exec");
    script.push_str(&format!(" '{}'", generator.get_program().to_str().unwrap()));
    for arg in generator.get_args() {
        script.push_str(&format!(" '{}'", arg.to_str().unwrap()));
    }
    let mut command = Command::new("unshare");
    command.args(["-m", "sh", "-c", &script]);
    for (key, value) in generator.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `command`; its pid (the generator's: `unshare` and `sh` exec it) and
/// what it wrote to stderr.
fn run(mut command: Command) -> (u32, i32, String) {
    let child = command.spawn().unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    (
        pid,
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_kmsg_records(records: &[KmsgRecord], pid: u32, console: &[String], blocked_path: &str) {
    let prefix = format!("{IDENTIFIER}[{pid}]: ");
    let texts: Vec<&str> = records
        .iter()
        .map(|r| r.text.strip_prefix(&prefix).unwrap())
        .collect();
    // One record a message, the same messages as on the console.
    assert_eq!(texts, console, "{records:#?}");
    let priority_of = |needle: &str| {
        let matching: Vec<&KmsgRecord> =
            records.iter().filter(|r| r.text.contains(needle)).collect();
        assert_eq!(matching.len(), 1, "{needle}: {records:#?}");
        matching[0].priority
    };
    // Facility user (8) and the level.
    assert_eq!(priority_of(blocked_path), 8 + 3, "the blocked unit's error");
    assert_eq!(
        priority_of("warned.service: warning:"),
        8 + 4,
        "the warning"
    );
    assert_eq!(
        priority_of("2 units confined, 1 blocked"),
        8 + 4,
        "the summary, a warning when a unit is blocked"
    );
}

#[test]
fn kmsg_gets_one_record_per_problem_and_a_summary() {
    let (root, blocked_path) = root_with_problems("log-kmsg");
    let console = console_messages(&root);
    assert_eq!(console.len(), 3, "{console:?}");
    // Asked for, and chosen when there is no terminal (as under systemd).
    for target in [Some("kmsg"), None] {
        let mut kmsg = Kmsg::open();
        let (pid, status, stderr) = run(generator(&root, target));
        assert_eq!(status, 1, "{stderr}");
        assert_eq!(stderr, "", "{target:?}: nothing on stderr");
        let records = kmsg.records(&format!("{IDENTIFIER}[{pid}]: "));
        assert_kmsg_records(&records, pid, &console, &blocked_path);
    }
}

#[test]
fn kmsg_records_are_cut_to_what_the_kernel_takes() {
    // An invalid value of 3000 bytes: the kernel refuses a record of more
    // than about 1 KiB, which would lose the message; it is cut instead.
    let root = TestRoot::new("log-kmsg-long");
    let app = store_path(812, "app");
    root.register(&[(&app, &[])]);
    root.write_executable(&format!("{app}/bin/app"), "");
    let long = "x".repeat(3000);
    root.unit(
        "long.service",
        &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\nX-ConfinementMode={long}\n"),
    );
    let mut kmsg = Kmsg::open();
    let (pid, status, stderr) = run(generator(&root, Some("kmsg")));
    assert_eq!(status, 1, "{stderr}");
    let records = kmsg.records(&format!("{IDENTIFIER}[{pid}]: "));
    let error = records
        .iter()
        .find(|r| r.text.contains("long.service"))
        .unwrap_or_else(|| panic!("the long error is not in the kernel log: {records:#?}"));
    assert!(error.text.contains("xxxxxxxx"), "{error:?}");
    assert!(error.text.len() < 1000, "{} bytes", error.text.len());
    assert!(
        records
            .iter()
            .any(|r| r.text.ends_with("0 units confined, 1 blocked")),
        "{records:#?}"
    );
}

/// A journal socket of the test's own.
struct Journal {
    dir: std::path::PathBuf,
    socket: UnixDatagram,
}

impl Journal {
    fn bind(root: &TestRoot) -> Journal {
        let dir = root.dir.parent().unwrap().join("journal");
        std::fs::create_dir_all(&dir).unwrap();
        let socket = UnixDatagram::bind(dir.join("socket")).unwrap();
        socket.set_nonblocking(true).unwrap();
        Journal { dir, socket }
    }

    /// The entries received (empty datagrams, which the journal ignores,
    /// left out), each as its fields.
    fn entries(&self) -> Vec<BTreeMap<String, String>> {
        let mut entries = Vec::new();
        let mut buffer = vec![0; 256 * 1024];
        loop {
            match self.socket.recv(&mut buffer) {
                Ok(0) => {}
                Ok(n) => entries.push(parse_native(&buffer[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("journal socket: {e}"),
            }
        }
        entries
    }
}

/// The journal's native protocol: `KEY=value\n`, or `KEY\n`, a 64-bit
/// little-endian length, the value, `\n`.
fn parse_native(mut data: &[u8]) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    while !data.is_empty() {
        let end = data
            .iter()
            .position(|&b| b == b'\n')
            .expect("a field without an end");
        let line = &data[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            let key = String::from_utf8(line[..eq].to_vec()).unwrap();
            let value = String::from_utf8(line[eq + 1..].to_vec()).unwrap();
            assert!(fields.insert(key.clone(), value).is_none(), "{key} twice");
            data = &data[end + 1..];
        } else {
            let key = String::from_utf8(line.to_vec()).unwrap();
            let rest = &data[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            let value = String::from_utf8(rest[8..8 + len].to_vec()).unwrap();
            assert_eq!(rest[8 + len], b'\n');
            assert!(fields.insert(key.clone(), value).is_none(), "{key} twice");
            data = &rest[8 + len + 1..];
        }
    }
    for key in fields.keys() {
        assert!(
            !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "not a journal field name: {key:?}"
        );
    }
    fields
}

/// The entries whose MESSAGE contains `needle`: exactly one is expected.
fn entry<'a>(
    entries: &'a [BTreeMap<String, String>],
    needle: &str,
) -> &'a BTreeMap<String, String> {
    let matching: Vec<_> = entries
        .iter()
        .filter(|e| e.get("MESSAGE").is_some_and(|m| m.contains(needle)))
        .collect();
    assert_eq!(matching.len(), 1, "entries with {needle:?}: {entries:#?}");
    matching[0]
}

fn assert_journal_entries(
    entries: &[BTreeMap<String, String>],
    console: &[String],
    blocked_path: &str,
) {
    let mut messages: Vec<&str> = entries.iter().map(|e| e["MESSAGE"].as_str()).collect();
    messages.sort();
    let mut expected: Vec<&str> = console.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(messages, expected, "one entry a message: {entries:#?}");
    for e in entries {
        assert_eq!(e["SYSLOG_IDENTIFIER"], IDENTIFIER, "{e:?}");
    }
    let blocked = entry(entries, blocked_path);
    assert_eq!(blocked["PRIORITY"], "3", "{blocked:?}");
    assert_eq!(
        blocked["OBJECT_SYSTEMD_UNIT"], "blocked.service",
        "{blocked:?}"
    );
    let warned = entry(entries, "warned.service: warning:");
    assert_eq!(warned["PRIORITY"], "4", "{warned:?}");
    assert_eq!(
        warned["OBJECT_SYSTEMD_UNIT"], "warned.service",
        "{warned:?}"
    );
    let summary = entry(entries, "2 units confined, 1 blocked");
    assert_eq!(summary["PRIORITY"], "4", "{summary:?}");
    assert!(!summary.contains_key("OBJECT_SYSTEMD_UNIT"), "{summary:?}");
}

#[test]
fn the_journal_target_sends_structured_fields() {
    let (root, blocked_path) = root_with_problems("log-journal");
    let console = console_messages(&root);
    let journal = Journal::bind(&root);
    let (pid, status, stderr) = run(in_namespace_with_journal(
        &generator(&root, Some("journal")),
        &journal.dir,
    ));
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(stderr, "", "nothing on stderr");
    let entries = journal.entries();
    assert_journal_entries(&entries, &console, &blocked_path);
    for e in &entries {
        assert_eq!(e["SYSLOG_PID"], pid.to_string(), "{e:?}");
    }
}

#[test]
fn journal_priorities_are_the_messages_levels() {
    // Nothing blocked: the summary is a notice; at debug level the debug
    // messages come too, as debug.
    let root = TestRoot::new("log-journal-levels");
    let app = store_path(813, "app");
    root.register(&[(&app, &[])]);
    root.write_executable(&format!("{app}/bin/app"), "");
    root.unit(
        "quiet.service",
        &format!("[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n"),
    );
    let journal = Journal::bind(&root);
    let mut generator = generator(&root, Some("journal"));
    generator.env("SYSTEMD_LOG_LEVEL", "debug");
    let (_, status, stderr) = run(in_namespace_with_journal(&generator, &journal.dir));
    assert_eq!(status, 0, "{stderr}");
    let entries = journal.entries();
    let summary = entry(&entries, "1 unit confined, 0 blocked");
    assert_eq!(summary["PRIORITY"], "5", "{summary:?}");
    let timing = entry(&entries, "timing: units planned at");
    assert_eq!(timing["PRIORITY"], "7", "{timing:?}");
    assert!(entries.len() > 2, "{entries:#?}");
    for e in &entries {
        assert!(
            e == summary || e["PRIORITY"] == "7",
            "only the summary is above debug here: {e:?}"
        );
    }
}

#[test]
fn stderr_connected_to_the_journal_logs_to_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let (root, blocked_path) = root_with_problems("log-journal-stream");
    let console = console_messages(&root);
    let journal = Journal::bind(&root);
    // A stderr whose device and inode JOURNAL_STREAM names, as systemd sets
    // it for a service whose output goes to the journal.
    let stream = root.dir.parent().unwrap().join("stream");
    let file = std::fs::File::create(&stream).unwrap();
    let meta = file.metadata().unwrap();
    let mut command = in_namespace_with_journal(&generator(&root, None), &journal.dir);
    command
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(file);
    let (_, status, _) = run(command);
    assert_eq!(status, 1);
    assert_eq!(
        std::fs::read_to_string(&stream).unwrap(),
        "",
        "nothing on stderr"
    );
    assert_journal_entries(&journal.entries(), &console, &blocked_path);
}

#[test]
fn at_reload_each_unit_problem_also_goes_to_the_journal_with_its_unit() {
    // Under systemd at daemon-reload: the kernel log, and the journal's
    // socket is there.
    let (root, blocked_path) = root_with_problems("log-reload");
    let console = console_messages(&root);
    let journal = Journal::bind(&root);
    let mut kmsg = Kmsg::open();
    let (pid, status, stderr) = run(in_namespace_with_journal(
        &generator(&root, None),
        &journal.dir,
    ));
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(stderr, "");
    assert_kmsg_records(
        &kmsg.records(&format!("{IDENTIFIER}[{pid}]: ")),
        pid,
        &console,
        &blocked_path,
    );
    let entries = journal.entries();
    // The unit's problems only, each with its unit; not the summary.
    assert_eq!(entries.len(), 2, "{entries:#?}");
    let blocked = entry(&entries, &blocked_path);
    assert_eq!(blocked["OBJECT_SYSTEMD_UNIT"], "blocked.service");
    assert_eq!(blocked["PRIORITY"], "3");
    assert_eq!(blocked["SYSLOG_IDENTIFIER"], IDENTIFIER);
    let warned = entry(&entries, "warned.service: warning:");
    assert_eq!(warned["OBJECT_SYSTEMD_UNIT"], "warned.service");
    assert_eq!(warned["PRIORITY"], "4");
    assert_eq!(warned["SYSLOG_IDENTIFIER"], IDENTIFIER);
    for e in &entries {
        assert!(
            console.contains(&e["MESSAGE"]),
            "{e:?} not among {console:?}"
        );
    }
}

#[test]
fn without_a_kernel_log_a_reload_logs_to_the_journal() {
    // In a container at daemon-reload: no /dev/kmsg, stderr not a terminal
    // (systemd gives /dev/null), the journal's socket there. Every message,
    // the summary included, goes to the journal, each once.
    let (root, blocked_path) = root_with_problems("log-no-kmsg");
    let console = console_messages(&root);
    let journal = Journal::bind(&root);
    let (_, status, stderr) = run(in_namespace(
        &generator(&root, None),
        Some(&journal.dir),
        false,
    ));
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(stderr, "", "nothing on stderr");
    assert_journal_entries(&journal.entries(), &console, &blocked_path);
    // At boot in a container the journal is not there yet: stderr, as
    // before (systemd connects it to /dev/null; run by hand, it shows).
    let (_, status, stderr) = run(in_namespace(&generator(&root, None), None, false));
    assert_eq!(status, 1, "{stderr}");
    let prefix = format!("{IDENTIFIER}: ");
    let lines: Vec<&str> = stderr
        .lines()
        .map(|line| line.strip_prefix(&prefix).unwrap_or(line))
        .collect();
    assert_eq!(lines, console, "{stderr}");
}
