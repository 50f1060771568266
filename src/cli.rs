//! The entry point: argv and the environment in, one of generator mode,
//! `explain` or `check` out (see nix-confinement-generator(8)).

use crate::annotation::{KEY_ENABLE, KNOWN_KEYS};
use crate::closure::Closures;
use crate::config::Config;
use crate::confine::{Confiner, Outcome};
use crate::diag::{Diagnostic, counted};
use crate::generator::run_generator;
use crate::logging::Logger;
use crate::plan::{self, Plan, UnitPlan};
use crate::rootfs::Root;
use crate::unit::Setting;
use crate::view::record::Views;
use camino::Utf8PathBuf;
use std::io::Write;

const USAGE: &str = "\
usage: nix-confinement-generator [--root DIR] NORMAL [EARLY LATE]
       nix-confinement-generator [--root DIR] explain UNIT
       nix-confinement-generator [--root DIR] check
       nix-confinement-generator [--root DIR] view start|stop DIGEST
       nix-confinement-generator [--root DIR] host start DIGEST RECORDS|stop DIGEST
       nix-confinement-generator check --loaded [--reload]

Confines services annotated with X-ConfinementEnable=yes to their Nix store
closure. See nix-confinement-generator(8) and nix-confinement(5).";

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Generate {
        normal: Utf8PathBuf,
    },
    Explain {
        unit: String,
    },
    Check,
    /// Mounts (`start`) or unmounts a closure view: run by the unit that
    /// confined services require, not by hand.
    View {
        start: bool,
        digest: String,
    },
    /// Mounts (`start`, from the records' directory) or unmounts the
    /// links of a unit's host paths: run by the unit that confined
    /// services require, not by hand.
    Host {
        digest: String,
        records: Option<String>,
    },
    CheckLoaded {
        reload: bool,
    },
    Help,
    Version,
}

#[derive(Debug, PartialEq, Eq)]
struct Args {
    root: Utf8PathBuf,
    command: Command,
}

/// What is wrong with the command line (shown with the usage).
#[derive(Debug, PartialEq, Eq)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

impl From<&str> for UsageError {
    fn from(message: &str) -> UsageError {
        UsageError(message.to_owned())
    }
}

fn parse_args(args: &[String]) -> Result<Args, UsageError> {
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
        [c, action, digest] if c == "view" && (action == "start" || action == "stop") => {
            Command::View {
                start: action == "start",
                digest: digest.clone(),
            }
        }
        [c, ..] if c == "view" => return Err("view takes start or stop and a digest".into()),
        [c, action, digest, records] if c == "host" && action == "start" => Command::Host {
            digest: digest.clone(),
            records: Some(records.clone()),
        },
        [c, action, digest] if c == "host" && action == "stop" => Command::Host {
            digest: digest.clone(),
            records: None,
        },
        [c, ..] if c == "host" => {
            return Err("host takes start DIGEST RECORDS or stop DIGEST".into());
        }
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
        _ => {
            return Err(UsageError(format!(
                "unexpected arguments: {}",
                rest.join(" ")
            )));
        }
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
                logger.debug(|| "in the initrd: nothing to do".into());
                return 0;
            }
            run_generator(&root, &normal, env_unit_path.as_deref(), &logger)
        }
        Command::Explain { unit } => {
            let logger = Logger::from_env(false);
            explain(&root, &unit, env_unit_path.as_deref(), &logger)
        }
        Command::Check => check(&root, env_unit_path.as_deref()),
        Command::View { start, digest } => crate::view::run(&root, start, &digest),
        Command::Host { digest, records } => {
            crate::host::skeleton::run(&root, records.is_some(), &digest, records.as_deref())
        }
        Command::CheckLoaded { reload } => {
            crate::check_loaded::run(&root, env_unit_path.as_deref(), reload)
        }
    }
}

/// The plan and what confines its units, as the generator would, without
/// writing anything (for `explain` and `check`).
fn plan_without_writing(root: &Root, env_unit_path: Option<&str>) -> (Plan, Closures) {
    let loaded = crate::config::load(root);
    let closures = Closures::start(root, &loaded.0, false);
    let plan = plan::plan(root, loaded, env_unit_path, &closures);
    (plan, closures)
}

fn previewing<'c>(root: &Root, config: &'c Config, closures: Closures) -> Confiner<'c> {
    Confiner::new(
        config,
        closures,
        Views::preview(root, config.views.as_deref()),
    )
}

fn explain(root: &Root, unit_name: &str, env_unit_path: Option<&str>, logger: &Logger) -> i32 {
    let (mut plan, closures) = plan_without_writing(root, env_unit_path);
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
    let Plan { config, units, .. } = &mut plan;
    let mut confiner = previewing(root, config, closures);
    let unit = &mut units[index];
    let outcome = confiner.confine(unit, true);
    let mut out = std::io::stdout().lock();
    if unit.name != unit_name {
        let _ = writeln!(
            out,
            "# {unit_name} has no files of its own: its template {} confines it.",
            unit.name
        );
    }
    let _ = writeln!(
        out,
        "# {}",
        dropin_place(root, &unit.name, &unit.dropin_name)
    );
    let _ = out.write_all(outcome.text().as_bytes());
    for warning in &unit.warnings {
        let _ = writeln!(out, "# warning: {warning}");
    }
    match &outcome {
        Outcome::Confined { closure, view, .. } => {
            let _ = writeln!(out, "\n# {}", binding_of(view.as_deref(), &confiner.views));
            let _ = writeln!(
                out,
                "\n# Why each path is bound ({}):",
                counted(closure.len(), "path", "paths")
            );
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
            explain_host_paths(&mut out, &unit.roots.host);
            0
        }
        Outcome::Blocked { .. } => 1,
        Outcome::Empty => 0,
    }
}

/// What `X-ConfinementHostPaths=` shows inside, and why, for `explain`.
fn explain_host_paths(out: &mut impl Write, host: &crate::host::HostPlan) {
    if host.shown.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n# Host paths shown inside ({}), as the host is now:",
        counted(host.shown.len(), "path", "paths")
    );
    for shown in &host.shown {
        let _ = writeln!(out, "{}\n    {}; {}", shown.path, shown.what, shown.why);
    }
    if let Some(record) = &host.skeleton {
        let digest = record.digest.to_string();
        let _ = writeln!(
            out,
            "# links: mounted at {} by {}",
            crate::host::skeleton::path(&digest),
            crate::host::skeleton::unit(&digest)
        );
    }
}

/// Where the generator writes the drop-in `file_name` of `unit`, for
/// `explain`: systemd's generator directory on the host; under `--root`, a
/// path in the output directory the run is given.
fn dropin_place(root: &Root, unit: &str, file_name: &str) -> String {
    if root.dir() == "/" {
        format!(
            "{}/{unit}.d/{file_name}",
            crate::check_loaded::GENERATOR_OUTPUT
        )
    } else {
        format!(
            "{unit}.d/{file_name}, in the output directory of `nix-confinement-generator --root {} OUTPUT`",
            root.dir()
        )
    }
}

/// How a confined unit's closure reaches its store, for `check` and
/// `explain`.
fn binding_of(view: Option<&str>, views: &Views) -> String {
    match (view, views) {
        (Some(digest), _) => format!(
            "store: the closure's read-only view {digest}, mounted at {} by {}",
            crate::dropin::view_path(digest),
            crate::dropin::view_unit(digest)
        ),
        (None, Views::Off(reason)) => {
            format!("store: each path bound on its own (closure views not used: {reason})")
        }
        (None, _) => "store: each path bound on its own".to_owned(),
    }
}

/// The annotations of `unit` that take effect, for `check`: those its
/// request was read from (the last assignment of a single-valued key, the
/// packages after the last reset); for an instance that opts out, the
/// `X-ConfinementEnable=` that says so. Assignments overridden or reset,
/// keys with no effect without `X-ConfinementEnable=yes`, and keys misspelt
/// or outside `[Service]` are not settings: the last two are among the
/// unit's problems.
fn effective_settings(unit: &UnitPlan) -> Vec<&Setting> {
    let annotation_in_service =
        |s: &&Setting| s.section == "Service" && KNOWN_KEYS.contains(&s.key.as_str());
    match &unit.request {
        Some(request) => {
            let locations = request.effective_locations();
            unit.merged
                .settings
                .iter()
                .filter(annotation_in_service)
                .filter(|s| locations.contains(&&s.location))
                .collect()
        }
        None => unit
            .merged
            .settings
            .iter()
            .filter(annotation_in_service)
            .rfind(|s| s.key == KEY_ENABLE && !s.value.is_empty())
            .into_iter()
            .collect(),
    }
}

fn check(root: &Root, env_unit_path: Option<&str>) -> i32 {
    let (mut plan, closures) = plan_without_writing(root, env_unit_path);
    let mut out = std::io::stdout().lock();
    let mut problems: Vec<Diagnostic> = plan.warnings.clone();
    let unconfinable = plan.unconfinable.len();
    let (mut blocked, mut unconfined) = (0, 0);
    let Plan { config, units, .. } = &mut plan;
    let mut confiner = previewing(root, config, closures);
    confiner.closures.resolve(units);
    for unit in units.iter_mut() {
        let outcome = confiner.confine(unit, false);
        let status = match &outcome {
            _ if !unit.dropin_fits() && unit.request.is_some() => {
                unconfined += 1;
                "NOT CONFINED: no drop-in can be written for it".to_owned()
            }
            Outcome::Confined { paths, view, .. } => format!(
                "confined, {}; {}",
                counted(*paths, "store path", "store paths"),
                binding_of(view.as_deref(), &confiner.views)
            ),
            Outcome::Blocked { .. } => {
                blocked += 1;
                "BLOCKED".to_owned()
            }
            Outcome::Empty => "opts out of its template's confinement".to_owned(),
        };
        let _ = writeln!(out, "{}: {status} (mode {})", unit.name, unit.mode.as_str());
        for setting in effective_settings(unit) {
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
    let not_confined = if unconfined > 0 {
        format!(", {unconfined} NOT confined")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "{}, {blocked} blocked{not_confined}, {}",
        counted(units.len(), "annotated unit", "annotated units"),
        counted(problems.len(), "problem", "problems")
    );
    i32::from(blocked > 0 || unconfined > 0 || unconfinable > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, UsageError> {
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
    fn explain_names_the_dropin_where_systemd_reads_it() {
        assert_eq!(
            dropin_place(&Root::new("/"), "a@.service", "zz-confinement.conf"),
            "/run/systemd/generator/a@.service.d/zz-confinement.conf"
        );
        assert_eq!(
            dropin_place(&Root::new("/mnt"), "a.service", "x~confinement.conf"),
            "a.service.d/x~confinement.conf, in the output directory of \
             `nix-confinement-generator --root /mnt OUTPUT`"
        );
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
