//! Finding unit files and their drop-ins in the search path, with systemd's
//! rules (systemd.unit(5)): the first file found for a name wins, an empty
//! file or a link to `/dev/null` masks, a link to a file of another name is an
//! alias, and drop-ins come from every search directory with same-name
//! hiding by priority and application in lexical order of file names.

use super::name::{UnitName, dropin_dir_names};
use crate::diag::{Diagnostic, Location};
use crate::rootfs::Root;
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    /// A link to a unit file of another name.
    Alias {
        path: Utf8PathBuf,
        target_name: String,
        real: Utf8PathBuf,
    },
}

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

/// The unit files of a root, indexed once, so that each unit is loaded
/// without walking directories again.
#[derive(Debug, Default)]
pub struct Catalog {
    pub search_path: Vec<Utf8PathBuf>,
    entries: BTreeMap<String, Entry>,
    /// `(search dir index, unit or type name)` → the `.conf` files in
    /// `NAME.d/` of that search directory, by file name.
    dropin_dirs: HashMap<(usize, String), Vec<DropinFile>>,
    /// Every name that has a `NAME.d/` somewhere, to find instances that
    /// exist only through their drop-ins.
    dropin_dir_units: BTreeSet<String>,
    pub warnings: Vec<Diagnostic>,
}

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

/// The kernel's limit on links followed while resolving one path.
const MAX_LINKS: usize = 40;

/// True when `path` is a link whose chain reaches `/dev/null`: a mask.
///
/// Under `--root` the root rarely has a `/dev/null` of its own, so the link
/// target is compared by name, as `systemctl --root` does
/// (`null_or_empty_path_with_root()`), instead of being resolved.
fn links_to_dev_null(root: &Root, path: &Utf8Path) -> bool {
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
        let mut catalog = Catalog {
            search_path,
            ..Catalog::default()
        };
        for index in 0..catalog.search_path.len() {
            let dir = catalog.search_path[index].clone();
            catalog.scan_dir(root, index, &dir);
        }
        catalog
    }

    fn scan_dir(&mut self, root: &Root, index: usize, dir: &Utf8Path) {
        // Search directories may themselves be links (NixOS links
        // /etc/systemd/system into the store).
        let Ok(real_dir) = root.canonicalize(dir) else {
            return;
        };
        let Ok(read_dir) = std::fs::read_dir(root.join(&real_dir)) else {
            return;
        };
        let mut entries: Vec<(String, Option<std::fs::FileType>)> = read_dir
            .filter_map(|entry| {
                let entry = entry.ok()?;
                // d_type from readdir: no extra system call.
                let file_type = entry.file_type().ok();
                Some((entry.file_name().into_string().ok()?, file_type))
            })
            .collect();
        // Deterministic order, so warnings come out the same every run.
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (name, file_type) in entries {
            if name.starts_with('.') {
                continue;
            }
            let path = dir.join(&name);
            if let Some(unit) = name.strip_suffix(".d") {
                let is_unit_or_type =
                    UnitName::parse(unit).is_some() || super::name::UNIT_TYPES.contains(&unit);
                if is_unit_or_type {
                    let files = self.scan_dropin_dir(root, &path);
                    if !files.is_empty() {
                        self.dropin_dir_units.insert(unit.to_owned());
                        self.dropin_dirs.insert((index, unit.to_owned()), files);
                    }
                }
                continue;
            }
            if UnitName::parse(&name).is_none() || self.entries.contains_key(&name) {
                continue;
            }
            // A plain file in a resolved directory needs no resolution.
            let known_real = file_type
                .filter(std::fs::FileType::is_file)
                .map(|_| real_dir.join(&name));
            if let Some(entry) = self.classify(root, &name, path, known_real) {
                self.entries.insert(name, entry);
            }
        }
    }

    fn classify(
        &mut self,
        root: &Root,
        name: &str,
        path: Utf8PathBuf,
        known_real: Option<Utf8PathBuf>,
    ) -> Option<Entry> {
        let resolved = match known_real {
            Some(real) => Ok(real),
            None if links_to_dev_null(root, &path) => return Some(Entry::Masked { path }),
            None => root.canonicalize(&path),
        };
        let real = match resolved {
            Ok(real) => real,
            Err(error) => {
                // systemd skips a dangling link, so a lower-priority file of
                // the same name can still load.
                self.warnings.push(Diagnostic::warning(
                    Some(name),
                    Some(Location::new(&path, 0)),
                    format!("unit file cannot be read, skipping it: {error}"),
                ));
                return None;
            }
        };
        if real == "/dev/null" {
            return Some(Entry::Masked { path });
        }
        let metadata = std::fs::metadata(root.join(&real)).ok()?;
        if !metadata.is_file() {
            return None;
        }
        if metadata.len() == 0 {
            return Some(Entry::Masked { path });
        }
        let target_name = real.file_name().unwrap_or_default();
        let is_alias = target_name != name && UnitName::parse(target_name).is_some();
        let own_template = UnitName::parse(name).and_then(|n| n.template());
        if is_alias && own_template.as_deref() == Some(target_name) {
            return Some(Entry::InstanceLink { path });
        }
        Some(if is_alias {
            Entry::Alias {
                path,
                target_name: target_name.to_owned(),
                real,
            }
        } else {
            Entry::File { path, real }
        })
    }

    fn scan_dropin_dir(&mut self, root: &Root, dir: &Utf8Path) -> Vec<DropinFile> {
        let Ok(real_dir) = root.canonicalize(dir) else {
            return Vec::new();
        };
        let Ok(read_dir) = std::fs::read_dir(root.join(&real_dir)) else {
            return Vec::new();
        };
        let mut files = Vec::new();
        for entry in read_dir.flatten() {
            let Ok(file_name) = entry.file_name().into_string() else {
                continue;
            };
            if file_name.starts_with('.') || !file_name.ends_with(".conf") {
                continue;
            }
            let path = dir.join(&file_name);
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
                Ok(real) => {
                    if std::fs::metadata(root.join(&real)).is_ok_and(|m| m.is_dir()) {
                        continue;
                    }
                    Some(real)
                }
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
        files.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        files
    }

    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// All names with an entry, sorted.
    pub fn names(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(n, e)| (n.as_str(), e))
    }

    /// Names that have drop-in directories (whether or not a file exists).
    pub fn dropin_dir_units(&self) -> impl Iterator<Item = &str> {
        self.dropin_dir_units.iter().map(String::as_str)
    }

    /// Every alias that points at `name`.
    pub fn aliases_of(&self, name: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter_map(|(alias, entry)| match entry {
                Entry::Alias { target_name, .. } if target_name == name => Some(alias.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The files of unit `name`, or `None` when it has no unit file or is
    /// masked. An instance without a file of its own loads from its template.
    pub fn unit_files(&self, name: &str) -> Option<UnitFiles> {
        let (fragment_path, fragment_real) = self.fragment(name)?;
        let mut names = vec![name.to_owned()];
        names.extend(self.aliases_of(name).into_iter().map(str::to_owned));

        // The directories in systemd's order (unit_file_find_dropin_paths()):
        // the unit's own name in every search directory, then each alias in
        // every search directory, then the top-level type directory in every
        // search directory. The first file of a given name wins.
        let mut dirs: Vec<(usize, String)> = Vec::new();
        for unit_name in &names {
            for index in 0..self.search_path.len() {
                for dir_name in dropin_dir_names(unit_name) {
                    dirs.push((index, dir_name));
                }
            }
        }
        if let Some(parsed) = UnitName::parse(name) {
            for index in 0..self.search_path.len() {
                dirs.push((index, parsed.unit_type.to_owned()));
            }
        }
        let mut chosen: BTreeMap<&str, &DropinFile> = BTreeMap::new();
        for dir in dirs {
            for file in self.dropin_dirs.get(&dir).into_iter().flatten() {
                chosen.entry(file.file_name.as_str()).or_insert(file);
            }
        }
        Some(UnitFiles {
            name: name.to_owned(),
            fragment_path,
            fragment_real,
            dropin_names: chosen.keys().map(|n| (*n).to_owned()).collect(),
            dropins: chosen
                .into_values()
                .filter(|file| file.real.is_some())
                .cloned()
                .collect(),
        })
    }

    fn fragment(&self, name: &str) -> Option<(Utf8PathBuf, Utf8PathBuf)> {
        match self.entries.get(name) {
            Some(Entry::File { path, real }) => Some((path.clone(), real.clone())),
            Some(Entry::Masked { .. }) => None,
            Some(Entry::InstanceLink { .. }) => {
                let template = UnitName::parse(name)?.template()?;
                self.fragment(&template)
            }
            Some(Entry::Alias { .. }) => None,
            None => {
                // A unit known only as the target of aliases (its file lies
                // outside the search path), or an instance of a template.
                let via_alias = self.entries.values().find_map(|entry| match entry {
                    Entry::Alias {
                        path,
                        target_name,
                        real,
                    } if target_name == name => Some((path.clone(), real.clone())),
                    _ => None,
                });
                via_alias.or_else(|| {
                    let template = UnitName::parse(name)?.template()?;
                    self.fragment(&template)
                })
            }
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
}
