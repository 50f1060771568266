//! Kill anywhere (issues 8 and 14): SIGKILL the generator at every system
//! call that changes a file, in every kind of run, and check what each kill
//! leaves behind.
//!
//! A kill changes no file by itself: what it leaves is what the run had
//! changed so far, and files change only in system calls. So killing the run
//! as it enters each call that changes a file (write, rename, link, unlink,
//! mkdir and their `*at` forms), one run per call, visits every state a kill
//! can leave (a call cut short leaves at most part of a temporary file,
//! which no one reads). strace does the killing: `--inject=CALL:signal=KILL:
//! when=N` kills the process as it enters its Nth CALL — exactly there on
//! every run, and without a test hook in the binary, so that the binary under
//! test is the one shipped. strace counts per thread: a call that two
//! threads make (the database worker makes few) is killed at the Nth of
//! whichever thread gets there first; a second pass counts only the calls
//! in the scratch directories (`strace -P`).
//!
//! Each killed call is classified by the paths it names (`strace -y`) and
//! the call before it in its thread, and each kind of run must have had
//! kills in each of its phases:
//!
//! - cold (no closure cache: the first run after boot): blocking drop-ins,
//!   drop-ins rendered and written, the cache written;
//! - warm (the cache of the runs before): drop-ins written;
//! - grown (warm, and a new annotated unit): drop-ins written, the cache
//!   written again;
//! - the same three with each store path bound and with closure views,
//!   whose runs also record closures for their views.
//!
//! After each kill: every file in a unit's drop-in directory that systemd
//! would load is the complete blocking drop-in or the complete final one; no
//! annotated unit is without a drop-in once any unit has its final one (while
//! the blocking drop-ins are put in place, the units not reached yet have
//! none: one directory entry per unit cannot all appear at once); every
//! closure record in place is the one a complete run writes; and a complete
//! run from the cache and records the kill left writes exactly what a run
//! from scratch writes.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{TestRoot, store_path};

const ANNOTATED: usize = 8;
const PLAIN: usize = 40;
const DROPIN: &str = "zz-confinement.conf";
const VIEW_UNIT: &str = "run-nix\\x2dconfinement\\x2dstore.mount";
/// The template of the units that mount closure views.
const TEMPLATE: &str = "nix-confinement-view@.service";
const RECORDS_DIR: &str = "/run/nix-confinement-generator/views";
/// An annotated unit that only some kinds of run have: it appears for the
/// grown run.
const EXTRA_UNIT: &str = "svc-extra.service";
/// Where the closure cache and the drop-in store are by default (under the
/// test root).
const STATE_DIR: &str = "/run/nix-confinement-generator";

/// The system calls that change files. An `openat` with `O_TRUNC` changes
/// a file too, but what it does shows at the `write` after it.
const CHANGING_CALLS: &[&str] = &[
    "write",
    "writev",
    "pwrite64",
    "pwritev",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "unlink",
    "unlinkat",
    "mkdir",
    "mkdirat",
    "rmdir",
    "ftruncate",
    "truncate",
    "symlink",
    "symlinkat",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RunKind {
    Cold,
    Warm,
    Grown,
    /// The same with closure views.
    ViewCold,
    ViewWarm,
    ViewGrown,
}

const RUN_KINDS: [RunKind; 6] = [
    RunKind::Cold,
    RunKind::Warm,
    RunKind::Grown,
    RunKind::ViewCold,
    RunKind::ViewWarm,
    RunKind::ViewGrown,
];

impl RunKind {
    /// Complete runs before the killed one, from an empty state.
    fn runs_before(self) -> usize {
        match self {
            RunKind::Cold | RunKind::ViewCold => 0,
            RunKind::Warm | RunKind::Grown | RunKind::ViewWarm | RunKind::ViewGrown => 2,
        }
    }

    /// Whether the run confines through closure views (else each store
    /// path is bound).
    fn views(self) -> bool {
        matches!(
            self,
            RunKind::ViewCold | RunKind::ViewWarm | RunKind::ViewGrown
        )
    }

    /// Whether [`EXTRA_UNIT`] is there before the killed run, and in it.
    fn extra_unit(self) -> (bool, bool) {
        match self {
            RunKind::Grown | RunKind::ViewGrown => (false, true),
            _ => (false, false),
        }
    }

    /// The phases a run of this kind must have been killed in.
    fn required_phases(self) -> &'static [Phase] {
        match self {
            RunKind::Cold | RunKind::Grown => {
                &[Phase::Blocking, Phase::FinalWritten, Phase::CacheWritten]
            }
            RunKind::Warm => &[Phase::Blocking, Phase::FinalWritten],
            RunKind::ViewCold | RunKind::ViewGrown => &[
                Phase::Blocking,
                Phase::FinalWritten,
                Phase::ViewRecorded,
                Phase::CacheWritten,
            ],
            RunKind::ViewWarm => &[Phase::Blocking, Phase::FinalWritten],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// The store view's mount unit written (before any drop-in).
    ViewUnit,
    /// The blocking drop-in written and linked into each unit's directory.
    Blocking,
    /// The generator's scratch directory made.
    StateDirMade,
    /// A drop-in rendered and written into a unit's directory.
    FinalWritten,
    /// The shared blocking drop-in removed from the top of the output.
    PendingRemoved,
    /// The closure cache written.
    CacheWritten,
    /// A closure recorded for its view.
    ViewRecorded,
    /// A call the classification does not know (shown, checked the same).
    Other,
}

/// Which phase a killed call (as strace prints it, with `-y`) belongs to,
/// by the paths it names.
fn classify(call: &str) -> Phase {
    let name = call.split('(').next().unwrap_or_default();
    if name.starts_with("mkdir")
        && (call.contains("/run/nix-confinement-generator")
            || call.contains("/run>, \"nix-confinement-generator\""))
    {
        Phase::StateDirMade
    } else if call.contains("x2dconfinement") || call.contains(TEMPLATE) {
        Phase::ViewUnit
    } else if call.contains("nix-confinement-generator/views") {
        Phase::ViewRecorded
    } else if call.contains(".nix-confinement-pending.conf") {
        if name.starts_with("unlink") {
            Phase::PendingRemoved
        } else {
            Phase::Blocking
        }
    } else if call.contains("nix-confinement-generator/closures")
        || call.contains("nix-confinement-generator/.closures")
        // Written relative to its directory's descriptor (strace -y).
        || call.contains("nix-confinement-generator>, \".closures")
    {
        Phase::CacheWritten
    } else if name.starts_with("mkdir") && call.contains(".service.d") {
        Phase::Blocking
    } else if call.contains(".service.d") && call.contains(DROPIN) {
        Phase::FinalWritten
    } else {
        Phase::Other
    }
}

struct Scene {
    root: TestRoot,
    annotated: Vec<String>,
    extra_unit_text: String,
    /// What a complete run writes for each annotated unit (the extra one
    /// included), binding each path and through views.
    finals: BTreeMap<String, String>,
    view_finals: BTreeMap<String, String>,
    /// The other files a complete run writes at the top of the output (the
    /// store view's mount unit, the view template, the check units and
    /// their links), as `name` (or `dir/name`) → text or link target.
    others: BTreeMap<String, String>,
    /// The closures' records a complete run writes.
    records: BTreeMap<String, String>,

    pending: String,
    log: PathBuf,
}

fn realistic_root() -> Scene {
    let root = TestRoot::new("kill");
    // A layered graph: a base everybody uses, libraries, applications.
    let base: Vec<String> = (0..20).map(|i| store_path(i, "base")).collect();
    let libs: Vec<String> = (0..200).map(|i| store_path(1000 + i, "lib")).collect();
    let apps: Vec<String> = (0..=ANNOTATED + PLAIN)
        .map(|i| store_path(5000 + i as u64, "app"))
        .collect();
    let mut registrations: Vec<(String, Vec<String>)> = Vec::new();
    for (i, b) in base.iter().enumerate() {
        registrations.push((b.clone(), base[..i].to_vec()));
    }
    for (i, l) in libs.iter().enumerate() {
        let mut refs = base.clone();
        refs.extend(libs[i.saturating_sub(8)..i].iter().cloned());
        registrations.push((l.clone(), refs));
    }
    for (i, a) in apps.iter().enumerate() {
        let refs: Vec<String> = (0..12)
            .map(|k| libs[(i * 7 + k * 13) % libs.len()].clone())
            .collect();
        registrations.push((a.clone(), refs));
    }
    let borrowed: Vec<(&str, Vec<&str>)> = registrations
        .iter()
        .map(|(p, r)| (p.as_str(), r.iter().map(String::as_str).collect()))
        .collect();
    let slices: Vec<(&str, &[&str])> = borrowed.iter().map(|(p, r)| (*p, r.as_slice())).collect();
    root.register(&slices);
    let unit_text = |i: usize, annotation: &str| {
        format!(
            "[Unit]\nDescription=Service {i}\nAfter=network.target\n\n[Service]\nExecStart={}/bin/app --serve\n{annotation}\n[Install]\nWantedBy=multi-user.target\n",
            apps[i]
        )
    };
    let mut annotated = Vec::new();
    for i in 0..ANNOTATED + PLAIN {
        let name = format!("svc-{i:03}.service");
        let annotation = if i < ANNOTATED {
            "X-ConfinementEnable=yes\n"
        } else {
            ""
        };
        let dir = if i % 2 == 0 {
            "/etc/systemd/system"
        } else {
            "/usr/lib/systemd/system"
        };
        root.write(&format!("{dir}/{name}"), &unit_text(i, annotation));
        if i < ANNOTATED {
            annotated.push(name);
        }
    }
    let log = root.dir.parent().unwrap().join("strace.log");
    let mut scene = Scene {
        root,
        annotated,
        extra_unit_text: unit_text(ANNOTATED + PLAIN, "X-ConfinementEnable=yes\n"),
        finals: BTreeMap::new(),
        view_finals: BTreeMap::new(),
        others: BTreeMap::new(),
        records: BTreeMap::new(),

        pending: nix_confinement_generator::confine::pending_text(),
        log,
    };
    // The reference: what a complete run from scratch writes, for every
    // unit that any kind of run has, through views and binding each path.
    scene.set_extra_unit(true);
    scene.set_views(true);
    let _ = std::fs::remove_dir_all(scene.root.path(STATE_DIR));
    scene.complete_run();
    for unit in scene.annotated.iter().chain([&EXTRA_UNIT.to_owned()]) {
        let text = scene.root.dropin(unit);
        assert!(
            text.contains("/run/nix-confinement-views/"),
            "not through a view:\n{text}"
        );
        scene.view_finals.insert(unit.clone(), text);
    }
    scene.others = others_in(&scene.root.out);
    assert!(scene.others.contains_key(TEMPLATE));
    for entry in std::fs::read_dir(scene.root.path(RECORDS_DIR)).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        scene
            .records
            .insert(name, std::fs::read_to_string(entry.path()).unwrap());
    }
    scene.set_views(false);
    let _ = std::fs::remove_dir_all(scene.root.path(STATE_DIR));
    scene.complete_run();
    scene.set_extra_unit(false);
    for unit in scene.annotated.iter().chain([&EXTRA_UNIT.to_owned()]) {
        let text = scene.root.dropin(unit);
        assert!(text.contains("\nRootDirectory="), "not confined:\n{text}");
        scene.finals.insert(unit.clone(), text);
    }
    // Binding each path, the same but the view template.
    let others = others_in(&scene.root.out);
    assert!(!others.contains_key(TEMPLATE));
    assert!(others.contains_key(VIEW_UNIT));
    for (name, text) in others {
        assert_eq!(scene.others.get(&name), Some(&text), "{name}");
    }
    scene
}

impl Scene {
    /// Closure views, or each store path bound (and the drop-in store).
    fn set_views(&self, on: bool) {
        let config = self
            .root
            .path("/etc/systemd/nix-confinement-generator.conf.d/per-path.conf");
        if on {
            let _ = std::fs::remove_file(config);
        } else {
            self.root.bind_each_path();
        }
    }

    /// What a complete run writes for each unit, in `kind`'s way.
    fn finals_of(&self, kind: RunKind) -> &BTreeMap<String, String> {
        if kind.views() {
            &self.view_finals
        } else {
            &self.finals
        }
    }

    fn set_extra_unit(&self, present: bool) {
        let path = self.root.path(&format!("/etc/systemd/system/{EXTRA_UNIT}"));
        if present {
            std::fs::write(path, &self.extra_unit_text).unwrap();
        } else {
            let _ = std::fs::remove_file(path);
        }
    }

    /// A complete run from scratch, which must confine every annotated unit.
    fn complete_run(&self) {
        let run = self.root.generate();
        assert_eq!(run.status, 0, "{}", run.stderr);
    }

    /// Brings the closure cache and the drop-in store to the state a run of
    /// `kind` starts from, and the units to those it has; returns them.
    fn prepare(&self, kind: RunKind) -> Vec<String> {
        let _ = std::fs::remove_dir_all(self.root.path(STATE_DIR));
        self.set_views(kind.views());
        let (extra_before, extra_in_run) = kind.extra_unit();
        self.set_extra_unit(extra_before);
        for _ in 0..kind.runs_before() {
            self.complete_run();
        }
        self.set_extra_unit(extra_in_run);
        let _ = std::fs::remove_dir_all(&self.root.out);
        std::fs::create_dir_all(&self.root.out).unwrap();
        let mut units = self.annotated.clone();
        if extra_in_run {
            units.push(EXTRA_UNIT.to_owned());
        }
        units
    }

    /// The generator under strace, which logs every call that changes a
    /// file, and kills it as a thread enters its Nth call `kill_at`.
    /// Returns whether it was killed. (strace's `--seccomp-bpf` would be
    /// faster, but 6.1 then injects at the first call only.)
    ///
    /// With `only`, only the calls naming that directory are traced and
    /// counted (`strace -P`: a call relative to its descriptor names it):
    /// the cache is written by the main thread late in a run, and its Nth
    /// call of a kind is reached after some other thread's Nth, so counting
    /// every call never kills there.
    fn traced_run(&self, kill_at: Option<(&str, usize)>, only: Option<&Path>) -> bool {
        let mut command = Command::new("strace");
        command
            .args(["-f", "-qq", "-y", "-o"])
            .arg(&self.log)
            .arg(format!("--trace={}", CHANGING_CALLS.join(",")));
        if let Some(dir) = only {
            // strace matches existing directories: a cold run finds them
            // empty, which is the same as not finding them. The records of
            // closure views are in a directory of their own below.
            let records = dir.join("views");
            for dir in [dir, records.as_path()] {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
                command.arg("-P").arg(dir);
            }
        }
        if let Some((call, n)) = kill_at {
            command.arg(format!("--inject={call}:signal=KILL:when={n}"));
        }
        let status = command
            .arg(support::GENERATOR)
            .arg("--root")
            .arg(&self.root.dir)
            .arg(&self.root.out)
            .env_remove("SYSTEMD_UNIT_PATH")
            .env("SYSTEMD_LOG_TARGET", "console")
            .env("SYSTEMD_LOG_LEVEL", "emerg")
            .status()
            .expect("strace must be installed (apt-get install strace)");
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(libc::SIGKILL) {
            return true;
        }
        assert_eq!(status.code(), Some(0), "a run not killed failed");
        false
    }

    /// Checks what a kill left in the output directory and the drop-in
    /// store; `units` are the annotated units of the run.
    fn check_after_kill(&self, kind: RunKind, units: &[String], what: &str) {
        let finals = self.finals_of(kind);
        let out = &self.root.out;
        let (mut missing, mut finished) = (Vec::new(), Vec::new());
        for unit in units {
            let dir = out.join(format!("{unit}.d"));
            for entry in std::fs::read_dir(&dir).into_iter().flatten() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                // systemd loads `*.conf` only: temporary names are not seen.
                assert!(
                    name == DROPIN || !name.ends_with(".conf"),
                    "{unit}: {name} in its drop-in directory after a kill {what}"
                );
            }
            let Ok(text) = std::fs::read_to_string(dir.join(DROPIN)) else {
                missing.push(unit.as_str());
                continue;
            };
            if text == finals[unit] {
                finished.push(unit.as_str());
            } else {
                assert_eq!(
                    text, self.pending,
                    "{unit}: neither the blocking drop-in nor its final one after a kill {what}"
                );
            }
        }
        // Until every unit is blocked, none may be finished: the units
        // without a drop-in are only those the blocking phase had not
        // reached yet, whatever the order of the generator's work.
        assert!(
            missing.is_empty() || finished.is_empty(),
            "annotated units without a drop-in after a kill {what}, when {finished:?} had their final one: {missing:?}"
        );
        for entry in std::fs::read_dir(out).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if let Some(reference) = self.others.get(&name) {
                assert_eq!(
                    &others_in(out)[&name],
                    reference,
                    "{name} after a kill {what}"
                );
                assert!(
                    name != TEMPLATE || kind.views(),
                    "the view template written binding each path, after a kill {what}"
                );
            } else if let Some(unit) = name.strip_suffix(".d") {
                assert!(
                    units.iter().any(|u| u == unit),
                    "{name} in the output after a kill {what}: not an annotated unit's"
                );
            } else {
                assert!(
                    name.starts_with('.'),
                    "{name} in the output after a kill {what}"
                );
            }
        }
        // A closure's record, once in place, is the one a complete run
        // writes (a temporary name is not read).
        for entry in std::fs::read_dir(self.root.path(RECORDS_DIR))
            .into_iter()
            .flatten()
        {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if name.starts_with('.') {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap();
            assert_eq!(
                Some(&text),
                self.records.get(&name),
                "the view record {name} after a kill {what}"
            );
        }
    }

    /// A complete run from the cache and the records a kill left writes
    /// what a run from scratch writes.
    fn check_next_run(&self, kind: RunKind, units: &[String], what: &str) {
        let run = self.root.generate();
        assert_eq!(run.status, 0, "the run after a kill {what}: {}", run.stderr);
        for unit in units {
            assert_eq!(
                self.root.dropin(unit),
                self.finals_of(kind)[unit],
                "{unit}: the run after a kill {what} wrote another drop-in"
            );
        }
    }
}

/// What the output directory holds besides the units' drop-in directories
/// and temporary names: each file's text, each link's target, each file of
/// a directory (the check units' `*.wants/` links) as `dir/name`.
fn others_in(out: &Path) -> BTreeMap<String, String> {
    let mut others = BTreeMap::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.starts_with('.') || name.ends_with(".service.d") {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            others.insert(name.clone(), String::new());
            for inner in std::fs::read_dir(&path).unwrap() {
                let inner = inner.unwrap();
                let target = std::fs::read_link(inner.path())
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                let inner_name = inner.file_name().into_string().unwrap();
                others.insert(format!("{name}/{inner_name}"), target);
            }
        } else {
            others.insert(name, std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    others
}

/// One system call in strace's log.
struct Call {
    thread: String,
    text: String,
    /// False for a call the kill cut (` = ?`).
    returned: bool,
}

/// The calls in a log of `strace -f -o`: `PID name(args) = result`, or,
/// split by another thread, `PID name(args <unfinished ...>` and later
/// `PID <... name resumed>rest) = result`.
fn calls_in(log: &str) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    let mut unfinished: BTreeMap<String, usize> = BTreeMap::new();
    let returned = |text: &str| !text.trim_end().ends_with("= ?");
    for line in log.lines() {
        let Some((thread, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        if let Some(resumed) = rest.strip_prefix("<... ") {
            if let Some(index) = unfinished.remove(thread) {
                let tail = resumed.split_once("resumed>").map_or("", |(_, t)| t);
                calls[index].text.push_str(tail);
                calls[index].returned = returned(tail);
            }
        } else if let Some(text) = rest.strip_suffix(" <unfinished ...>") {
            unfinished.insert(thread.to_owned(), calls.len());
            calls.push(Call {
                thread: thread.to_owned(),
                text: text.to_owned(),
                returned: false,
            });
        } else {
            calls.push(Call {
                thread: thread.to_owned(),
                text: rest.to_owned(),
                returned: returned(rest),
            });
        }
    }
    calls
}

fn call_name(call: &Call) -> &str {
    call.text.split('(').next().unwrap_or_default()
}

/// How many times the busiest thread makes each call in a run of `kind`.
fn calls_per_thread(scene: &Scene, kind: RunKind, only: Option<&Path>) -> BTreeMap<String, usize> {
    scene.prepare(kind);
    assert!(!scene.traced_run(None, only));
    let log = std::fs::read_to_string(&scene.log).unwrap();
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let calls = calls_in(&log);
    for call in &calls {
        *counts.entry((&call.thread, call_name(call))).or_default() += 1;
    }
    let mut most: BTreeMap<String, usize> = BTreeMap::new();
    for ((_, name), count) in counts {
        let max = most.entry(name.to_owned()).or_default();
        *max = (*max).max(count);
    }
    // (Only some runs write in the scratch directory itself.)
    assert!(
        !most.is_empty() || only.is_some(),
        "{kind:?}: no call changed a file:\n{log}"
    );
    most
}

#[test]
fn a_kill_at_any_file_change_of_any_run_leaves_every_annotated_unit_blocked_or_confined() {
    let scene = realistic_root();
    let mut tally: BTreeMap<RunKind, BTreeMap<Phase, usize>> = BTreeMap::new();
    let mut unknown = Vec::new();
    let scratch = scene.root.path(STATE_DIR);
    let passes = RUN_KINDS
        .iter()
        .flat_map(|&kind| [(kind, None), (kind, Some(scratch.as_path()))]);
    for (kind, only) in passes {
        for (call, count) in calls_per_thread(&scene, kind, only) {
            for n in 1..=count {
                let what = format!(
                    "at {call} #{n}{} of a {kind:?} run",
                    if only.is_some() {
                        " in the scratch directory"
                    } else {
                        ""
                    }
                );
                let units = scene.prepare(kind);
                assert!(
                    scene.traced_run(Some((&call, n)), only),
                    "the run was not killed {what}: it made fewer such calls than the run before"
                );
                let log = std::fs::read_to_string(&scene.log).unwrap();
                let calls = calls_in(&log);
                let killed = calls
                    .iter()
                    .position(|c| !c.returned && call_name(c) == call)
                    .unwrap_or_else(|| panic!("no killed call {what}:\n{log}"));
                let phase = classify(&calls[killed].text);
                if phase == Phase::Other {
                    unknown.push(format!("{kind:?}: {}", calls[killed].text));
                }
                *tally.entry(kind).or_default().entry(phase).or_default() += 1;
                let what = format!("{what} ({phase:?}: {})", calls[killed].text);
                scene.check_after_kill(kind, &units, &what);
                scene.check_next_run(kind, &units, &what);
            }
        }
    }
    eprintln!("kills per kind of run and phase: {tally:?}");
    if !unknown.is_empty() {
        eprintln!("kills at calls of no known phase:\n{}", unknown.join("\n"));
    }
    for kind in RUN_KINDS {
        let phases = tally.get(&kind).cloned().unwrap_or_default();
        for phase in kind.required_phases() {
            assert!(
                phases.get(phase).copied().unwrap_or(0) > 0,
                "no kill in phase {phase:?} of a {kind:?} run: {phases:?}"
            );
        }
    }
}
