//! Where messages go: `/dev/kmsg` in generator mode (in a container, which
//! has none, the journal's socket when it is there — at `daemon-reload` —
//! else stderr), stderr by hand, the journal when asked or when stderr is the
//! journal. At `daemon-reload` each problem of a unit is also sent to the
//! journal with `OBJECT_SYSTEMD_UNIT=`, so `systemctl status` shows it. What
//! generator mode sends to the journal's socket goes as datagrams that never
//! wait: dropped if the socket is absent or full (systemd waits for its
//! generators, and nothing may hang a reload).

use crate::diag::{Diagnostic, Severity};
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::unix::net::UnixDatagram;

pub const IDENTIFIER: &str = "nix-confinement-generator";
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// The kernel keeps a kmsg record to about 1 KiB.
const KMSG_MAX_MESSAGE: usize = 900;

/// syslog priorities.
pub const LOG_ERR: u8 = 3;
pub const LOG_WARNING: u8 = 4;
pub const LOG_NOTICE: u8 = 5;
pub const LOG_INFO: u8 = 6;
pub const LOG_DEBUG: u8 = 7;

enum Sink {
    Kmsg(File),
    Stderr,
    Journal(systemd_journal_logger::JournalLog),
    /// The journal's socket, written to without waiting.
    JournalDatagram(UnixDatagram),
}

pub struct Logger {
    sink: Sink,
    max_priority: u8,
    /// In generator mode, per-unit copies to the journal.
    unit_journal: Option<UnixDatagram>,
}

/// Parses `SYSTEMD_LOG_LEVEL`: a name or a number 0–7.
pub fn parse_level(value: &str) -> Option<u8> {
    Some(match value {
        "emerg" => 0,
        "alert" => 1,
        "crit" => 2,
        "err" => LOG_ERR,
        "warning" => LOG_WARNING,
        "notice" => LOG_NOTICE,
        "info" => LOG_INFO,
        "debug" => LOG_DEBUG,
        n => n.parse().ok().filter(|&n: &u8| n <= 7)?,
    })
}

/// True when stderr is connected to the journal (`$JOURNAL_STREAM` names
/// the device and inode of stderr), as systemd's own tools check.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let Ok(meta) = File::open("/proc/self/fd/2").and_then(|f| f.metadata()) else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

fn journal_sink() -> Option<Sink> {
    systemd_journal_logger::JournalLog::new()
        .ok()
        .map(|j| Sink::Journal(j.with_syslog_identifier(IDENTIFIER.to_owned())))
}

/// A socket to send journal datagrams with, when the journal's socket is
/// there; sends never wait.
fn journal_datagram_socket() -> Option<UnixDatagram> {
    if !std::path::Path::new(JOURNAL_SOCKET).exists() {
        return None;
    }
    UnixDatagram::unbound()
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .ok()
}

/// One journal entry in the journal's native protocol; `message` and `unit`
/// are one line each.
fn journal_datagram(priority: u8, message: &str, unit: Option<&str>) -> String {
    let unit_field = unit.map_or_else(String::new, |unit| {
        format!("OBJECT_SYSTEMD_UNIT={}\n", one_line(unit))
    });
    format!("PRIORITY={priority}\nSYSLOG_IDENTIFIER={IDENTIFIER}\n{unit_field}MESSAGE={message}\n")
}

impl Logger {
    /// A logger for this process, from `SYSTEMD_LOG_TARGET` and
    /// `SYSTEMD_LOG_LEVEL`.
    pub fn from_env(generator_mode: bool) -> Logger {
        let target = std::env::var("SYSTEMD_LOG_TARGET").unwrap_or_default();
        let max_priority = std::env::var("SYSTEMD_LOG_LEVEL")
            .ok()
            .and_then(|v| parse_level(&v))
            .unwrap_or(LOG_INFO);
        let kmsg = || {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/kmsg")
                .ok()
                .map(Sink::Kmsg)
        };
        let sink = match target.as_str() {
            "console" => Some(Sink::Stderr),
            "kmsg" => kmsg(),
            "journal" | "journal-or-kmsg" => journal_sink().or_else(kmsg),
            _ if stderr_is_journal() => journal_sink(),
            // systemd runs generators with no terminal, and stderr on
            // /dev/null; run by hand from one, the messages belong on it. A
            // container has no kernel log: at a reload its journal is there
            // (at boot it is not started yet, and nothing is).
            _ if generator_mode && !std::io::stderr().is_terminal() => {
                kmsg().or_else(|| journal_datagram_socket().map(Sink::JournalDatagram))
            }
            _ => None,
        }
        .unwrap_or(Sink::Stderr);
        // Logging to the journal already gives each record its unit: a copy
        // would show every problem twice in `journalctl -u`.
        let unit_journal =
            if generator_mode && !matches!(sink, Sink::Journal(_) | Sink::JournalDatagram(_)) {
                journal_datagram_socket()
            } else {
                None
            };
        Logger {
            sink,
            max_priority,
            unit_journal,
        }
    }

    /// A logger that writes to stderr only (tests, `explain`, `check`).
    pub fn stderr(max_priority: u8) -> Logger {
        Logger {
            sink: Sink::Stderr,
            max_priority,
            unit_journal: None,
        }
    }

    pub fn log(&self, priority: u8, message: &str) {
        self.log_with_unit(priority, message, None);
    }

    pub fn error(&self, message: impl std::fmt::Display) {
        self.log(LOG_ERR, &message.to_string());
    }

    pub fn warning(&self, message: impl std::fmt::Display) {
        self.log(LOG_WARNING, &message.to_string());
    }

    pub fn notice(&self, message: impl std::fmt::Display) {
        self.log(LOG_NOTICE, &message.to_string());
    }

    /// Formatted only when it will be written (the run's details).
    pub fn debug(&self, message: impl FnOnce() -> String) {
        if self.max_priority >= LOG_DEBUG {
            self.log(LOG_DEBUG, &message());
        }
    }

    /// Each of `diagnostics`, at its severity.
    pub fn diagnostics<'d>(&self, diagnostics: impl IntoIterator<Item = &'d Diagnostic>) {
        for diagnostic in diagnostics {
            self.diagnostic(diagnostic);
        }
    }

    pub fn diagnostic(&self, diagnostic: &Diagnostic) {
        let priority = match diagnostic.severity {
            Severity::Error => LOG_ERR,
            Severity::Warning => LOG_WARNING,
        };
        self.log_with_unit(
            priority,
            &diagnostic.to_string(),
            diagnostic.unit.as_deref(),
        );
    }

    fn log_with_unit(&self, priority: u8, message: &str, unit: Option<&str>) {
        if priority > self.max_priority {
            return;
        }
        let message = one_line(message);
        match &self.sink {
            Sink::Kmsg(file) => {
                let mut cut = message.len().min(KMSG_MAX_MESSAGE);
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                let record = format!(
                    "<{priority}>{IDENTIFIER}[{}]: {}\n",
                    std::process::id(),
                    &message[..cut]
                );
                // One write() is one kmsg record. Errors (rate limit) are
                // not ours to handle.
                let _ = (&*file).write_all(record.as_bytes());
            }
            Sink::Stderr => {
                let _ = writeln!(std::io::stderr().lock(), "{IDENTIFIER}: {message}");
            }
            Sink::Journal(journal) => {
                // systemd-journal-logger sends Info as PRIORITY=5 (notice),
                // Debug as 6 (info) and Trace as 7 (debug).
                let level = match priority {
                    0..=3 => log::Level::Error,
                    4 => log::Level::Warn,
                    5 => log::Level::Info,
                    6 => log::Level::Debug,
                    _ => log::Level::Trace,
                };
                let unit_field = [("OBJECT_SYSTEMD_UNIT", unit.unwrap_or_default())];
                let fields: &[(&str, &str)] = if unit.is_some() { &unit_field } else { &[] };
                log::Log::log(
                    journal,
                    &log::Record::builder()
                        .args(format_args!("{message}"))
                        .level(level)
                        .target(IDENTIFIER)
                        .key_values(&fields)
                        .build(),
                );
            }
            Sink::JournalDatagram(socket) => {
                let datagram = journal_datagram(priority, &message, unit);
                // Non-blocking: dropped when the journal is not there or busy.
                let _ = socket.send_to(datagram.as_bytes(), JOURNAL_SOCKET);
            }
        }
        if let (Some(socket), Some(unit)) = (&self.unit_journal, unit) {
            let datagram = journal_datagram(priority, &message, Some(unit));
            // Non-blocking: dropped when the journal is not there or busy.
            let _ = socket.send_to(datagram.as_bytes(), JOURNAL_SOCKET);
        }
    }
}

fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_by_name_and_number() {
        assert_eq!(parse_level("err"), Some(3));
        assert_eq!(parse_level("debug"), Some(7));
        assert_eq!(parse_level("5"), Some(5));
        assert_eq!(parse_level("8"), None);
        assert_eq!(parse_level("loud"), None);
    }
}
