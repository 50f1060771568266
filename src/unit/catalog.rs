//! Finding unit files and their drop-ins in the search path, with systemd's
//! rules (systemd.unit(5)): the first file found for a name wins, an empty
//! file or a link to `/dev/null` masks, a link whose target lies in the
//! search path is an alias (of the target's *name*), a link that leaves the
//! search path is a linked unit file loaded under the link's own name, and
//! drop-ins come from every search directory with same-name hiding by
//! priority and application in lexical order of file names.

use super::files::FileReader;
use super::name::{UnitName, dropin_dir_names};
use crate::diag::{Diagnostic, Location};
use crate::fast_map::FastMap;
use crate::rootfs::Root;
use camino::{Utf8Path, Utf8PathBuf};
use nix::fcntl::OFlag;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::os::fd::OwnedFd;

/// What the highest-priority entry for a unit name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A unit file. `path` is where it was found, `real` the file it resolves to.
    File {
        path: Utf8PathBuf,
        real: Utf8PathBuf,
    },
    /// An empty file or a link to `/dev/null`.
    Masked { path: Utf8PathBuf },
    /// An instance linked to its own template (`foo@bar.service ->
    /// foo@.service`): it is loaded from the template.
    InstanceLink { path: Utf8PathBuf },
    /// A link into the search path to another name: the unit is whatever
    /// that name loads (its highest-priority file, not necessarily the one
    /// the link points at, which need not even exist).
    Alias {
        path: Utf8PathBuf,
        target_name: String,
    },
    /// A file systemd finds but cannot load (a linked unit file whose link
    /// dangles, a directory with a unit's name): it still hides files of the
    /// same name in lower-priority directories.
    Broken { path: Utf8PathBuf },
}

/// systemd's `unit_type_may_alias()` and `unit_type_may_template()`.
const ALIAS_TYPES: &[&str] = &["service", "socket", "target", "device", "timer", "path"];
const TEMPLATE_TYPES: &[&str] = &["service", "socket", "target", "timer", "path"];

/// systemd's `FOLLOW_MAX`: alias chains longer than this do not load.
const FOLLOW_MAX: usize = 64;

/// One drop-in file, as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropinFile {
    pub file_name: String,
    /// Where it was found (logical).
    pub path: Utf8PathBuf,
    /// What to read, or `None` when the drop-in is masked (or dangling): it
    /// still hides lower-priority drop-ins of the same name.
    pub real: Option<Utf8PathBuf>,
}

/// A directory's entries, sorted by name, with the `.d` directories of unit
/// and type names listed too.
struct Listing {
    /// The directory with every link resolved.
    real_dir: Utf8PathBuf,
    /// Names and types as readdir reports them (no extra system call).
    entries: Vec<(String, Option<std::fs::FileType>)>,
    /// `NAME.d` → its listing.
    dropin_dirs: FastMap<String, Listing>,
}

impl Listing {
    /// Lists every search directory, the `.d` directories in them that
    /// belong to a unit or a unit type, and reads every plain unit file and
    /// drop-in found into `reader`. The search directories are listed in
    /// order (their links resolved); the `.d` directories listed and the
    /// files read on two threads: a thousand small directories and files
    /// cost a few system calls each, and that divides.
    fn list_all(
        root: &Root,
        search_path: &[Utf8PathBuf],
        reader: &mut FileReader<'_>,
    ) -> Vec<Option<Listing>> {
        let mut listings: Vec<Option<Listing>> = search_path
            .iter()
            .map(|dir| {
                // Search directories may themselves be links (NixOS links
                // /etc/systemd/system into the store).
                let real_dir = root.canonicalize(dir).ok()?;
                let entries = list_dir(&root.join(&real_dir))?;
                Some(Listing {
                    real_dir,
                    entries,
                    dropin_dirs: FastMap::default(),
                })
            })
            .collect();
        // Each search directory opened once: its unit files (most of the
        // files a run reads) are opened relative to it.
        let search_dirs: Vec<Option<OwnedFd>> = listings
            .iter()
            .map(|listing| {
                let listing = listing.as_ref()?;
                nix::fcntl::open(
                    crate::diag::under_root(root.dir(), &listing.real_dir).as_std_path(),
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .ok()
            })
            .collect();
        // (search dir index, `NAME.d`, its resolved path)
        let mut dir_jobs: Vec<(usize, String, Utf8PathBuf)> = Vec::new();
        // (search dir index, the unit file's resolved path)
        let mut file_jobs: Vec<(usize, Utf8PathBuf)> = Vec::new();
        for (index, listing) in listings.iter().enumerate() {
            let Some(listing) = listing else { continue };
            for (name, file_type) in &listing.entries {
                if let Some(unit) = name.strip_suffix(".d") {
                    if UnitName::parse(unit).is_none() && !super::name::UNIT_TYPES.contains(&unit) {
                        continue;
                    }
                    let real = if file_type.is_some_and(|t| t.is_dir()) {
                        Some(listing.real_dir.join(name))
                    } else {
                        root.canonicalize(&search_path[index].join(name)).ok()
                    };
                    if let Some(real) = real {
                        dir_jobs.push((index, name.clone(), real));
                    }
                } else if file_type.is_some_and(|t| t.is_file()) && UnitName::parse(name).is_some()
                {
                    file_jobs.push((index, listing.real_dir.join(name)));
                }
            }
        }
        let root_dir = root.dir();
        // Each thread takes the next job until none is left (fixed halves
        // finished far apart: this thread listed the search directories
        // first, and the other threads of the run take turns on the cores).
        let next_job = std::sync::atomic::AtomicUsize::new(0);
        let work = || {
            let mut buffer = Vec::new();
            let mut dirs: Vec<ListedDropinDir> = Vec::new();
            let mut files: Vec<(Utf8PathBuf, FileRead)> = Vec::new();
            loop {
                let job = next_job.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some((index, name, real_dir)) = dir_jobs.get(job) {
                    let Some(entries) = list_dir(&crate::diag::under_root(root_dir, real_dir))
                    else {
                        continue;
                    };
                    let dropin_files = entries
                        .iter()
                        .filter(|(file, t)| {
                            t.is_some_and(|t| t.is_file())
                                && file.ends_with(".conf")
                                && !file.starts_with('.')
                        })
                        .map(|(file, _)| {
                            let real = real_dir.join(file);
                            let read = read_under(root_dir, &real, &mut buffer);
                            (real, read)
                        })
                        .collect();
                    let listing = Listing {
                        real_dir: real_dir.clone(),
                        entries,
                        dropin_dirs: FastMap::default(),
                    };
                    dirs.push((*index, name.clone(), listing, dropin_files));
                } else if let Some((index, real)) = file_jobs.get(job - dir_jobs.len()) {
                    let read = match (&search_dirs[*index], real.file_name()) {
                        (Some(dir), Some(name)) => {
                            super::files::read_file_at(dir, name, &mut buffer)
                                .map_err(std::sync::Arc::new)
                        }
                        _ => read_under(root_dir, real, &mut buffer),
                    };
                    files.push((real.clone(), read));
                } else {
                    break;
                }
            }
            (dirs, files)
        };
        let (first, second) = std::thread::scope(|scope| {
            let helper = scope.spawn(work);
            (work(), helper.join())
        });
        // The helper cannot fail short of a panic, which aborts the run.
        let second = second.unwrap_or_else(|_| (Vec::new(), Vec::new()));
        for (dirs, files) in [first, second] {
            for (index, name, listing, dropin_files) in dirs {
                if let Some(Some(search_dir)) = listings.get_mut(index) {
                    search_dir.dropin_dirs.insert(name, listing);
                }
                reader.insert_all(dropin_files);
            }
            reader.insert_all(files);
        }
        listings
    }
}

type FileRead = super::files::FileContents;

/// A `.d` directory listed on a worker: its search directory's index, its
/// name, its listing, and its plain `.conf` files read.
type ListedDropinDir = (usize, String, Listing, Vec<(Utf8PathBuf, FileRead)>);

fn read_under(root_dir: &Utf8Path, real: &Utf8Path, buffer: &mut Vec<u8>) -> FileRead {
    super::files::read_file(&crate::diag::under_root(root_dir, real), buffer)
        .map_err(std::sync::Arc::new)
}

/// A directory's entries with their types as readdir reports them (no extra
/// system call), sorted by name so that warnings come out the same every
/// run; `None` when it cannot be listed.
fn list_dir(real: &Utf8Path) -> Option<Vec<(String, Option<std::fs::FileType>)>> {
    let mut entries: Vec<(String, Option<std::fs::FileType>)> = std::fs::read_dir(real)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let file_type = entry.file_type().ok();
            Some((entry.file_name().into_string().ok()?, file_type))
        })
        .collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Some(entries)
}

/// The unit files of a root, indexed once, so that each unit is loaded
/// without walking directories again.
#[derive(Debug, Default)]
pub struct Catalog {
    pub search_path: Vec<Utf8PathBuf>,
    /// The search directories as listed and as resolved, to tell an alias
    /// (target inside) from a linked unit file (target outside).
    search_dir_forms: Vec<Utf8PathBuf>,
    /// Looked up by name thousands of times a run (a B-tree compared a
    /// dozen names a lookup): a hash map, sorted when listed.
    entries: FastMap<String, Entry>,
    /// Final unit name → every name that loads it (systemd's
    /// `unit_name_map`), built once after the scan.
    names_map: FastMap<String, Vec<String>>,
    /// Unit or type name → for each search directory with a `NAME.d/`
    /// holding `.conf` files (by index, ascending), those files, by file
    /// name.
    dropin_dirs: FastMap<String, Vec<DropinDir>>,
    pub warnings: Vec<Diagnostic>,
}

/// A `NAME.d/` directory: its search directory's index, its `.conf` files.
type DropinDir = (usize, Vec<DropinFile>);

/// A unit's files, in the order systemd applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFiles {
    pub name: String,
    /// The file the unit is loaded from: found path, resolved path.
    pub fragment_path: Utf8PathBuf,
    pub fragment_real: Utf8PathBuf,
    /// Applied drop-ins (not masked), sorted by file name.
    pub dropins: Vec<DropinFile>,
    /// Every drop-in file name that applies or hides, for choosing a name of
    /// our own that sorts after them all.
    pub dropin_names: BTreeSet<String>,
}

/// [`UnitFiles`] as found in the [`Catalog`], borrowed.
pub struct UnitFileRefs<'c> {
    pub name: String,
    pub fragment_path: &'c Utf8Path,
    pub fragment_real: &'c Utf8Path,
    /// Every drop-in that applies or hides, by file name.
    chosen: BTreeMap<&'c str, &'c DropinFile>,
}

impl UnitFileRefs<'_> {
    /// The files to read: the fragment, then each applied drop-in.
    pub fn readable(&self) -> impl Iterator<Item = &Utf8Path> {
        std::iter::once(self.fragment_real)
            .chain(self.chosen.values().filter_map(|file| file.real.as_deref()))
    }

    pub fn to_owned(&self) -> UnitFiles {
        UnitFiles {
            name: self.name.clone(),
            fragment_path: self.fragment_path.to_owned(),
            fragment_real: self.fragment_real.to_owned(),
            dropin_names: self.chosen.keys().map(|n| (*n).to_owned()).collect(),
            dropins: self
                .chosen
                .values()
                .filter(|file| file.real.is_some())
                .map(|file| (*file).clone())
                .collect(),
        }
    }
}

/// The kernel's limit on links followed while resolving one path.
const MAX_LINKS: usize = 40;

/// True when `path` is a link whose chain reaches `/dev/null`: a mask.
///
/// Under `--root` the root rarely has a `/dev/null` of its own, so the link
/// target is compared by name, as `systemctl --root` does
/// (`null_or_empty_path_with_root()`), instead of being resolved.
pub(crate) fn links_to_dev_null(root: &Root, path: &Utf8Path) -> bool {
    let mut current = path.to_owned();
    for _ in 0..MAX_LINKS {
        let (Some(parent), Some(name)) = (current.parent(), current.file_name()) else {
            return false;
        };
        let Ok(parent) = root.canonicalize(parent) else {
            return false;
        };
        let Ok(target) = std::fs::read_link(root.join(&parent.join(name))) else {
            return false;
        };
        let Ok(target) = Utf8PathBuf::from_path_buf(target) else {
            return false;
        };
        current = normalize(&parent.join(target));
        if current == "/dev/null" {
            return true;
        }
    }
    false
}

/// The directories of `path` resolved inside the root, its last component
/// not followed (`chase()` with `CHASE_NOFOLLOW|CHASE_NONEXISTENT`); where
/// the directories do not exist, `.` and `..` are only removed.
fn resolve_directories(root: &Root, path: &Utf8Path) -> Utf8PathBuf {
    let path = if path.is_absolute() {
        path.to_owned()
    } else {
        Utf8Path::new("/").join(path)
    };
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => root
            .canonicalize(parent)
            .unwrap_or_else(|_| normalize(parent))
            .join(name),
        _ => root
            .canonicalize(&path)
            .unwrap_or_else(|_| normalize(&path)),
    }
}

/// Why a link is not an alias systemd accepts
/// (`unit_validate_alias_symlink_or_warn()`); shown in the warning that
/// names the link.
#[derive(Debug, Clone, PartialEq, Eq)]
enum InvalidAlias {
    LinkNameNotUnitName,
    TargetNotUnitName(String),
    TypeWithoutAliases(String),
    TypeWithoutTemplates(String),
    KindsDiffer,
    InstancesDiffer,
    TypesDiffer,
}

impl fmt::Display for InvalidAlias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidAlias::LinkNameNotUnitName => write!(f, "the link's name is not a unit name"),
            InvalidAlias::TargetNotUnitName(target) => {
                write!(f, "{target:?} is not a valid unit name")
            }
            InvalidAlias::TypeWithoutAliases(unit_type) => {
                write!(f, "{unit_type} units cannot have aliases")
            }
            InvalidAlias::TypeWithoutTemplates(unit_type) => {
                write!(f, "{unit_type} units cannot be templates")
            }
            InvalidAlias::KindsDiffer => {
                write!(
                    f,
                    "plain, template and instance names cannot alias each other"
                )
            }
            InvalidAlias::InstancesDiffer => write!(f, "the instance names differ"),
            InvalidAlias::TypesDiffer => write!(f, "the unit types differ"),
        }
    }
}

impl std::error::Error for InvalidAlias {}

fn validate_alias(source: &str, target: &str) -> Result<(), InvalidAlias> {
    let source = UnitName::parse(source).ok_or(InvalidAlias::LinkNameNotUnitName)?;
    let target = UnitName::parse(target)
        .ok_or_else(|| InvalidAlias::TargetNotUnitName(target.to_owned()))?;
    if !ALIAS_TYPES.contains(&source.unit_type) {
        return Err(InvalidAlias::TypeWithoutAliases(
            source.unit_type.to_owned(),
        ));
    }
    if source.instance.is_some() && !TEMPLATE_TYPES.contains(&source.unit_type) {
        return Err(InvalidAlias::TypeWithoutTemplates(
            source.unit_type.to_owned(),
        ));
    }
    let kind = |n: &UnitName| (n.is_template(), n.is_instance());
    let compatible =
        kind(&source) == kind(&target) || (source.is_instance() && target.is_template());
    if !compatible {
        return Err(InvalidAlias::KindsDiffer);
    }
    if source.is_instance() && target.is_instance() && source.instance != target.instance {
        return Err(InvalidAlias::InstancesDiffer);
    }
    if source.unit_type != target.unit_type {
        return Err(InvalidAlias::TypesDiffer);
    }
    Ok(())
}

/// `.` and `..` removed without looking at the file system (`..` at the
/// top stays at `/`).
fn normalize(path: &Utf8Path) -> Utf8PathBuf {
    let mut out = Utf8PathBuf::from("/");
    for component in path.as_str().split('/') {
        match component {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl Catalog {
    pub fn scan(root: &Root, search_path: Vec<Utf8PathBuf>) -> Catalog {
        Catalog::scan_reading(root, search_path, &mut FileReader::new(root), &|| {})
    }

    /// [`Catalog::scan`], reading every plain unit file and drop-in found
    /// into `reader` on the way (they are all read anyway, to find the
    /// annotated ones): the directories are listed first, then the files
    /// read on two threads (`files_read` is called when they are done),
    /// then the entries classified.
    pub fn scan_reading(
        root: &Root,
        search_path: Vec<Utf8PathBuf>,
        reader: &mut FileReader<'_>,
        files_read: &dyn Fn(),
    ) -> Catalog {
        let mut search_dir_forms = search_path.clone();
        search_dir_forms.extend(search_path.iter().filter_map(|d| root.canonicalize(d).ok()));
        let mut catalog = Catalog {
            search_path,
            search_dir_forms,
            ..Catalog::default()
        };
        let listings = Listing::list_all(root, &catalog.search_path, reader);
        files_read();
        for (index, listing) in listings.iter().enumerate() {
            if let Some(listing) = listing {
                let dir = catalog.search_path[index].clone();
                catalog.scan_dir(root, index, &dir, listing, reader);
            }
        }
        catalog.build_names_map();
        catalog
    }

    /// systemd's `unit_name_map`: for every name, the unit it loads (the
    /// name of the final file, with the instance put into a template).
    fn build_names_map(&mut self) {
        // A list per unit, not a set: most units have one name, and each
        // name comes once (a thousand one-element sets, a tree node each,
        // were a measurable share of a run's page faults on the benchmark
        // system; see benches/README.md). Its users do not need the names
        // in order.
        let mut names_map: FastMap<String, Vec<String>> = FastMap::default();
        for name in self.entries.keys() {
            if !matches!(self.follow(name), Some((_, Entry::File { .. }))) {
                continue;
            }
            names_map
                .entry(self.unit_id(name))
                .or_default()
                .push(name.clone());
        }
        self.names_map = names_map;
    }

    fn scan_dir(
        &mut self,
        root: &Root,
        index: usize,
        dir: &Utf8Path,
        listing: &Listing,
        reader: &FileReader<'_>,
    ) {
        // Names starting with a dot are not skipped: systemd reads every
        // entry with a valid unit name (".foo.service" loads).
        for (name, file_type) in &listing.entries {
            let path = dir.join(name);
            if let Some(unit) = name.strip_suffix(".d") {
                if let Some(dropins) = listing.dropin_dirs.get(name) {
                    let files = self.scan_dropin_dir(root, &path, dropins);
                    if !files.is_empty() {
                        // Search directories are scanned in order.
                        self.dropin_dirs
                            .entry(unit.to_owned())
                            .or_default()
                            .push((index, files));
                    }
                }
                continue;
            }
            if UnitName::parse(name).is_none() || self.entries.contains_key(name) {
                continue;
            }
            let real = listing.real_dir.join(name);
            // A plain file in a resolved directory needs no resolution, and
            // its length is known from having read it.
            let entry = if file_type.is_some_and(|t| t.is_file()) {
                match reader.read_before(&real) {
                    Some(Ok(bytes)) if bytes.is_empty() => Some(Entry::Masked { path }),
                    Some(Ok(_)) => Some(Entry::File { path, real }),
                    _ => self.regular(root, name, path, real),
                }
            } else {
                self.classify(root, name, dir, path, &real)
            };
            if let Some(entry) = entry {
                self.entries.insert(name.clone(), entry);
            }
        }
    }

    /// An entry that is not known to be a plain file: a link, or a file
    /// whose type readdir did not report. `dir` is the search directory as
    /// listed, `real` the entry inside the resolved directory.
    fn classify(
        &mut self,
        root: &Root,
        name: &str,
        dir: &Utf8Path,
        path: Utf8PathBuf,
        real: &Utf8Path,
    ) -> Option<Entry> {
        let target = match std::fs::read_link(root.join(real)) {
            Ok(target) => target,
            // Not a link after all.
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                return self.regular(root, name, path, real.to_owned());
            }
            Err(error) => {
                self.warnings.push(Diagnostic::warning(
                    Some(name),
                    Some(Location::new(&path, 0)),
                    format!("cannot read the link, ignoring it as systemd does: {error}"),
                ));
                return None;
            }
        };
        let Ok(target) = Utf8PathBuf::from_path_buf(target) else {
            self.warnings.push(Diagnostic::warning(
                Some(name),
                Some(Location::new(&path, 0)),
                "link target is not UTF-8, ignoring it",
            ));
            return None;
        };
        // As unit_file_resolve_symlink(): one level of the link, relative to
        // the search directory, with the directories on the way resolved.
        let destination = resolve_directories(root, &dir.join(target));
        let inside = self
            .search_dir_forms
            .iter()
            .any(|search_dir| destination.starts_with(search_dir));
        if !inside {
            // A linked unit file (or a mask): loaded under the link's name.
            if links_to_dev_null(root, &path) {
                return Some(Entry::Masked { path });
            }
            return match root.canonicalize(&path) {
                Ok(real) => self.regular(root, name, path, real),
                Err(error) => {
                    self.warnings.push(Diagnostic::warning(
                        Some(name),
                        Some(Location::new(&path, 0)),
                        format!(
                            "linked unit file cannot be read ({error}): systemd does not load \
                             {name}, nor a file of that name in a lower-priority directory"
                        ),
                    ));
                    Some(Entry::Broken { path })
                }
            };
        }
        let target_name = destination.file_name().unwrap_or_default();
        if target_name == name {
            // A self-alias has no effect: systemd ignores the link and a
            // lower-priority file of the same name loads.
            return None;
        }
        if let Err(problem) = validate_alias(name, target_name) {
            self.warnings.push(Diagnostic::warning(
                Some(name),
                Some(Location::new(&path, 0)),
                format!(
                    "link to {destination} is not a valid alias ({problem}): systemd ignores it"
                ),
            ));
            return None;
        }
        let own_template = UnitName::parse(name).and_then(|n| n.template());
        Some(if own_template.as_deref() == Some(target_name) {
            Entry::InstanceLink { path }
        } else {
            Entry::Alias {
                path,
                target_name: target_name.to_owned(),
            }
        })
    }

    /// A unit file that is not an alias: `real` is the file it resolves to.
    fn regular(
        &mut self,
        root: &Root,
        name: &str,
        path: Utf8PathBuf,
        real: Utf8PathBuf,
    ) -> Option<Entry> {
        if real == "/dev/null" {
            return Some(Entry::Masked { path });
        }
        match std::fs::metadata(root.join(&real)) {
            Ok(metadata) if metadata.is_file() && metadata.len() == 0 => {
                Some(Entry::Masked { path })
            }
            Ok(metadata) if metadata.is_file() => Some(Entry::File { path, real }),
            Ok(_) => {
                self.warnings.push(Diagnostic::warning(
                    Some(name),
                    Some(Location::new(&path, 0)),
                    format!("{real} is not a regular file: systemd does not load {name}"),
                ));
                Some(Entry::Broken { path })
            }
            Err(error) => {
                self.warnings.push(Diagnostic::warning(
                    Some(name),
                    Some(Location::new(&path, 0)),
                    format!("unit file cannot be read ({error}): systemd does not load {name}"),
                ));
                Some(Entry::Broken { path })
            }
        }
    }

    fn scan_dropin_dir(
        &mut self,
        root: &Root,
        dir: &Utf8Path,
        listing: &Listing,
    ) -> Vec<DropinFile> {
        let mut files = Vec::new();
        for (file_name, file_type) in &listing.entries {
            if file_name.starts_with('.') || !file_name.ends_with(".conf") {
                continue;
            }
            let path = dir.join(file_name);
            if file_type.is_some_and(|t| t.is_file()) {
                // A plain file: not a mask, and where it was listed.
                files.push(DropinFile {
                    file_name: file_name.clone(),
                    path,
                    real: Some(listing.real_dir.join(file_name)),
                });
                continue;
            }
            let file_name = file_name.clone();

            if links_to_dev_null(root, &path) {
                files.push(DropinFile {
                    file_name,
                    path,
                    real: None,
                });
                continue;
            }
            let real = match root.canonicalize(&path) {
                Ok(real) if real == "/dev/null" => None,
                // A directory named *.conf is listed by systemd too: it
                // hides the files of its name and adds nothing.
                Ok(real) if std::fs::metadata(root.join(&real)).is_ok_and(|m| m.is_dir()) => None,
                Ok(real) => Some(real),
                Err(error) => {
                    self.warnings.push(Diagnostic::warning(
                        None,
                        Some(Location::new(&path, 0)),
                        format!(
                            "drop-in cannot be read, it only hides others of its name: {error}"
                        ),
                    ));
                    None
                }
            };
            files.push(DropinFile {
                file_name,
                path,
                real,
            });
        }
        files
    }

    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// All names with an entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(n, e)| (n.as_str(), e))
    }

    /// [`Catalog::entries`], sorted by name.
    pub fn names(&self) -> impl Iterator<Item = (&str, &Entry)> {
        let mut names: Vec<(&str, &Entry)> = self.entries().collect();
        names.sort_unstable_by(|a, b| a.0.cmp(b.0));
        names.into_iter()
    }

    /// Names that have a drop-in directory with `.conf` files somewhere, to
    /// find instances that exist only through their drop-ins (in no
    /// particular order).
    pub fn dropin_dir_units(&self) -> impl Iterator<Item = &str> {
        self.dropin_dirs.keys().map(String::as_str)
    }

    /// Every `NAME.d/` directory holding drop-ins: its `NAME` and its path
    /// (in no particular order).
    pub fn dropin_dir_paths(&self) -> impl Iterator<Item = (&str, Utf8PathBuf)> {
        self.dropin_dirs.iter().flat_map(move |(name, dirs)| {
            dirs.iter().map(move |(index, _)| {
                (
                    name.as_str(),
                    self.search_path[*index].join(format!("{name}.d")),
                )
            })
        })
    }

    /// Every other name that loads the unit `name` (systemd's
    /// `unit_file_find_fragment()` names): aliases, aliases of its
    /// template put to its instance, and links of other instances to it.
    pub fn aliases_of(&self, name: &str) -> Vec<String> {
        // Most units have no other name: loaded from a file of their own
        // name, which no other name loads.
        let only_itself = self
            .names_map
            .get(name)
            .is_none_or(|names| names.len() == 1 && names[0] == name);
        if only_itself
            && self
                .follow(name)
                .is_some_and(|(fragment, _)| fragment == name)
        {
            return Vec::new();
        }
        let mut names: BTreeSet<String> = BTreeSet::new();
        let parsed = UnitName::parse(name);
        let mut add_names_of = |unit: &str| {
            for alias in self.names_map.get(unit).into_iter().flatten() {
                let alias_parsed = UnitName::parse(alias);
                match (parsed, alias_parsed) {
                    (Some(p), Some(a)) if p.is_instance() && a.is_template() => {
                        let instance = format!(
                            "{}@{}.{}",
                            a.prefix,
                            p.instance.unwrap_or_default(),
                            a.unit_type
                        );
                        // Unless that instance has a file of its own.
                        let own = self
                            .follow(&instance)
                            .map(|(final_name, _)| final_name.to_owned());
                        if own.is_none_or(|own| own == unit) {
                            names.insert(instance);
                        }
                    }
                    _ => {
                        names.insert(alias.clone());
                    }
                }
            }
        };
        add_names_of(name);
        // The names of the file it loads from, when that has another name
        // (its template, or the target of a link).
        let fragment_name = self
            .follow(name)
            .or_else(|| self.follow(&parsed?.template()?))
            .map(|(fragment_name, _)| fragment_name);
        if let Some(fragment_name) = fragment_name
            && fragment_name != name
        {
            add_names_of(fragment_name);
        }
        names.remove(name);
        if let Some(template) = parsed.and_then(|p| p.template()) {
            names.remove(&template);
        }
        names.into_iter().collect()
    }

    /// Follows aliases from `name` to the entry that is not one (systemd's
    /// `unit_ids_map_get()`): its name and the entry, or `None` when `name`
    /// has no entry, or a chain ends at a name without one.
    fn follow<'a>(&'a self, name: &str) -> Option<(&'a str, &'a Entry)> {
        // Most names are unit files of their own: no hop, nothing to copy.
        match self.entries.get_key_value(name)? {
            (_, Entry::Alias { .. } | Entry::InstanceLink { .. }) => {}
            (key, entry) => return Some((key.as_str(), entry)),
        }
        let mut current = name.to_owned();
        for hop in 0..FOLLOW_MAX {
            let (key, entry) = match self.entries.get_key_value(&current) {
                Some(found) => found,
                // An alias to an instance without a file of its own: the
                // instance's template.
                None if hop > 0 => {
                    let template = UnitName::parse(&current)?.template()?;
                    self.entries.get_key_value(&template)?
                }
                None => return None,
            };
            match entry {
                Entry::Alias { target_name, .. } => current.clone_from(target_name),
                Entry::InstanceLink { .. } => current = UnitName::parse(key)?.template()?,
                _ => return Some((key.as_str(), entry)),
            }
        }
        None
    }

    /// The files of unit `name`, or `None` when it has no unit file or is
    /// masked. An instance without a file of its own loads from its template.
    pub fn unit_files(&self, name: &str) -> Option<UnitFiles> {
        self.unit_file_refs(name).map(|refs| refs.to_owned())
    }

    /// [`Catalog::unit_files`] borrowed from the catalog: what to read,
    /// with nothing copied yet (most units are only looked at once, to see
    /// that they carry no annotation).
    pub fn unit_file_refs(&self, name: &str) -> Option<UnitFileRefs<'_>> {
        let (fragment_path, fragment_real) = self.fragment(name)?;
        // An alias loads the unit of its target, under the target's name.
        let name = self.unit_id(name);
        let name = name.as_str();
        let mut names = vec![name.to_owned()];
        names.extend(self.aliases_of(name));

        // The directories in systemd's order (unit_file_find_dropin_paths()):
        // the unit's own name in every search directory, then each alias in
        // every search directory, then the top-level type directory in every
        // search directory. The first file of a given name wins.
        // Only names that have a `.d/` somewhere are looked up, once each
        // (most units have none: this runs for every unit).
        let mut groups: Vec<Vec<&[DropinDir]>> = names
            .iter()
            .map(|unit_name| {
                dropin_dir_names(unit_name)
                    .iter()
                    .filter_map(|dir_name| self.dropin_dirs.get(dir_name).map(Vec::as_slice))
                    .collect()
            })
            .collect();
        if let Some(parsed) = UnitName::parse(name)
            && let Some(dirs) = self.dropin_dirs.get(parsed.unit_type)
        {
            groups.push(vec![dirs.as_slice()]);
        }
        let mut chosen: BTreeMap<&str, &DropinFile> = BTreeMap::new();
        for group in &groups {
            for index in 0..self.search_path.len() {
                for dirs in group {
                    for (_, files) in dirs.iter().filter(|(i, _)| *i == index) {
                        for file in files {
                            chosen.entry(file.file_name.as_str()).or_insert(file);
                        }
                    }
                }
            }
        }
        Some(UnitFileRefs {
            name: name.to_owned(),
            fragment_path,
            fragment_real,
            chosen,
        })
    }

    /// The name of the unit `name` loads (systemd's unit id): the name of
    /// the file at the end of its aliases, with `name`'s instance put into a
    /// template.
    fn unit_id(&self, name: &str) -> String {
        let found = self.follow(name).or_else(|| {
            let template = UnitName::parse(name)?.template()?;
            self.follow(&template)
        });
        let Some((final_name, _)) = found else {
            return name.to_owned();
        };
        match (UnitName::parse(final_name), UnitName::parse(name)) {
            (Some(target), Some(source)) if target.is_template() && source.is_instance() => {
                format!(
                    "{}@{}.{}",
                    target.prefix,
                    source.instance.unwrap_or_default(),
                    target.unit_type
                )
            }
            _ => final_name.to_owned(),
        }
    }

    /// The file `name` loads from: its own entry followed through aliases,
    /// else (an instance without one) its template's.
    fn fragment(&self, name: &str) -> Option<(&Utf8Path, &Utf8Path)> {
        let found = self.follow(name).or_else(|| {
            let template = UnitName::parse(name)?.template()?;
            self.follow(&template)
        });
        match found? {
            (_, Entry::File { path, real }) => Some((path, real)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A root under the temporary directory, with the given files and links
    /// (`path -> target`), and the default search path.
    fn root(name: &str, files: &[(&str, &str)], links: &[(&str, &str)]) -> (Root, Catalog) {
        let dir = Utf8PathBuf::from(format!(
            "{}/ncg-catalog-{name}-{}",
            std::env::temp_dir().display(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        for (path, target) in links {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            symlink(target, path).unwrap();
        }
        let root = Root::new(dir);
        let search_path = crate::unit::search_path::unit_search_path(&root, None, None);
        let catalog = Catalog::scan(&root, search_path);
        (root, catalog)
    }

    const UNIT: &str = "[Service]\nExecStart=/bin/true\n";

    #[test]
    fn a_link_to_dev_null_masks_even_when_the_root_has_no_dev() {
        let (_root, catalog) = root(
            "devnull",
            &[
                ("usr/lib/systemd/system/a.service", UNIT),
                ("usr/lib/systemd/system/a.service.d/10-x.conf", UNIT),
            ],
            &[
                ("etc/systemd/system/a.service", "/dev/null"),
                ("etc/systemd/system/b.service", "../../../dev/null"),
                ("etc/systemd/system/a.service.d/10-x.conf", "/dev/null"),
            ],
        );
        assert!(matches!(
            catalog.entry("a.service"),
            Some(Entry::Masked { .. })
        ));
        assert!(matches!(
            catalog.entry("b.service"),
            Some(Entry::Masked { .. })
        ));
        assert!(catalog.unit_files("a.service").is_none());
        assert!(catalog.warnings.is_empty(), "{:?}", catalog.warnings);
        // The masked drop-in hides the /usr/lib one of the same name.
        let (_root, catalog) = root(
            "devnull-dropin",
            &[
                ("usr/lib/systemd/system/a.service", UNIT),
                ("usr/lib/systemd/system/a.service.d/10-x.conf", UNIT),
            ],
            &[("etc/systemd/system/a.service.d/10-x.conf", "/dev/null")],
        );
        let files = catalog.unit_files("a.service").unwrap();
        assert!(files.dropins.is_empty(), "{:?}", files.dropins);
        assert!(files.dropin_names.contains("10-x.conf"));
        assert!(catalog.warnings.is_empty(), "{:?}", catalog.warnings);
    }

    fn dropin_paths(catalog: &Catalog, name: &str) -> Vec<String> {
        let files = catalog.unit_files(name).unwrap();
        files.dropins.iter().map(|d| d.path.to_string()).collect()
    }

    #[test]
    fn type_dirs_and_aliases_rank_below_the_units_own_name_in_every_directory() {
        // systemd 252 (`systemd-analyze --root verify`) applies
        // /usr/lib/…/t.service.d/10-x.conf and not /etc/…/service.d/10-x.conf,
        // and /usr/lib/…/real.service.d/20-y.conf, not the alias's
        // /etc/…/al.service.d/20-y.conf.
        let (_root, catalog) = root(
            "dropin-order",
            &[
                ("usr/lib/systemd/system/t.service", UNIT),
                ("usr/lib/systemd/system/t.service.d/10-x.conf", UNIT),
                ("etc/systemd/system/service.d/10-x.conf", UNIT),
                ("usr/lib/systemd/system/real.service", UNIT),
                ("usr/lib/systemd/system/real.service.d/20-y.conf", UNIT),
                ("etc/systemd/system/al.service.d/20-y.conf", UNIT),
            ],
            &[("usr/lib/systemd/system/al.service", "real.service")],
        );
        assert_eq!(
            dropin_paths(&catalog, "t.service"),
            ["/usr/lib/systemd/system/t.service.d/10-x.conf"]
        );
        assert_eq!(
            dropin_paths(&catalog, "real.service"),
            [
                "/etc/systemd/system/service.d/10-x.conf",
                "/usr/lib/systemd/system/real.service.d/20-y.conf"
            ]
        );
    }

    fn fragment(catalog: &Catalog, name: &str) -> Option<(String, String, String)> {
        let files = catalog.unit_files(name)?;
        Some((
            files.name,
            files.fragment_path.to_string(),
            files.fragment_real.to_string(),
        ))
    }

    // Each case below was checked against systemd 252
    // (`systemd-analyze --root DIR verify NAME`, relative links).

    #[test]
    fn a_link_out_of_the_search_path_is_a_linked_unit_file_under_its_own_name() {
        let (_root, catalog) = root(
            "linked",
            &[
                ("opt/other.service", UNIT),
                ("etc/systemd/system/other.service.d/x.conf", UNIT),
                ("etc/systemd/system/b.service.d/y.conf", UNIT),
            ],
            &[("etc/systemd/system/b.service", "/opt/other.service")],
        );
        assert_eq!(
            fragment(&catalog, "b.service").unwrap(),
            (
                "b.service".into(),
                "/etc/systemd/system/b.service".into(),
                "/opt/other.service".into()
            )
        );
        assert_eq!(
            dropin_paths(&catalog, "b.service"),
            ["/etc/systemd/system/b.service.d/y.conf"]
        );
        assert!(catalog.unit_files("other.service").is_none());
        assert!(catalog.aliases_of("b.service").is_empty());
    }

    #[test]
    fn an_alias_loads_its_target_names_highest_priority_file() {
        let (_root, catalog) = root(
            "alias-by-name",
            &[
                ("usr/lib/systemd/system/service1.service", UNIT),
                ("run/systemd/system/service1.service", UNIT),
                ("etc/systemd/system/alias2.service.d/a.conf", UNIT),
            ],
            &[
                ("etc/systemd/system/alias1.service", "service1.service"),
                (
                    "etc/systemd/system/alias2.service",
                    "/usr/lib/systemd/system/service1.service",
                ),
                // Dangling, but inside the search path: still an alias.
                (
                    "etc/systemd/system/alias3.service",
                    "/etc/systemd/system/service1.service",
                ),
            ],
        );
        let expected = (
            "service1.service".to_owned(),
            "/run/systemd/system/service1.service".to_owned(),
            "/run/systemd/system/service1.service".to_owned(),
        );
        for name in [
            "service1.service",
            "alias1.service",
            "alias2.service",
            "alias3.service",
        ] {
            assert_eq!(fragment(&catalog, name).as_ref(), Some(&expected), "{name}");
        }
        assert_eq!(
            catalog.aliases_of("service1.service"),
            ["alias1.service", "alias2.service", "alias3.service"]
        );
        assert_eq!(
            dropin_paths(&catalog, "service1.service"),
            ["/etc/systemd/system/alias2.service.d/a.conf"]
        );
    }

    #[test]
    fn self_aliases_and_invalid_aliases_are_ignored_dangling_linked_files_hide() {
        let (_root, catalog) = root(
            "ignored-links",
            &[
                ("usr/lib/systemd/system/c.service", UNIT),
                ("run/systemd/system/c.service", UNIT),
                ("usr/lib/systemd/system/d.service", UNIT),
                ("usr/lib/systemd/system/d.socket", UNIT),
                ("usr/lib/systemd/system/e.service", UNIT),
            ],
            &[
                (
                    "etc/systemd/system/c.service",
                    "/usr/lib/systemd/system/c.service",
                ),
                ("etc/systemd/system/d.service", "d.socket"),
                ("etc/systemd/system/e.service", "/opt/missing.service"),
            ],
        );
        assert_eq!(
            fragment(&catalog, "c.service").unwrap().1,
            "/run/systemd/system/c.service"
        );
        assert_eq!(
            fragment(&catalog, "d.service").unwrap().1,
            "/usr/lib/systemd/system/d.service"
        );
        assert!(matches!(
            catalog.entry("e.service"),
            Some(Entry::Broken { .. })
        ));
        assert!(catalog.unit_files("e.service").is_none());
        let shown: Vec<String> = catalog.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown[0].contains("d.socket is not a valid alias"),
            "{shown:?}"
        );
        assert!(
            shown[1].contains("linked unit file cannot be read"),
            "{shown:?}"
        );
    }

    #[test]
    fn template_aliases_apply_to_every_instance() {
        let (_root, catalog) = root(
            "template-alias",
            &[
                ("usr/lib/systemd/system/tm@.service", UNIT),
                ("etc/systemd/system/ta@.service.d/40.conf", UNIT),
                ("etc/systemd/system/ta@i.service.d/41.conf", UNIT),
            ],
            &[("usr/lib/systemd/system/ta@.service", "tm@.service")],
        );
        assert_eq!(catalog.aliases_of("tm@i.service"), ["ta@i.service"]);
        assert_eq!(
            dropin_paths(&catalog, "tm@i.service"),
            [
                "/etc/systemd/system/ta@.service.d/40.conf",
                "/etc/systemd/system/ta@i.service.d/41.conf"
            ]
        );
        assert_eq!(
            fragment(&catalog, "ta@i.service").unwrap().0,
            "tm@i.service"
        );
    }

    #[test]
    fn aliases_inside_a_linked_search_directory_stay_aliases() {
        let (_root, catalog) = root(
            "nixos-dir",
            &[("nix/store/bbb-unit-foo/foo.service", UNIT)],
            &[
                ("etc/systemd/system", "/nix/store/aaa-units"),
                (
                    "nix/store/aaa-units/foo.service",
                    "/nix/store/bbb-unit-foo/foo.service",
                ),
                ("nix/store/aaa-units/alias.service", "foo.service"),
                (
                    "nix/store/aaa-units/canonical.service",
                    "/nix/store/aaa-units/foo.service",
                ),
            ],
        );
        assert_eq!(
            fragment(&catalog, "foo.service").unwrap(),
            (
                "foo.service".into(),
                "/etc/systemd/system/foo.service".into(),
                "/nix/store/bbb-unit-foo/foo.service".into()
            )
        );
        assert_eq!(
            catalog.aliases_of("foo.service"),
            ["alias.service", "canonical.service"]
        );
    }

    #[test]
    fn a_unit_file_whose_name_starts_with_a_dot_loads() {
        // systemd 252 loads /etc/systemd/system/.hid.service.
        let (_root, catalog) = root(
            "hidden",
            &[
                ("etc/systemd/system/.hid.service", UNIT),
                ("etc/systemd/system/.hid.service.d/a.conf", UNIT),
                ("etc/systemd/system/.hid.service.d/.b.conf", UNIT),
            ],
            &[],
        );
        assert_eq!(
            fragment(&catalog, ".hid.service").unwrap().1,
            "/etc/systemd/system/.hid.service"
        );
        // Hidden drop-ins stay ignored (conf_files_list()).
        assert_eq!(
            dropin_paths(&catalog, ".hid.service"),
            ["/etc/systemd/system/.hid.service.d/a.conf"]
        );
    }

    #[test]
    fn a_directory_named_like_a_dropin_hides_the_files_of_its_name() {
        // systemd 252: "Skipping overridden file
        // '/usr/local/…/foo.service.d/sub.conf'" when /etc's sub.conf is a
        // directory (conf_files_list_strv() lists directories too).
        let (_root, catalog) = root(
            "dropin-directory",
            &[
                ("usr/lib/systemd/system/foo.service", UNIT),
                ("etc/systemd/system/foo.service.d/sub.conf/inner.conf", UNIT),
                ("usr/local/lib/systemd/system/foo.service.d/sub.conf", UNIT),
            ],
            &[],
        );
        let files = catalog.unit_files("foo.service").unwrap();
        assert!(files.dropins.is_empty(), "{:?}", files.dropins);
        assert!(files.dropin_names.contains("sub.conf"));
    }
}
