//! The `X-Confinement*` keys (SPEC §3) of a merged unit, read into a typed
//! request, with warnings for keys that look like annotations but are not.

use crate::diag::{Diagnostic, Location};
use crate::unit::{MergedUnit, Setting};
use camino::Utf8PathBuf;

pub const KEY_ENABLE: &str = "X-ConfinementEnable";
pub const KEY_MODE: &str = "X-ConfinementMode";
pub const KEY_FULL_UNIT: &str = "X-ConfinementFullUnit";
pub const KEY_PACKAGES: &str = "X-ConfinementPackages";
pub const KEY_BIN_SH: &str = "X-ConfinementBinSh";
pub const KNOWN_KEYS: &[&str] = &[
    KEY_ENABLE,
    KEY_MODE,
    KEY_FULL_UNIT,
    KEY_PACKAGES,
    KEY_BIN_SH,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    FullApivfs,
    ChrootOnly,
}

impl Mode {
    pub fn parse(value: &str) -> Option<Mode> {
        match value {
            "full-apivfs" => Some(Mode::FullApivfs),
            "chroot-only" => Some(Mode::ChrootOnly),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::FullApivfs => "full-apivfs",
            Mode::ChrootOnly => "chroot-only",
        }
    }
}

/// What `/bin/sh` inside the confinement should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinSh {
    /// Not set: the configured default (the host's `/bin/sh` when it resolves
    /// into the store), quietly absent otherwise.
    Default,
    /// `X-ConfinementBinSh=` (empty): no `/bin/sh`.
    Disabled(Location),
    /// An explicit program, which must resolve into the store.
    Program(Utf8PathBuf, Location),
}

/// A value and where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub location: Option<Location>,
}

/// The confinement a unit asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub enable: Located<bool>,
    /// `None`: not set, the configured default applies.
    pub mode: Option<Located<Mode>>,
    pub full_unit: Located<bool>,
    pub packages: Vec<Located<Utf8PathBuf>>,
    pub bin_sh: BinSh,
}

/// The annotations of one unit and what was wrong with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotations {
    /// `Some` when the unit asks to be confined — or when it tried to and
    /// the request is invalid (then `errors` is not empty and the unit is
    /// blocked rather than left open).
    pub request: Option<Request>,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// systemd's boolean spellings (`parse_boolean()`), any case.
pub fn parse_boolean(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

/// Reads the annotations of `unit`. `is_service` is false for other unit
/// types, whose annotations are only warned about.
pub fn read_annotations(unit: &MergedUnit, is_service: bool) -> Annotations {
    let name = unit.name.as_str();
    let mut result = Annotations {
        request: None,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let mut annotation_settings: Vec<&Setting> = Vec::new();
    for setting in &unit.settings {
        if KNOWN_KEYS.contains(&setting.key.as_str()) {
            if setting.section != "Service" || !is_service {
                let wrong_place = if is_service {
                    format!("[{}]; annotations belong in [Service]", setting.section)
                } else {
                    "a unit that is not a service; only services can be confined".to_owned()
                };
                result.warnings.push(Diagnostic::warning(
                    Some(name),
                    Some(setting.location.clone()),
                    format!("{} in {wrong_place}: ignored", setting.key),
                ));
                continue;
            }
            annotation_settings.push(setting);
        } else if let Some(meant) = near_miss(&setting.key) {
            result.warnings.push(Diagnostic::warning(
                Some(name),
                Some(setting.location.clone()),
                format!(
                    "unknown key {} (did you mean {meant}?): ignored, the unit is not confined by it",
                    setting.key
                ),
            ));
        }
    }
    if annotation_settings.is_empty() {
        return result;
    }

    let last = |key: &str| {
        annotation_settings
            .iter()
            .rev()
            .find(|s| s.key == key)
            .copied()
    };
    let error = |setting: &Setting, message: String| {
        Diagnostic::error(Some(name), Some(setting.location.clone()), message)
    };

    // Enable: an invalid value is treated as a request to confine that
    // cannot be honoured, so the unit is blocked rather than left open.
    let enable = match last(KEY_ENABLE).filter(|s| !s.value.is_empty()) {
        None => Located {
            value: false,
            location: None,
        },
        Some(setting) => match parse_boolean(&setting.value) {
            Some(value) => Located {
                value,
                location: Some(setting.location.clone()),
            },
            None => {
                result.errors.push(error(
                    setting,
                    format!("{KEY_ENABLE}={:?} is not a boolean", setting.value),
                ));
                Located {
                    value: true,
                    location: Some(setting.location.clone()),
                }
            }
        },
    };

    if !enable.value {
        for setting in annotation_settings.iter().filter(|s| s.key != KEY_ENABLE) {
            result.warnings.push(Diagnostic::warning(
                Some(name),
                Some(setting.location.clone()),
                format!("{} has no effect without {KEY_ENABLE}=yes", setting.key),
            ));
        }
        return result;
    }

    let mode =
        last(KEY_MODE)
            .filter(|s| !s.value.is_empty())
            .and_then(|setting| match Mode::parse(&setting.value) {
                Some(mode) => Some(Located {
                    value: mode,
                    location: Some(setting.location.clone()),
                }),
                None => {
                    result.errors.push(error(
                        setting,
                        format!(
                            "{KEY_MODE}={:?} is not one of full-apivfs, chroot-only",
                            setting.value
                        ),
                    ));
                    None
                }
            });

    let full_unit = match last(KEY_FULL_UNIT).filter(|s| !s.value.is_empty()) {
        None => Located {
            value: false,
            location: None,
        },
        Some(setting) => Located {
            value: parse_boolean(&setting.value).unwrap_or_else(|| {
                result.errors.push(error(
                    setting,
                    format!("{KEY_FULL_UNIT}={:?} is not a boolean", setting.value),
                ));
                false
            }),
            location: Some(setting.location.clone()),
        },
    };

    let mut packages = Vec::new();
    for setting in annotation_settings.iter().filter(|s| s.key == KEY_PACKAGES) {
        if setting.value.is_empty() {
            packages.clear();
            continue;
        }
        for word in setting.value.split_ascii_whitespace() {
            if word.starts_with('/') {
                packages.push(Located {
                    value: Utf8PathBuf::from(word),
                    location: Some(setting.location.clone()),
                });
            } else {
                result.errors.push(error(
                    setting,
                    format!("{KEY_PACKAGES}: {word:?} is not an absolute path"),
                ));
            }
        }
    }

    let bin_sh = match last(KEY_BIN_SH) {
        None => BinSh::Default,
        Some(setting) if setting.value.is_empty() => BinSh::Disabled(setting.location.clone()),
        Some(setting)
            if setting.value.starts_with('/') && !setting.value.contains(char::is_whitespace) =>
        {
            BinSh::Program(Utf8PathBuf::from(&setting.value), setting.location.clone())
        }
        Some(setting) => {
            result.errors.push(error(
                setting,
                format!("{KEY_BIN_SH}={:?} is not an absolute path", setting.value),
            ));
            BinSh::Default
        }
    };

    result.request = Some(Request {
        enable,
        mode,
        full_unit,
        packages,
        bin_sh,
    });
    result
}

/// The known key a misspelt one probably meant: keys that start like an
/// annotation (any case, with or without the dash) or are within three edits
/// of one.
fn near_miss(key: &str) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    // Within three edits of an annotation a key still contains one of these;
    // most keys of a unit are nowhere near and skip the distance.
    if !(lower.contains("conf") || lower.contains("fin") || lower.contains("x-c")) {
        return None;
    }
    let looks_like_annotation = lower.starts_with("x-confin")
        || lower.starts_with("xconfin")
        || lower.starts_with("x-confinement")
        || lower.starts_with("confinement");
    let (best, distance) = KNOWN_KEYS
        .iter()
        .map(|known| (*known, edit_distance(&lower, &known.to_ascii_lowercase())))
        .min_by_key(|(_, d)| *d)?;
    (looks_like_annotation || distance <= 3).then_some(best)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn unit(name: &str, lines: &[(&str, &str, &str)]) -> MergedUnit {
        MergedUnit {
            name: name.to_owned(),
            sources: vec![Utf8PathBuf::from("/etc/systemd/system/u")],
            settings: lines
                .iter()
                .enumerate()
                .map(|(i, (section, key, value))| Setting {
                    section: (*section).to_owned(),
                    key: (*key).to_owned(),
                    value: (*value).to_owned(),
                    location: Location::new("/etc/systemd/system/u", i as u32 + 1),
                })
                .collect(),
            dropin_names: BTreeSet::new(),
            warnings: Vec::new(),
        }
    }

    fn messages(list: &[Diagnostic]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn booleans_as_systemd_spells_them() {
        for yes in ["1", "yes", "Y", "TRUE", "t", "On"] {
            assert_eq!(parse_boolean(yes), Some(true), "{yes}");
        }
        for no in ["0", "NO", "n", "false", "F", "off"] {
            assert_eq!(parse_boolean(no), Some(false), "{no}");
        }
        for bad in ["", "2", "yess", "enable"] {
            assert_eq!(parse_boolean(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_plain_request_with_defaults() {
        let a = read_annotations(&unit("a.service", &[("Service", KEY_ENABLE, "yes")]), true);
        let request = a.request.unwrap();
        assert!(request.enable.value);
        assert_eq!(request.mode, None);
        assert!(!request.full_unit.value);
        assert!(request.packages.is_empty());
        assert_eq!(request.bin_sh, BinSh::Default);
        assert!(a.errors.is_empty() && a.warnings.is_empty());
    }

    #[test]
    fn later_scalars_win_and_packages_accumulate_and_reset() {
        let a = read_annotations(
            &unit(
                "a.service",
                &[
                    ("Service", KEY_ENABLE, "no"),
                    ("Service", KEY_ENABLE, "yes"),
                    ("Service", KEY_MODE, "full-apivfs"),
                    ("Service", KEY_MODE, "chroot-only"),
                    ("Service", KEY_PACKAGES, "/a /b"),
                    ("Service", KEY_PACKAGES, ""),
                    ("Service", KEY_PACKAGES, "/c  /d"),
                    ("Service", KEY_PACKAGES, "/e"),
                    ("Service", KEY_BIN_SH, "/x/sh"),
                    ("Service", KEY_BIN_SH, ""),
                ],
            ),
            true,
        );
        let request = a.request.unwrap();
        assert_eq!(request.mode.unwrap().value, Mode::ChrootOnly);
        let packages: Vec<_> = request.packages.iter().map(|p| p.value.as_str()).collect();
        assert_eq!(packages, ["/c", "/d", "/e"]);
        assert_eq!(request.packages[0].location.as_ref().unwrap().line, 7);
        assert!(matches!(request.bin_sh, BinSh::Disabled(ref l) if l.line == 10));
    }

    #[test]
    fn invalid_values_are_errors_and_still_a_request() {
        let a = read_annotations(
            &unit(
                "a.service",
                &[
                    ("Service", KEY_ENABLE, "maybe"),
                    ("Service", KEY_MODE, "full"),
                    ("Service", KEY_FULL_UNIT, "sure"),
                    ("Service", KEY_PACKAGES, "relative/path"),
                    ("Service", KEY_BIN_SH, "sh"),
                ],
            ),
            true,
        );
        assert!(
            a.request.is_some(),
            "an invalid Enable must not leave the unit open"
        );
        assert_eq!(
            messages(&a.errors),
            [
                "/etc/systemd/system/u:1: a.service: X-ConfinementEnable=\"maybe\" is not a boolean",
                "/etc/systemd/system/u:2: a.service: X-ConfinementMode=\"full\" is not one of full-apivfs, chroot-only",
                "/etc/systemd/system/u:3: a.service: X-ConfinementFullUnit=\"sure\" is not a boolean",
                "/etc/systemd/system/u:4: a.service: X-ConfinementPackages: \"relative/path\" is not an absolute path",
                "/etc/systemd/system/u:5: a.service: X-ConfinementBinSh=\"sh\" is not an absolute path",
            ]
        );
    }

    #[test]
    fn disabled_is_silent_but_other_keys_without_enable_warn() {
        let a = read_annotations(&unit("a.service", &[("Service", KEY_ENABLE, "no")]), true);
        assert!(a.request.is_none() && a.warnings.is_empty() && a.errors.is_empty());
        let a = read_annotations(
            &unit("a.service", &[("Service", KEY_MODE, "chroot-only")]),
            true,
        );
        assert!(a.request.is_none());
        assert_eq!(
            messages(&a.warnings),
            [
                "/etc/systemd/system/u:1: a.service: warning: X-ConfinementMode has no effect without X-ConfinementEnable=yes"
            ]
        );
    }

    #[test]
    fn wrong_section_wrong_unit_type_and_misspellings_warn() {
        let a = read_annotations(
            &unit(
                "a.service",
                &[
                    ("Unit", KEY_ENABLE, "yes"),
                    ("Service", "X-ConfinementEnabled", "yes"),
                    ("Service", "X-confinementenable", "yes"),
                    ("Service", "X-Confinement-Packages", "/a"),
                    ("Service", "X-Other", "1"),
                ],
            ),
            true,
        );
        assert!(a.request.is_none());
        assert_eq!(
            messages(&a.warnings),
            [
                "/etc/systemd/system/u:1: a.service: warning: X-ConfinementEnable in [Unit]; annotations belong in [Service]: ignored",
                "/etc/systemd/system/u:2: a.service: warning: unknown key X-ConfinementEnabled (did you mean X-ConfinementEnable?): ignored, the unit is not confined by it",
                "/etc/systemd/system/u:3: a.service: warning: unknown key X-confinementenable (did you mean X-ConfinementEnable?): ignored, the unit is not confined by it",
                "/etc/systemd/system/u:4: a.service: warning: unknown key X-Confinement-Packages (did you mean X-ConfinementPackages?): ignored, the unit is not confined by it",
            ]
        );
        let a = read_annotations(&unit("a.socket", &[("Socket", KEY_ENABLE, "yes")]), false);
        assert!(a.request.is_none());
        assert_eq!(
            messages(&a.warnings),
            [
                "/etc/systemd/system/u:1: a.socket: warning: X-ConfinementEnable in a unit that is not a service; only services can be confined: ignored"
            ]
        );
    }
}
