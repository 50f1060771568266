//! Generator mode, as systemd runs it (see nix-confinement-generator(8)).

use crate::closure::Closures;
use crate::config::Config;
use crate::confine::{Confiner, Outcome, pending_text};
use crate::diag::counted;
use crate::dropin::{self, PENDING_DROPIN};
use crate::logging::Logger;
use crate::output::{DropinWriter, OutputDir, ToBlock, WriteReport};
use crate::plan::{self, Plan, UnitPlan};
use crate::rootfs::Root;
use crate::view::record::{RecordError, Views};
use camino::Utf8Path;
use std::collections::HashMap;

/// Where a unit stands after a run, as the summary counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Its final drop-in confines it.
    Confined,
    /// A drop-in makes its every start fail.
    Blocked,
    /// No drop-in of ours applies to it: it starts unconfined.
    Unconfined,
    /// An instance opting out of its template's confinement.
    OptedOut,
}

impl State {
    /// Where `outcome` leaves the unit.
    fn of(outcome: &Outcome) -> State {
        match outcome {
            Outcome::Confined { .. } => State::Confined,
            Outcome::Blocked { .. } => State::Blocked,
            Outcome::Empty => State::OptedOut,
        }
    }

    /// What a unit whose final drop-in could not be written is left with:
    /// its blocking drop-in, when that one was written.
    fn after_failed_write(self, blocking_written: bool) -> State {
        match self {
            State::Confined | State::Blocked if !blocking_written => State::Unconfined,
            State::Confined => State::Blocked,
            other => other,
        }
    }
}

/// Runs the generator: the configuration and the unit files are read into
/// a plan for every annotated service, every one of them is blocked, then
/// each gets its drop-in as its closure is computed; the closure cache and
/// the views' records are left for the next run. Returns the exit status:
/// 0 when every annotated unit was confined. What the run read is left for
/// the kernel to free when the process exits right after (see
/// [`crate::at_exit`]). Public for the generator fuzz target.
pub fn run_generator(
    root: &Root,
    normal: &Utf8Path,
    env_unit_path: Option<&str>,
    logger: &Logger,
) -> i32 {
    let output = match OutputDir::open(normal) {
        Ok(output) => output,
        Err(error) => {
            logger.error(error);
            return 1;
        }
    };
    let started = std::time::Instant::now();
    let (config, config_errors) = crate::config::load(root);
    let closures = Closures::start(root, &config, true);
    let mut plan = plan::plan(root, (config, config_errors), env_unit_path, &closures);
    let planned = started.elapsed();
    logger.diagnostics(&plan.warnings);
    let Plan {
        config,
        units,
        catalog,
        ..
    } = &mut plan;
    let annotated = units.iter().any(|u| u.request.is_some());
    let mut write_failed = annotated && !write_store_view_unit(&output, config, logger);
    let mut writer = block_all(&output, units);
    let views = if annotated {
        views_for_run(root, config, &output, logger, &mut write_failed)
    } else {
        Views::Off("no unit is annotated".to_owned())
    };
    if annotated {
        write_host_skeletons(&output, units, logger, &mut write_failed);
    }
    let mut confiner = Confiner::new(config, closures, views);
    confiner.closures.resolve(units);
    let resolved = started.elapsed();
    let mut waiting = Vec::new();
    let mut states: Vec<State> = units
        .iter_mut()
        .enumerate()
        .map(|(number, unit)| {
            confine_and_write(
                &mut confiner,
                &mut writer,
                number,
                unit,
                logger,
                &mut waiting,
            )
        })
        .collect();
    write_after_records(
        &mut confiner,
        &mut writer,
        units,
        waiting,
        &mut states,
        logger,
    );
    let report = writer.finish();
    // The check service and its watch come after the drop-ins, and last:
    // `check --loaded` takes the service file for the mark of a finished run.
    let check_units = crate::watch::CheckUnits {
        program: own_program(),
        store_dir: config.store_dir.as_str().to_owned(),
        state_dir: config.state_dir.as_str().to_owned(),
        watched: crate::watch::watched_dirs(catalog),
        at_boot: !units.is_empty(),
    };
    write_failed |= !settle_writes(&output, &check_units, report, &mut states, logger);
    leave_for_next_run(&mut confiner, logger);
    logger.debug(|| {
        format!(
            "timing: units planned at {:.1} ms, closures resolved at {:.1} ms, \
             drop-ins written at {:.1} ms",
            planned.as_secs_f64() * 1e3,
            resolved.as_secs_f64() * 1e3,
            started.elapsed().as_secs_f64() * 1e3
        )
    });
    let status = summarise(&states, write_failed, logger);
    crate::at_exit::done_with(confiner);
    crate::at_exit::done_with(plan);
    crate::at_exit::done_with(output);
    status
}

/// Blocks every unit that a drop-in can be written for (see
/// [`DropinWriter`]).
fn block_all<'o>(output: &'o OutputDir, units: &[UnitPlan]) -> DropinWriter<'o> {
    DropinWriter::block(
        output,
        PENDING_DROPIN,
        &pending_text(),
        units
            .iter()
            .enumerate()
            .filter(|(_, u)| u.dropin_fits())
            .map(|(number, unit)| ToBlock {
                number,
                unit: &unit.name,
                file_name: &unit.dropin_name,
            }),
    )
}

/// Writes the check service and its watch (written on every run: a unit
/// annotated after this run would otherwise start unconfined), marks the
/// units whose final drop-in could not be written, and logs what failed.
/// Returns whether every write succeeded.
fn settle_writes(
    output: &OutputDir,
    check_units: &crate::watch::CheckUnits,
    mut report: WriteReport,
    states: &mut [State],
    logger: &Logger,
) -> bool {
    if let Err(error) = crate::watch::write_check_units(output, check_units) {
        report.errors.push(error);
    }
    for &number in &report.not_finished {
        states[number] = states[number].after_failed_write(!report.not_blocked.contains(&number));
    }
    for error in &report.errors {
        logger.error(error);
    }
    report.errors.is_empty()
}

/// Removes the views' records no unit names any more and saves the
/// closure cache and the summaries of the closures, for the next run.
fn leave_for_next_run(confiner: &mut Confiner<'_>, logger: &Logger) {
    if let Views::Record(records) = &confiner.views {
        let removed = records.remove_unused();
        logger.debug(|| {
            format!(
                "closure views: {} recorded in {}, {removed} no unit needs any more removed",
                records.used(),
                records.path()
            )
        });
    }
    if let Err(error) = confiner.closures.save_cache() {
        logger.warning(error);
    }
    confiner.closures.save_summaries();
    log_database(&confiner.closures, logger);
}

/// A unit's final drop-in, waiting for the record of its view to be
/// written.
struct Waiting {
    number: usize,
    view: String,
    text: String,
}

/// Computes and writes the drop-in of the unit numbered `number`; one that
/// names a view whose record is still being written goes to `waiting`.
fn confine_and_write(
    confiner: &mut Confiner<'_>,
    writer: &mut DropinWriter<'_>,
    number: usize,
    unit: &mut UnitPlan,
    logger: &Logger,
    waiting: &mut Vec<Waiting>,
) -> State {
    if !unit.dropin_fits() {
        // Nothing can be written for it: its error (its warning, for an
        // instance opting out) says so.
        logger.diagnostics(unit.warnings.iter().chain(&unit.errors));
        return if unit.request.is_some() {
            State::Unconfined
        } else {
            State::OptedOut
        };
    }
    let outcome = confiner.confine(unit, false);
    logger.diagnostics(&unit.warnings);
    if let Outcome::Blocked { .. } = outcome {
        logger.diagnostics(&unit.errors);
    }
    let state = State::of(&outcome);
    match outcome {
        Outcome::Confined {
            view: Some(view),
            text,
            ..
        } if confiner.views.is_being_written(&view) => waiting.push(Waiting { number, view, text }),
        outcome => writer.finish_unit(number, &unit.name, &unit.dropin_name, outcome.text()),
    }
    state
}

/// Writes the drop-ins that waited for their views' records, once those
/// are written: a unit whose record could not be written binds each store
/// path instead, with a warning (its blocking drop-in is in place until
/// then).
fn write_after_records(
    confiner: &mut Confiner<'_>,
    writer: &mut DropinWriter<'_>,
    units: &mut [UnitPlan],
    waiting: Vec<Waiting>,
    states: &mut [State],
    logger: &Logger,
) {
    let failed: HashMap<String, RecordError> =
        confiner.views.wait_for_records().into_iter().collect();
    for Waiting { number, view, text } in waiting {
        let unit = &mut units[number];
        match failed.get(&view) {
            None => writer.finish_unit(number, &unit.name, &unit.dropin_name, &text),
            Some(error) => {
                let outcome = confiner.confine_path_by_path(unit, error);
                logger.diagnostics(unit.warnings.last());
                if let Outcome::Blocked { .. } = outcome {
                    logger.diagnostics(&unit.errors);
                }
                states[number] = State::of(&outcome);
                writer.finish_unit(number, &unit.name, &unit.dropin_name, outcome.text());
            }
        }
    }
}

/// The mount unit of the read-only store view, which units that bind each
/// store path bind from; whether it was written.
fn write_store_view_unit(output: &OutputDir, config: &Config, logger: &Logger) -> bool {
    let text = dropin::render_store_view_mount(config.store_dir.as_str());
    match output.write_unit(dropin::STORE_VIEW_UNIT, &text) {
        Ok(()) => true,
        Err(error) => {
            logger.error(error);
            false
        }
    }
}

/// The records of the units' host links and the template of the units
/// that mount them (see [`crate::host::skeleton`]), when a unit has links.
/// A record that cannot be written leaves its unit unable to start: the
/// run fails.
fn write_host_skeletons(
    output: &OutputDir,
    units: &[UnitPlan],
    logger: &Logger,
    write_failed: &mut bool,
) {
    use crate::host::skeleton;
    let records: std::collections::BTreeMap<String, &skeleton::Record> = units
        .iter()
        .filter(|u| u.request.is_some() && !u.is_blocked())
        .filter_map(|u| u.roots.host.skeleton.as_ref())
        .map(|r| (r.file_name(), r))
        .collect();
    if records.is_empty() {
        return;
    }
    let template = skeleton::render_template(&own_program(), output.path().as_str());
    let written = std::iter::once(output.write_unit(skeleton::TEMPLATE, &template)).chain(
        records
            .iter()
            .map(|(name, record)| output.write_unit(name, &record.encode())),
    );
    for result in written {
        if let Err(error) = result {
            logger.error(error);
            *write_failed = true;
        }
    }
}

/// Closure views for this run, with the unit that mounts them written
/// into the output directory; else why not, logged.
fn views_for_run(
    root: &Root,
    config: &Config,
    output: &OutputDir,
    logger: &Logger,
    write_failed: &mut bool,
) -> Views {
    let off = |reason: String| {
        let message =
            format!("closure views not used ({reason}): each store path is bound on its own");
        // Views turned off by the configuration are no news.
        if config.views.is_some() {
            logger.notice(message);
        } else {
            logger.debug(|| message);
        }
        Views::Off(reason)
    };
    let program = own_program();
    match Views::for_run(root, config.views.as_deref()) {
        Views::Off(reason) => off(reason),
        Views::Record(records) => {
            let text = dropin::render_view_template(
                &program,
                config.store_dir.as_str(),
                records.path().as_str(),
            );
            match output.write_unit(dropin::VIEW_TEMPLATE, &text) {
                Ok(()) => Views::Record(records),
                Err(error) => {
                    logger.error(&error);
                    *write_failed = true;
                    off(error.to_string())
                }
            }
        }
        preview @ Views::Preview => preview,
    }
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

/// What happened to the database and the closure cache, for the debug
/// log; a database read without the transactions still in its `-wal` file
/// is a warning.
fn log_database(closures: &Closures, logger: &Logger) {
    // Not opened: no unit needed it.
    let Some(opened) = closures.opened() else {
        return;
    };
    if let Ok(nix_db) = &opened.db {
        let (paths, references) = nix_db.statistics();
        logger.debug(|| {
            format!(
                "{}: {} and {} known, the references of {} read from the database",
                nix_db.path,
                counted(paths, "store path", "store paths"),
                counted(references, "reference", "references"),
                nix_db.read_from_database
            )
        });
        if nix_db.mode == crate::store::db::OpenMode::ImmutableIgnoringWal {
            logger.warning(format!(
                "{}: a -wal file exists but could not be read through; paths registered since the last checkpoint are not seen",
                nix_db.path
            ));
        }
    }
    for note in &opened.notes {
        logger.debug(|| format!("closure cache {note}"));
    }
}

/// Logs the summary line; returns the exit status.
fn summarise(states: &[State], write_failed: bool, logger: &Logger) -> i32 {
    let count = |state: State| states.iter().filter(|&&s| s == state).count();
    let (confined, blocked) = (count(State::Confined), count(State::Blocked));
    let unconfined = count(State::Unconfined);
    let mut summary = format!(
        "{} confined, {blocked} blocked",
        counted(confined, "unit", "units")
    );
    if unconfined > 0 {
        summary.push_str(&format!(
            ", {unconfined} NOT confined (no drop-in of ours could be written)"
        ));
        logger.error(summary);
    } else if blocked > 0 {
        logger.warning(summary);
    } else {
        logger.notice(summary);
    }
    i32::from(blocked > 0 || unconfined > 0 || write_failed)
}
