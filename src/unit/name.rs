//! Unit names as systemd.unit(5) defines them: `prefix.type`,
//! `prefix@.type` (a template) and `prefix@instance.type` (an instance).

/// systemd's `UNIT_NAME_MAX`: a name must be shorter than 256 bytes.
const UNIT_NAME_MAX: usize = 255;

/// The unit types of systemd.unit(5).
pub const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "slice",
    "scope",
];

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_' | b'.' | b'\\')
}

/// The parts of a valid unit name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitName<'a> {
    pub prefix: &'a str,
    /// `None` for a plain unit, `Some("")` for a template.
    pub instance: Option<&'a str>,
    pub unit_type: &'a str,
}

impl<'a> UnitName<'a> {
    pub fn parse(name: &'a str) -> Option<Self> {
        if name.is_empty() || name.len() > UNIT_NAME_MAX {
            return None;
        }
        // Bytes, not `rsplit_once(char)`: names are parsed ten thousand
        // times a run, and the char searchers cost several times more.
        let bytes = name.as_bytes();
        let dot = bytes.iter().rposition(|&b| b == b'.')?;
        let (stem, unit_type) = (&name[..dot], &name[dot + 1..]);
        if !UNIT_TYPES.contains(&unit_type) {
            return None;
        }
        let (prefix, instance) = match stem.bytes().position(|b| b == b'@') {
            Some(at) => (&stem[..at], Some(&stem[at + 1..])),
            None => (stem, None),
        };
        let valid = !prefix.is_empty()
            && prefix.bytes().all(is_name_char)
            && instance.is_none_or(|i| i.bytes().all(|b| is_name_char(b) || b == b'@'));
        valid.then_some(UnitName {
            prefix,
            instance,
            unit_type,
        })
    }

    pub fn is_template(&self) -> bool {
        self.instance == Some("")
    }

    pub fn is_instance(&self) -> bool {
        self.instance.is_some_and(|i| !i.is_empty())
    }

    /// `foo@.service` for `foo@bar.service`.
    pub fn template(&self) -> Option<String> {
        self.is_instance()
            .then(|| format!("{}@.{}", self.prefix, self.unit_type))
    }
}

/// The names whose `NAME.d/` directories hold drop-ins for `name` in one
/// search directory, most specific first, as systemd's
/// `unit_file_find_dirs()` walks them: the name, its template and each
/// dash-truncated prefix (`foo-bar-.service`, `foo-.service`). The top-level
/// type directory (`service.d/`) is not among them: it ranks below every
/// name's directories in every search directory.
pub fn dropin_dir_names(name: &str) -> Vec<String> {
    let mut names = Vec::new();
    push_dropin_dir_names(name, &mut names);
    names
}

/// `unit_file_find_dirs()`: the name itself, then (for an instance) its
/// template's list, then the list of the dash-truncated name, which keeps
/// the instance: `foo-bar@x.service` → `foo-bar@x`, `foo-bar@`, `foo-`,
/// `foo-@x`, `foo-@`. A name already listed adds nothing (its files were
/// taken at its first place), so it is listed once.
fn push_dropin_dir_names(name: &str, names: &mut Vec<String>) {
    if !names.iter().any(|n| n == name) {
        names.push(name.to_owned());
    }
    let Some(parsed) = UnitName::parse(name) else {
        return;
    };
    if let Some(template) = parsed.template() {
        push_dropin_dir_names(&template, names);
    }
    let Some(prefix) = dash_truncated(parsed.prefix) else {
        return;
    };
    let truncated = match parsed.instance {
        Some(instance) if !instance.is_empty() => {
            format!("{prefix}@{instance}.{}", parsed.unit_type)
        }
        _ => format!("{prefix}.{}", parsed.unit_type),
    };
    if truncated.len() <= UNIT_NAME_MAX {
        push_dropin_dir_names(&truncated, names);
    }
}

/// The prefix cut after its last dash (`foo-bar` → `foo-`); a prefix that
/// ends in a dash loses it first (`foo-bar-` → `foo-`). `None` without a
/// dash or with only a leading one.
fn dash_truncated(prefix: &str) -> Option<&str> {
    let mut rest = prefix;
    let mut chopped = false;
    loop {
        let dash = rest.rfind('-')?;
        if dash == 0 {
            return None;
        }
        if dash + 1 < rest.len() || chopped {
            return Some(&rest[..=dash]);
        }
        rest = &rest[..dash];
        chopped = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_template_and_instance_names() {
        let plain = UnitName::parse("foo.service").unwrap();
        assert_eq!(
            (plain.prefix, plain.instance, plain.unit_type),
            ("foo", None, "service")
        );
        assert!(UnitName::parse("foo@.service").unwrap().is_template());
        let instance = UnitName::parse("foo@bar-1.service").unwrap();
        assert!(instance.is_instance());
        assert_eq!(instance.template().as_deref(), Some("foo@.service"));
    }

    #[test]
    fn rejects_invalid_names() {
        for bad in [
            "",
            ".service",
            "foo",
            "foo.",
            "@x.service",
            "a b.service",
            "föö.service",
            "a/b.service",
        ] {
            assert!(UnitName::parse(bad).is_none(), "{bad}");
        }
        assert!(UnitName::parse(&format!("{}.service", "a".repeat(250))).is_none());
    }

    #[test]
    fn dropin_dirs_follow_systemd_order() {
        assert_eq!(
            dropin_dir_names("foo-bar-baz.service"),
            ["foo-bar-baz.service", "foo-bar-.service", "foo-.service",]
        );
        // Checked against systemd 252 (systemd-analyze --root verify): an
        // instance's dash-truncated names keep the instance.
        assert_eq!(
            dropin_dir_names("foo-bar@x.service"),
            [
                "foo-bar@x.service",
                "foo-bar@.service",
                "foo-.service",
                "foo-@x.service",
                "foo-@.service"
            ]
        );
        assert_eq!(
            dropin_dir_names("foo-bar-baz@x.service"),
            [
                "foo-bar-baz@x.service",
                "foo-bar-baz@.service",
                "foo-bar-.service",
                "foo-.service",
                "foo-bar-@x.service",
                "foo-bar-@.service",
                "foo-@x.service",
                "foo-@.service"
            ]
        );
        assert_eq!(
            dropin_dir_names("foo--bar.service"),
            ["foo--bar.service", "foo--.service", "foo-.service"]
        );
        assert_eq!(dropin_dir_names("-foo.service"), ["-foo.service"]);
        assert_eq!(dropin_dir_names("plain.service"), ["plain.service"]);
    }
}
