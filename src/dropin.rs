//! Rendering drop-ins: pure functions from what was computed for a unit to
//! the text systemd reads. Nothing here touches the file system.

use crate::annotation::Mode;
use crate::unit::escape::{escape_exec_word, escape_path};
use crate::unit::{MergedUnit, Setting};
use camino::Utf8Path;
use std::fmt::Write;

/// The program's name, as the headers of the files it writes give it.
pub const GENERATOR: &str = crate::logging::IDENTIFIER;

/// The keys the NixOS module sets with `mkDefault` from the mode: the unit's
/// own value stands when it sets the key.
pub const MODE_DEFAULT_KEYS: &[&str] = &[
    "MountAPIVFS",
    "PrivateDevices",
    "PrivateTmp",
    "PrivateUsers",
    "ProtectControlGroups",
    "ProtectKernelModules",
    "ProtectKernelTunables",
];

/// One store path of the closure and, when it is a symlink, what it resolves
/// to (systemd cannot bind a symlink, so the target is bound at its place).
/// `path` is a valid store path under the store directory (checked when it
/// is read from the database), so it needs no escaping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClosurePath<'a> {
    pub path: &'a str,
    pub symlink_target: Option<&'a str>,
}

/// How the closure reaches the service's `/nix/store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding<'a> {
    /// The closure's view (its digest, see [`crate::view`]): one read-only
    /// overlay, bound whole.
    View(&'a str),
    /// Each store path bound on its own from the read-only store view
    /// [`STORE_VIEW`] (where views cannot be mounted).
    PerPath,
}

/// Everything the confinement drop-in says, already decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement<'a> {
    pub unit: &'a MergedUnit,
    /// The store directory (`/nix/store`).
    pub store_dir: &'a str,
    pub mode: Mode,
    pub bin_sh: Option<&'a Utf8Path>,
    /// Sorted by path; needed only when each path is bound on its own.
    pub closure: &'a [ClosurePath<'a>],
    /// How many store paths the closure has.
    pub paths: usize,
    /// `(source, target)` binds for Exec programs named outside the store.
    pub extra_binds: &'a [(String, String)],
    pub binding: Binding<'a>,
    /// What `X-ConfinementHostPaths=` shows.
    pub host: &'a crate::host::HostPlan,
}

/// The value of a boolean-ish unit setting as systemd reads it for our
/// purposes: `Some(true)` for yes and for the newer non-boolean values that
/// also turn the feature on (`PrivateTmp=disconnected`,
/// `PrivateUsers=self|identity|full`, `ProtectControlGroups=private|strict`).
fn setting_is_on(value: &str) -> bool {
    crate::annotation::parse_boolean(value).unwrap_or(matches!(
        value,
        "disconnected" | "self" | "identity" | "full" | "private" | "strict"
    ))
}

/// Values systemd accepts for a key besides booleans (newer systemd).
fn extra_values(key: &str) -> &'static [&'static str] {
    match key {
        "PrivateTmp" => &["disconnected"],
        "PrivateUsers" => &["self", "identity", "full"],
        "ProtectControlGroups" => &["private", "strict"],
        _ => &[],
    }
}

/// The unit's own value of one of the keys the module sets with
/// `mkDefault`, or `None` when the unit leaves it to the default.
///
/// systemd (measured on 252) ignores an empty or unparsable assignment of
/// these boolean keys ("Failed to parse boolean value, ignoring"), so the last
/// valid assignment stands; only `MountAPIVFS=`, a tristate, is reset by an
/// empty assignment.
pub fn own_value<'a>(unit: &'a MergedUnit, key: &'a str) -> Option<&'a Setting> {
    if key == "MountAPIVFS" {
        return unit.scalar("Service", key);
    }
    unit.assignments("Service", key).rev().find(|setting| {
        crate::annotation::parse_boolean(&setting.value).is_some()
            || extra_values(key).contains(&setting.value.as_str())
    })
}

/// True when the unit's effective `PrivateTmp=` is on: its own value, else
/// the mode's default.
pub fn effective_private_tmp(unit: &MergedUnit, mode: Mode) -> bool {
    match own_value(unit, "PrivateTmp") {
        Some(setting) => setting_is_on(&setting.value),
        None => mode == Mode::FullApivfs,
    }
}

/// Where the generated mount unit puts a private, read-only bind of the
/// store. Confined services bind their closure from here: a bind inherits the
/// read-only flag of its source, so every bound path is read-only without the
/// remount per path that makes `BindReadOnlyPaths=` quadratic.
pub const STORE_VIEW: &str = "/run/nix-confinement-store";
/// `systemd-escape --path --suffix=mount /run/nix-confinement-store`.
pub const STORE_VIEW_UNIT: &str = "run-nix\\x2dconfinement\\x2dstore.mount";
/// The blocking drop-in every annotated unit gets first, written once at
/// the top of the output directory (not a unit name: systemd does not load
/// it there) and linked into each unit's drop-in directory.
pub const PENDING_DROPIN: &str = ".nix-confinement-pending.conf";
/// The generated service that checks the running systemd against the unit
/// files and reloads it when an annotated unit is loaded without its current
/// confinement (see [`crate::watch`]).
pub const CHECK_SERVICE: &str = "nix-confinement-check.service";

/// The mount unit for [`STORE_VIEW`]. `private`: a read-only source with
/// shared propagation was seen to turn writable when the host later bound
/// the store again. Not mounted while the store is missing or empty (a
/// store on a file system not mounted yet): systemd would create the
/// directory and bind it, and the view would stay that empty directory
/// after the store is mounted; a later start mounts it then.
pub fn render_store_view_mount(store_dir: &str) -> String {
    let store_dir = escape_value(store_dir);
    format!(
        "# Generated by {GENERATOR}: a private, read-only view of the Nix store.\n\
         # Confined services bind their closure from here, so every bound path is\n\
         # read-only whatever the host does with its own store mount.\n\
         [Unit]\n\
         Description=Read-only view of the Nix store for confined services\n\
         RequiresMountsFor={store_dir}\n\
         ConditionDirectoryNotEmpty={store_dir}\n\
         \n\
         [Mount]\n\
         What={store_dir}\n\
         Where={STORE_VIEW}\n\
         Type=none\n\
         Options=bind,ro,private\n"
    )
}

/// The confinement drop-in. It reproduces the NixOS module line by line,
/// except that the closure reaches `/nix/store` through its read-only view
/// (one bind, whatever the closure's size) or, where views cannot be
/// mounted, path by path from the read-only store view onto an empty
/// read-only `/nix/store`; both start faster than the module's one
/// read-only bind per path, with the same visibility.
pub fn render_confinement(c: &Confinement<'_>) -> String {
    // Sized for the bind lines (most of the file when each path is bound)
    // so that it is not copied while it grows: two copies of each path and
    // 40 bytes around them.
    let binds: usize = match c.binding {
        Binding::View(_) => 0,
        Binding::PerPath => c.closure.iter().map(|p| 2 * p.path.len() + 40).sum(),
    };
    let mut out = String::with_capacity(2048 + binds);
    render_header(&mut out, c.unit);
    let _ = writeln!(
        out,
        "# Confines the service to its Nix store closure ({}, mode {}).",
        crate::diag::counted(c.paths, "path", "paths"),
        c.mode.as_str()
    );
    let _ = writeln!(
        out,
        "# `{GENERATOR} explain {}` says why each path is here.",
        escape_comment(&c.unit.name)
    );
    out.push_str("[Unit]\n");
    let source = match c.binding {
        Binding::View(digest) => {
            // The view is mounted by its unit, shared by every unit with this
            // closure; the unit starts only with the view mounted and not
            // writable (something could be mounted over it), and with
            // nothing mounted on the directory that is bound (a bind of the
            // store there would show all of it, and a writable /bin/sh).
            let unit = view_unit(digest);
            let path = view_path(digest);
            let source = format!("{path}/{}", crate::view::layer::STORE_ENTRY);
            let _ = writeln!(out, "Requires={unit}");
            // After the check service too: a start queued at boot, before
            // the store was mounted, waits for it to reload systemd and
            // start the unit again, which pulls in the view (see
            // nix-confinement-generator(8), check --loaded --reload).
            let _ = writeln!(out, "After={unit} {CHECK_SERVICE}");
            let _ = writeln!(out, "AssertPathIsMountPoint={path}");
            let _ = writeln!(out, "AssertPathIsReadWrite=!{path}");
            let _ = writeln!(out, "AssertPathIsMountPoint=!{source}");
            source
        }
        Binding::PerPath => {
            // The unit starts only with the read-only store view in place: an
            // explicit dependency (RequiresMountsFor= alone ignores a masked
            // mount unit) and an assertion that the view is not writable (it
            // can be remounted read-write, or covered by a writable bind,
            // after it was mounted), measured in systemd 252 and 257.
            let _ = writeln!(out, "RequiresMountsFor={STORE_VIEW}");
            let _ = writeln!(out, "Requires={STORE_VIEW_UNIT}");
            let _ = writeln!(out, "After={STORE_VIEW_UNIT}");
            let _ = writeln!(out, "AssertPathIsReadWrite=!{STORE_VIEW}");
            STORE_VIEW.to_owned()
        }
    };
    if let Some(record) = &c.host.skeleton {
        // The links of the host paths: mounted by their unit, like a view.
        let digest = record.digest.to_string();
        let unit = crate::host::skeleton::unit(&digest);
        let _ = writeln!(out, "Requires={unit}");
        let _ = writeln!(out, "After={unit}");
        let _ = writeln!(
            out,
            "AssertPathIsMountPoint={}",
            crate::host::skeleton::path(&digest)
        );
    }
    out.push_str("[Service]\n");
    // %n is the full unit name, and for a template each instance's name: no
    // two units or instances share a root (unlike the module's mkPathSafeName).
    out.push_str("RootDirectory=/run/confinement/%n\n");
    out.push_str("RuntimeDirectory=confinement/%n\n");
    out.push_str("InaccessiblePaths=-+/run/confinement/%n\n");
    out.push_str("ReadOnlyPaths=+/\n");
    if own_value(c.unit, "PrivateMounts").is_none() {
        out.push_str("PrivateMounts=yes\n");
    }
    let mode_value = if c.mode == Mode::FullApivfs {
        "yes"
    } else {
        "no"
    };
    for key in MODE_DEFAULT_KEYS {
        if own_value(c.unit, key).is_none() {
            let _ = writeln!(out, "{key}={mode_value}");
        }
    }
    if let Some(bin_sh) = c.bin_sh {
        push_bind(&mut out, c.store_dir, &source, bin_sh.as_str(), "/bin/sh");
    }
    if !effective_private_tmp(c.unit, c.mode) {
        out.push_str("InaccessiblePaths=-+/tmp\n");
        out.push_str("InaccessiblePaths=-+/var/tmp\n");
    }
    match c.binding {
        Binding::View(_) => {
            // Read-only twice over: the overlay has no upper layer, and the
            // bind is remounted read-only (one mount: no cost to speak of).
            // Not recursive: a mount made below the view later is not
            // carried into the service.
            let _ = writeln!(
                out,
                "BindReadOnlyPaths={}:{}:norbind",
                escape_path(&source),
                escape_path(c.store_dir)
            );
        }
        Binding::PerPath => {
            let _ = writeln!(out, "TemporaryFileSystem={}:ro", escape_path(c.store_dir));
            let view_prefix_len = c.store_dir.len();
            for path in c.closure {
                match path.symlink_target {
                    Some(target) => push_bind(&mut out, c.store_dir, &source, target, path.path),
                    None => {
                        // Closure paths are validated store paths: nothing to
                        // escape.
                        out.push_str("BindPaths=");
                        out.push_str(STORE_VIEW);
                        out.push_str(&path.path[view_prefix_len..]);
                        out.push(':');
                        out.push_str(path.path);
                        out.push('\n');
                    }
                }
            }
        }
    }
    for (bind_source, target) in c.extra_binds {
        push_bind(&mut out, c.store_dir, &source, bind_source, target);
    }
    render_host_paths(&mut out, c, &source);
    out
}

/// The lines of `X-ConfinementHostPaths=`: each directory of links from the
/// unit's skeleton, each host file or directory (ignored when it is missing
/// at the start: inside as on the host), the store files reached through a
/// link in `/`, and the sockets hidden in a directory bound whole (`+`: the
/// path inside the root).
fn render_host_paths(out: &mut String, c: &Confinement<'_>, store_source: &str) {
    let host = c.host;
    if let Some(record) = &host.skeleton {
        let top = crate::host::skeleton::path(&record.digest.to_string());
        for dir in &host.skeleton_dirs {
            let _ = writeln!(
                out,
                "BindReadOnlyPaths={}{}:{}",
                top,
                escape_path(dir.as_str()),
                escape_path(dir.as_str())
            );
        }
    }
    for bind in &host.binds {
        let _ = writeln!(
            out,
            "BindReadOnlyPaths=-{}:{}",
            escape_path(bind.source.as_str()),
            escape_path(bind.target.as_str())
        );
    }
    for (store_file, target) in &host.store_binds {
        push_bind(
            out,
            c.store_dir,
            store_source,
            store_file.as_str(),
            target.as_str(),
        );
    }
    for hidden in &host.hidden {
        let _ = writeln!(out, "InaccessiblePaths=-+{}", escape_path(hidden.as_str()));
    }
}

/// The unit that mounts the view `digest`: an instance of
/// [`VIEW_TEMPLATE`].
pub fn view_unit(digest: &str) -> String {
    format!("nix-confinement-view@{digest}.service")
}

/// Where the view `digest` is mounted.
pub fn view_path(digest: &str) -> String {
    format!("{}/{digest}", crate::view::VIEWS)
}

/// The template of the units that mount views.
pub const VIEW_TEMPLATE: &str = "nix-confinement-view@.service";

/// [`VIEW_TEMPLATE`]'s text: `program` is this program, which mounts and
/// unmounts views (`view start|stop DIGEST`). Stopped when no unit needs
/// its view any more: running services keep their own mount of it. Without
/// a start limit: a socket with `Accept=yes` whose connections come one
/// after the other starts and stops its view for each, and systemd's default
/// limit (5 starts in 10 s) would fail every connection after the fifth.
pub fn render_view_template(program: &str, store_dir: &str, lists_dir: &str) -> String {
    let program = escape_exec_word(program);
    format!(
        "# Generated by {GENERATOR}: mounts the read-only view of one closure, named\n\
         # by the instance (its digest), for the confined services that need it.\n\
         [Unit]\n\
         Description=Read-only Nix store view %i for confined services\n\
         Documentation=man:nix-confinement-generator(8)\n\
         DefaultDependencies=no\n\
         RequiresMountsFor={} {}\n\
         Conflicts=umount.target\n\
         Before=umount.target\n\
         StopWhenUnneeded=yes\n\
         StartLimitIntervalSec=0\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={program} view start %i\n\
         ExecStop={program} view stop %i\n",
        escape_path(store_dir),
        escape_path(lists_dir)
    )
}

/// Binds `source` at `target`, read-only. A source in the store is taken from
/// `view`, the read-only store view or the closure's view, where the store's
/// paths are below it; anything else (a symlink store path pointing out of
/// the store) gets an explicit read-only bind, as the module does.
fn push_bind(out: &mut String, store_dir: &str, view: &str, source: &str, target: &str) {
    let in_store = source
        .strip_prefix(store_dir)
        .filter(|rest| rest.starts_with('/'));
    match in_store {
        // Read-only too: the view is, but something mounted exactly at
        // this place in it would not be.
        Some(rest) => {
            out.push_str("BindReadOnlyPaths=");
            out.push_str(view);
            out.push_str(&escape_path(rest));
            out.push(':');
        }
        None => {
            out.push_str("BindReadOnlyPaths=");
            out.push_str(&escape_path(source));
            out.push(':');
        }
    }
    out.push_str(&escape_path(target));
    out.push('\n');
}

/// A drop-in that makes every start of the unit fail, and says why where an
/// administrator looks first (`systemctl status`).
pub fn render_blocked(unit_name: &str, sources: &[&Utf8Path], reasons: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Generated by {GENERATOR}: {} is BLOCKED, it must not run unconfined.",
        escape_comment(unit_name)
    );
    if !sources.is_empty() {
        out.push_str("# Read from:\n");
        for source in sources {
            let _ = writeln!(out, "#   {}", escape_comment(source.as_str()));
        }
    }
    for reason in reasons {
        let _ = writeln!(out, "# Reason: {}", escape_comment(reason));
    }
    let summary = reasons.first().map_or("unknown reason", String::as_str);
    let more = if reasons.len() > 1 {
        format!(" (and {} more)", reasons.len() - 1)
    } else {
        String::new()
    };
    out.push_str("[Unit]\n");
    let _ = writeln!(
        out,
        "Description=BLOCKED by {GENERATOR}: {}{more}",
        escape_value(summary)
    );
    // A start waits for the check service, which reloads systemd first when
    // the cause is gone by then (a Nix store mounted after the generator ran
    // at boot, a generator run that did not finish): the start then proceeds
    // confined. The store view is wanted too, so that a start that proceeds
    // confined finds it mounted (a reload adds no job for a dependency of a
    // start already queued).
    let _ = writeln!(out, "Wants={CHECK_SERVICE} {STORE_VIEW_UNIT}");
    let _ = writeln!(out, "After={CHECK_SERVICE} {STORE_VIEW_UNIT}");
    // systemd evaluates assertions last to first and reports the first that
    // fails: the constant one that can never hold comes first in the file, so
    // it is reached only if systemd ignored every reason path (it ignores an
    // invalid one), and the first reason comes last, so it is the one shown.
    out.push_str("AssertPathExists=!/\n");
    for reason in reasons.iter().rev() {
        let _ = writeln!(out, "AssertPathExists={}", assertion_path(reason));
    }
    out
}

/// The reasons a drop-in written by [`render_blocked`] gives, one per line
/// of its comment; `None` when `text` is not a blocking drop-in.
pub fn blocked_reasons(text: &str) -> Option<Vec<String>> {
    let first = text.lines().next()?;
    if !(first.starts_with(&format!("# Generated by {GENERATOR}: "))
        && first.ends_with(" is BLOCKED, it must not run unconfined."))
    {
        return None;
    }
    Some(
        text.lines()
            .filter_map(|line| line.strip_prefix("# Reason: "))
            .map(str::to_owned)
            .collect(),
    )
}

fn render_header(out: &mut String, unit: &MergedUnit) {
    let _ = writeln!(
        out,
        "# Generated by {GENERATOR} for {} from:",
        escape_comment(&unit.name)
    );
    for source in &unit.sources {
        let _ = writeln!(out, "#   {}", escape_comment(source.as_str()));
    }
}

/// Makes `reason` a path systemd accepts in `AssertPathExists=` (absolute,
/// normalized, components of at most 255 bytes, at most 4095 bytes) that
/// cannot exist, so the assertion always fails and shows the reason.
fn assertion_path(reason: &str) -> String {
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut path = format!("/{GENERATOR}: BLOCKED: ");
    let components = reason
        .split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..");
    for (i, component) in components.enumerate() {
        if i > 0 {
            path.push('/');
        }
        for (count, c) in component.chars().enumerate() {
            if count > 0 && count % 200 == 0 {
                path.push('/');
            }
            path.push(c);
        }
    }
    let mut path = escape_value(&path);
    if path.len() > 4000 {
        let mut cut = 4000;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path.truncate(cut);
        while path.ends_with('%') || path.ends_with('/') {
            path.pop();
        }
    }
    path
}

/// A value for a unit file: one line, specifiers escaped.
fn escape_value(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('%', "%%")
}

/// Text inside a `#` comment line: nothing may start a new line.
fn escape_comment(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertion_paths_are_normalized_and_bounded() {
        let p = assertion_path("/etc/x.service:3: path /nix/store/../a//b is bad\n100%");
        assert!(
            p.starts_with("/nix-confinement-generator: BLOCKED: "),
            "{p}"
        );
        assert!(p.ends_with("is bad 100%%"), "{p}");
        assert!(
            !p.contains("//") && !p.contains("/../") && !p.contains("/./"),
            "{p}"
        );
        let long = "x".repeat(600);
        let p = assertion_path(&long);
        assert!(p.split('/').all(|c| c.len() <= 255), "{p}");
        let p = assertion_path(&"ab/".repeat(3000));
        assert!(p.len() <= 4000);
    }

    #[test]
    fn comments_cannot_inject_lines() {
        assert_eq!(
            escape_comment("a\n[Service]\nExecStart=/x"),
            "a?[Service]?ExecStart=/x"
        );
    }
}
