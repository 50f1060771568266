//! The entry point: argv and the environment in, one of generator mode,
//! `explain` or `check` out (SPEC §1).

use crate::annotation::KNOWN_KEYS;
use crate::diag::Diagnostic;
use crate::dropin::PENDING_DROPIN;
use crate::dropin_store::DropinStore;
use crate::generate::{self, Computed, Database, Outcome, Plan, pending_text};
use crate::logging::{self, LOG_NOTICE, Logger};
use crate::output::OutputDir;
use crate::rootfs::Root;
use camino::Utf8PathBuf;
use std::collections::HashSet;
use std::io::Write;

const USAGE: &str = "\
usage: nix-confinement-generator [--root DIR] NORMAL [EARLY LATE]
       nix-confinement-generator [--root DIR] explain UNIT
       nix-confinement-generator [--root DIR] check
       nix-confinement-generator check --loaded [--reload]

Confines services annotated with X-ConfinementEnable=yes to their Nix store
closure. See nix-confinement-generator(8) and nix-confinement(5).";

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Generate { normal: Utf8PathBuf },
    Explain { unit: String },
    Check,
    CheckLoaded { reload: bool },
    Help,
    Version,
}

#[derive(Debug, PartialEq, Eq)]
struct Args {
    root: Utf8PathBuf,
    command: Command,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut root = Utf8PathBuf::from("/");
    let mut rest: &[String] = args;
    loop {
        match rest.first().map(String::as_str) {
            Some("--root") => {
                let dir = rest.get(1).ok_or("--root needs a directory")?;
                root = Utf8PathBuf::from(dir);
                rest = &rest[2..];
            }
            Some(arg) if arg.starts_with("--root=") => {
                root = Utf8PathBuf::from(&arg["--root=".len()..]);
                rest = &rest[1..];
            }
            _ => break,
        }
    }
    if root.as_str().is_empty() {
        return Err("--root needs a directory".into());
    }
    let root_is_host = root == "/";
    let command = match rest {
        [h] if h == "--help" || h == "-h" => Command::Help,
        [v] if v == "--version" => Command::Version,
        [c, unit] if c == "explain" => Command::Explain { unit: unit.clone() },
        [c, ..] if c == "explain" => return Err("explain takes exactly one unit name".into()),
        [c] if c == "check" => Command::Check,
        [c, loaded] if c == "check" && loaded == "--loaded" => {
            Command::CheckLoaded { reload: false }
        }
        [c, loaded, reload] if c == "check" && loaded == "--loaded" && reload == "--reload" => {
            Command::CheckLoaded { reload: true }
        }
        [c, ..] if c == "check" => {
            return Err("check takes no arguments but --loaded [--reload]".into());
        }
        [normal] | [normal, _, _] if !normal.starts_with('-') => Command::Generate {
            normal: Utf8PathBuf::from(normal),
        },
        [] => return Err("missing the output directory".into()),
        _ => return Err(format!("unexpected arguments: {}", rest.join(" "))),
    };
    if matches!(command, Command::CheckLoaded { .. }) && !root_is_host {
        return Err(
            "check --loaded asks the running systemd: it cannot be combined with --root".into(),
        );
    }
    Ok(Args { root, command })
}

/// Runs the program; returns the exit status.
pub fn main() -> i32 {
    let raw: Vec<String> = match std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect::<Result<_, _>>()
    {
        Ok(args) => args,
        Err(arg) => {
            eprintln!("nix-confinement-generator: argument {arg:?} is not UTF-8\n{USAGE}");
            return 2;
        }
    };
    let args = match parse_args(&raw) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("nix-confinement-generator: {message}\n{USAGE}");
            return 2;
        }
    };
    let root = Root::new(args.root);
    let env_unit_path = std::env::var("SYSTEMD_UNIT_PATH").ok();
    match args.command {
        Command::Help => {
            println!("{USAGE}");
            0
        }
        Command::Version => {
            println!("nix-confinement-generator {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Command::Generate { normal } => {
            let logger = Logger::from_env(true);
            if std::env::var("SYSTEMD_IN_INITRD").is_ok_and(|v| v == "1") {
                // The real root and its store are not mounted yet.
                logger.log(logging::LOG_DEBUG, "in the initrd: nothing to do");
                return 0;
            }
            run_generator(&root, &normal, env_unit_path.as_deref(), &logger)
        }
        Command::Explain { unit } => {
            let logger = Logger::from_env(false);
            explain(&root, &unit, env_unit_path.as_deref(), &logger)
        }
        Command::Check => check(&root, env_unit_path.as_deref()),
        Command::CheckLoaded { reload } => {
            crate::check_loaded::run(&root, env_unit_path.as_deref(), reload)
        }
    }
}

/// What the writer thread does for a unit.
enum Job {
    /// Writes `text`; first keeps it in the drop-in store as `keep_as`, and
    /// links it from there, when that is given.
    Write {
        unit: String,
        file_name: String,
        text: String,
        keep_as: Option<String>,
    },
    /// Links the drop-in the store keeps as `kept`; when that fails, the
    /// unit (`index` in the plan) is rendered after all.
    Link {
        unit: String,
        file_name: String,
        kept: String,
        index: usize,
    },
}

/// What the writer thread did: errors, the store's files it used, and the
/// units whose kept drop-in it could not link.
type Written = (Vec<String>, HashSet<String>, Vec<usize>);

/// Generator mode: blocking drop-ins first, then each replaced by the real
/// one. Returns 0 when every annotated unit was confined. The process is
/// to exit right after: what the run read is left for the kernel to free.
fn run_generator(
    root: &Root,
    normal: &camino::Utf8Path,
    env_unit_path: Option<&str>,
    logger: &Logger,
) -> i32 {
    let output = match OutputDir::open(normal) {
        Ok(output) => output,
        Err(error) => {
            logger.log(logging::LOG_ERR, &error.to_string());
            return 1;
        }
    };
    let started = std::time::Instant::now();
    let loaded = crate::config::load(root);
    let opening = generate::Opening::start(root, &loaded.0);
    let mut plan = generate::plan_with_config(root, loaded, env_unit_path, &|roots| {
        opening.roots_found(roots)
    });
    let planned = started.elapsed();
    for warning in &plan.warnings {
        logger.diagnostic(warning);
    }
    let mut write_failed = false;
    // The read-only store view the confined units bind from.
    if plan.units.iter().any(|u| u.request.is_some())
        && let Err(error) = output.write_unit(
            crate::dropin::STORE_VIEW_UNIT,
            &crate::dropin::render_store_view_mount(plan.config.store_dir.as_str()),
        )
    {
        logger.log(logging::LOG_ERR, &error.to_string());
        write_failed = true;
    }
    // Every annotated unit is blocked until its drop-in is ready: a second
    // thread links the blocking drop-in into the directories of all of them
    // first, then writes each drop-in as it is computed here (the closures
    // are resolved meanwhile; half of the writing is the kernel copying to
    // tmpfs).
    let pending_units: Vec<(String, String)> = plan
        .units
        .iter()
        .map(|unit| (unit.name.clone(), unit.dropin_name.clone()))
        .collect();
    // When it cannot be written or linked, each unit gets a copy (or the
    // error).
    let pending = pending_text();
    let pending_written = pending_units.is_empty()
        || match output.write_unit(PENDING_DROPIN, &pending) {
            Ok(()) => true,
            Err(error) => {
                logger.log(logging::LOG_ERR, &error.to_string());
                write_failed = true;
                false
            }
        };
    let Plan {
        config,
        units,
        catalog,
        ..
    } = &mut plan;
    let mut db = Database::with_opening(config.closure_cache.as_deref(), opening);
    // The drop-ins of the last run, to link again (only with the closure
    // cache: a kept drop-in's closure is named by it).
    let store = match (&config.dropin_store, &config.closure_cache) {
        (Some(path), Some(_)) if !pending_units.is_empty() => {
            match DropinStore::open(&root.join(path), &output) {
                Ok(store) => Some(store),
                Err(error) => {
                    logger.log(
                        logging::LOG_DEBUG,
                        &format!("drop-in store not used: {error}"),
                    );
                    None
                }
            }
        }
        _ => None,
    };
    let (mut confined, mut blocked) = (0, 0);
    let mut resolved = planned;
    let (write_errors, used, not_linked): Written = std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Job>(2);
        let output = &output;
        let store = store.as_ref();
        let writer = scope.spawn(move || {
            let mut errors = Vec::new();
            let mut used = HashSet::new();
            let mut not_linked = Vec::new();
            let mut dirs = std::collections::HashMap::new();
            for (unit, file_name) in pending_units {
                let written = if pending_written {
                    output
                        .link_dropin_with(&mut dirs, &unit, &file_name, PENDING_DROPIN)
                        .or_else(|_| {
                            output.write_dropin_with(&mut dirs, &unit, &file_name, &pending)
                        })
                } else {
                    output.write_dropin_with(&mut dirs, &unit, &file_name, &pending)
                };
                if let Err(error) = written {
                    errors.push(format!("{unit}: {error}"));
                }
            }
            for job in receiver {
                match job {
                    Job::Write {
                        unit,
                        file_name,
                        text,
                        keep_as,
                    } => {
                        // Kept first, then linked: the unit's drop-in and
                        // the store's are one file. Failing that, a copy.
                        let linked = store.zip(keep_as).is_some_and(|(store, name)| {
                            let kept = store.keep(&name, &text).is_ok();
                            if kept {
                                used.insert(name.clone());
                            }
                            kept && output
                                .replace_dropin_with_link(
                                    &mut dirs,
                                    &unit,
                                    &file_name,
                                    store.dir(),
                                    &name,
                                )
                                .is_ok()
                        });
                        if !linked
                            && let Err(error) =
                                output.write_dropin_with(&mut dirs, &unit, &file_name, &text)
                        {
                            errors.push(format!("{unit}: {error}"));
                        }
                    }
                    Job::Link {
                        unit,
                        file_name,
                        kept,
                        index,
                    } => {
                        let linked = store.is_some_and(|store| {
                            output
                                .replace_dropin_with_link(
                                    &mut dirs,
                                    &unit,
                                    &file_name,
                                    store.dir(),
                                    &kept,
                                )
                                .is_ok()
                        });
                        if linked {
                            used.insert(kept);
                        } else {
                            not_linked.push(index);
                        }
                    }
                }
            }
            // A hundred directory descriptors: the kernel closes them at
            // the exit that follows, without a system call each.
            std::mem::forget(dirs);
            (errors, used, not_linked)
        });
        generate::resolve_closures_with_store(root, config, &mut db, units, store);
        resolved = started.elapsed();
        for (index, unit) in units.iter_mut().enumerate() {
            let computed = generate::compute_with_store(root, config, &mut db, unit, false, store);
            for warning in &unit.warnings {
                logger.diagnostic(warning);
            }
            let (unit_name, file_name) = (unit.name.clone(), unit.dropin_name.clone());
            let job = match computed {
                Computed::Kept { file } => {
                    confined += 1;
                    Job::Link {
                        unit: unit_name,
                        file_name,
                        kept: file,
                        index,
                    }
                }
                Computed::Rendered { outcome, keep_as } => {
                    count_outcome(&outcome, unit, logger, &mut confined, &mut blocked);
                    Job::Write {
                        unit: unit_name,
                        file_name,
                        text: outcome.into_text(),
                        keep_as,
                    }
                }
            };
            if sender.send(job).is_err() {
                break; // the writer is gone: its panic is reported below
            }
        }
        drop(sender);
        writer.join().unwrap_or_else(|_| {
            let failed = vec!["the thread writing drop-ins failed".to_owned()];
            (failed, HashSet::new(), Vec::new())
        })
    });
    let mut write_errors = write_errors;
    // A kept drop-in that could not be linked (the store changed under
    // this run): rendered and written as without a store.
    for index in not_linked {
        let unit = &mut units[index];
        confined -= 1;
        let outcome = generate::compute(root, config, &mut db, unit, false);
        count_outcome(&outcome, unit, logger, &mut confined, &mut blocked);
        if let Err(error) = output.write_dropin(&unit.name, &unit.dropin_name, outcome.text()) {
            write_errors.push(format!("{}: {error}", unit.name));
        }
    }
    if let Some(store) = &store {
        let removed = store.remove_unused(&used);
        logger.log(
            logging::LOG_DEBUG,
            &format!(
                "drop-in store {}: {} drop-in(s) in use, {removed} removed",
                store.path(),
                used.len()
            ),
        );
    }
    // Each unit's directory keeps its own link to the blocking drop-in
    // until its final one replaced it; the name at the top is not needed.
    if pending_written {
        output.remove(PENDING_DROPIN);
    }
    // The check service and its watch, written on every run (after the
    // drop-ins, which come first): a unit annotated after this run would
    // otherwise start unconfined.
    let check_units = crate::watch::CheckUnits {
        program: own_program(),
        store_dir: config.store_dir.as_str().to_owned(),
        state_dir: config.state_dir.as_str().to_owned(),
        watched: crate::watch::watched_dirs(catalog),
        at_boot: !units.is_empty(),
    };
    if let Err(error) = crate::watch::write_check_units(&output, &check_units) {
        write_errors.push(error.to_string());
    }
    for error in &write_errors {
        logger.log(logging::LOG_ERR, error);
    }
    write_failed |= !write_errors.is_empty();
    db.save_cache(root, config);
    if let Some(Ok(nix_db)) = db.opened() {
        let (paths, references) = nix_db.statistics();
        logger.log(
            logging::LOG_DEBUG,
            &format!(
                "{}: {paths} store paths and {references} references known, the references of {} read from the database",
                nix_db.path, nix_db.read_from_database
            ),
        );
    }
    for note in &db.cache_notes {
        logger.log(logging::LOG_DEBUG, &format!("closure cache {note}"));
    }
    if let Some(Ok(nix_db)) = db.opened()
        && nix_db.mode == crate::store::db::OpenMode::ImmutableIgnoringWal
    {
        logger.log(
            logging::LOG_WARNING,
            &format!(
                "{}: a -wal file exists but could not be read through; paths registered since the last checkpoint are not seen",
                nix_db.path
            ),
        );
    }
    logger.log(
        logging::LOG_DEBUG,
        &format!(
            "timing: units planned at {:.1} ms, closures resolved at {:.1} ms, \
             drop-ins written at {:.1} ms",
            planned.as_secs_f64() * 1e3,
            resolved.as_secs_f64() * 1e3,
            started.elapsed().as_secs_f64() * 1e3
        ),
    );
    let summary = format!("{confined} unit(s) confined, {blocked} blocked");
    logger.log(
        if blocked > 0 {
            logging::LOG_WARNING
        } else {
            LOG_NOTICE
        },
        &summary,
    );
    // The process exits now: its memory (every unit file read, the units,
    // the reference graph) goes back to the kernel at once, not a piece at
    // a time through free() (measured: about 1 ms of a 30 ms run).
    std::mem::forget(plan);
    std::mem::forget(db);
    i32::from(blocked > 0 || write_failed)
}

/// This program's path, for the units that run it: as systemd ran it (the
/// generator directory's entry, stable across upgrades, where a link on
/// NixOS), else as the kernel knows it, else where it is installed.
fn own_program() -> String {
    let argv0 = std::env::args_os()
        .next()
        .and_then(|a| a.into_string().ok());
    match argv0 {
        Some(path) if path.starts_with('/') => path,
        _ => std::env::current_exe()
            .ok()
            .and_then(|p| p.into_os_string().into_string().ok())
            .unwrap_or_else(|| crate::watch::INSTALLED_PROGRAM.to_owned()),
    }
}

/// Counts a unit as confined or blocked, and logs why it is blocked.
fn count_outcome(
    outcome: &Outcome,
    unit: &generate::UnitPlan,
    logger: &Logger,
    confined: &mut usize,
    blocked: &mut usize,
) {
    match outcome {
        Outcome::Blocked { .. } => {
            *blocked += 1;
            for error in &unit.errors {
                logger.diagnostic(error);
            }
        }
        Outcome::Confined { .. } => *confined += 1,
        Outcome::Empty => {}
    }
}

fn explain(root: &Root, unit_name: &str, env_unit_path: Option<&str>, logger: &Logger) -> i32 {
    let mut plan = generate::plan(root, env_unit_path);
    for warning in plan
        .warnings
        .iter()
        .filter(|w| w.unit.as_deref() == Some(unit_name))
    {
        logger.diagnostic(warning);
    }
    // An instance without files of its own is confined by its template.
    let template = crate::unit::UnitName::parse(unit_name).and_then(|n| n.template());
    let index = plan
        .units
        .iter()
        .position(|u| u.name == unit_name)
        .or_else(|| {
            plan.units
                .iter()
                .position(|u| Some(&u.name) == template.as_ref())
        });
    let Some(index) = index else {
        println!(
            "{unit_name} is not confined: no X-ConfinementEnable=yes in its unit file or drop-ins \
             (or no such service in the search path)."
        );
        return 0;
    };
    let mut db = Database::new();
    let Plan { config, units, .. } = &mut plan;
    let unit = &mut units[index];
    let outcome = generate::compute(root, config, &mut db, unit, true);
    let mut out = std::io::stdout().lock();
    if unit.name != unit_name {
        let _ = writeln!(
            out,
            "# {unit_name} has no files of its own: its template {} confines it.",
            unit.name
        );
    }
    let _ = writeln!(out, "# NORMAL/{}.d/{}", unit.name, unit.dropin_name);
    let _ = out.write_all(outcome.text().as_bytes());
    for warning in &unit.warnings {
        let _ = writeln!(out, "# warning: {warning}");
    }
    match &outcome {
        Outcome::Confined { closure, .. } => {
            let _ = writeln!(out, "\n# Why each path is bound ({} paths):", closure.len());
            for reached in closure {
                let origin = &reached.origin;
                let at = origin.location.as_ref().map_or_else(
                    || "the generator's configuration".to_owned(),
                    ToString::to_string,
                );
                let _ = writeln!(
                    out,
                    "{}\n    root {} named by {}= at {at} ({:?})",
                    reached.path, reached.chain[0], origin.key, origin.text
                );
                if reached.chain.len() > 1 {
                    let _ = writeln!(out, "    via {}", reached.chain.join(" -> "));
                }
            }
            0
        }
        Outcome::Blocked { .. } => 1,
        Outcome::Empty => 0,
    }
}

fn check(root: &Root, env_unit_path: Option<&str>) -> i32 {
    let mut plan = generate::plan(root, env_unit_path);
    let mut out = std::io::stdout().lock();
    let mut problems: Vec<Diagnostic> = plan.warnings.clone();
    let mut db = Database::new();
    let mut blocked = 0;
    let Plan { config, units, .. } = &mut plan;
    generate::resolve_closures(root, config, &mut db, units);
    for unit in units.iter_mut() {
        let outcome = generate::compute(root, config, &mut db, unit, false);
        let status = match &outcome {
            Outcome::Confined { paths, .. } => format!("confined, {paths} store paths"),
            Outcome::Blocked { .. } => {
                blocked += 1;
                "BLOCKED".to_owned()
            }
            Outcome::Empty => "opts out of its template's confinement".to_owned(),
        };
        let _ = writeln!(out, "{}: {status} (mode {})", unit.name, unit.mode.as_str());
        for setting in unit
            .merged
            .settings
            .iter()
            .filter(|s| KNOWN_KEYS.contains(&s.key.as_str()))
        {
            let _ = writeln!(
                out,
                "    {}={}  ({})",
                setting.key, setting.value, setting.location
            );
        }
        problems.extend(unit.errors.iter().cloned());
        problems.extend(unit.warnings.iter().cloned());
    }
    for problem in &problems {
        let _ = writeln!(out, "{problem}");
    }
    let _ = writeln!(
        out,
        "{} annotated unit(s), {blocked} blocked, {} problem(s)",
        units.len(),
        problems.len()
    );
    i32::from(blocked > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn generator_forms() {
        let one = args(&["/run/gen"]).unwrap();
        assert_eq!(
            one.command,
            Command::Generate {
                normal: "/run/gen".into()
            }
        );
        assert_eq!(one.root, "/");
        let three = args(&["--root", "/r", "/a", "/b", "/c"]).unwrap();
        assert_eq!(three.root, "/r");
        assert_eq!(
            three.command,
            Command::Generate {
                normal: "/a".into()
            }
        );
        assert!(args(&["/a", "/b"]).is_err());
        assert!(args(&[]).is_err());
        assert!(args(&["--root"]).is_err());
        assert!(args(&["--bogus"]).is_err());
    }

    #[test]
    fn subcommands() {
        assert_eq!(
            args(&["--root=/r", "check"]).unwrap().command,
            Command::Check
        );
        assert_eq!(
            args(&["explain", "a.service"]).unwrap().command,
            Command::Explain {
                unit: "a.service".into()
            }
        );
        assert!(args(&["explain"]).is_err());
        assert!(args(&["check", "x"]).is_err());
        assert_eq!(
            args(&["check", "--loaded"]).unwrap().command,
            Command::CheckLoaded { reload: false }
        );
        assert_eq!(
            args(&["check", "--loaded", "--reload"]).unwrap().command,
            Command::CheckLoaded { reload: true }
        );
        assert!(args(&["check", "--reload"]).is_err());
        assert!(args(&["check", "--reload", "--loaded"]).is_err());
        // The running systemd is the host's: no other root.
        assert!(args(&["--root", "/r", "check", "--loaded"]).is_err());
    }
}
