//! The roots of a confined unit's closure:
//! store paths in its Exec lines, in the whole unit with
//! `X-ConfinementFullUnit=yes`, in `X-ConfinementPackages=`, and the resolved
//! `/bin/sh`.

use crate::annotation::{self, BinSh, Request};
use crate::diag::{Diagnostic, Location};
use crate::rootfs::{ResolveError, Root};
use crate::store::path::{Found, StoreDir};
use crate::unit::exec::split_exec_value;
use crate::unit::{MergedUnit, Setting};
use camino::{Utf8Path, Utf8PathBuf};

/// The keys whose commands run inside the confinement. `ExecCondition=` is
/// newer than the NixOS module but runs in the same namespace.
pub const EXEC_KEYS: &[&str] = &[
    "ExecStart",
    "ExecStartPre",
    "ExecStartPost",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
    "ExecCondition",
];

/// Keys that hold one value, where only the last assignment counts for
/// `X-ConfinementFullUnit=yes`; every other key is treated as a list (when in
/// doubt, include).
const SCALAR_KEYS: &[&str] = &[
    "Description",
    "Type",
    "User",
    "Group",
    "WorkingDirectory",
    "RootDirectory",
    "RootImage",
    "PIDFile",
    "BusName",
    "StandardInput",
    "StandardOutput",
    "StandardError",
    "TTYPath",
    "SyslogIdentifier",
    "UMask",
    "Restart",
    "KillMode",
    "NotifyAccess",
];

/// Where `systemd` looks for a command given without a path.
const EXEC_SEARCH_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// What named a root: the key, where it was set and the text that named it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub key: String,
    pub location: Option<Location>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPath {
    pub store_path: String,
    pub origin: Origin,
}

/// A file bound at a path outside the store, so that a command line naming
/// the outside path still works inside the confinement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExtraBind {
    /// The resolved file, inside the store.
    pub source: Utf8PathBuf,
    /// Where the unit names it.
    pub target: Utf8PathBuf,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roots {
    pub paths: Vec<RootPath>,
    /// The file to bind at `/bin/sh`.
    pub bin_sh: Option<Utf8PathBuf>,
    pub extra_binds: Vec<ExtraBind>,
    /// What `X-ConfinementHostPaths=` shows (its store paths are in `paths`).
    pub host: crate::host::HostPlan,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

struct Collector<'a> {
    root: &'a Root,
    store: &'a StoreDir,
    unit: &'a str,
    roots: Roots,
}

impl Collector<'_> {
    fn add(
        &mut self,
        store_path: &str,
        setting_key: &str,
        location: Option<&Location>,
        text: &str,
    ) {
        self.roots.paths.push(RootPath {
            store_path: store_path.to_owned(),
            origin: Origin {
                key: setting_key.to_owned(),
                location: location.cloned(),
                text: text.to_owned(),
            },
        });
    }

    fn error(&mut self, location: Option<&Location>, message: String) {
        self.roots.errors.push(Diagnostic::error(
            Some(self.unit),
            location.cloned(),
            message,
        ));
    }

    fn warning(&mut self, location: Option<&Location>, message: String) {
        self.roots.warnings.push(Diagnostic::warning(
            Some(self.unit),
            location.cloned(),
            message,
        ));
    }

    /// Adds every store path in `text`; a store path completed by a
    /// specifier is an error, since it cannot be known before the unit (or
    /// instance) is loaded.
    fn scan(&mut self, setting: &Setting, text: &str) {
        for found in self.store.scan(text, true) {
            match found {
                Found::Path(path) => self.add(path, &setting.key, Some(&setting.location), text),
                Found::Unknowable(fragment) => self.error(
                    Some(&setting.location),
                    format!(
                        "{}: store path {fragment:?} is completed by a specifier, so its closure \
                         cannot be known before the unit is loaded; name the store path in full",
                        setting.key
                    ),
                ),
            }
        }
    }

    fn exec(&mut self, setting: &Setting) {
        let commands = match split_exec_value(&setting.value) {
            Ok(commands) => commands,
            Err(error) => {
                // systemd refuses the unit or drops the command; either way we
                // cannot know the closure it needs, so the unit is blocked.
                self.error(
                    Some(&setting.location),
                    format!("{}: invalid command line: {error}", setting.key),
                );
                return;
            }
        };
        for command in commands {
            self.scan(setting, &command.program);
            for arg in &command.args {
                self.scan(setting, arg);
            }
            match self.store.store_path_of(&command.program) {
                Some(store_path) => {
                    let skipped = command.prefixes.contains('-');
                    self.store_program(setting, &command.program, store_path, skipped);
                }
                None => self.exec_program(setting, &command.program),
            }
        }
    }

    /// An Exec program in the store that is not an executable file there
    /// (a slip below a valid store path: `…-busybox/bin/busybox/bin/busybox`)
    /// cannot be run: systemd fails the command with status 203/EXEC, or,
    /// with the `-` prefix (`skipped`), skips it. The unit is still
    /// confined, so this is a warning, not a block. Only the programs' own
    /// paths are looked at (resolved inside the root, each directory on the
    /// way once a run), and only when their store path is on disk: a store
    /// that is not mounted yet blocks the unit through the database instead.
    fn store_program(&mut self, setting: &Setting, program: &str, store_path: &str, skipped: bool) {
        use std::os::unix::fs::PermissionsExt;
        if program.contains('%') || program.contains('$') {
            // Completed when the unit is loaded or the command runs.
            return;
        }
        // Most programs are an executable file named directly: one lstat
        // says so. (The kernel follows links on the way to it as the host
        // sees them; one that left the store there would be missed.) Links
        // to the program and everything else are resolved inside the root.
        if std::fs::symlink_metadata(self.root.join(Utf8Path::new(program)))
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        {
            return;
        }
        // (Resolved as the program's first components will be: the root
        // remembers each path it looked at, so this costs nothing more.)
        if self.root.canonicalize(Utf8Path::new(store_path)).is_err() {
            return;
        }
        let problem = match self.root.canonicalize(Utf8Path::new(program)) {
            Err(ResolveError::NotFound(missing)) if missing == program => {
                "does not exist".to_owned()
            }
            Err(error) => format!("does not exist ({error})"),
            Ok(resolved) if self.store.store_path_of(resolved.as_str()).is_none() => format!(
                "resolves to {resolved}, which is outside the Nix store and so not inside the \
                 confinement"
            ),
            Ok(resolved) => {
                let shown = if resolved == program {
                    String::new()
                } else {
                    format!(" (resolved to {resolved})")
                };
                match std::fs::metadata(self.root.join(&resolved)) {
                    Err(error) => format!("cannot be examined{shown}: {error}"),
                    Ok(meta) if meta.is_dir() => format!("is a directory{shown}, not a program"),
                    Ok(meta) if !meta.is_file() => format!("is not a regular file{shown}"),
                    Ok(meta) if meta.permissions().mode() & 0o111 == 0 => format!(
                        "is not executable{shown} (mode {:o})",
                        meta.permissions().mode() & 0o7777
                    ),
                    Ok(_) => return,
                }
            }
        };
        let consequence = if skipped {
            "systemd cannot run it and skips the command (its \"-\" prefix)"
        } else {
            "systemd cannot run it, the command fails with status 203/EXEC"
        };
        self.warning(
            Some(&setting.location),
            format!(
                "{}: program {program} {problem}: {consequence} (the unit is confined all the same)",
                setting.key
            ),
        );
    }

    /// An Exec program outside the store: if it resolves into the store,
    /// that store path joins the roots and the program is bound at the path
    /// the unit names; otherwise it will not exist inside the confinement.
    fn exec_program(&mut self, setting: &Setting, program: &str) {
        if program.contains('%') || program.contains('$') {
            return;
        }
        let candidates: Vec<Utf8PathBuf> = if program.starts_with('/') {
            vec![Utf8PathBuf::from(program)]
        } else if program.contains('/') || program.is_empty() {
            Vec::new()
        } else {
            EXEC_SEARCH_PATH
                .iter()
                .map(|dir| Utf8Path::new(dir).join(program))
                .collect()
        };
        for candidate in &candidates {
            let Ok(resolved) = self.root.canonicalize(candidate) else {
                continue;
            };
            if let Some(store_path) = self.store.store_path_of(resolved.as_str()) {
                let store_path = store_path.to_owned();
                self.add(&store_path, &setting.key, Some(&setting.location), program);
                self.roots.extra_binds.push(ExtraBind {
                    source: resolved,
                    target: candidate.clone(),
                });
                return;
            }
            self.warning(
                Some(&setting.location),
                format!(
                    "{}: {candidate} resolves to {resolved}, outside the Nix store: it will not exist inside the confinement",
                    setting.key
                ),
            );
            return;
        }
        self.warning(
            Some(&setting.location),
            format!(
                "{}: program {program} is not in the Nix store and was not found: it will not exist inside the confinement",
                setting.key
            ),
        );
    }

    fn package(&mut self, path: &Utf8Path, location: Option<&Location>) {
        // A store path (or a path below one) counts as it is; anything else
        // must resolve into the store.
        let resolved = match self.store.store_path_of(path.as_str()) {
            Some(_) => Ok(path.to_owned()),
            None => self.root.canonicalize(path),
        };
        match resolved {
            Ok(resolved) => match self.store.store_path_of(resolved.as_str()) {
                Some(store_path) => {
                    let store_path = store_path.to_owned();
                    self.add(
                        &store_path,
                        annotation::KEY_PACKAGES,
                        location,
                        path.as_str(),
                    );
                }
                None => self.error(
                    location,
                    format!(
                        "{}: {path} resolves to {resolved}, which is not in the Nix store {}",
                        annotation::KEY_PACKAGES,
                        self.store.as_str()
                    ),
                ),
            },
            Err(error) => self.error(
                location,
                format!(
                    "{}: {path} does not resolve into the Nix store: {error}",
                    annotation::KEY_PACKAGES
                ),
            ),
        }
    }

    fn bin_sh(&mut self, bin_sh: &BinSh, default: Option<&Utf8Path>) {
        let (program, location) = match bin_sh {
            BinSh::Disabled(_) => return,
            BinSh::Program(program, location) => (program.as_path(), Some(location)),
            BinSh::Default => match default {
                Some(program) => (program, None),
                None => return,
            },
        };
        let resolved = self.root.canonicalize(program);
        let store_path: Option<String> = resolved
            .as_ref()
            .ok()
            .and_then(|r| self.store.store_path_of(r.as_str()).map(str::to_owned));
        match (resolved, store_path) {
            (Ok(resolved), Some(store_path)) => {
                self.add(
                    &store_path,
                    annotation::KEY_BIN_SH,
                    location,
                    program.as_str(),
                );
                self.roots.bin_sh = Some(resolved);
            }
            // Only the default may quietly be absent (the host's /bin/sh on a
            // distribution that is not NixOS).
            _ if location.is_none() => {}
            (Ok(resolved), None) => self.error(
                location,
                format!(
                    "{}: {program} resolves to {resolved}, which is not in the Nix store {}",
                    annotation::KEY_BIN_SH,
                    self.store.as_str()
                ),
            ),
            (Err(error), _) => self.error(
                location,
                format!(
                    "{}: {program} does not resolve into the Nix store: {error}",
                    annotation::KEY_BIN_SH
                ),
            ),
        }
    }
}

impl Collector<'_> {
    /// The host paths: what they show, and the store paths they reach.
    fn host_paths(&mut self, request: &Request) {
        let mut host =
            crate::host::plan_host_paths(self.root, self.store, self.unit, &request.host_paths);
        for root in std::mem::take(&mut host.roots) {
            self.add(
                &root.store_path,
                annotation::KEY_HOST_PATHS,
                root.location.as_ref(),
                &root.text,
            );
        }
        self.roots.errors.append(&mut host.errors);
        self.roots.warnings.append(&mut host.warnings);
        self.roots.host = host;
    }
}

/// Collects the roots of `unit`'s confinement in the store `store`;
/// `default_bin_sh` is the `/bin/sh` of units that do not choose theirs.
pub fn collect_roots(
    root: &Root,
    store: &StoreDir,
    default_bin_sh: Option<&Utf8Path>,
    unit: &MergedUnit,
    request: &Request,
) -> Roots {
    let mut collector = Collector {
        root,
        store,
        unit: &unit.name,
        roots: Roots::default(),
    };
    for key in EXEC_KEYS {
        for setting in unit.list("Service", key) {
            collector.exec(setting);
        }
    }
    if request.full_unit.value {
        for setting in full_unit_values(unit) {
            collector.scan(setting, &setting.value);
        }
    }
    for package in &request.packages {
        collector.package(&package.value, package.location.as_ref());
    }
    collector.bin_sh(&request.bin_sh, default_bin_sh);
    collector.host_paths(request);
    collector.roots
}

/// The effective assignments of every key of the unit (for
/// `X-ConfinementFullUnit=yes`), except the annotations, which are read
/// on their own.
fn full_unit_values(unit: &MergedUnit) -> Vec<&Setting> {
    let mut keys: Vec<(&str, &str)> = unit
        .settings
        .iter()
        .filter(|s| !s.key.starts_with("X-Confinement"))
        .map(|s| (s.section.as_str(), s.key.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut values = Vec::new();
    for (section, key) in keys {
        if SCALAR_KEYS.contains(&key) {
            values.extend(unit.scalar(section, key));
        } else {
            values.extend(unit.list(section, key));
        }
    }
    values
}
