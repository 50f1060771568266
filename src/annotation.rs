//! The `X-Confinement*` keys (see nix-confinement(5)) of a merged unit, read into a typed
//! request, with warnings for keys that look like annotations but are not.

use crate::diag::{Diagnostic, Location};
use crate::unit::{MergedUnit, Setting};
use camino::Utf8PathBuf;

pub const KEY_ENABLE: &str = "X-ConfinementEnable";
pub const KEY_MODE: &str = "X-ConfinementMode";
pub const KEY_FULL_UNIT: &str = "X-ConfinementFullUnit";
pub const KEY_PACKAGES: &str = "X-ConfinementPackages";
pub const KEY_BIN_SH: &str = "X-ConfinementBinSh";
pub const KEY_HOST_PATHS: &str = "X-ConfinementHostPaths";
pub const KNOWN_KEYS: &[&str] = &[
    KEY_ENABLE,
    KEY_MODE,
    KEY_FULL_UNIT,
    KEY_PACKAGES,
    KEY_BIN_SH,
    KEY_HOST_PATHS,
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
    /// `X-ConfinementHostPaths=`, in order (see [`crate::host`]).
    pub host_paths: Vec<Located<HostPath>>,
}

/// One word of `X-ConfinementHostPaths=`: a host path, or a named set of
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPath {
    /// An absolute, normalized path (no `.` or `..`, no repeated `/`).
    Path(Utf8PathBuf),
    Set(crate::host_sets::HostSet),
}

impl Request {
    /// Where each setting that takes effect was made: the assignment each
    /// single-valued key was read from, every assignment of
    /// `X-ConfinementPackages=` and `X-ConfinementHostPaths=` after its last
    /// reset. (Taken apart whole, so
    /// that a key added to the request cannot be left out here.)
    pub fn effective_locations(&self) -> Vec<&Location> {
        let Request {
            enable,
            mode,
            full_unit,
            packages,
            bin_sh,
            host_paths,
        } = self;
        let mut locations: Vec<&Location> = Vec::new();
        locations.extend(&enable.location);
        locations.extend(mode.as_ref().and_then(|m| m.location.as_ref()));
        locations.extend(&full_unit.location);
        locations.extend(packages.iter().filter_map(|p| p.location.as_ref()));
        locations.extend(host_paths.iter().filter_map(|p| p.location.as_ref()));
        match bin_sh {
            BinSh::Default => {}
            BinSh::Disabled(location) | BinSh::Program(_, location) => locations.push(location),
        }
        locations
    }
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
/// types, which cannot be confined.
///
/// A key that shows the intent to confine without being the one the
/// generator reads — `X-ConfinementEnable=` in another section, in another
/// letter case, misspelt (`X-ConfinementEnabled=`), see [`probable_key`] —
/// with a value that is not a "no" blocks a service, unless the service
/// validly says `X-ConfinementEnable=yes` or `=no` in `[Service]`: an
/// administrator who wrote it expects the service confined, and it must not
/// run open. On a unit that is not a service such a key is an error too (in
/// `errors`, with no request): nothing will confine that unit.
pub fn read_annotations(unit: &MergedUnit, is_service: bool) -> Annotations {
    let mut read = Reader {
        name: &unit.name,
        settings: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let strays = read.sort(unit, is_service);
    let blocking_intent = read.report_strays(&strays, is_service);
    let request = if read.settings.is_empty() && blocking_intent.is_none() {
        None
    } else {
        read.request(blocking_intent)
    };
    Annotations {
        request,
        errors: read.errors,
        warnings: read.warnings,
    }
}

/// Reads one unit's annotations, collecting what is wrong with them.
struct Reader<'u> {
    name: &'u str,
    /// The annotation keys in `[Service]` of a service, in order.
    settings: Vec<&'u Setting>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl<'u> Reader<'u> {
    /// Keeps the settings the generator reads; returns the strays (keys
    /// that look like annotations but are not read as one).
    fn sort(&mut self, unit: &'u MergedUnit, is_service: bool) -> Vec<Stray<'u>> {
        let mut strays = Vec::new();
        for setting in &unit.settings {
            match KNOWN_KEYS.iter().find(|k| **k == setting.key) {
                Some(_) if is_service && setting.section == "Service" => {
                    self.settings.push(setting);
                }
                Some(key) => strays.push(Stray {
                    setting,
                    meant: key,
                    misspelt: false,
                }),
                None => {
                    if let Some(meant) =
                        probable_key(&setting.section, &setting.key, &setting.value)
                    {
                        strays.push(Stray {
                            setting,
                            meant,
                            misspelt: true,
                        });
                    }
                }
            }
        }
        strays
    }

    /// The last assignment of `key`.
    fn last(&self, key: &str) -> Option<&'u Setting> {
        self.settings.iter().rev().find(|s| s.key == key).copied()
    }

    /// The last assignment of `key` that is not a reset (empty).
    fn last_set(&self, key: &str) -> Option<&'u Setting> {
        self.last(key).filter(|s| !s.value.is_empty())
    }

    fn error(&mut self, setting: &Setting, message: String) {
        self.errors.push(Diagnostic::error(
            Some(self.name),
            Some(setting.location.clone()),
            message,
        ));
    }

    /// The boolean `key` is set to; an invalid value is an error and
    /// counts as `invalid`.
    fn boolean(&mut self, key: &str, invalid: bool) -> Located<bool> {
        match self.last_set(key) {
            None => Located {
                value: false,
                location: None,
            },
            Some(setting) => {
                let value = parse_boolean(&setting.value).unwrap_or_else(|| {
                    self.error(
                        setting,
                        format!("{key}={:?} is not a boolean", setting.value),
                    );
                    invalid
                });
                Located {
                    value,
                    location: Some(setting.location.clone()),
                }
            }
        }
    }

    /// Errors for the strays that show the intent to confine, warnings for
    /// the others; returns the first that blocks the unit.
    fn report_strays(&mut self, strays: &[Stray<'u>], is_service: bool) -> Option<&'u Setting> {
        // The unit says yes or no in [Service] (an invalid value blocks it
        // by itself): it decides.
        let decided = self.last_set(KEY_ENABLE).is_some();
        let mut blocking_intent = None;
        for stray in strays {
            let setting = stray.setting;
            let location = Some(setting.location.clone());
            let key = setting.key.escape_debug();
            if stray.shows_intent() && (!is_service || !decided) {
                let value = excerpt(&setting.value);
                let message = if is_service {
                    blocking_intent.get_or_insert(setting);
                    let place = if setting.section == "Service" {
                        String::new()
                    } else {
                        format!(" in [{}]", setting.section.escape_debug())
                    };
                    format!(
                        "{key}={value}{place} asks to confine the unit but is not read: did you \
                         mean {KEY_ENABLE}= in [Service]? Blocked until [Service] says \
                         {KEY_ENABLE}=yes or =no"
                    )
                } else {
                    format!(
                        "{key}={value} asks to confine a unit that is not a service; only services \
                         can be confined, so nothing confines this one (annotate the service instead)"
                    )
                };
                self.errors
                    .push(Diagnostic::error(Some(self.name), location, message));
                continue;
            }
            let message = if stray.misspelt {
                format!(
                    "unknown key {key} (did you mean {}?): ignored, the unit is not confined by it",
                    stray.meant
                )
            } else if is_service {
                format!(
                    "{key} in [{}]; annotations belong in [Service]: ignored",
                    setting.section.escape_debug()
                )
            } else {
                format!(
                    "{key} in a unit that is not a service; only services can be confined: ignored"
                )
            };
            self.warnings
                .push(Diagnostic::warning(Some(self.name), location, message));
        }
        blocking_intent
    }

    /// The request: `None` when the unit does not ask to be confined. An
    /// invalid enable value, or the intent shown by a key that is not read
    /// (`blocking_intent`), is a request that cannot be honoured: the unit
    /// is blocked rather than left open.
    fn request(&mut self, blocking_intent: Option<&Setting>) -> Option<Request> {
        let mut enable = self.boolean(KEY_ENABLE, true);
        if enable.location.is_none()
            && let Some(stray) = blocking_intent
        {
            enable = Located {
                value: true,
                location: Some(stray.location.clone()),
            };
        }
        if !enable.value {
            for setting in self.settings.iter().filter(|s| s.key != KEY_ENABLE) {
                self.warnings.push(Diagnostic::warning(
                    Some(self.name),
                    Some(setting.location.clone()),
                    format!("{} has no effect without {KEY_ENABLE}=yes", setting.key),
                ));
            }
            return None;
        }
        Some(Request {
            enable,
            mode: self.mode(),
            full_unit: self.boolean(KEY_FULL_UNIT, false),
            packages: self.packages(),
            bin_sh: self.bin_sh(),
            host_paths: self.host_paths(),
        })
    }

    fn mode(&mut self) -> Option<Located<Mode>> {
        let setting = self.last_set(KEY_MODE)?;
        match Mode::parse(&setting.value) {
            Some(mode) => Some(Located {
                value: mode,
                location: Some(setting.location.clone()),
            }),
            None => {
                self.error(
                    setting,
                    format!(
                        "{KEY_MODE}={:?} is not one of full-apivfs, chroot-only",
                        setting.value
                    ),
                );
                None
            }
        }
    }

    /// Every path of every assignment since the last reset.
    fn packages(&mut self) -> Vec<Located<Utf8PathBuf>> {
        let mut packages = Vec::new();
        let assignments: Vec<&Setting> = self
            .settings
            .iter()
            .filter(|s| s.key == KEY_PACKAGES)
            .copied()
            .collect();
        for setting in assignments {
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
                    self.error(
                        setting,
                        format!("{KEY_PACKAGES}: {word:?} is not an absolute path"),
                    );
                }
            }
        }
        packages
    }

    /// Every word of every assignment since the last reset: a named set
    /// (`@resolve`) or an absolute path, made normal (repeated and trailing
    /// `/` dropped); `.` and `..` are refused, since the path is shown at
    /// the same place inside.
    fn host_paths(&mut self) -> Vec<Located<HostPath>> {
        let mut paths = Vec::new();
        let assignments: Vec<&Setting> = self
            .settings
            .iter()
            .filter(|s| s.key == KEY_HOST_PATHS)
            .copied()
            .collect();
        for setting in assignments {
            if setting.value.is_empty() {
                paths.clear();
                continue;
            }
            for word in setting.value.split_ascii_whitespace() {
                match parse_host_path(word) {
                    Ok(value) => paths.push(Located {
                        value,
                        location: Some(setting.location.clone()),
                    }),
                    Err(why) => self.error(setting, format!("{KEY_HOST_PATHS}: {why}")),
                }
            }
        }
        paths
    }

    fn bin_sh(&mut self) -> BinSh {
        match self.last(KEY_BIN_SH) {
            None => BinSh::Default,
            Some(setting) if setting.value.is_empty() => BinSh::Disabled(setting.location.clone()),
            Some(setting)
                if setting.value.starts_with('/')
                    && !setting.value.contains(char::is_whitespace) =>
            {
                BinSh::Program(Utf8PathBuf::from(&setting.value), setting.location.clone())
            }
            Some(setting) => {
                self.error(
                    setting,
                    format!("{KEY_BIN_SH}={:?} is not an absolute path", setting.value),
                );
                BinSh::Default
            }
        }
    }
}

/// A word of `X-ConfinementHostPaths=` that is not a host path: the word
/// as written and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPathSyntaxError {
    /// `@name` names no set.
    UnknownSet(String),
    NotAbsolute(String),
    ControlCharacter(String),
    /// A `.` or `..` component: the path must be named as it is on the host.
    DotComponent(String),
}

impl std::fmt::Display for HostPathSyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPathSyntaxError::UnknownSet(word) => write!(
                f,
                "\"{}\" is not a set of host paths (one of {})",
                word.escape_debug(),
                crate::host_sets::HostSet::names()
            ),
            HostPathSyntaxError::NotAbsolute(word) => write!(
                f,
                "\"{}\" is neither an absolute path nor a set (@name)",
                word.escape_debug()
            ),
            HostPathSyntaxError::ControlCharacter(word) => {
                write!(f, "\"{}\" holds a control character", word.escape_debug())
            }
            HostPathSyntaxError::DotComponent(word) => write!(
                f,
                "{word:?} has a . or .. component: name the path as it is on the host"
            ),
        }
    }
}

impl std::error::Error for HostPathSyntaxError {}

/// One word of `X-ConfinementHostPaths=`, or why it is not one.
pub fn parse_host_path(word: &str) -> Result<HostPath, HostPathSyntaxError> {
    if let Some(name) = word.strip_prefix('@') {
        return crate::host_sets::HostSet::parse(name)
            .map(HostPath::Set)
            .ok_or_else(|| HostPathSyntaxError::UnknownSet(word.to_owned()));
    }
    if !word.starts_with('/') {
        return Err(HostPathSyntaxError::NotAbsolute(word.to_owned()));
    }
    if word.chars().any(char::is_control) {
        return Err(HostPathSyntaxError::ControlCharacter(word.to_owned()));
    }
    let components: Vec<&str> = word.split('/').filter(|c| !c.is_empty()).collect();
    if components.iter().any(|c| *c == "." || *c == "..") {
        return Err(HostPathSyntaxError::DotComponent(word.to_owned()));
    }
    Ok(HostPath::Path(Utf8PathBuf::from(format!(
        "/{}",
        components.join("/")
    ))))
}

/// A setting that looks like an annotation but is not read as one.
struct Stray<'a> {
    setting: &'a Setting,
    /// The annotation key it probably meant.
    meant: &'static str,
    /// Not the key itself (misspelt, another case); else a key in the wrong
    /// section or unit.
    misspelt: bool,
}

impl Stray<'_> {
    /// Whether it asks to confine the unit: it means the enable key and its
    /// value is not empty (a reset) and not a "no".
    fn shows_intent(&self) -> bool {
        let value = &self.setting.value;
        self.meant == KEY_ENABLE && !value.is_empty() && parse_boolean(value) != Some(false)
    }
}

/// The annotation key that `key` (in `section`, set to `value`) probably
/// meant, when it looks like one and is not one:
/// - the letters and digits of a known key in any case, whatever the
///   punctuation (`X-confinementenable`, `X-Confinement-Enable`, a
///   byte-order mark before it);
/// - else a known key within two edits (`X-ConfinementEnabled`,
///   `X-ConfinmentEnable`);
/// - else, for a key that starts like an annotation (`X-Confin…`,
///   `Confin…`, any case) or is within three edits of one, the nearest key
///   whose kind of value fits the value (`X-Confinement=yes` asks for
///   `X-ConfinementEnable=`, `X-ConfinementFull=yes` for
///   `X-ConfinementFullUnit=`), or the nearest key when none fits.
///
/// In a section named like an annotation (`[X-Confinement]`), the section's
/// name is read before the key (`Enable=` there is `X-ConfinementEnable=`).
fn probable_key(section: &str, key: &str, value: &str) -> Option<&'static str> {
    let mut name = letters_and_digits(key);
    if !looks_like_annotation(&name) {
        let section = letters_and_digits(section);
        if looks_like_annotation(&section) {
            name = section + &name;
        }
    }
    let annotation_like = looks_like_annotation(&name);
    // Most keys of a unit are nowhere near an annotation: an edit changes
    // the length by one at most and the counts of letters by two, so a key
    // further off than that from every known key is skipped before any
    // distance is computed.
    let letters = letter_counts(&name);
    let near = |known: &str| {
        name.len().abs_diff(known.len()) <= 3
            && letter_count_gap(&letters, &letter_counts(known)) <= 6
    };
    if !annotation_like && !KNOWN_LETTERS.iter().any(|known| near(known)) {
        return None;
    }
    let distances: Vec<(&'static str, usize)> = KNOWN_KEYS
        .iter()
        .zip(KNOWN_LETTERS)
        .map(|(key, known)| (*key, edit_distance(&name, known)))
        .collect();
    let (nearest, distance) = *distances.iter().min_by_key(|(_, d)| *d)?;
    if distance <= 2 {
        return Some(nearest);
    }
    if !annotation_like && distance > 3 {
        return None;
    }
    distances
        .iter()
        .filter(|(known, _)| value_fits(known, value))
        .min_by_key(|(_, d)| *d)
        .map_or(Some(nearest), |(known, _)| Some(*known))
}

/// [`KNOWN_KEYS`] as [`letters_and_digits`] reads them.
const KNOWN_LETTERS: [&str; 6] = [
    "xconfinementenable",
    "xconfinementmode",
    "xconfinementfullunit",
    "xconfinementpackages",
    "xconfinementbinsh",
    "xconfinementhostpaths",
];

fn letters_and_digits(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// How often each lowercase letter and digit occurs.
fn letter_counts(letters_and_digits: &str) -> [u8; 36] {
    let mut counts = [0u8; 36];
    for b in letters_and_digits.bytes() {
        let slot = match b {
            b'a'..=b'z' => b - b'a',
            b'0'..=b'9' => 26 + b - b'0',
            _ => continue,
        };
        counts[usize::from(slot)] = counts[usize::from(slot)].saturating_add(1);
    }
    counts
}

/// At most twice the edit distance of the two texts these count.
fn letter_count_gap(a: &[u8; 36], b: &[u8; 36]) -> usize {
    a.iter()
        .zip(b)
        .map(|(x, y)| usize::from(x.abs_diff(*y)))
        .sum()
}

fn looks_like_annotation(letters_and_digits: &str) -> bool {
    letters_and_digits.starts_with("xconfin") || letters_and_digits.starts_with("confin")
}

/// Whether `value` is the kind of value `key` takes.
fn value_fits(key: &str, value: &str) -> bool {
    match key {
        KEY_ENABLE | KEY_FULL_UNIT => parse_boolean(value).is_some(),
        KEY_MODE => Mode::parse(value).is_some(),
        KEY_PACKAGES => {
            !value.is_empty() && value.split_ascii_whitespace().all(|w| w.starts_with('/'))
        }
        KEY_BIN_SH => value.starts_with('/') && !value.contains(char::is_whitespace),
        KEY_HOST_PATHS => {
            !value.is_empty()
                && value
                    .split_ascii_whitespace()
                    .all(|w| w.starts_with('/') || w.starts_with('@'))
        }
        _ => false,
    }
}

/// A value for a message: control and invisible characters escaped, cut
/// short.
fn excerpt(value: &str) -> String {
    const MAX_CHARS: usize = 40;
    match value.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", value[..cut].escape_debug()),
        None => value.escape_debug().to_string(),
    }
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

    /// A spelling or place that shows the intent to confine blocks the
    /// service: the request is there (enable, at the stray key) with an
    /// error that names the key it probably meant.
    #[test]
    fn misspelt_miscased_or_misplaced_enable_blocks_a_service() {
        for (section, key, value) in [
            ("Unit", KEY_ENABLE, "yes"),
            ("Install", KEY_ENABLE, "true"),
            ("X-Mine", KEY_ENABLE, "1"),
            ("Service", "X-ConfinementEnabled", "yes"),
            ("Service", "X-confinementenable", "yes"),
            ("Service", "X-CONFINEMENTENABLE", "on"),
            ("Service", "X-Confinement-Enable", "y"),
            ("Service", "X_ConfinementEnable", "yes"),
            ("Service", "\u{feff}X-ConfinementEnable", "yes"),
            ("Service", "X-ConfinmentEnable", "yes"),
            ("Service", "ConfinementEnable", "yes"),
            ("Service", "X-Confinement", "yes"),
            ("Service", "X-ConfinementOn", "yes"),
            ("Unit", "X-ConfinementEnabled", "yes"),
            ("X-Confinement", "Enable", "yes"),
            // Not a boolean: an invalid request, blocked as the key's own
            // invalid value is.
            ("Service", "X-ConfinementEnabled", "perhaps"),
        ] {
            let a = read_annotations(
                &unit(
                    "a.service",
                    &[
                        ("Service", "ExecStart", "/bin/true"),
                        (section, key, value),
                        ("Service", KEY_MODE, "chroot-only"),
                    ],
                ),
                true,
            );
            let request = a
                .request
                .as_ref()
                .unwrap_or_else(|| panic!("{key}: left open"));
            assert!(request.enable.value, "{key}");
            assert_eq!(request.enable.location.as_ref().unwrap().line, 2, "{key}");
            assert_eq!(request.mode.as_ref().unwrap().value, Mode::ChrootOnly);
            let errors = messages(&a.errors);
            assert_eq!(errors.len(), 1, "{key}: {errors:?}");
            assert!(
                errors[0].starts_with("/etc/systemd/system/u:2: a.service: ")
                    && errors[0].contains(&format!("{}={value}", key.escape_debug()))
                    && errors[0].contains("did you mean X-ConfinementEnable= in [Service]?"),
                "{key}: {errors:?}"
            );
            assert!(a.warnings.is_empty(), "{key}: {:?}", a.warnings);
        }
        let a = read_annotations(&unit("a.service", &[("Unit", KEY_ENABLE, "yes")]), true);
        assert_eq!(
            messages(&a.errors),
            [
                "/etc/systemd/system/u:1: a.service: X-ConfinementEnable=yes in [Unit] asks to \
                 confine the unit but is not read: did you mean X-ConfinementEnable= in \
                 [Service]? Blocked until [Service] says X-ConfinementEnable=yes or =no"
            ]
        );
    }

    /// A valid X-ConfinementEnable= in [Service] decides: "no" leaves the
    /// unit alone, "yes" confines it; the stray keys only warn.
    #[test]
    fn a_valid_enable_decides_and_stray_keys_then_warn() {
        let strays = [
            ("Unit", KEY_ENABLE, "yes"),
            ("Service", "X-ConfinementEnabled", "yes"),
            ("Service", "X-confinementenable", "yes"),
            ("Service", "X-Confinement-Packages", "/a"),
            ("Service", "X-Other", "1"),
        ];
        let expected_warnings = [
            "/etc/systemd/system/u:2: a.service: warning: X-ConfinementEnable in [Unit]; annotations belong in [Service]: ignored",
            "/etc/systemd/system/u:3: a.service: warning: unknown key X-ConfinementEnabled (did you mean X-ConfinementEnable?): ignored, the unit is not confined by it",
            "/etc/systemd/system/u:4: a.service: warning: unknown key X-confinementenable (did you mean X-ConfinementEnable?): ignored, the unit is not confined by it",
            "/etc/systemd/system/u:5: a.service: warning: unknown key X-Confinement-Packages (did you mean X-ConfinementPackages?): ignored, the unit is not confined by it",
        ];
        for (enable, confined) in [("no", false), ("NO", false), ("yes", true)] {
            // The valid key may come before or after the stray ones.
            for valid_first in [true, false] {
                let mut lines = strays.to_vec();
                if valid_first {
                    lines.insert(0, ("Service", KEY_ENABLE, enable));
                } else {
                    lines.push(("Service", KEY_ENABLE, enable));
                }
                let a = read_annotations(&unit("a.service", &lines), true);
                assert_eq!(a.request.is_some(), confined, "{enable}");
                assert!(a.errors.is_empty(), "{enable}: {:?}", a.errors);
                let mut warnings = messages(&a.warnings);
                if !valid_first {
                    // Renumber: the stray keys start on line 1.
                    warnings = warnings
                        .iter()
                        .map(|w| {
                            let line: u32 = w["/etc/systemd/system/u:".len()..]
                                .split(':')
                                .next()
                                .unwrap()
                                .parse()
                                .unwrap();
                            w.replacen(&format!("u:{line}:"), &format!("u:{}:", line + 1), 1)
                        })
                        .collect();
                }
                assert_eq!(warnings, expected_warnings, "{enable} {valid_first}");
            }
        }
    }

    /// Keys that do not ask to confine (a "no", a reset, another key than
    /// the enable key) only warn, with the key they probably meant.
    #[test]
    fn stray_keys_that_do_not_ask_to_confine_only_warn() {
        let a = read_annotations(
            &unit(
                "a.service",
                &[
                    ("Service", "X-ConfinementEnabled", "no"),
                    ("Unit", KEY_ENABLE, "off"),
                    ("Service", "X-ConfinementEnabled", ""),
                    ("Unit", KEY_MODE, "chroot-only"),
                    ("Service", "X-ConfinementFull", "yes"),
                    ("Service", "X-ConfinementModes", "chroot-only"),
                    ("X-Confinement", "Packages", "/a"),
                ],
            ),
            true,
        );
        assert!(a.request.is_none() && a.errors.is_empty(), "{a:?}");
        assert_eq!(
            messages(&a.warnings),
            [
                "/etc/systemd/system/u:1: a.service: warning: unknown key X-ConfinementEnabled (did you mean X-ConfinementEnable?): ignored, the unit is not confined by it",
                "/etc/systemd/system/u:2: a.service: warning: X-ConfinementEnable in [Unit]; annotations belong in [Service]: ignored",
                "/etc/systemd/system/u:3: a.service: warning: unknown key X-ConfinementEnabled (did you mean X-ConfinementEnable?): ignored, the unit is not confined by it",
                "/etc/systemd/system/u:4: a.service: warning: X-ConfinementMode in [Unit]; annotations belong in [Service]: ignored",
                "/etc/systemd/system/u:5: a.service: warning: unknown key X-ConfinementFull (did you mean X-ConfinementFullUnit?): ignored, the unit is not confined by it",
                "/etc/systemd/system/u:6: a.service: warning: unknown key X-ConfinementModes (did you mean X-ConfinementMode?): ignored, the unit is not confined by it",
                "/etc/systemd/system/u:7: a.service: warning: unknown key Packages (did you mean X-ConfinementPackages?): ignored, the unit is not confined by it",
            ]
        );
    }

    /// A unit that is not a service cannot be confined: asking for it is an
    /// error (and no request), other annotations there only warn.
    #[test]
    fn annotations_on_a_unit_that_is_not_a_service() {
        let a = read_annotations(
            &unit(
                "a.socket",
                &[
                    ("Socket", KEY_ENABLE, "yes"),
                    ("Socket", KEY_ENABLE, "no"),
                    ("Service", KEY_MODE, "chroot-only"),
                    ("Socket", "X-ConfinementEnabled", "1"),
                ],
            ),
            false,
        );
        assert!(a.request.is_none());
        assert_eq!(
            messages(&a.errors),
            [
                "/etc/systemd/system/u:1: a.socket: X-ConfinementEnable=yes asks to confine a unit that is not a service; only services can be confined, so nothing confines this one (annotate the service instead)",
                "/etc/systemd/system/u:4: a.socket: X-ConfinementEnabled=1 asks to confine a unit that is not a service; only services can be confined, so nothing confines this one (annotate the service instead)",
            ]
        );
        assert_eq!(
            messages(&a.warnings),
            [
                "/etc/systemd/system/u:2: a.socket: warning: X-ConfinementEnable in a unit that is not a service; only services can be confined: ignored",
                "/etc/systemd/system/u:3: a.socket: warning: X-ConfinementMode in a unit that is not a service; only services can be confined: ignored",
            ]
        );
    }

    #[test]
    fn probable_keys() {
        for (section, key, value, meant) in [
            ("Service", "X-confinementmode", "x", Some(KEY_MODE)),
            ("Service", "X-Confinement-Bin-Sh", "", Some(KEY_BIN_SH)),
            ("Service", "X-ConfinementPackage", "yes", Some(KEY_PACKAGES)),
            (
                "Service",
                "X-ConfinementFullunits",
                "yes",
                Some(KEY_FULL_UNIT),
            ),
            ("Service", "X-Confinement", "yes", Some(KEY_ENABLE)),
            ("Service", "X-Confinement", "chroot-only", Some(KEY_MODE)),
            (
                "Service",
                "X-Confinement",
                "/nix/store/x /y",
                Some(KEY_PACKAGES),
            ),
            ("Service", "X-Confined", "true", Some(KEY_ENABLE)),
            ("Service", "X-Confinement-Full", "yes", Some(KEY_FULL_UNIT)),
            ("Service", "XConfinementEnable", "yes", Some(KEY_ENABLE)),
            ("X-Confinement", "enable", "yes", Some(KEY_ENABLE)),
            ("X-Confinement", "Mode", "yes", Some(KEY_MODE)),
            ("Service", "Enable", "yes", None),
            ("Service", "ConfigurationDirectory", "x", None),
            ("Service", "X-Other", "yes", None),
            ("Service", "ExecStart", "/bin/true", None),
            ("Service", "ProtectKernelTunables", "yes", None),
            ("X-Mine", "Enable", "yes", None),
        ] {
            assert_eq!(
                probable_key(section, key, value),
                meant,
                "[{section}] {key}={value}"
            );
        }
    }

    #[test]
    fn host_paths_accumulate_reset_and_are_made_normal() {
        use crate::host_sets::HostSet;
        let a = read_annotations(
            &unit(
                "a.service",
                &[
                    ("Service", KEY_ENABLE, "yes"),
                    ("Service", KEY_HOST_PATHS, "/etc/passwd"),
                    ("Service", KEY_HOST_PATHS, ""),
                    ("Service", KEY_HOST_PATHS, "@resolve //etc//hosts/ @users"),
                    ("Service", KEY_HOST_PATHS, "relative @nope /a/../b /x\x01y"),
                ],
            ),
            true,
        );
        let request = a.request.unwrap();
        let paths: Vec<HostPath> = request.host_paths.iter().map(|p| p.value.clone()).collect();
        assert_eq!(
            paths,
            [
                HostPath::Set(HostSet::Resolve),
                HostPath::Path(Utf8PathBuf::from("/etc/hosts")),
                HostPath::Set(HostSet::Users),
            ]
        );
        assert_eq!(request.host_paths[0].location.as_ref().unwrap().line, 4);
        assert_eq!(
            messages(&a.errors),
            [
                "/etc/systemd/system/u:5: a.service: X-ConfinementHostPaths: \"relative\" is neither an absolute path nor a set (@name)",
                "/etc/systemd/system/u:5: a.service: X-ConfinementHostPaths: \"@nope\" is not a set of host paths (one of @resolve, @tls, @timezone, @users)",
                "/etc/systemd/system/u:5: a.service: X-ConfinementHostPaths: \"/a/../b\" has a . or .. component: name the path as it is on the host",
                "/etc/systemd/system/u:5: a.service: X-ConfinementHostPaths: \"/x\\u{1}y\" holds a control character",
            ]
        );
        assert_eq!(
            probable_key("Service", "X-ConfinementHostPath", "@tls"),
            Some(KEY_HOST_PATHS)
        );
    }

    #[test]
    fn known_letters_are_the_known_keys() {
        let letters: Vec<String> = KNOWN_KEYS.iter().map(|k| letters_and_digits(k)).collect();
        assert_eq!(letters, KNOWN_LETTERS);
    }

    /// The shortcut skips only keys more than three edits from every known
    /// key: a key three edits away is still found.
    #[test]
    fn three_edits_away_is_still_a_near_miss() {
        for key in [
            "Y-KonfinementEnable",
            "X-ConfinementEnableXYZ",
            "X-ConfinementEn",
            "Q-CQnfinemenQMode",
            "X-ConfinementFullUnit3",
        ] {
            assert!(probable_key("Service", key, "").is_some(), "{key}");
        }
        for key in [
            "X-KonfinementEnablezzzz",
            "ProtectKernelTunables",
            "Y-KonfinemeQtEnablQ",
        ] {
            assert_eq!(probable_key("Service", key, ""), None, "{key}");
        }
    }
}
