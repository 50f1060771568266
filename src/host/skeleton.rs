//! The skeleton of a unit's host paths: the links they need inside, made
//! in a tmpfs of the unit's own and bound read-only over each directory
//! that holds one, since systemd cannot bind a link, nor make one in a root
//! directory. Its files and units: nix-confinement-generator(8), FILES.

use crate::view::closure_list::Digest;
use camino::{Utf8Path, Utf8PathBuf};
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use std::fmt::{self, Write as _};
use std::os::fd::{AsFd, OwnedFd};

/// Where skeletons are mounted.
pub const SKELETONS: &str = "/run/nix-confinement-host";
/// The template of the units that mount skeletons.
pub const TEMPLATE: &str = "nix-confinement-host@.service";

const HEADER: &str = "nix-confinement-generator host links 1\n";

/// What is wrong with a links record's content (which file it is, the
/// caller says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinksError {
    NotThisVersion,
    NoUnit,
    CutShort,
    /// A line that is not `WHERE<TAB>TARGET`.
    NotALine(String),
    /// A line whose link is not one to make: where it is not absolute and
    /// normal, or the target is empty or holds a NUL.
    NotALink(String),
    NotSorted,
    /// Readable, but not byte for byte what the generator would write.
    NotCanonical,
}

impl fmt::Display for LinksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinksError::NotThisVersion => write!(f, "not a host links record of this version"),
            LinksError::NoUnit => write!(f, "the unit is missing"),
            LinksError::CutShort => write!(f, "the last line is cut short"),
            LinksError::NotALine(line) => write!(f, "{line:?} is not WHERE<TAB>TARGET"),
            LinksError::NotALink(line) => write!(f, "{line:?} is not a link to make"),
            LinksError::NotSorted => write!(f, "the links are not sorted"),
            LinksError::NotCanonical => write!(f, "not in the form the generator writes"),
        }
    }
}

impl std::error::Error for LinksError {}

/// Why a skeleton could not be read or mounted: the path involved (the
/// record, its directory, the mount point or a link in it) and what went
/// wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkeletonError {
    pub path: Utf8PathBuf,
    pub message: String,
}

impl fmt::Display for SkeletonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for SkeletonError {}

fn error(path: &Utf8Path, message: impl Into<String>) -> SkeletonError {
    SkeletonError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The record of a unit's links, and its digest. The generator writes it
/// into its output directory (see [`Record::file_name`]) for the unit of
/// [`TEMPLATE`] that mounts the links to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub unit: String,
    /// (where, target), sorted by where.
    pub links: Vec<(Utf8PathBuf, String)>,
    pub digest: Digest,
}

impl Record {
    /// The digest covers the unit's name: units do not share a skeleton,
    /// since systemd makes the mount points of the unit's own mounts below
    /// the linked directories in it (the tmpfs stays writable on the host
    /// for that; inside, the bind is read-only).
    pub fn new(unit: &str, links: &[(Utf8PathBuf, String)]) -> Record {
        let mut links = links.to_vec();
        links.sort();
        let mut record = Record {
            unit: unit.to_owned(),
            links,
            digest: Digest::of_text(""),
        };
        record.digest = Digest::of_text(&record.encode());
        record
    }

    /// The record file's content: the header, `unit NAME`, then one line
    /// per link, `WHERE<TAB>TARGET`.
    pub fn encode(&self) -> String {
        let mut text = String::from(HEADER);
        let _ = writeln!(text, "unit {}", self.unit);
        for (at, target) in &self.links {
            let _ = writeln!(text, "{at}\t{target}");
        }
        text
    }

    /// Reads a record file; every link must be an absolute, normal path
    /// that is not `/` (it is made inside the skeleton) with a target that
    /// holds no newline or NUL.
    pub fn decode(text: &str) -> Result<Record, LinksError> {
        let rest = text
            .strip_prefix(HEADER)
            .ok_or(LinksError::NotThisVersion)?;
        let (unit_line, rest) = rest.split_once('\n').ok_or(LinksError::NoUnit)?;
        let unit = unit_line.strip_prefix("unit ").ok_or(LinksError::NoUnit)?;
        if !rest.is_empty() && !rest.ends_with('\n') {
            return Err(LinksError::CutShort);
        }
        let mut links = Vec::new();
        for line in rest.split_terminator('\n') {
            let (at, target) = line
                .split_once('\t')
                .ok_or_else(|| LinksError::NotALine(line.to_owned()))?;
            let normal = at.starts_with('/')
                && at.len() > 1
                && at
                    .split('/')
                    .skip(1)
                    .all(|c| !c.is_empty() && c != "." && c != "..");
            if !normal || target.is_empty() || target.contains('\0') {
                return Err(LinksError::NotALink(line.to_owned()));
            }
            links.push((Utf8PathBuf::from(at), target.to_owned()));
        }
        if links.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(LinksError::NotSorted);
        }
        let record = Record::new(unit, &links);
        if record.encode() != text {
            return Err(LinksError::NotCanonical);
        }
        Ok(record)
    }

    /// The record's file name in the output directory, hidden: systemd
    /// reads no hidden file there, and the directory is root's, rewritten
    /// at every run.
    pub fn file_name(&self) -> String {
        file_name(&self.digest.to_string())
    }
}

pub fn file_name(digest: &str) -> String {
    format!(".nix-confinement-host-{digest}")
}

/// The unit that mounts the skeleton `digest`.
pub fn unit(digest: &str) -> String {
    format!("nix-confinement-host@{digest}.service")
}

/// Where the skeleton `digest` is mounted.
pub fn path(digest: &str) -> String {
    format!("{SKELETONS}/{digest}")
}

/// [`TEMPLATE`]'s text: `program` mounts and unmounts skeletons, whose
/// records are in `records` (the generator's output directory). An instance
/// stops when no unit needs it any more: the host's mount goes, a running
/// service keeps its own. Without a start limit, as the view units: an
/// `Accept=yes` socket starts it again for each connection.
pub fn render_template(program: &str, records: &str) -> String {
    format!(
        "# Generated by {}: mounts the links to host paths of one confined\n\
         # unit, named by the instance (its digest), for the unit to bind.\n\
         [Unit]\n\
         Description=Links to host paths %i for a confined service\n\
         Documentation=man:nix-confinement-generator(8)\n\
         DefaultDependencies=no\n\
         Conflicts=umount.target\n\
         Before=umount.target\n\
         StopWhenUnneeded=yes\n\
         StartLimitIntervalSec=0\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={} host start %i {}\n\
         ExecStop={} host stop %i\n",
        crate::logging::IDENTIFIER,
        crate::unit::escape::escape_exec_word(program),
        crate::unit::escape::escape_exec_word(records),
        crate::unit::escape::escape_exec_word(program),
    )
}

/// `host start DIGEST RECORDS` or `host stop DIGEST`, under `root`; returns
/// the exit status. Messages go to standard error (the unit's journal).
pub fn run(root: &crate::rootfs::Root, start: bool, digest: &str, records: Option<&str>) -> i32 {
    let Some(parsed) = Digest::parse(digest) else {
        eprintln!("nix-confinement-generator: host: {digest:?} is not a digest");
        return 2;
    };
    let target = root.join(Utf8Path::new(&path(digest)));
    let result: Result<String, Box<dyn std::error::Error>> = match (start, records) {
        (true, Some(records)) => {
            start_skeleton(parsed, Utf8Path::new(records), &target).map_err(Into::into)
        }
        (true, None) => Err("host start needs the records' directory".into()),
        (false, _) => crate::view::mount::unmount_view(target.as_std_path())
            .map(|()| format!("{target}: unmounted"))
            .map_err(Into::into),
    };
    match result {
        Ok(done) => {
            eprintln!("nix-confinement-generator: host {digest}: {done}");
            0
        }
        Err(error) => {
            eprintln!("nix-confinement-generator: host {digest}: {error}");
            1
        }
    }
}

/// Reads the record `digest` in `records` (a directory of ours that no one
/// else can write), checks it, and mounts its links at `target`.
fn start_skeleton(
    digest: Digest,
    records: &Utf8Path,
    target: &Utf8Path,
) -> Result<String, SkeletonError> {
    let name = file_name(&digest.to_string());
    let text = read_record(records, &name)?;
    let shown = records.join(&name);
    let record = Record::decode(&text).map_err(|e| error(&shown, e.to_string()))?;
    if record.digest != digest {
        return Err(error(
            &shown,
            "its content does not have the digest it is named by",
        ));
    }
    mount_skeleton(&record, target)?;
    Ok(format!(
        "{} link(s) of {} mounted at {target}",
        record.links.len(),
        record.unit
    ))
}

/// The record `name` in `dir`, when both are ours and no one else can
/// write them; opened through the directory's descriptor, never a link.
/// An error names the directory or the record, whichever is at fault.
fn read_record(dir: &Utf8Path, name: &str) -> Result<String, SkeletonError> {
    use std::io::Read;
    let ours = |meta: &std::fs::Metadata| {
        use std::os::unix::fs::MetadataExt;
        meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o022 == 0
    };
    let dir_fd = openat(
        nix::fcntl::AT_FDCWD,
        dir.as_std_path(),
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| error(dir, e.desc()))?;
    let dir_file = std::fs::File::from(dir_fd);
    if !ours(&dir_file.metadata().map_err(|e| error(dir, e.to_string()))?) {
        return Err(error(
            dir,
            "not a directory of ours that no one else can write",
        ));
    }
    let path = dir.join(name);
    let fd = openat(
        dir_file.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| error(&path, e.desc()))?;
    let mut file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| error(&path, e.to_string()))?;
    if !meta.is_file() || !ours(&meta) {
        return Err(error(
            &path,
            "not a regular file of ours that no one else can write",
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| error(&path, e.to_string()))?;
    Ok(text)
}

/// Mounts a tmpfs at `target` (made when missing; never through a link)
/// holding the record's links and the directories on their way, private
/// (nothing mounted later travels into it or out of it).
pub fn mount_skeleton(record: &Record, target: &Utf8Path) -> Result<(), SkeletonError> {
    for path in [target.parent(), Some(target)].into_iter().flatten() {
        if let Ok(found) = std::fs::symlink_metadata(path)
            && !found.is_dir()
        {
            return Err(error(
                path,
                "not a directory: a skeleton is not mounted on a link or a file",
            ));
        }
    }
    std::fs::create_dir_all(target).map_err(|e| error(target, e.to_string()))?;
    // A restart of the unit: the mount of the last start goes first.
    let _ = umount2(
        target.as_std_path(),
        MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW,
    );
    mount(
        Some("nix-confinement-host"),
        target.as_std_path(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=1m"),
    )
    .map_err(|e| error(target, format!("mounting a tmpfs: {}", e.desc())))?;
    let filled = (|| {
        mount(
            None::<&str>,
            target.as_std_path(),
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| error(target, format!("making it private: {}", e.desc())))?;
        let top = open_directory(None, target.as_str()).map_err(|e| error(target, e.desc()))?;
        for (at, link_target) in &record.links {
            make_link(&top, at, link_target).map_err(|e| {
                // `at` is absolute: the link as it is seen on the host.
                error(&Utf8PathBuf::from(format!("{target}{at}")), e.desc())
            })?;
        }
        Ok::<(), SkeletonError>(())
    })();
    if filled.is_err() {
        let _ = umount2(target.as_std_path(), MntFlags::MNT_DETACH);
    }
    filled
}

fn open_directory(parent: Option<&OwnedFd>, name: &str) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match parent {
        Some(dir) => openat(dir, name, flags, Mode::empty()),
        None => openat(nix::fcntl::AT_FDCWD, name, flags, Mode::empty()),
    }
}

/// Makes the link `at` (logical, below the skeleton's top) and the
/// directories on its way, relative to `top`: nothing is ever followed.
/// A link at `/` itself has no name to make (`EINVAL`).
fn make_link(top: &OwnedFd, at: &Utf8Path, target: &str) -> Result<(), Errno> {
    let components: Vec<&str> = at.as_str().split('/').filter(|c| !c.is_empty()).collect();
    let (name, dirs) = components.split_last().ok_or(Errno::EINVAL)?;
    let mut dir: Option<OwnedFd> = None;
    for component in dirs {
        let parent = dir.as_ref().unwrap_or(top);
        match nix::sys::stat::mkdirat(parent, *component, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        dir = Some(open_directory(Some(parent), component)?);
    }
    let parent = dir.as_ref().unwrap_or(top);
    nix::unistd::symlinkat(target, parent, *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Vec<(Utf8PathBuf, String)> {
        vec![
            (
                Utf8PathBuf::from("/etc/resolv.conf"),
                "../run/systemd/resolve/stub-resolv.conf".to_owned(),
            ),
            (
                Utf8PathBuf::from("/etc/localtime"),
                "/usr/share/zoneinfo/Europe/Berlin".to_owned(),
            ),
        ]
    }

    #[test]
    fn records_round_trip_and_name_their_unit() {
        let record = Record::new("a.service", &links());
        assert_eq!(
            record.encode(),
            "nix-confinement-generator host links 1\nunit a.service\n\
             /etc/localtime\t/usr/share/zoneinfo/Europe/Berlin\n\
             /etc/resolv.conf\t../run/systemd/resolve/stub-resolv.conf\n"
        );
        assert_eq!(Record::decode(&record.encode()), Ok(record.clone()));
        assert_ne!(Record::new("b.service", &links()).digest, record.digest);
        assert_eq!(
            record.file_name().len(),
            ".nix-confinement-host-".len() + 32
        );
    }

    fn temp_dir(name: &str) -> Utf8PathBuf {
        crate::test_dirs::fresh(&format!("skeleton-{name}"))
    }

    #[test]
    fn a_record_that_cannot_be_used_is_named_and_so_is_a_directory_at_fault() {
        use std::os::unix::fs::PermissionsExt;
        let records = temp_dir("records");
        std::fs::set_permissions(&records, std::fs::Permissions::from_mode(0o755)).unwrap();
        let record = Record::new("a.service", &links());
        let path = records.join(record.file_name());
        let target = records.join("mounted");

        let missing = start_skeleton(record.digest, &records, &target).unwrap_err();
        assert_eq!(missing.path, path);
        assert_eq!(missing.message, "No such file or directory");

        std::fs::write(&path, record.encode().replace("a.service", "b.service")).unwrap();
        let forged = start_skeleton(record.digest, &records, &target).unwrap_err();
        assert_eq!(
            forged.to_string(),
            format!("{path}: its content does not have the digest it is named by")
        );

        std::fs::write(&path, "nix-confinement-generator host links 2\n").unwrap();
        let other_version = start_skeleton(record.digest, &records, &target).unwrap_err();
        assert_eq!(
            other_version.to_string(),
            format!("{path}: not a host links record of this version")
        );

        // Anyone may write the directory: it is at fault, not the record.
        std::fs::set_permissions(&records, std::fs::Permissions::from_mode(0o777)).unwrap();
        let shared = start_skeleton(record.digest, &records, &target).unwrap_err();
        assert_eq!(
            shared.to_string(),
            format!("{records}: not a directory of ours that no one else can write")
        );
        std::fs::remove_dir_all(&records).unwrap();
    }

    #[test]
    fn forged_records_are_refused() {
        let text = Record::new("a.service", &links()).encode();
        let localtime = "/etc/localtime\t/usr/share/zoneinfo/Europe/Berlin";
        for (bad, why) in [
            (
                text.replace("links 1", "links 2"),
                LinksError::NotThisVersion,
            ),
            (
                text.replace("/etc/localtime", "/etc/../localtime"),
                LinksError::NotALink(localtime.replace("/etc/localtime", "/etc/../localtime")),
            ),
            (
                text.replace("/etc/localtime", "etc/localtime"),
                LinksError::NotALink(localtime.replace("/etc/localtime", "etc/localtime")),
            ),
            (
                text.replace("/etc/localtime\t", "/etc/localtime "),
                LinksError::NotALine(localtime.replace('\t', " ")),
            ),
            (
                text.replace("/etc/resolv.conf", "/etc/a"),
                LinksError::NotSorted,
            ),
            (text.trim_end().to_owned(), LinksError::CutShort),
            (text.replace("unit a.service\n", ""), LinksError::NoUnit),
            (
                text.replace("\n/etc", "\n//etc"),
                LinksError::NotALink(
                    "//etc/localtime\t/usr/share/zoneinfo/Europe/Berlin".to_owned(),
                ),
            ),
        ] {
            assert_eq!(Record::decode(&bad), Err(why), "{bad}");
        }
    }
}
