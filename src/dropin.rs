//! Rendering drop-ins: pure functions from what was computed for a unit to
//! the text systemd reads. Nothing here touches the file system.

use crate::annotation::Mode;
use crate::unit::{MergedUnit, Setting};
use camino::Utf8Path;
use std::fmt::Write;

pub const GENERATOR: &str = "nix-confinement-generator";

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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClosurePath {
    pub path: String,
    pub symlink_target: Option<String>,
}

/// Everything the confinement drop-in says, already decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement<'a> {
    pub unit: &'a MergedUnit,
    pub mode: Mode,
    pub bin_sh: Option<&'a Utf8Path>,
    /// Sorted by path.
    pub closure: &'a [ClosurePath],
    /// `(source, target)` binds for Exec programs named outside the store.
    pub extra_binds: &'a [(String, String)],
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

/// The confinement drop-in, reproducing the NixOS module line by line.
pub fn render_confinement(c: &Confinement<'_>) -> String {
    let mut out = String::with_capacity(256 + c.closure.len() * 80);
    render_header(&mut out, c.unit);
    let _ = writeln!(
        out,
        "# Confines the service to its Nix store closure ({} paths, mode {}).",
        c.closure.len(),
        c.mode.as_str()
    );
    let _ = writeln!(
        out,
        "# `{GENERATOR} explain {}` says why each path is here.",
        escape_comment(&c.unit.name)
    );
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
        let _ = writeln!(
            out,
            "BindReadOnlyPaths={}:/bin/sh",
            escape_path(bin_sh.as_str())
        );
    }
    if !effective_private_tmp(c.unit, c.mode) {
        out.push_str("InaccessiblePaths=-+/tmp\n");
        out.push_str("InaccessiblePaths=-+/var/tmp\n");
    }
    for path in c.closure {
        out.push_str("BindReadOnlyPaths=");
        match &path.symlink_target {
            Some(target) => {
                out.push_str(&escape_path(target));
                out.push(':');
                out.push_str(&escape_path(&path.path));
            }
            None => out.push_str(&escape_path(&path.path)),
        }
        out.push('\n');
    }
    for (source, target) in c.extra_binds {
        let _ = writeln!(
            out,
            "BindReadOnlyPaths={}:{}",
            escape_path(source),
            escape_path(target)
        );
    }
    out
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

/// A path in a bind setting (`BindReadOnlyPaths=SRC:DST`): systemd unquotes
/// the value and splits it at `:` and white space, then expands specifiers.
pub fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%%"),
            ':' | '\\' | '"' | '\'' | ' ' | '\t' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
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
    fn bind_paths_are_escaped() {
        assert_eq!(escape_path("/nix/store/abc-x"), "/nix/store/abc-x");
        assert_eq!(escape_path("/a b:c%d\\e"), "/a\\ b\\:c%%d\\\\e");
    }

    #[test]
    fn comments_cannot_inject_lines() {
        assert_eq!(
            escape_comment("a\n[Service]\nExecStart=/x"),
            "a?[Service]?ExecStart=/x"
        );
    }
}
