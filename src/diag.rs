//! Diagnostics: every problem names the unit, the file and line, and the path
//! involved, so an administrator can act on it without reading our code.

use camino::{Utf8Path, Utf8PathBuf};
use std::fmt;

/// Where a value came from: a file and a 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub file: Utf8PathBuf,
    pub line: u32,
}

impl Location {
    pub fn new(file: impl Into<Utf8PathBuf>, line: u32) -> Self {
        Location {
            file: file.into(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The unit cannot be confined correctly: it is blocked.
    Error,
    /// Something an administrator should look at; the unit is still confined.
    Warning,
}

/// One problem found while processing a unit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The unit the problem belongs to, when there is one.
    pub unit: Option<String>,
    pub location: Option<Location>,
    pub message: String,
}

impl Diagnostic {
    pub fn error(
        unit: Option<&str>,
        location: Option<Location>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            unit: unit.map(str::to_owned),
            location,
            message: message.into(),
        }
    }

    pub fn warning(
        unit: Option<&str>,
        location: Option<Location>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            unit: unit.map(str::to_owned),
            location,
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line: unit: message` — the shape compilers and `systemd-analyze`
    /// use, so editors and grep can jump to the line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        if let Some(unit) = &self.unit {
            write!(f, "{unit}: ")?;
        }
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A number and its noun, which is singular for one: `counted(1, "store
/// path", "store paths")` is "1 store path", and 0 or 2 take the plural.
pub fn counted<N>(number: N, singular: &str, plural: &str) -> String
where
    N: fmt::Display + PartialEq + From<u8>,
{
    let noun = if number == N::from(1) {
        singular
    } else {
        plural
    };
    format!("{number} {noun}")
}

/// Join a logical path (as written in units, absolute) onto the root directory.
pub fn under_root(root: &Utf8Path, logical: &Utf8Path) -> Utf8PathBuf {
    let relative = logical.as_str().trim_start_matches('/');
    if relative.is_empty() {
        root.to_owned()
    } else {
        root.join(relative)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_every_other_number_plural() {
        assert_eq!(
            counted(1_usize, "store path", "store paths"),
            "1 store path"
        );
        assert_eq!(
            counted(0_usize, "store path", "store paths"),
            "0 store paths"
        );
        assert_eq!(counted(2_u64, "process", "processes"), "2 processes");
        assert_eq!(counted(11_u32, "unit", "units"), "11 units");
    }
}
