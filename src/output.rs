//! Writing drop-ins into the generator's output directory, and nowhere else:
//! every file is created with `O_EXCL|O_NOFOLLOW` relative to a directory
//! descriptor and renamed into place, so a planted symlink is never followed
//! and a reader (or a kill of the generator) only ever sees a whole file.

use camino::{Utf8Path, Utf8PathBuf};
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::os::fd::OwnedFd;

#[derive(Debug)]
pub struct OutputError {
    pub path: Utf8PathBuf,
    pub message: String,
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write {}: {}", self.path, self.message)
    }
}

impl std::error::Error for OutputError {}

/// The generator's output directory (`NORMAL`).
pub struct OutputDir {
    dir: OwnedFd,
    path: Utf8PathBuf,
}

impl OutputDir {
    pub fn open(path: &Utf8Path) -> Result<OutputDir, OutputError> {
        let dir = openat(
            nix::fcntl::AT_FDCWD,
            path.as_std_path(),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| OutputError {
            path: path.to_owned(),
            message: e.desc().to_owned(),
        })?;
        Ok(OutputDir {
            dir,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// Atomically writes `NORMAL/<unit>.d/<file_name>`.
    pub fn write_dropin(
        &self,
        unit: &str,
        file_name: &str,
        content: &str,
    ) -> Result<(), OutputError> {
        self.write_dropin_with(&mut HashMap::new(), unit, file_name, content)
    }

    /// [`OutputDir::write_dropin`], keeping each `<unit>.d` directory open
    /// in `dirs` for the next drop-in of the unit (every annotated unit gets
    /// two: blocking, then final).
    pub fn write_dropin_with(
        &self,
        dirs: &mut HashMap<String, OwnedFd>,
        unit: &str,
        file_name: &str,
        content: &str,
    ) -> Result<(), OutputError> {
        let dir_name = format!("{unit}.d");
        let target = self.path.join(&dir_name).join(file_name);
        let error = |message: String| OutputError {
            path: target.clone(),
            message,
        };
        if !is_plain_name(unit) || !is_plain_name(file_name) {
            return Err(error(
                "refusing a name that is not a single path component".into(),
            ));
        }
        if !dirs.contains_key(unit) {
            match mkdirat(
                &self.dir,
                dir_name.as_str(),
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(error(format!("creating {dir_name}: {}", e.desc()))),
            }
            // O_NOFOLLOW: a symlink planted at NORMAL/<unit>.d is never followed.
            let unit_dir = openat(
                &self.dir,
                dir_name.as_str(),
                OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| error(format!("opening {dir_name}: {}", e.desc())))?;
            dirs.insert(unit.to_owned(), unit_dir);
        }
        write_atomically(&dirs[unit], file_name, content).map_err(error)
    }

    /// Atomically writes a unit file `NORMAL/<name>`.
    pub fn write_unit(&self, name: &str, content: &str) -> Result<(), OutputError> {
        let error = |message: String| OutputError {
            path: self.path.join(name),
            message,
        };
        if !is_plain_name(name) {
            return Err(error(
                "refusing a name that is not a single path component".into(),
            ));
        }
        write_atomically(&self.dir, name, content).map_err(error)
    }
}

/// Writes `content` to a temporary file in `dir` and renames it to `name`.
fn write_atomically(dir: &OwnedFd, name: &str, content: &str) -> Result<(), String> {
    // The pid is asked for once: a system call per drop-in otherwise.
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let temp_name = format!(".{name}.{}.tmp", PID.get_or_init(std::process::id));
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mode = Mode::from_bits_truncate(0o644);
    let file = match openat(dir, temp_name.as_str(), flags, mode) {
        Err(Errno::EEXIST) => {
            // Left over by a killed run with our pid: remove and retry.
            let _ = unlinkat(dir, temp_name.as_str(), UnlinkatFlags::NoRemoveDir);
            openat(dir, temp_name.as_str(), flags, mode)
        }
        other => other,
    }
    .map_err(|e| format!("creating a temporary file: {}", e.desc()))?;
    let mut file = std::fs::File::from(file);
    if let Err(e) = file
        .write_all(content.as_bytes())
        .and_then(|()| file.flush())
    {
        let _ = unlinkat(dir, temp_name.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(e.to_string());
    }
    drop(file);
    // rename() replaces a planted symlink itself, never what it points to.
    renameat(dir, temp_name.as_str(), dir, name).map_err(|e| {
        let _ = unlinkat(dir, temp_name.as_str(), UnlinkatFlags::NoRemoveDir);
        e.desc().to_owned()
    })
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> Utf8PathBuf {
        let dir = Utf8PathBuf::from(format!(
            "{}/ncg-output-{name}-{}",
            std::env::temp_dir().display(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writes_and_replaces_atomically() {
        let dir = temp_dir("write");
        let out = OutputDir::open(&dir).unwrap();
        out.write_dropin("a.service", "zz-confinement.conf", "one")
            .unwrap();
        out.write_dropin("a.service", "zz-confinement.conf", "two")
            .unwrap();
        let path = dir.join("a.service.d/zz-confinement.conf");
        assert_eq!(std::fs::read_to_string(path).unwrap(), "two");
        let names: Vec<_> = std::fs::read_dir(dir.join("a.service.d"))
            .unwrap()
            .collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn planted_symlinks_are_never_followed() {
        let dir = temp_dir("planted");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::create_dir_all(dir.join("a.service.d")).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("a.service.d/zz-confinement.conf")).unwrap();
        std::os::unix::fs::symlink(&dir, dir.join("b.service.d")).unwrap();
        let out = OutputDir::open(&dir).unwrap();
        out.write_dropin("a.service", "zz-confinement.conf", "new")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let written = dir.join("a.service.d/zz-confinement.conf");
        assert!(
            !std::fs::symlink_metadata(&written)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let err = out
            .write_dropin("b.service", "zz-confinement.conf", "x")
            .unwrap_err();
        assert!(err.to_string().contains("b.service.d"), "{err}");
        assert!(!dir.join("zz-confinement.conf").exists());
    }

    #[test]
    fn refuses_names_that_leave_the_directory() {
        let dir = temp_dir("names");
        let out = OutputDir::open(&dir).unwrap();
        assert!(out.write_dropin("../x", "a.conf", "").is_err());
        assert!(out.write_dropin("x.service", "../a.conf", "").is_err());
        assert!(out.write_dropin("..", "a.conf", "").is_err());
    }
}
