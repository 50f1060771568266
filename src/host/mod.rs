//! Host paths (`X-ConfinementHostPaths=`): the host files a confined
//! daemon needs (to resolve names, trust certificates, tell the time), shown
//! read-only at the same place and read from the host at every run, while
//! the rest of the host stays hidden. What an administrator sees of it:
//! nix-confinement(5), HOST PATHS.

pub mod skeleton;

use crate::annotation::{HostPath, KEY_HOST_PATHS, Located};
use crate::diag::{Diagnostic, Location};
use crate::host_sets::HostSet;
use crate::rootfs::{Root, components_reversed};
use crate::store::path::StoreDir;
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// The kernel's own limit on symlinks followed while resolving one path.
const MAX_SYMLINKS: usize = 40;

/// Directories whose files their writer replaces by renaming a new file
/// over the old one, and that hold nothing secret: bound whole, so that a
/// running service sees each new file. With the sockets in them hidden (a
/// service is shown files, not the resolver's interfaces).
pub const RENAMED_DIRS: &[(&str, &[&str])] = &[
    (
        "/run/systemd/resolve",
        &["io.systemd.Resolve", "io.systemd.Resolve.Monitor"],
    ),
    ("/run/resolvconf", &[]),
];

/// Where nothing is shown from: the API file systems (the mode decides what
/// a service sees of them) and the roots of other confined services.
const REFUSED_AREAS: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run/confinement",
    "/run/credentials",
    "/run/nix-confinement-views",
    "/run/nix-confinement-host",
    "/run/nix-confinement-store",
    "/run/nix-confinement-generator",
];

/// Secrets, never shown, nor any directory that holds one: password hashes,
/// host keys, private keys, credentials, saved network secrets.
const SECRETS: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/security/opasswd",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssl/private",
    "/etc/pki/tls/private",
    "/etc/krb5.keytab",
    "/etc/credstore",
    "/etc/credstore.encrypted",
    "/etc/NetworkManager/system-connections",
    "/etc/wpa_supplicant",
    "/root",
    "/var/lib/systemd/credential.secret",
];

/// Why `path` (logical, normal) may not be shown inside, if it may not:
/// in or above a refused area or a secret (a directory bound whole would
/// show what it holds), in the store (`X-ConfinementPackages=` names store
/// paths), or an SSH key (`/etc/ssh/*key*`).
pub fn refusal(path: &str, store_dir: &str) -> Option<String> {
    if path == "/" {
        return Some("/ would show the whole host".to_owned());
    }
    if is_within(path, store_dir) {
        return Some(format!(
            "{path} is in the Nix store: name store paths in X-ConfinementPackages="
        ));
    }
    if is_within(store_dir, path) {
        return Some(format!("{path} holds the Nix store {store_dir}"));
    }
    for area in REFUSED_AREAS {
        if is_within(path, area) {
            return Some(format!("{path} is in {area}, which is never shown"));
        }
        if is_within(area, path) {
            return Some(format!("{path} holds {area}, which is never shown"));
        }
    }
    for secret in SECRETS {
        if is_within(path, secret) {
            return Some(format!("{path} is a secret ({secret})"));
        }
        if is_within(secret, path) {
            return Some(format!("{path} holds the secret {secret}"));
        }
    }
    if is_within("/etc/ssh", path) {
        return Some(format!("{path} holds the SSH host keys"));
    }
    if let Some(name) = path.strip_prefix("/etc/ssh/")
        && name.contains("key")
    {
        return Some(format!("{path} is an SSH key (/etc/ssh/*key*)"));
    }
    None
}

/// Whether `path` is `dir` or below it (both normal, absolute).
fn is_within(path: &str, dir: &str) -> bool {
    path == dir
        || (path.starts_with(dir) && (dir == "/" || path.as_bytes().get(dir.len()) == Some(&b'/')))
}

/// Why a listed host path is refused once followed on the host: the path
/// where the trouble is, and what it is.
#[derive(Debug)]
pub enum HostPathError {
    /// The walk would enter `area`, which is never shown.
    LeadsTo {
        path: Utf8PathBuf,
        area: &'static str,
    },
    /// A link on the way is itself refused (see [`refusal`]).
    LeadsThrough {
        path: Utf8PathBuf,
        why: String,
    },
    /// Where the chain ends is refused (see [`refusal`]).
    ResolvesTo {
        path: Utf8PathBuf,
        why: String,
    },
    TooManyLinks(Utf8PathBuf),
    TargetNotUtf8(Utf8PathBuf),
    /// A socket, FIFO or device: only files and directories are shown.
    NotFileOrDirectory {
        path: Utf8PathBuf,
        what: &'static str,
    },
    /// Not readable by everyone: a host path is not a secret.
    NotReadable {
        path: Utf8PathBuf,
        mode: u32,
    },
    Io(Utf8PathBuf, std::io::Error),
}

impl std::fmt::Display for HostPathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPathError::LeadsTo { path, area } => {
                write!(f, "it leads to {path}: {area} is never shown")
            }
            HostPathError::LeadsThrough { path, why } => {
                write!(f, "it leads through {path}: {why}")
            }
            HostPathError::ResolvesTo { path, why } => write!(f, "it resolves to {path}: {why}"),
            HostPathError::TooManyLinks(path) => {
                write!(f, "too many levels of symbolic links at {path}")
            }
            HostPathError::TargetNotUtf8(path) => {
                write!(f, "{path} links to a path that is not UTF-8")
            }
            HostPathError::NotFileOrDirectory { path, what } => write!(
                f,
                "{path} is {what}: only files and directories are shown (bind it with BindReadOnlyPaths= if the service needs it)"
            ),
            HostPathError::NotReadable { path, mode } => write!(
                f,
                "{path} is not readable by everyone (mode {mode:04o}): a host path is not a secret; bind it with BindReadOnlyPaths= if the service needs it"
            ),
            HostPathError::Io(path, e) => write!(f, "{path}: {e}"),
        }
    }
}

impl std::error::Error for HostPathError {}

/// A host file or directory bound read-only (`BindReadOnlyPaths=-SOURCE:TARGET`,
/// ignored when the source is missing at the start).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostBind {
    pub source: Utf8PathBuf,
    pub target: Utf8PathBuf,
    pub directory: bool,
}

/// A store path that a host path reaches, and what named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    pub store_path: String,
    pub location: Option<Location>,
    /// The listed path (and its set).
    pub text: String,
}

/// What the host paths of a unit make visible inside, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shown {
    pub path: String,
    pub what: String,
    pub why: String,
}

/// Everything the host paths of one unit add to its confinement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPlan {
    /// Links reproduced in the skeleton: (where, target), sorted.
    pub links: Vec<(Utf8PathBuf, String)>,
    /// The directories bound from the skeleton: the topmost directories of
    /// the links.
    pub skeleton_dirs: Vec<Utf8PathBuf>,
    /// The skeleton's record and digest, when there are links.
    pub skeleton: Option<skeleton::Record>,
    /// Host files and directories bound, sorted by target.
    pub binds: Vec<HostBind>,
    /// Store files bound at a host path (a chain through a link in `/`):
    /// (store file, target).
    pub store_binds: Vec<(Utf8PathBuf, Utf8PathBuf)>,
    /// Made inaccessible inside (sockets in a directory bound whole).
    pub hidden: Vec<Utf8PathBuf>,
    pub roots: Vec<HostRoot>,
    pub shown: Vec<Shown>,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl HostPlan {
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
            && self.binds.is_empty()
            && self.store_binds.is_empty()
            && self.hidden.is_empty()
    }
}

/// How one listed path resolves on the host.
#[derive(Debug, Default)]
struct Walk {
    /// Links met outside the store: (where, target as reproduced).
    links: Vec<(Utf8PathBuf, String)>,
    /// Store paths the chain passes through or ends in.
    store_paths: Vec<String>,
    /// A link in `/` is on the way: it cannot be reproduced.
    through_root_link: bool,
    end: End,
}

#[derive(Debug, Default)]
enum End {
    #[default]
    Nothing,
    /// A file or directory of the host.
    Host { path: Utf8PathBuf, directory: bool },
    /// A path in the store.
    Store(Utf8PathBuf),
    /// The chain breaks: `missing` does not exist; `wanted` is the whole
    /// path it was to lead to.
    Missing {
        missing: Utf8PathBuf,
        wanted: Utf8PathBuf,
    },
}

/// One listed path with what listed it.
struct Listed {
    path: Utf8PathBuf,
    location: Option<Location>,
    set: Option<HostSet>,
}

impl Listed {
    /// The listed path and its set, for messages and roots' origins.
    fn text(&self) -> String {
        match self.set {
            Some(set) => format!("{} ({set})", self.path),
            None => self.path.to_string(),
        }
    }
}

struct Planner<'a> {
    root: &'a Root,
    store: &'a StoreDir,
    unit: &'a str,
    plan: HostPlan,
    /// Binds by target, each with why it is there.
    binds: BTreeMap<Utf8PathBuf, (HostBind, Shown)>,
    links: BTreeMap<Utf8PathBuf, (String, Shown)>,
}

/// Plans the host paths `items` of `unit`, read under `root`. Each listed
/// path is resolved on the host a component at a time, and inside it
/// resolves the same way:
/// - a link on the way is reproduced: a link of the same name and target in
///   the unit's [`skeleton`], bound read-only over the link's directory
///   (systemd cannot bind a link, nor make one inside the root);
/// - a link whose chain ends in the Nix store (NixOS's `/etc/x ->
///   /etc/static/x -> ...`) is reproduced pointing straight at where it
///   ends: that store path joins the closure, and nothing else of the chain;
/// - what the chain ends at is bound read-only at its own place, except in
///   one of [`RENAMED_DIRS`], which is bound whole;
/// - a link in `/` itself (`/lib -> usr/lib`) cannot be reproduced (the
///   root is systemd's): the end of such a chain is bound at the listed
///   path.
///
/// A path that [`refusal`] refuses, that leads through one, or that ends at
/// anything but a file or directory everyone may read is an error; a listed
/// path that does not exist is a warning, and a set's members that do not
/// exist are left out quietly.
pub fn plan_host_paths(
    root: &Root,
    store: &StoreDir,
    unit: &str,
    items: &[Located<HostPath>],
) -> HostPlan {
    let mut planner = Planner {
        root,
        store,
        unit,
        plan: HostPlan::default(),
        binds: BTreeMap::new(),
        links: BTreeMap::new(),
    };
    if items.is_empty() {
        return planner.plan;
    }
    let nixos = std::fs::symlink_metadata(root.join(Utf8Path::new("/etc/NIXOS"))).is_ok();
    let mut listed: Vec<Listed> = Vec::new();
    for item in items {
        match &item.value {
            HostPath::Path(path) => listed.push(Listed {
                path: path.clone(),
                location: item.location.clone(),
                set: None,
            }),
            HostPath::Set(set) => {
                let before = listed.len();
                for member in set.members(nixos) {
                    listed.push(Listed {
                        path: Utf8PathBuf::from(member),
                        location: item.location.clone(),
                        set: Some(*set),
                    });
                }
                let exists = listed[before..]
                    .iter()
                    .any(|l| std::fs::symlink_metadata(root.join(&l.path)).is_ok());
                if !exists {
                    planner.warning(
                        item.location.as_ref(),
                        format!(
                            "{KEY_HOST_PATHS}: {set}: none of {} exists on this host: nothing is shown",
                            set.members(nixos).join(" ")
                        ),
                    );
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for item in &listed {
        if seen.insert(item.path.clone()) {
            planner.listed(item);
        }
    }
    planner.finish()
}

impl Planner<'_> {
    fn error(&mut self, location: Option<&Location>, message: String) {
        self.plan.errors.push(Diagnostic::error(
            Some(self.unit),
            location.cloned(),
            message,
        ));
    }

    fn warning(&mut self, location: Option<&Location>, message: String) {
        self.plan.warnings.push(Diagnostic::warning(
            Some(self.unit),
            location.cloned(),
            message,
        ));
    }

    fn listed(&mut self, item: &Listed) {
        let location = item.location.as_ref();
        if let Some(why) = refusal(item.path.as_str(), self.store.as_str()) {
            self.error(
                location,
                format!("{KEY_HOST_PATHS}: {}: refused: {why}", item.text()),
            );
            return;
        }
        let walk = match self.walk(&item.path) {
            Ok(walk) => walk,
            Err(why) => {
                self.error(
                    location,
                    format!("{KEY_HOST_PATHS}: {}: refused: {why}", item.text()),
                );
                return;
            }
        };
        let why = match location {
            Some(at) => format!("listed as {} at {at}", item.text()),
            None => format!("listed as {}", item.text()),
        };
        match walk.end {
            End::Nothing => {}
            End::Missing { missing, wanted } => {
                if let Some((dir, hide)) = renamed_dir_of(wanted.as_str()) {
                    self.add_links(&walk.links, &why);
                    self.add_renamed_dir(dir, hide, &why, false);
                } else if is_within(wanted.as_str(), "/run") && !walk.through_root_link {
                    // /run is filled after the generator ran at boot: bound
                    // if it is there when the service starts.
                    self.add_links(&walk.links, &why);
                    self.add_bind(
                        HostBind {
                            source: wanted.clone(),
                            target: wanted.clone(),
                            directory: false,
                        },
                        "bound read-only if it exists when the service starts (missing now)",
                        &why,
                    );
                } else if item.set.is_none() {
                    let detail = if missing == item.path {
                        String::new()
                    } else {
                        format!(" ({missing} is missing)")
                    };
                    self.warning(
                        location,
                        format!(
                            "{KEY_HOST_PATHS}: {} does not exist on this host{detail}: not visible inside until a daemon-reload finds it",
                            item.path
                        ),
                    );
                }
            }
            End::Store(end) => {
                self.add_roots(&walk.store_paths, item);
                if walk.through_root_link {
                    self.plan.store_binds.push((end.clone(), item.path.clone()));
                    self.plan.shown.push(Shown {
                        path: item.path.to_string(),
                        what: format!("bound read-only from {end} (in the closure)"),
                        why,
                    });
                } else {
                    self.add_links(&walk.links, &why);
                }
            }
            End::Host { path, directory } => {
                if let Err(refused) = self.check_end(&path, directory) {
                    self.error(
                        location,
                        format!("{KEY_HOST_PATHS}: {}: refused: {refused}", item.text()),
                    );
                    return;
                }
                self.add_roots(&walk.store_paths, item);
                if walk.through_root_link {
                    self.add_bind(
                        HostBind {
                            source: path.clone(),
                            target: item.path.clone(),
                            directory,
                        },
                        &format!("bound read-only from {path}"),
                        &why,
                    );
                    return;
                }
                self.add_links(&walk.links, &why);
                if let Some((dir, hide)) = renamed_dir_of(path.as_str()) {
                    self.add_renamed_dir(dir, hide, &why, true);
                } else {
                    let what = if directory {
                        "directory bound read-only"
                    } else {
                        "file bound read-only (a file renamed over it on the host is seen from the next start)"
                    };
                    self.add_bind(
                        HostBind {
                            source: path.clone(),
                            target: path.clone(),
                            directory,
                        },
                        what,
                        &why,
                    );
                }
            }
        }
    }

    /// Why the end of a chain may not be bound, if it may not.
    fn check_end(&self, path: &Utf8Path, directory: bool) -> Result<(), HostPathError> {
        if let Some(why) = refusal(path.as_str(), self.store.as_str()) {
            return Err(HostPathError::ResolvesTo {
                path: path.to_owned(),
                why,
            });
        }
        let meta = std::fs::metadata(self.root.join(path))
            .map_err(|e| HostPathError::Io(path.to_owned(), e))?;
        let kind = meta.file_type();
        if !(kind.is_file() || kind.is_dir()) {
            let what = if kind.is_socket() {
                "a socket"
            } else if kind.is_fifo() {
                "a FIFO"
            } else {
                "a device"
            };
            return Err(HostPathError::NotFileOrDirectory {
                path: path.to_owned(),
                what,
            });
        }
        let readable = if directory { 0o005 } else { 0o004 };
        if meta.mode() & readable != readable {
            return Err(HostPathError::NotReadable {
                path: path.to_owned(),
                mode: meta.mode() & 0o7777,
            });
        }
        Ok(())
    }

    /// The store paths a listed path's chain went through, roots of the
    /// unit's closure named by the listed path.
    fn add_roots(&mut self, store_paths: &[String], item: &Listed) {
        for store_path in store_paths {
            self.plan.roots.push(HostRoot {
                store_path: store_path.clone(),
                location: item.location.clone(),
                text: item.text(),
            });
        }
    }

    fn add_links(&mut self, links: &[(Utf8PathBuf, String)], why: &str) {
        for (at, target) in links {
            let what = if self.store.store_path_of(target).is_some() {
                format!("link to {target} (in the closure)")
            } else {
                format!("link to {target}")
            };
            self.links.entry(at.clone()).or_insert_with(|| {
                (
                    target.clone(),
                    Shown {
                        path: at.to_string(),
                        what,
                        why: why.to_owned(),
                    },
                )
            });
        }
    }

    fn add_bind(&mut self, bind: HostBind, what: &str, why: &str) {
        let shown = Shown {
            path: bind.target.to_string(),
            what: what.to_owned(),
            why: why.to_owned(),
        };
        self.binds
            .entry(bind.target.clone())
            .or_insert((bind, shown));
    }

    fn add_renamed_dir(&mut self, dir: &str, hide: &[&str], why: &str, exists: bool) {
        let path = Utf8PathBuf::from(dir);
        let what = if exists {
            "directory bound read-only: its files are replaced by rename, and a running service sees each new one"
        } else {
            "directory bound read-only when it exists at the start (missing now): its files are replaced by rename, and a running service sees each new one"
        };
        self.add_bind(
            HostBind {
                source: path.clone(),
                target: path.clone(),
                directory: true,
            },
            what,
            why,
        );
        let mut hidden: Vec<Utf8PathBuf> = hide.iter().map(|name| path.join(name)).collect();
        // Sockets found there now, whatever their names.
        if let Ok(entries) = std::fs::read_dir(self.root.join(&path)) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_socket())
                    && let Ok(name) = entry.file_name().into_string()
                {
                    hidden.push(path.join(name));
                }
            }
        }
        for path in hidden {
            if !self.plan.hidden.contains(&path) {
                self.plan.hidden.push(path);
            }
        }
    }

    /// Resolves `listed` on the host a component at a time (see
    /// [`plan_host_paths`]); `Err` when the chain leads where nothing is
    /// shown.
    fn walk(&self, listed: &Utf8Path) -> Result<Walk, HostPathError> {
        let mut walk = Walk::default();
        let mut pending = components_reversed(listed.as_str());
        let mut resolved = Utf8PathBuf::from("/");
        let mut followed = 0;
        while let Some(component) = pending.pop() {
            match component.as_str() {
                "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            let candidate = resolved.join(&component);
            let in_store = self.store.store_path_of(candidate.as_str());
            if in_store.is_none()
                && let Some(area) = refused_area_of(candidate.as_str())
            {
                return Err(HostPathError::LeadsTo {
                    path: candidate,
                    area,
                });
            }
            let meta = match std::fs::symlink_metadata(self.root.join(&candidate)) {
                Ok(meta) => meta,
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(libc::ENOTDIR) =>
                {
                    let mut wanted = candidate.clone();
                    for rest in pending.iter().rev() {
                        match rest.as_str() {
                            "." => {}
                            ".." => {
                                wanted.pop();
                            }
                            name => wanted.push(name),
                        }
                    }
                    walk.end = End::Missing {
                        missing: candidate,
                        wanted,
                    };
                    return Ok(walk);
                }
                Err(e) => return Err(HostPathError::Io(candidate, e)),
            };
            if !meta.file_type().is_symlink() {
                if !meta.is_dir() && pending.iter().any(|c| c != ".") {
                    // A file with more components after it: nothing there.
                    let mut wanted = candidate.clone();
                    for rest in pending.iter().rev() {
                        wanted.push(rest);
                    }
                    walk.end = End::Missing {
                        missing: wanted.clone(),
                        wanted,
                    };
                    return Ok(walk);
                }
                resolved = candidate;
                continue;
            }
            followed += 1;
            if followed > MAX_SYMLINKS {
                return Err(HostPathError::TooManyLinks(candidate));
            }
            let target = match std::fs::read_link(self.root.join(&candidate)) {
                Ok(target) => target,
                Err(e) => return Err(HostPathError::Io(candidate, e)),
            };
            let Ok(target) = Utf8PathBuf::from_path_buf(target) else {
                return Err(HostPathError::TargetNotUtf8(candidate));
            };
            if let Some(store_path) = in_store {
                // A link inside the store comes with its store path.
                walk.store_paths.push(store_path.to_owned());
            } else if candidate.parent() == Some(Utf8Path::new("/")) {
                walk.through_root_link = true;
            } else {
                if let Some(why) = refusal(candidate.as_str(), self.store.as_str()) {
                    return Err(HostPathError::LeadsThrough {
                        path: candidate,
                        why,
                    });
                }
                if let Ok(end) = self.root.canonicalize(&candidate)
                    && let Some(store_path) = self.store.store_path_of(end.as_str())
                {
                    // Straight to where the chain ends in the store.
                    walk.store_paths.push(store_path.to_owned());
                    walk.links.push((candidate, end.to_string()));
                    resolved = end;
                    continue;
                }
                walk.links.push((candidate, target.to_string()));
            }
            if target.is_absolute() {
                resolved = Utf8PathBuf::from("/");
            }
            pending.extend(components_reversed(target.as_str()));
        }
        walk.end = match self.store.store_path_of(resolved.as_str()) {
            Some(store_path) => {
                walk.store_paths.push(store_path.to_owned());
                End::Store(resolved)
            }
            None => {
                let directory = std::fs::metadata(self.root.join(&resolved))
                    .map(|m| m.is_dir())
                    .unwrap_or(false);
                End::Host {
                    path: resolved,
                    directory,
                }
            }
        };
        Ok(walk)
    }

    /// Combines what each listed path needs: a bind inside a directory bound
    /// whole, and a link there, are dropped (the directory shows them).
    fn finish(mut self) -> HostPlan {
        let dirs: Vec<Utf8PathBuf> = self
            .binds
            .values()
            .filter(|(b, _)| b.directory && b.source == b.target)
            .map(|(b, _)| b.target.clone())
            .collect();
        let covered = |path: &Utf8Path| {
            dirs.iter()
                .any(|dir| path != dir && is_within(path.as_str(), dir.as_str()))
        };
        let mut shown = std::mem::take(&mut self.plan.shown);
        for (target, (bind, why)) in std::mem::take(&mut self.binds) {
            if !covered(&target) {
                self.plan.binds.push(bind);
                shown.push(why);
            }
        }
        for (at, (target, why)) in std::mem::take(&mut self.links) {
            if !covered(&at) {
                self.plan.links.push((at, target));
                shown.push(why);
            }
        }
        self.plan.hidden.retain(|path| {
            dirs.iter()
                .any(|dir| is_within(path.as_str(), dir.as_str()))
        });
        self.plan.hidden.sort();
        for hidden in &self.plan.hidden {
            shown.push(Shown {
                path: hidden.to_string(),
                what: "hidden (InaccessiblePaths=): the resolver's socket, not a file".to_owned(),
                why: "in a directory bound whole".to_owned(),
            });
        }
        let mut tops: Vec<Utf8PathBuf> = Vec::new();
        let mut parents: Vec<Utf8PathBuf> = self
            .plan
            .links
            .iter()
            .filter_map(|(at, _)| at.parent().map(Utf8Path::to_owned))
            .collect();
        parents.sort();
        parents.dedup();
        for parent in parents {
            if !tops
                .iter()
                .any(|top| is_within(parent.as_str(), top.as_str()))
            {
                tops.push(parent);
            }
        }
        self.plan.skeleton_dirs = tops;
        if !self.plan.links.is_empty() {
            self.plan.skeleton = Some(skeleton::Record::new(self.unit, &self.plan.links));
        }
        self.plan.store_binds.sort();
        self.plan.store_binds.dedup();
        shown.sort();
        shown.dedup_by(|a, b| a.path == b.path && a.what == b.what);
        self.plan.shown = shown;
        self.plan
    }
}

/// The area that `path` is in and that the walk may not pass on its way
/// (an API file system, a secret, another service's root), if there is
/// one: unlike [`refusal`], a directory that merely holds such a thing may
/// be passed through.
fn refused_area_of(path: &str) -> Option<&'static str> {
    REFUSED_AREAS
        .iter()
        .chain(SECRETS)
        .find(|area| is_within(path, area))
        .copied()
}

/// The directory of [`RENAMED_DIRS`] that holds `path` (or is it), and the
/// names hidden in it.
fn renamed_dir_of(path: &str) -> Option<(&'static str, &'static [&'static str])> {
    RENAMED_DIRS
        .iter()
        .find(|(dir, _)| is_within(path, dir))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_member_of_a_named_set_is_refused() {
        for set in crate::host_sets::ALL {
            for nixos in [false, true] {
                for member in set.members(nixos) {
                    assert_eq!(refusal(member, "/nix/store"), None, "{set}: {member}");
                }
            }
        }
    }

    #[test]
    fn refused_paths() {
        let store = "/nix/store";
        for path in [
            "/",
            "/etc",
            "/etc/shadow",
            "/etc/gshadow-",
            "/etc/ssh",
            "/etc/ssh/ssh_host_ed25519_key",
            "/etc/ssh/ssh_host_rsa_key.pub",
            "/etc/ssl/private/x.pem",
            "/proc/self/mounts",
            "/sys",
            "/dev/null",
            "/run",
            "/run/credentials/x",
            "/run/confinement/a.service",
            "/nix",
            "/nix/store/abc-x",
            "/var/lib/systemd",
            "/root/.profile",
        ] {
            assert!(refusal(path, store).is_some(), "{path}");
        }
        for path in [
            "/etc/passwd",
            "/etc/group",
            "/etc/ssh/ssh_config",
            "/etc/ssl/certs",
            "/usr/share/zoneinfo",
            "/run/systemd/resolve",
            "/etc/shadowsocks.json",
            "/nixos",
            "/var/lib/foo",
        ] {
            assert_eq!(refusal(path, store), None, "{path}");
        }
    }

    #[test]
    fn within() {
        assert!(is_within("/a/b", "/a"));
        assert!(is_within("/a", "/a"));
        assert!(!is_within("/ab", "/a"));
        assert!(is_within("/a", "/"));
    }
}
