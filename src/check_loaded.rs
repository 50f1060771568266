//! `check --loaded`: what the running systemd loaded for each annotated
//! service, against what the generator writes now.
//!
//! systemd applies the generator's drop-ins only to units it loads after a
//! generator run, and a service started before its confinement was loaded
//! keeps running as it was started. Each annotated unit is therefore asked
//! about (which loads it, as a start would), and one line is printed per
//! problem ([`ProblemKind`]); with `--reload`, systemd is reloaded when that
//! resolves a problem, then asked again.

use crate::closure::Closures;
use crate::confine::{Confiner, Outcome};
use crate::diag::counted;
use crate::dropin::blocked_reasons;
use crate::loaded::{self, DirId, LoadedUnit, Systemctl};
use crate::plan::{self, Kind, Plan};
use crate::rootfs::Root;
use crate::view::record::Views;
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::SystemTime;

/// The system manager's generator output directory (`NORMAL`), where the
/// drop-ins systemd loads come from.
pub const GENERATOR_OUTPUT: &str = "/run/systemd/generator";

/// Reloads one check may do: the first applies what the files ask; a second
/// one what changed while the first ran.
const MAX_RELOADS: usize = 2;

/// What an annotated unit (or the instances of an annotated template) must
/// have loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub name: String,
    pub kind: Kind,
    /// The drop-in the generator writes for it, under [`GENERATOR_OUTPUT`].
    pub file: Utf8PathBuf,
    /// What the generator writes there now.
    pub text: String,
}

/// One problem found in the running systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub unit: String,
    pub kind: ProblemKind,
    pub message: String,
    /// Whether a `daemon-reload` resolves it.
    pub reload_fixes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// `UNCONFINED`: loaded without its confinement drop-in (a unit file
    /// that appeared after the last `daemon-reload` is loaded from disk on
    /// demand, without the generator's drop-ins).
    Unconfined,
    /// `RUNNING UNCONFINED`: a process of it runs outside its confinement
    /// root (a reload does not fix this; a restart does).
    RunningUnconfined,
    /// `STALE`: the drop-in it loaded is not what the generator writes now.
    Stale,
    /// `BLOCKED`: it loaded the blocking drop-in (the reason follows).
    Blocked,
    /// What could not be found out (not allowed to look, systemd not there).
    Unknown,
}

impl ProblemKind {
    fn label(self) -> &'static str {
        match self {
            ProblemKind::Unconfined => "UNCONFINED",
            ProblemKind::RunningUnconfined => "RUNNING UNCONFINED",
            ProblemKind::Stale => "STALE",
            ProblemKind::Blocked => "BLOCKED",
            ProblemKind::Unknown => "CANNOT CHECK",
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.unit, self.kind.label(), self.message)
    }
}

/// Where a unit's processes run: for each, its root directory's identity
/// (or why it could not be read), and the identity of the unit's
/// confinement root (`None` when it does not exist).
#[derive(Debug, Clone, Default)]
pub struct Processes {
    pub roots: Vec<(u32, String, Result<DirId, std::io::ErrorKind>)>,
    pub confinement_root: Option<DirId>,
}

/// What was found for one unit systemd loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitReport {
    pub unit: String,
    /// The line printed when nothing is wrong.
    pub status: String,
    pub problems: Vec<Problem>,
}

/// Compares what systemd loaded for `unit` with `expected`: `current` is the
/// generator's drop-in as it is now on disk (the file systemd read when it
/// loaded the unit), `processes` where the unit's processes run.
pub fn assess_unit(
    expected: &Expected,
    unit: &LoadedUnit,
    current: Option<&str>,
    processes: &Processes,
) -> UnitReport {
    let name = unit.id.clone();
    let problem = |kind, message: String, reload_fixes| Problem {
        unit: name.clone(),
        kind,
        message,
        reload_fixes,
    };
    let mut problems = Vec::new();
    let file = expected.file.as_str();
    let root = format!("/run/confinement/{name}");
    if unit.load_state != "loaded" {
        // Masked, not found or unloadable: systemd cannot start it.
        return UnitReport {
            status: format!(
                "{name}: not started by systemd (LoadState={})",
                unit.load_state
            ),
            unit: name,
            problems,
        };
    }
    let loaded_ours = unit.dropin_paths.iter().any(|p| p == file);
    let blocked = current.and_then(blocked_reasons);
    if !loaded_ours {
        let why = match current {
            None => "no daemon-reload since it was annotated".to_owned(),
            Some(_) => "it was loaded before the drop-in was written".to_owned(),
        };
        problems.push(problem(
            ProblemKind::Unconfined,
            format!(
                "systemd loaded it without its confinement drop-in {file} ({why}): a start runs it \
                 unconfined; run `systemctl daemon-reload`"
            ),
            true,
        ));
    } else if let Some(reasons) = &blocked {
        // The unit is named at the start of the line already.
        let unit_prefix = format!("{name}: ");
        let reasons: Vec<String> = reasons
            .iter()
            .map(|r| match r.strip_prefix(&unit_prefix) {
                Some(rest) => rest.to_owned(),
                None => r.replacen(&format!(": {unit_prefix}"), ": ", 1),
            })
            .collect();
        let now = if current == Some(expected.text.as_str()) {
            ""
        } else if blocked_reasons(&expected.text).is_some() {
            " (blocked now for another reason: run `systemctl daemon-reload`)"
        } else {
            " (the cause is gone: run `systemctl daemon-reload` to confine it)"
        };
        for reason in &reasons {
            problems.push(problem(
                ProblemKind::Blocked,
                format!("{reason}{now}"),
                current != Some(expected.text.as_str()),
            ));
        }
        if reasons.is_empty() {
            problems.push(problem(
                ProblemKind::Blocked,
                format!("{file} blocks it{now}"),
                current != Some(expected.text.as_str()),
            ));
        }
    } else if current != Some(expected.text.as_str()) {
        problems.push(problem(
            ProblemKind::Stale,
            format!(
                "the confinement drop-in systemd loaded ({file}) is not what the unit files ask \
                 for now: run `systemctl daemon-reload`, then restart it"
            ),
            true,
        ));
    } else if unit.root_directory != root {
        problems.push(problem(
            ProblemKind::Unconfined,
            format!(
                "systemd loaded {file}, but its RootDirectory= is {:?}, not {root}",
                unit.root_directory
            ),
            false,
        ));
    }
    let mut confined_pids = 0;
    for (pid, command, process_root) in &processes.roots {
        match process_root {
            Ok(id) if Some(*id) == processes.confinement_root => confined_pids += 1,
            Ok(_) => problems.push(problem(
                ProblemKind::RunningUnconfined,
                format!(
                    "process {pid} ({command}) does not run in {root} (started before its \
                     confinement was loaded, or by a command with the `+` prefix, which systemd \
                     runs outside RootDirectory=): restart it"
                ),
                false,
            )),
            Err(std::io::ErrorKind::NotFound) => {} // it has exited
            Err(error) => problems.push(problem(
                ProblemKind::Unknown,
                format!(
                    "cannot tell where process {pid} runs (/proc/{pid}/root: {}): run as root",
                    std::io::Error::from(*error)
                ),
                false,
            )),
        }
    }
    let state = if confined_pids > 0 {
        format!(
            "{}, {} in {root}",
            unit.active_state,
            counted(confined_pids, "process", "processes")
        )
    } else {
        unit.active_state.clone()
    };
    UnitReport {
        status: format!("{name}: confined ({state})"),
        unit: name,
        problems,
    }
}

/// Compares the drop-in the instances of `template` not loaded yet would
/// load (`current`, as it is on disk) with what the generator writes now.
pub fn assess_template(template: &Expected, current: Option<&str>) -> Option<Problem> {
    let file = &template.file;
    let (kind, message, reload_fixes) = match current {
        None => (
            ProblemKind::Unconfined,
            format!(
                "no confinement drop-in {file} (no daemon-reload since it was annotated): its \
                 instances start unconfined; run `systemctl daemon-reload`"
            ),
            true,
        ),
        Some(text) => match blocked_reasons(text) {
            Some(reasons) if text == template.text => {
                (ProblemKind::Blocked, reasons.join("; "), false)
            }
            Some(reasons) => (
                ProblemKind::Blocked,
                format!(
                    "{} (the cause is gone: run `systemctl daemon-reload`)",
                    reasons.join("; ")
                ),
                true,
            ),
            None if text == template.text => return None,
            None => (
                ProblemKind::Stale,
                format!(
                    "its confinement drop-in {file} is not what the unit files ask for now: run \
                     `systemctl daemon-reload`"
                ),
                true,
            ),
        },
    };
    Some(Problem {
        unit: template.name.clone(),
        kind,
        message,
        reload_fixes,
    })
}

/// What the generator writes now for each annotated unit (the units to ask
/// systemd about by name, and the templates whose loaded instances to ask
/// about), and the instances that opt out of their template's confinement.
#[derive(Debug, Default)]
pub struct Expectations {
    pub units: Vec<Expected>,
    pub opted_out: BTreeSet<String>,
}

/// What the generator writes now, computed without writing anything (the
/// closure cache is read, not written; closure views are previewed, their
/// closures not recorded).
pub fn expectations(plan: &mut Plan, root: &Root) -> Expectations {
    let Plan { config, units, .. } = plan;
    let closures = Closures::start(root, config, false);
    let views = Views::preview(root, config.views.as_deref());
    let mut confiner = Confiner::new(config, closures, views);
    confiner.closures.resolve(units);
    let mut expected = Expectations::default();
    for unit in units.iter_mut() {
        let outcome = confiner.confine(unit, false);
        if matches!(outcome, Outcome::Empty) {
            expected.opted_out.insert(unit.name.clone());
            continue;
        }
        expected.units.push(Expected {
            name: unit.name.clone(),
            kind: unit.kind,
            file: generated_file(&unit.name, &unit.dropin_name),
            text: outcome.text().to_owned(),
        });
    }
    expected
}

/// Where the generator writes the drop-in `file_name` of `unit`.
fn generated_file(unit: &str, file_name: &str) -> Utf8PathBuf {
    Utf8Path::new(GENERATOR_OUTPUT)
        .join(format!("{unit}.d"))
        .join(file_name)
}

/// The result of one round of asking systemd.
#[derive(Debug, Default)]
pub struct Report {
    pub units: Vec<UnitReport>,
    /// Problems of templates (their drop-in for instances not loaded yet)
    /// and of the round itself.
    pub other: Vec<Problem>,
}

impl Report {
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.other
            .iter()
            .chain(self.units.iter().flat_map(|u| u.problems.iter()))
    }
}

/// Asks systemd about every expected unit and every loaded instance of an
/// expected template.
pub fn assess(expected: &Expectations, systemctl: &Systemctl) -> Report {
    let mut report = Report::default();
    let mut by_unit: BTreeMap<String, &Expected> = BTreeMap::new();
    let templates: Vec<&Expected> = expected
        .units
        .iter()
        .filter(|e| e.kind == Kind::Template)
        .collect();
    for e in expected.units.iter().filter(|e| e.kind != Kind::Template) {
        by_unit.insert(e.name.clone(), e);
    }
    if !templates.is_empty() {
        match systemctl.loaded_services() {
            Ok(names) => {
                for name in names {
                    // An instance with its own drop-in, or opting out, is
                    // not its template's.
                    if by_unit.contains_key(&name) || expected.opted_out.contains(&name) {
                        continue;
                    }
                    let template = crate::unit::UnitName::parse(&name).and_then(|n| n.template());
                    if let Some(t) = templates
                        .iter()
                        .find(|t| Some(&t.name) == template.as_ref())
                    {
                        by_unit.insert(name, t);
                    }
                }
            }
            Err(error) => report.other.push(Problem {
                unit: "systemd".into(),
                kind: ProblemKind::Unknown,
                message: error.to_string(),
                reload_fixes: false,
            }),
        }
        for template in &templates {
            // An instance loaded later reads the template's drop-in as it
            // is on disk now.
            let current = std::fs::read_to_string(&template.file).ok();
            report
                .other
                .extend(assess_template(template, current.as_deref()));
        }
    }
    let names: Vec<String> = by_unit.keys().cloned().collect();
    let loaded = match systemctl.show(&names) {
        Ok(loaded) => loaded,
        Err(error) => {
            report.other.push(Problem {
                unit: "systemd".into(),
                kind: ProblemKind::Unknown,
                message: error.to_string(),
                reload_fixes: false,
            });
            return report;
        }
    };
    if loaded.len() != names.len() {
        report.other.push(Problem {
            unit: "systemd".into(),
            kind: ProblemKind::Unknown,
            message: format!(
                "systemctl show printed {} for {}",
                counted(loaded.len(), "unit", "units"),
                counted(names.len(), "name", "names")
            ),
            reload_fixes: false,
        });
        return report;
    }
    // Which cgroup each process is in, read once for all units (only when
    // some unit has processes).
    let cgroups = if loaded
        .iter()
        .any(|u| !matches!(u.active_state.as_str(), "inactive" | "failed"))
    {
        loaded::process_cgroups()
    } else {
        Vec::new()
    };
    for (name, unit) in names.iter().zip(&loaded) {
        let expected = by_unit[name];
        let current = std::fs::read_to_string(&expected.file).ok();
        let processes = processes_of(unit, &cgroups);
        report
            .units
            .push(assess_unit(expected, unit, current.as_deref(), &processes));
    }
    report
}

/// Where the processes of `unit` run.
fn processes_of(unit: &LoadedUnit, cgroups: &[(u32, String)]) -> Processes {
    let mut pids = loaded::processes_in(cgroups, &unit.control_group);
    pids.extend(
        [unit.main_pid, unit.control_pid]
            .into_iter()
            .filter(|&p| p != 0),
    );
    pids.sort_unstable();
    pids.dedup();
    let root = format!("/run/confinement/{}", unit.id);
    let confinement_root = loaded::dir_id(std::path::Path::new(&root)).ok();
    let look = |pid: u32| {
        (
            pid,
            loaded::process_name(pid),
            loaded::process_root(pid).map_err(|e| e.kind()),
        )
    };
    let mut roots: Vec<_> = pids.into_iter().map(look).collect();
    // A process systemd has forked but not yet set up (named `(program)`,
    // or running systemd-executor under the program's name on newer
    // systemd) still has the host's root until it executes the program:
    // one outside the root is looked at again, for a second at most.
    let outside = |roots: &[(u32, String, Result<DirId, std::io::ErrorKind>)]| {
        roots
            .iter()
            .any(|(_, _, root)| matches!(root, Ok(id) if Some(*id) != confinement_root))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while outside(&roots) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(25));
        for entry in roots.iter_mut() {
            if matches!(entry.2, Ok(id) if Some(id) != confinement_root) {
                *entry = look(entry.0);
            }
        }
    }
    Processes {
        roots,
        confinement_root,
    }
}

/// The file the generator writes last ([`crate::dropin::CHECK_SERVICE`]):
/// its identity changes with every generator run, and it is missing while
/// one is under way.
fn generator_run_marker() -> Option<(u64, u64, Option<SystemTime>)> {
    use std::os::unix::fs::MetadataExt;
    let path = Utf8Path::new(GENERATOR_OUTPUT).join(crate::dropin::CHECK_SERVICE);
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino(), meta.modified().ok()))
}

/// The modification times of the watched directories: a unit file or
/// drop-in directory created, removed or renamed changes one of them.
fn stamp(root: &Root, dirs: &[Utf8PathBuf]) -> Vec<Option<SystemTime>> {
    dirs.iter()
        .map(|dir| {
            std::fs::metadata(root.join(dir))
                .and_then(|m| m.modified())
                .ok()
        })
        .collect()
}

/// `check --loaded [--reload]`: returns the exit status (1 when a problem
/// was found).
pub fn run(root: &Root, env_unit_path: Option<&str>, reload: bool) -> i32 {
    let mut out = std::io::stdout().lock();
    let systemctl = match Systemctl::find() {
        Ok(systemctl) => systemctl,
        Err(error) => {
            let _ = writeln!(out, "cannot ask the running systemd: {error}");
            return 1;
        }
    };
    let mut reloads = 0;
    let mut waits = 0;
    // Rounds that found the files changed while they ran are done again,
    // a few times at most.
    let mut round = 0;
    loop {
        round += 1;
        let mut plan = plan::plan(root, crate::config::load(root), env_unit_path, &());
        let watched = crate::watch::watched_dirs(&plan.catalog);
        let before = stamp(root, &watched);
        let generator_run = generator_run_marker();
        // A reload under way (systemd empties the output directory, then
        // the generators fill it) would look like drop-ins that are not
        // there: the round is done again once systemd answers, which it
        // does when the reload is over.
        let generator_ran_meanwhile = |waits: &mut usize| {
            let changed = generator_run.is_none() || generator_run_marker() != generator_run;
            if changed && *waits < 3 {
                *waits += 1;
                systemctl.wait_for_manager();
                return true;
            }
            false
        };
        // A unit annotated since the last generator run has no drop-in in
        // the output directory at all: reloaded at once, before its
        // closure is computed, which keeps the time in which a start finds
        // it unconfined short.
        let never_generated: Vec<&str> = plan
            .units
            .iter()
            .filter(|u| u.request.is_some() && !generated_file(&u.name, &u.dropin_name).exists())
            .map(|u| u.name.as_str())
            .collect();
        if reload && !never_generated.is_empty() && reloads < MAX_RELOADS {
            if generator_ran_meanwhile(&mut waits) {
                continue;
            }
            for unit in &never_generated {
                let _ = writeln!(
                    out,
                    "reloading systemd: {unit}: annotated, but no confinement drop-in was \
                     generated for it (no daemon-reload since it was annotated)"
                );
            }
            if let Err(error) = systemctl.daemon_reload() {
                let _ = writeln!(out, "systemctl daemon-reload failed: {error}");
                return 1;
            }
            reloads += 1;
            requeue(&systemctl, &plan, &mut out);
            continue;
        }
        let expected = expectations(&mut plan, root);
        let report = assess(&expected, &systemctl);
        if report.problems().next().is_some() && generator_ran_meanwhile(&mut waits) {
            continue;
        }
        let fixable: Vec<&Problem> = report.problems().filter(|p| p.reload_fixes).collect();
        if reload && !fixable.is_empty() && reloads < MAX_RELOADS {
            for problem in &fixable {
                let _ = writeln!(out, "reloading systemd: {problem}");
            }
            if let Err(error) = systemctl.daemon_reload() {
                let _ = writeln!(out, "systemctl daemon-reload failed: {error}");
                print_report(&mut out, &report, !reload);
                return 1;
            }
            reloads += 1;
            requeue(&systemctl, &plan, &mut out);
            continue;
        }
        if reload && round < 5 && stamp(root, &watched) != before {
            continue;
        }
        print_report(&mut out, &report, !reload);
        return i32::from(report.problems().next().is_some());
    }
}

/// Starts again, without waiting, the annotated units whose start was
/// queued before a reload (at boot, when the store was mounted after the
/// generator ran): a queued job keeps the dependencies it was queued with,
/// so it would not start what the reloaded unit needs now (its closure's
/// view); a new start merges with it and does. The job is still waiting:
/// every confined unit is ordered after the check service, which runs this.
fn requeue(systemctl: &Systemctl, plan: &Plan, out: &mut impl Write) {
    let annotated: BTreeSet<&str> = plan
        .units
        .iter()
        .filter(|u| u.request.is_some())
        .map(|u| u.name.as_str())
        .collect();
    let Ok(queued) = systemctl.queued_starts() else {
        return;
    };
    let waiting: Vec<String> = queued
        .into_iter()
        .filter(|unit| {
            annotated.contains(unit.as_str())
                || crate::unit::UnitName::parse(unit)
                    .and_then(|n| n.template())
                    .is_some_and(|t| annotated.contains(t.as_str()))
        })
        .collect();
    if let Err(error) = systemctl.start_no_block(&waiting) {
        let _ = writeln!(out, "starting {} again: {error}", waiting.join(" "));
    }
}

/// Prints the problems and a summary; with `all_units`, first a line for
/// each unit without a problem (the check service, which runs at every
/// change of a unit directory, leaves those out of the journal).
fn print_report(out: &mut impl Write, report: &Report, all_units: bool) {
    for unit in report.units.iter().filter(|_| all_units) {
        if unit.problems.is_empty() {
            let _ = writeln!(out, "{}", unit.status);
        }
    }
    let mut count = 0;
    for problem in report.problems() {
        count += 1;
        let _ = writeln!(out, "{problem}");
    }
    let _ = writeln!(
        out,
        "{} checked in the running systemd, {}",
        counted(report.units.len(), "unit", "units"),
        counted(count, "problem", "problems")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFINED: &str = "# Generated by nix-confinement-generator for a.service from:\n[Service]\nRootDirectory=/run/confinement/%n\n";

    fn expected() -> Expected {
        Expected {
            name: "a.service".into(),
            kind: Kind::Plain,
            file: "/run/systemd/generator/a.service.d/zz-confinement.conf".into(),
            text: CONFINED.into(),
        }
    }

    fn loaded(dropins: &[&str]) -> LoadedUnit {
        LoadedUnit {
            id: "a.service".into(),
            load_state: "loaded".into(),
            active_state: "inactive".into(),
            dropin_paths: dropins.iter().map(|s| s.to_string()).collect(),
            root_directory: if dropins.is_empty() {
                String::new()
            } else {
                "/run/confinement/a.service".into()
            },
            ..LoadedUnit::default()
        }
    }

    fn kinds(report: &UnitReport) -> Vec<(ProblemKind, bool)> {
        report
            .problems
            .iter()
            .map(|p| (p.kind, p.reload_fixes))
            .collect()
    }

    const OURS: &str = "/run/systemd/generator/a.service.d/zz-confinement.conf";

    #[test]
    fn loaded_with_the_current_drop_in_is_confined() {
        let r = assess_unit(
            &expected(),
            &loaded(&[OURS]),
            Some(CONFINED),
            &Processes::default(),
        );
        assert!(r.problems.is_empty(), "{r:?}");
        assert_eq!(r.status, "a.service: confined (inactive)");
    }

    #[test]
    fn loaded_without_it_is_unconfined_and_a_reload_fixes_it() {
        let r = assess_unit(&expected(), &loaded(&[]), None, &Processes::default());
        assert_eq!(kinds(&r), [(ProblemKind::Unconfined, true)]);
        assert!(
            r.problems[0]
                .to_string()
                .starts_with("a.service: UNCONFINED: ")
        );
    }

    #[test]
    fn another_text_is_stale() {
        let r = assess_unit(
            &expected(),
            &loaded(&[OURS]),
            Some("# Generated by nix-confinement-generator for a.service from:\n[Service]\n"),
            &Processes::default(),
        );
        assert_eq!(kinds(&r), [(ProblemKind::Stale, true)]);
    }

    #[test]
    fn blocked_names_the_reason_and_a_reload_helps_only_when_the_cause_is_gone() {
        let text = crate::dropin::render_blocked(
            "a.service",
            &[],
            &["Nix database /nix/var/nix/db/schema: cannot read the schema version".into()],
        );
        let r = assess_unit(
            &expected(),
            &loaded(&[OURS]),
            Some(&text),
            &Processes::default(),
        );
        assert_eq!(kinds(&r), [(ProblemKind::Blocked, true)]);
        assert!(
            r.problems[0]
                .message
                .contains("cannot read the schema version")
        );
        assert!(r.problems[0].message.contains("the cause is gone"));
        let still = Expected {
            text: text.clone(),
            ..expected()
        };
        let r = assess_unit(&still, &loaded(&[OURS]), Some(&text), &Processes::default());
        assert_eq!(kinds(&r), [(ProblemKind::Blocked, false)]);
    }

    #[test]
    fn a_process_outside_the_root_runs_unconfined() {
        let processes = Processes {
            roots: vec![
                (10, "inside".into(), Ok((1, 2))),
                (11, "outside".into(), Ok((1, 3))),
                (12, "gone".into(), Err(std::io::ErrorKind::NotFound)),
                (
                    13,
                    "hidden".into(),
                    Err(std::io::ErrorKind::PermissionDenied),
                ),
            ],
            confinement_root: Some((1, 2)),
        };
        let r = assess_unit(&expected(), &loaded(&[OURS]), Some(CONFINED), &processes);
        assert_eq!(
            kinds(&r),
            [
                (ProblemKind::RunningUnconfined, false),
                (ProblemKind::Unknown, false)
            ]
        );
        assert!(r.problems[0].message.contains("process 11 (outside)"));
    }

    #[test]
    fn a_template_without_its_drop_in_leaves_its_instances_unconfined() {
        let template = Expected {
            name: "t@.service".into(),
            kind: Kind::Template,
            file: "/run/systemd/generator/t@.service.d/zz-confinement.conf".into(),
            text: CONFINED.into(),
        };
        let kind = |current| assess_template(&template, current).map(|p| (p.kind, p.reload_fixes));
        assert_eq!(kind(None), Some((ProblemKind::Unconfined, true)));
        assert_eq!(kind(Some(CONFINED)), None);
        assert_eq!(kind(Some("# other\n")), Some((ProblemKind::Stale, true)));
        let blocked = crate::dropin::render_blocked("t@.service", &[], &["gone".into()]);
        assert_eq!(kind(Some(&blocked)), Some((ProblemKind::Blocked, true)));
    }

    #[test]
    fn not_loadable_units_are_no_problem() {
        let unit = LoadedUnit {
            load_state: "masked".into(),
            ..loaded(&[])
        };
        let r = assess_unit(&expected(), &unit, None, &Processes::default());
        assert!(r.problems.is_empty());
    }
}
