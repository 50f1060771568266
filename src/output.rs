//! Writing drop-ins into the generator's output directory, and nowhere else:
//! every file is created with `O_EXCL|O_NOFOLLOW` relative to a directory
//! descriptor and renamed into place, so a planted symlink is never followed
//! and a reader (or a kill of the generator) only ever sees a whole file.

use camino::{Utf8Path, Utf8PathBuf};
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{UnlinkatFlags, linkat, unlinkat};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::rc::Rc;

/// The longest file name Linux file systems take, in bytes (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

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

/// The generator's output directory (`NORMAL`), and the unit directories
/// (`<unit>.d`) opened in it, each kept open for the unit's next drop-in
/// (every annotated unit gets two: blocking, then final).
pub struct OutputDir {
    dir: OwnedFd,
    path: Utf8PathBuf,
    unit_dirs: RefCell<HashMap<String, Rc<OwnedFd>>>,
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
            unit_dirs: RefCell::default(),
        })
    }

    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    pub fn dir(&self) -> &OwnedFd {
        &self.dir
    }

    /// Atomically writes `NORMAL/<unit>.d/<file_name>`.
    pub fn write_dropin(
        &self,
        unit: &str,
        file_name: &str,
        content: &str,
    ) -> Result<(), OutputError> {
        let (unit_dir, error) = self.unit_dir(unit, file_name)?;
        write_atomically(&unit_dir, file_name, content, error)
    }

    /// Puts `NORMAL/<shared>`, a file written with [`OutputDir::write_unit`],
    /// at `NORMAL/<unit>.d/<file_name>` as a hard link: a link appears whole
    /// or not at all, like a renamed file, and costs one system call where
    /// writing a copy costs four (every annotated unit gets the same
    /// blocking drop-in first).
    pub fn link_dropin(
        &self,
        unit: &str,
        file_name: &str,
        shared: &str,
    ) -> Result<(), OutputError> {
        // Refused before the unit's directory is made for it.
        if !is_plain_name(shared) {
            return Err(OutputError {
                path: self.path.join(shared),
                message: "refusing a name that is not a single path component".into(),
            });
        }
        let (unit_dir, error) = self.unit_dir(unit, file_name)?;
        let unit_dir = unit_dir.as_ref();
        let source = &self.dir;
        let link =
            |name: &str| linkat(source, shared, unit_dir, name, nix::fcntl::AtFlags::empty());
        match link(file_name) {
            Ok(()) => Ok(()),
            // Something is there already: replaced the way a written file
            // is, through a temporary name (one a killed run left is
            // removed first).
            Err(Errno::EEXIST) => {
                let temp_name = temporary_name(file_name);
                match link(&temp_name) {
                    Err(Errno::EEXIST) => {
                        let _ = unlinkat(unit_dir, temp_name.as_str(), UnlinkatFlags::NoRemoveDir);
                        link(&temp_name)
                    }
                    other => other,
                }
                .and_then(|()| renameat(unit_dir, temp_name.as_str(), unit_dir, file_name))
                .map_err(|e| {
                    let _ = unlinkat(unit_dir, temp_name.as_str(), UnlinkatFlags::NoRemoveDir);
                    error(format!("linking {shared}: {}", e.desc()))
                })
            }
            Err(e) => Err(error(format!("linking {shared}: {}", e.desc()))),
        }
    }

    /// `NORMAL/<unit>.d`, made and opened on first use and kept open for
    /// the next drop-in of the unit, with the error maker for `<file_name>`
    /// in it.
    fn unit_dir(
        &self,
        unit: &str,
        file_name: &str,
    ) -> Result<(Rc<OwnedFd>, impl Fn(String) -> OutputError + use<>), OutputError> {
        let dir_name = format!("{unit}.d");
        // The path is made only for an error: joining it for every file
        // written showed in the profile of a run.
        let (base, in_dir, file) = (self.path.clone(), dir_name.clone(), file_name.to_owned());
        let error = move |message: String| OutputError {
            path: base.join(&in_dir).join(&file),
            message,
        };
        if !is_plain_name(unit) || !is_plain_name(file_name) {
            return Err(error(
                "refusing a name that is not a single path component".into(),
            ));
        }
        if let Some(unit_dir) = self.unit_dirs.borrow().get(unit) {
            return Ok((Rc::clone(unit_dir), error));
        }
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
        let unit_dir = Rc::new(unit_dir);
        self.unit_dirs
            .borrow_mut()
            .insert(unit.to_owned(), Rc::clone(&unit_dir));
        Ok((unit_dir, error))
    }

    /// Removes `NORMAL/<name>` if it is there (a link to it elsewhere stays).
    pub fn remove(&self, name: &str) {
        if is_plain_name(name) {
            let _ = unlinkat(&self.dir, name, UnlinkatFlags::NoRemoveDir);
        }
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
        write_atomically(&self.dir, name, content, error)
    }
}

/// The drop-ins of one generator run: every annotated unit is blocked
/// first — one blocking drop-in, written once at the top of the output
/// directory under `shared` (not a unit name: systemd does not load it
/// there) and hard-linked into each unit's directory — and then each unit's
/// blocking drop-in is replaced, atomically, by its final one. A kill at any
/// moment after the blocking phase leaves every unit blocked or finished.
pub struct DropinWriter<'o> {
    output: &'o OutputDir,
    /// The shared blocking drop-in's name, while it is there.
    shared: Option<&'o str>,
    report: WriteReport,
}

/// What a [`DropinWriter`] could not do.
#[derive(Debug, Default)]
pub struct WriteReport {
    pub errors: Vec<OutputError>,
    /// The units (by number) whose blocking drop-in could not be written.
    pub not_blocked: HashSet<usize>,
    /// The units whose final drop-in could not be written.
    pub not_finished: HashSet<usize>,
}

/// A unit to block: its number, its name and its drop-in's file name.
pub struct ToBlock<'u> {
    pub number: usize,
    pub unit: &'u str,
    pub file_name: &'u str,
}

impl<'o> DropinWriter<'o> {
    /// Blocks `units` with the drop-in `text`, written as `shared` and
    /// linked into each unit's directory (a copy where a link fails).
    pub fn block<'u>(
        output: &'o OutputDir,
        shared: &'o str,
        text: &str,
        units: impl IntoIterator<Item = ToBlock<'u>>,
    ) -> DropinWriter<'o> {
        let mut writer = DropinWriter {
            output,
            shared: None,
            report: WriteReport::default(),
        };
        let mut units = units.into_iter().peekable();
        if units.peek().is_none() {
            return writer;
        }
        match output.write_unit(shared, text) {
            Ok(()) => writer.shared = Some(shared),
            Err(error) => writer.report.errors.push(error),
        }
        for ToBlock {
            number,
            unit,
            file_name,
        } in units
        {
            let linked = match writer.shared {
                Some(shared) => output.link_dropin(unit, file_name, shared),
                None => Err(OutputError {
                    path: output.path.join(shared),
                    message: "not written".into(),
                }),
            };
            if let Err(error) = linked.or_else(|_| output.write_dropin(unit, file_name, text)) {
                writer.report.errors.push(error);
                writer.report.not_blocked.insert(number);
            }
        }
        writer
    }

    /// Replaces the blocking drop-in of `unit` (number `number`) with `text`.
    pub fn finish_unit(&mut self, number: usize, unit: &str, file_name: &str, text: &str) {
        if let Err(error) = self.output.write_dropin(unit, file_name, text) {
            self.report.errors.push(error);
            self.report.not_finished.insert(number);
        }
    }

    /// Removes the shared blocking drop-in from the top (each unit's
    /// directory kept its own link until its final drop-in replaced it) and
    /// says what could not be done.
    pub fn finish(self) -> WriteReport {
        if let Some(shared) = self.shared {
            self.output.remove(shared);
        }
        self.report
    }
}

/// Writes `content` to a temporary file in `dir` and renames it to `name`;
/// `error` makes the error naming the file from what went wrong (called
/// only then: the path is not built for every file written).
pub(crate) fn write_atomically(
    dir: &OwnedFd,
    name: &str,
    content: &str,
    error: impl FnOnce(String) -> OutputError,
) -> Result<(), OutputError> {
    let temp_name = temporary_name(name);
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mode = Mode::from_bits_truncate(0o644);
    let opened = match openat(dir, temp_name.as_str(), flags, mode) {
        Err(Errno::EEXIST) => {
            // Left over by a killed run with our pid: remove and retry.
            let _ = unlinkat(dir, temp_name.as_str(), UnlinkatFlags::NoRemoveDir);
            openat(dir, temp_name.as_str(), flags, mode)
        }
        other => other,
    };
    let file = match opened {
        Ok(file) => file,
        Err(e) => return Err(error(format!("creating a temporary file: {}", e.desc()))),
    };
    let mut file = std::fs::File::from(file);
    if let Err(e) = file
        .write_all(content.as_bytes())
        .and_then(|()| file.flush())
    {
        let _ = unlinkat(dir, temp_name.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(error(e.to_string()));
    }
    drop(file);
    // rename() replaces a planted symlink itself, never what it points to.
    renameat(dir, temp_name.as_str(), dir, name).map_err(|e| {
        let _ = unlinkat(dir, temp_name.as_str(), UnlinkatFlags::NoRemoveDir);
        error(e.desc().to_owned())
    })
}

/// Where `name` is written before it is renamed into place: hidden, and
/// named after this process so that runs never share one. A long `name` is
/// cut so that the temporary name fits in [`NAME_MAX`] too (a process
/// writes one file at a time in a directory, so a cut name is not shared).
pub(crate) fn temporary_name(name: &str) -> String {
    // The pid is asked for once: a system call per drop-in otherwise.
    static PID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let pid = PID.get_or_init(|| std::process::id().to_string());
    let room = NAME_MAX - ".".len() - ".".len() - pid.len() - ".tmp".len();
    let mut cut = name.len().min(room);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(".{}.{pid}.tmp", &name[..cut])
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries_in(dir: &Utf8Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    fn temp_dir(name: &str) -> Utf8PathBuf {
        crate::test_dirs::fresh(&format!("output-{name}"))
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
        assert_eq!(
            entries_in(&dir.join("a.service.d")),
            1,
            "no temporary file is left behind"
        );
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
    fn links_a_shared_dropin_whole_and_replaces_what_is_there() {
        use std::os::unix::fs::MetadataExt;
        let dir = temp_dir("link");
        let out = OutputDir::open(&dir).unwrap();
        out.write_unit(".shared.conf", "blocked").unwrap();
        out.link_dropin("a.service", "zz.conf", ".shared.conf")
            .unwrap();
        // A file left by an earlier run, and a planted symlink: replaced,
        // never written through.
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::create_dir_all(dir.join("b.service.d")).unwrap();
        std::fs::write(dir.join("b.service.d/zz.conf"), "stale").unwrap();
        std::fs::create_dir_all(dir.join("c.service.d")).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("c.service.d/zz.conf")).unwrap();
        for unit in ["b.service", "c.service"] {
            out.link_dropin(unit, "zz.conf", ".shared.conf").unwrap();
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        for unit in ["a", "b", "c"] {
            let path = dir.join(format!("{unit}.service.d/zz.conf"));
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "blocked");
            assert_eq!(
                entries_in(path.parent().unwrap()),
                1,
                "{unit}: no temporary file is left behind"
            );
        }
        // One file: the final drop-in of a unit replaces its link only.
        out.write_dropin("a.service", "zz.conf", "final").unwrap();
        out.remove(".shared.conf");
        let b = std::fs::metadata(dir.join("b.service.d/zz.conf")).unwrap();
        assert_eq!((b.nlink(), b.len()), (2, 7));
        let a = dir.join("a.service.d/zz.conf");
        assert_eq!(std::fs::read_to_string(a).unwrap(), "final");
        assert!(out.link_dropin("d.service", "zz.conf", "../x").is_err());
        assert!(!dir.join("d.service.d").exists());
    }

    #[test]
    fn writes_and_replaces_a_dropin_of_the_longest_name() {
        use std::os::unix::fs::MetadataExt;
        let dir = temp_dir("longest");
        let out = OutputDir::open(&dir).unwrap();
        // And a name of multi-byte characters, cut between two of them.
        for name in [
            format!("{}.conf", "z".repeat(250)),
            format!("{}é.conf", "é".repeat(124)),
        ] {
            assert!(name.len() >= NAME_MAX - 1, "{}", name.len());
            assert!(temporary_name(&name).len() <= NAME_MAX);
            out.write_dropin("a.service", &name, "one").unwrap();
            out.write_unit("blocked.conf", "blocked").unwrap();
            out.link_dropin("a.service", &name, "blocked.conf").unwrap();
            let path = dir.join("a.service.d").join(&name);
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "blocked");
            assert_eq!(std::fs::metadata(&path).unwrap().nlink(), 2);
            out.write_dropin("a.service", &name, "two").unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
            std::fs::remove_file(&path).unwrap();
            assert_eq!(entries_in(&dir.join("a.service.d")), 0);
        }
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
