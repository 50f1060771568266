//! Asking the running systemd what it loaded: `systemctl show` and
//! `systemctl list-units` (their output parsed here, no D-Bus library), and
//! `/proc` for where a unit's processes run.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The properties asked for, in `systemctl show -p` form.
pub const SHOW_PROPERTIES: &str =
    "Id,LoadState,ActiveState,SubState,DropInPaths,RootDirectory,ControlGroup,MainPID,ControlPID";

/// What systemd has loaded for a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedUnit {
    pub id: String,
    /// `loaded`, `not-found`, `masked`, `bad-setting`, `error`.
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    /// Every drop-in systemd applied, in the order it applied them.
    pub dropin_paths: Vec<String>,
    pub root_directory: String,
    pub control_group: String,
    pub main_pid: u32,
    pub control_pid: u32,
}

/// Parses `systemctl show -p …` of several units: one block of `Key=value`
/// lines per unit, blocks separated by an empty line.
pub fn parse_show(text: &str) -> Vec<LoadedUnit> {
    let mut units = Vec::new();
    let mut current: HashMap<&str, &str> = HashMap::new();
    let mut finish = |current: &mut HashMap<&str, &str>| {
        if current.is_empty() {
            return;
        }
        let get = |key: &str| current.get(key).copied().unwrap_or_default();
        units.push(LoadedUnit {
            id: get("Id").to_owned(),
            load_state: get("LoadState").to_owned(),
            active_state: get("ActiveState").to_owned(),
            sub_state: get("SubState").to_owned(),
            dropin_paths: get("DropInPaths")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            root_directory: get("RootDirectory").to_owned(),
            control_group: get("ControlGroup").to_owned(),
            main_pid: get("MainPID").parse().unwrap_or(0),
            control_pid: get("ControlPID").parse().unwrap_or(0),
        });
        current.clear();
    };
    for line in text.lines() {
        if line.is_empty() {
            finish(&mut current);
        } else if let Some((key, value)) = line.split_once('=') {
            current.insert(key, value);
        }
    }
    finish(&mut current);
    units
}

/// The first column of `systemctl list-units --plain --no-legend`: the
/// names of the loaded units.
pub fn parse_list_units(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            // A failed unit is marked with a bullet before its name, even
            // with --plain on some versions.
            words
                .find(|word| *word != "●" && *word != "*")
                .map(str::to_owned)
        })
        .collect()
}

/// Why the running systemd could not be asked.
#[derive(Debug)]
pub enum SystemctlError {
    /// No `/run/systemd/system`: systemd does not run this system.
    NotRunning,
    /// No `systemctl` in `$PATH` or the usual places.
    NotFound,
    /// `systemctl` could not be run.
    Spawn {
        program: PathBuf,
        error: std::io::Error,
    },
    /// `systemctl <command>` failed: its exit status and standard error.
    Failed {
        program: PathBuf,
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    /// `systemctl` answered with bytes that are not UTF-8.
    NotUtf8 { program: PathBuf },
}

impl std::fmt::Display for SystemctlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SystemctlError::NotRunning => write!(
                f,
                "systemd is not running on this system (no /run/systemd/system)"
            ),
            SystemctlError::NotFound => write!(f, "systemctl was not found in $PATH"),
            SystemctlError::Spawn { program, error } => {
                write!(f, "running {}: {error}", program.display())
            }
            SystemctlError::Failed {
                program,
                command,
                status,
                stderr,
            } => write!(
                f,
                "{} {command} failed ({status}): {stderr}",
                program.display()
            ),
            SystemctlError::NotUtf8 { program } => {
                write!(f, "{}: output is not UTF-8", program.display())
            }
        }
    }
}

impl std::error::Error for SystemctlError {}

/// `systemctl`, to ask the running system manager.
pub struct Systemctl {
    program: PathBuf,
}

impl Systemctl {
    /// `systemctl` from `$PATH` (or the usual places), when systemd runs
    /// this system (`/run/systemd/system` exists).
    pub fn find() -> Result<Systemctl, SystemctlError> {
        if !Path::new("/run/systemd/system").is_dir() {
            return Err(SystemctlError::NotRunning);
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let candidates = std::env::split_paths(&path)
            .map(|dir| dir.join("systemctl"))
            .chain(
                ["/usr/bin", "/bin", "/run/current-system/sw/bin"]
                    .iter()
                    .map(|dir| Path::new(dir).join("systemctl")),
            );
        for program in candidates {
            if program.is_file() {
                return Ok(Systemctl { program });
            }
        }
        Err(SystemctlError::NotFound)
    }

    fn run(&self, args: &[&str]) -> Result<String, SystemctlError> {
        let program = || self.program.clone();
        let output = Command::new(&self.program)
            .args(args)
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .output()
            .map_err(|error| SystemctlError::Spawn {
                program: program(),
                error,
            })?;
        if !output.status.success() {
            return Err(SystemctlError::Failed {
                program: program(),
                command: args.first().copied().unwrap_or_default().to_owned(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        String::from_utf8(output.stdout).map_err(|_| SystemctlError::NotUtf8 { program: program() })
    }

    /// What systemd loaded for each of `names`. Asking loads a unit that is
    /// not loaded yet, as starting it would (and as `systemctl status`
    /// does): it is then known as a start would find it.
    pub fn show(&self, names: &[String]) -> Result<Vec<LoadedUnit>, SystemctlError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["show", "--property", SHOW_PROPERTIES, "--"];
        args.extend(names.iter().map(String::as_str));
        Ok(parse_show(&self.run(&args)?))
    }

    /// The names of the loaded service units.
    pub fn loaded_services(&self) -> Result<Vec<String>, SystemctlError> {
        let text = self.run(&[
            "list-units",
            "--all",
            "--plain",
            "--no-legend",
            "--full",
            "--type=service",
        ])?;
        Ok(parse_list_units(&text))
    }

    /// Returns once the manager answers: at once, or when a reload under
    /// way is over (it answers nothing meanwhile).
    pub fn wait_for_manager(&self) {
        let _ = self.run(&["show", "--property=Version"]);
    }

    pub fn daemon_reload(&self) -> Result<(), SystemctlError> {
        self.run(&["daemon-reload"]).map(|_| ())
    }

    /// The units with a start job waiting.
    pub fn queued_starts(&self) -> Result<Vec<String>, SystemctlError> {
        let text = self.run(&["list-jobs", "--plain", "--no-legend", "--full"])?;
        Ok(parse_list_jobs(&text, "start"))
    }

    /// Starts `units` without waiting: a start job already queued for one
    /// is merged with the new one, which pulls in what the unit needs now.
    pub fn start_no_block(&self, units: &[String]) -> Result<(), SystemctlError> {
        if units.is_empty() {
            return Ok(());
        }
        let mut args = vec!["start", "--no-block", "--"];
        args.extend(units.iter().map(String::as_str));
        self.run(&args).map(|_| ())
    }
}

/// The units of `systemctl list-jobs --plain --no-legend` lines (`JOB
/// UNIT TYPE STATE`) whose job is of `kind`.
pub fn parse_list_jobs(text: &str, kind: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_job, unit, job_type) = (fields.next()?, fields.next()?, fields.next()?);
            (job_type == kind).then(|| unit.to_owned())
        })
        .collect()
}

/// Every process and its cgroup, from `/proc/*/cgroup`: the unified
/// hierarchy's line, or the systemd hierarchy's where cgroups v1 are
/// mounted.
pub fn process_cgroups() -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(|pid: u32| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
            text.lines().find_map(|line| {
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                (controllers.is_empty() || controllers == "name=systemd")
                    .then(|| (pid, path.to_owned()))
            })
        })
        .collect()
}

/// The processes in `control_group` (a unit's `ControlGroup=`) or below it.
pub fn processes_in(cgroups: &[(u32, String)], control_group: &str) -> Vec<u32> {
    if control_group.is_empty() {
        return Vec::new();
    }
    let below = format!("{control_group}/");
    let mut pids: Vec<u32> = cgroups
        .iter()
        .filter(|(_, path)| path == control_group || path.starts_with(&below))
        .map(|(pid, _)| *pid)
        .collect();
    pids.sort_unstable();
    pids
}

/// A directory's identity: device and inode.
pub type DirId = (u64, u64);

/// The identity of `path` (followed through links), if it exists.
pub fn dir_id(path: &Path) -> std::io::Result<DirId> {
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

/// The identity of the root directory of process `pid` (`/proc/PID/root`,
/// which names a confined process's root as `/`, but leads to the
/// directory itself). Reading another user's needs root.
pub fn process_root(pid: u32) -> std::io::Result<DirId> {
    dir_id(Path::new(&format!("/proc/{pid}/root")))
}

/// The name of process `pid`, for messages.
pub fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|name| name.trim_end().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_blocks_are_parsed_by_key() {
        // As systemctl 252 prints it: properties in its own order, empty
        // values included, a blank line between units.
        let text = "RootDirectory=\nMainPID=0\nControlPID=0\nId=fresh.service\nLoadState=loaded\n\
                    ActiveState=inactive\nSubState=dead\nDropInPaths=\nControlGroup=\n\n\
                    RootDirectory=/run/confinement/a.service\nMainPID=85\nControlPID=0\n\
                    Id=a.service\nLoadState=loaded\nActiveState=active\nSubState=running\n\
                    DropInPaths=/etc/systemd/system/a.service.d/override.conf /run/systemd/generator/a.service.d/zz-confinement.conf\n\
                    ControlGroup=/system.slice/a.service\n";
        let units = parse_show(text);
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].id, "fresh.service");
        assert!(units[0].dropin_paths.is_empty());
        assert_eq!(units[0].root_directory, "");
        assert_eq!(units[1].main_pid, 85);
        assert_eq!(
            units[1].dropin_paths,
            [
                "/etc/systemd/system/a.service.d/override.conf",
                "/run/systemd/generator/a.service.d/zz-confinement.conf"
            ]
        );
        assert_eq!(units[1].control_group, "/system.slice/a.service");
    }

    #[test]
    fn list_jobs_units_of_a_kind() {
        let text = "123 app.service start waiting\n124 nix-confinement-check.service start running\n125 old.service stop waiting\n";
        assert_eq!(
            parse_list_jobs(text, "start"),
            ["app.service", "nix-confinement-check.service"]
        );
    }

    #[test]
    fn list_units_names() {
        let text = "a.service loaded active running A\n\
                    ● b@x.service loaded failed failed B\n\
                    c@y.service not-found inactive dead c@y.service\n";
        assert_eq!(
            parse_list_units(text),
            ["a.service", "b@x.service", "c@y.service"]
        );
    }

    #[test]
    fn this_process_is_in_its_own_root() {
        let own = process_root(std::process::id()).unwrap();
        assert_eq!(own, dir_id(Path::new("/")).unwrap());
    }
}
