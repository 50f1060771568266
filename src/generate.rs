//! The pipeline: unit files → annotations → roots → closures → drop-ins.
//!
//! [`plan`] does everything that needs no database: it finds the annotated
//! units and the problems that block them. [`resolve_closures`] opens the
//! database once and reads the reference graph below every unit's roots in
//! one walk; [`compute`] renders each unit's drop-in. The generator writes a
//! blocking drop-in for every annotated unit before the database is opened,
//! so that a kill at any later moment leaves each annotated unit blocked or
//! fully confined, never open.

use crate::annotation::{self, Mode, Request};
use crate::config::{self, Config};
use crate::diag::{Diagnostic, Location};
use crate::dropin::{self, Binding, ClosurePath, Confinement};
use crate::dropin_store::{DropinStore, Key, KeyHasher};
use crate::output::NAME_MAX;
use crate::rootfs::Root;
use crate::scratch::ScratchDir;
use crate::store::cache::Sources;
use crate::store::db::NodeId;
use crate::store::disk::StoreProbe;
use crate::store::roots::{Origin, Roots, collect_roots};
use crate::store::{DbError, NixDb};
use crate::unit::files::FileReader;
use crate::unit::search_path::unit_search_path;
use crate::unit::{Catalog, Entry, MergedUnit, UnitName};
use crate::view::record::{NameHashes, Views};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Our drop-in's file name when no other drop-in of the unit sorts after it.
pub const DROPIN_NAME: &str = "zz-confinement.conf";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Plain,
    Template,
    /// An instance with files of its own (a unit file or drop-ins).
    Instance,
}

/// One service the generator has something to say about.
#[derive(Debug, Clone)]
pub struct UnitPlan {
    pub name: String,
    pub kind: Kind,
    pub merged: MergedUnit,
    /// `None` for an instance that opts out of its template's confinement.
    pub request: Option<Request>,
    pub mode: Mode,
    pub roots: Roots,
    /// Problems that block the unit.
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    pub dropin_name: String,
}

impl UnitPlan {
    pub fn is_blocked(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Whether a drop-in can be written for the unit at all:
    /// `NORMAL/<name>.d/<dropin_name>`, each a file name of at most
    /// [`NAME_MAX`] bytes. A unit name may have 255 bytes and systemd loads
    /// such a unit, but without any drop-in when `<name>.d` is too long.
    pub fn dropin_fits(&self) -> bool {
        self.name.len() + ".d".len() <= NAME_MAX
            && !self.dropin_name.is_empty()
            && self.dropin_name.len() <= NAME_MAX
    }
}

/// A store path in a unit's closure and how it got there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    pub path: String,
    /// What the path resolves to, when it is a symlink.
    pub symlink_target: Option<String>,
    /// From the root to this path (the root first, this path last).
    pub chain: Vec<String>,
    /// What named the root that reached it.
    pub origin: Origin,
}

/// What is written for a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Confined {
        text: String,
        /// How many store paths are bound.
        paths: usize,
        /// Why each is bound; only computed for `explain`.
        closure: Vec<Reached>,
        /// The digest of the closure's view, when the closure is bound
        /// through one (else each path is bound on its own).
        view: Option<String>,
    },
    Blocked {
        text: String,
    },
    /// An instance that opts out: an empty file hides the template's.
    Empty,
}

/// What [`compute_with_store`] found for a unit with the drop-in store.
#[derive(Debug)]
pub enum Computed {
    /// Not in the store: `keep_as` names the file to keep it as, when it
    /// may be kept.
    Rendered {
        outcome: Outcome,
        keep_as: Option<String>,
    },
    /// The store holds the unit's drop-in as `file`: link it.
    Kept { file: String },
}

impl Outcome {
    pub fn text(&self) -> &str {
        match self {
            Outcome::Confined { text, .. } | Outcome::Blocked { text } => text,
            Outcome::Empty => "",
        }
    }

    pub fn into_text(self) -> String {
        match self {
            Outcome::Confined { text, .. } | Outcome::Blocked { text } => text,
            Outcome::Empty => String::new(),
        }
    }
}

#[derive(Debug)]
pub struct Plan {
    pub config: Config,
    pub catalog: Catalog,
    pub units: Vec<UnitPlan>,
    /// Problems that block every annotated unit (configuration errors).
    pub global_errors: Vec<Diagnostic>,
    /// Problems with no unit to block (other unit types, unreadable files).
    pub warnings: Vec<Diagnostic>,
    /// Units that are not services but ask to be confined: nothing can
    /// confine them, so `check` fails (their errors are in `warnings`).
    pub unconfinable: Vec<String>,
}

/// Finds every annotated service under `root` and what blocks it.
pub fn plan(root: &Root, env_unit_path: Option<&str>) -> Plan {
    plan_with_config(root, config::load(root), env_unit_path, &|_| {})
}

/// [`plan`] with the configuration already loaded (and its errors), telling
/// `roots_found` the roots of each unit as it is planned.
pub fn plan_with_config(
    root: &Root,
    (config, global_errors): (Config, Vec<Diagnostic>),
    env_unit_path: Option<&str>,
    roots_found: &dyn Fn(Vec<String>),
) -> Plan {
    let search_path = unit_search_path(root, config.unit_path.as_deref(), env_unit_path);
    let mut reader = FileReader::new(root);
    let catalog = Catalog::scan_reading(root, search_path, &mut reader);
    let mut warnings = catalog.warnings.clone();
    let mut unconfinable = Vec::new();
    let mut units = Vec::new();

    let candidates = candidate_names(&catalog);
    // Templates come first, so that an instance knows whether its template
    // asks for confinement (an instance opting out must then hide it).
    let mut template_requested: HashMap<String, bool> = HashMap::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (candidate, _) in &candidates {
        let Some(refs) = catalog.unit_file_refs(candidate) else {
            continue;
        };
        // An alias loads its target's unit, under the target's name.
        if !seen.insert(refs.name.clone()) {
            continue;
        }
        if !files_mention_annotations(&mut reader, refs.readable()) {
            if kind_of(&refs.name) == Kind::Template {
                template_requested.insert(refs.name.clone(), false);
            }
            continue;
        }
        let files = refs.to_owned();
        let name = &files.name;
        let kind = &kind_of(name);
        let is_service = name.ends_with(".service");
        let merged = match MergedUnit::load(&mut reader, &files) {
            Ok(merged) => merged,
            Err(error) if is_service => {
                // systemd refuses the unit too, but we cannot tell whether it
                // asks for confinement: block it, never leave it open.
                units.push(unreadable_unit(
                    name,
                    *kind,
                    files.fragment_path.clone(),
                    error,
                    &config,
                ));
                continue;
            }
            Err(error) => {
                warnings.push(error);
                continue;
            }
        };
        let annotations = annotation::read_annotations(&merged, is_service);
        warnings.extend(annotations.warnings.iter().cloned());
        if !is_service {
            if !annotations.errors.is_empty() {
                unconfinable.push(name.clone());
                warnings.extend(annotations.errors);
            }
            continue;
        }
        let template_wants = UnitName::parse(name)
            .and_then(|n| n.template())
            .and_then(|t| template_requested.get(&t).copied())
            .unwrap_or(false);
        if *kind == Kind::Template {
            template_requested.insert(name.clone(), annotations.request.is_some());
        }
        match annotations.request {
            Some(request) => {
                let unit = plan_unit(root, &config, merged, *kind, request, annotations.errors);
                if !unit.is_blocked() {
                    roots_found(
                        unit.roots
                            .paths
                            .iter()
                            .map(|r| r.store_path.clone())
                            .collect(),
                    );
                }
                units.push(unit);
            }
            // An instance opting out of its template's confinement gets an
            // empty drop-in of the same name, which hides the template's.
            None if *kind == Kind::Instance && template_wants => units.push(UnitPlan {
                name: name.clone(),
                kind: *kind,
                mode: config.default_mode,
                merged,
                request: None,
                roots: Roots::default(),
                errors: Vec::new(),
                warnings: Vec::new(),
                dropin_name: DROPIN_NAME.to_owned(),
            }),
            None => {}
        }
    }
    assign_dropin_names(&mut units);
    for unit in &mut units {
        if unit.request.is_some() {
            unit.errors.extend(global_errors.iter().map(|e| {
                let mut e = e.clone();
                e.unit = Some(unit.name.clone());
                e
            }));
        }
    }
    Plan {
        config,
        catalog,
        units,
        global_errors,
        warnings,
        unconfinable,
    }
}

/// Every unit name worth reading, templates before their instances.
fn candidate_names(catalog: &Catalog) -> Vec<(String, Kind)> {
    // Every name that may load a unit, aliases included (an annotation may
    // live only in an alias's drop-in directory); `plan` reads each unit once,
    // under the name it loads as.
    let mut names: BTreeMap<String, Kind> = BTreeMap::new();
    for (name, entry) in catalog.entries() {
        if !matches!(entry, Entry::Masked { .. }) {
            names.insert(name.to_owned(), kind_of(name));
        }
    }
    // Instances that exist only through their drop-in directories.
    for name in catalog.dropin_dir_units() {
        if UnitName::parse(name).is_some_and(|n| n.is_instance()) && catalog.entry(name).is_none() {
            names.entry(name.to_owned()).or_insert(Kind::Instance);
        }
    }
    // In name order already: a stable sort puts templates first and keeps
    // it (without a copy of each name per comparison).
    let mut ordered: Vec<(String, Kind)> = names.into_iter().collect();
    ordered.sort_by_key(|(_, kind)| *kind != Kind::Template);
    ordered
}

fn kind_of(name: &str) -> Kind {
    match UnitName::parse(name) {
        Some(n) if n.is_template() => Kind::Template,
        Some(n) if n.is_instance() => Kind::Instance,
        _ => Kind::Plain,
    }
}

/// A cheap test before parsing: units whose files never mention
/// "confin" (any case) carry no annotations and no misspelt ones.
fn files_mention_annotations<'a>(
    reader: &mut FileReader<'_>,
    mut files: impl Iterator<Item = &'a camino::Utf8Path>,
) -> bool {
    files.any(|real| match reader.read(real) {
        Ok(bytes) => mentions_confin(&bytes),
        // A file we cannot read is handed to the parser, which reports it.
        Err(_) => true,
    })
}

/// Whether `bytes` hold "confin" in any case. Horspool's search: the byte
/// under the end of the window tells how far the window may move (most
/// bytes are no letter of "confi", and the window moves by six), so that a
/// thousand unit files are not compared byte by byte.
fn mentions_confin(bytes: &[u8]) -> bool {
    const NEEDLE: &[u8; 6] = b"confin";
    const SKIP: [u8; 256] = {
        let mut skip = [6u8; 256];
        let mut i = 0;
        while i < 5 {
            skip[NEEDLE[i] as usize] = (5 - i) as u8;
            i += 1;
        }
        skip
    };
    let mut at = 0;
    while at + 6 <= bytes.len() {
        // `| 0x20` makes an ASCII letter lowercase; no other byte becomes
        // a letter of the needle.
        let last = bytes[at + 5] | 0x20;
        if last == b'n' && bytes[at..at + 6].eq_ignore_ascii_case(NEEDLE) {
            return true;
        }
        at += usize::from(SKIP[usize::from(last)]);
    }
    false
}

fn unreadable_unit(
    name: &str,
    kind: Kind,
    fragment: camino::Utf8PathBuf,
    error: Diagnostic,
    config: &Config,
) -> UnitPlan {
    UnitPlan {
        name: name.to_owned(),
        kind,
        merged: MergedUnit {
            name: name.to_owned(),
            sources: vec![fragment],
            settings: Vec::new(),
            dropin_names: BTreeSet::new(),
            warnings: Vec::new(),
        },
        request: Some(Request {
            enable: annotation::Located {
                value: true,
                location: None,
            },
            mode: None,
            full_unit: annotation::Located {
                value: false,
                location: None,
            },
            packages: Vec::new(),
            bin_sh: annotation::BinSh::Default,
        }),
        mode: config.default_mode,
        roots: Roots::default(),
        errors: vec![error],
        warnings: Vec::new(),
        dropin_name: DROPIN_NAME.to_owned(),
    }
}

fn plan_unit(
    root: &Root,
    config: &Config,
    merged: MergedUnit,
    kind: Kind,
    request: Request,
    mut errors: Vec<Diagnostic>,
) -> UnitPlan {
    let name = merged.name.clone();
    let unit_error = |setting: &crate::unit::Setting, message: String| {
        Diagnostic::error(Some(&name), Some(setting.location.clone()), message)
    };
    for key in ["RootDirectory", "RootImage"] {
        if let Some(setting) = merged.scalar("Service", key) {
            errors.push(unit_error(
                setting,
                format!(
                    "the unit sets {key}={} itself, which conflicts with confinement",
                    setting.value
                ),
            ));
        }
    }
    if let Some(setting) = dropin::own_value(&merged, "RootDirectoryStartOnly")
        && annotation::parse_boolean(&setting.value) == Some(true)
    {
        errors.push(unit_error(
            setting,
            "RootDirectoryStartOnly= is enabled, but systemd cannot restrict bind mounts to \
             ExecStart=: the other commands would run unconfined"
                .to_owned(),
        ));
    }
    let mode = request
        .mode
        .as_ref()
        .map_or(config.default_mode, |m| m.value);
    let mut roots = collect_roots(
        root,
        &config.store_dir,
        config.default_bin_sh.as_deref(),
        &merged,
        &request,
    );
    errors.append(&mut roots.errors);
    let mut warnings = merged.warnings.clone();
    warnings.append(&mut roots.warnings);
    UnitPlan {
        name,
        kind,
        merged,
        request: Some(request),
        mode,
        roots,
        errors,
        warnings,
        dropin_name: DROPIN_NAME.to_owned(),
    }
}

/// Our drop-in must be applied after every other drop-in of the unit, so
/// that none can reset or replace what it sets: `zz-confinement.conf`, or,
/// when some drop-in sorts at or after that name, a name after the last one
/// (see [`dropin_name_after`]). A template and its instances share one name,
/// so that an instance's drop-in hides the template's. A unit for which no
/// drop-in can be written (see [`UnitPlan::dropin_fits`]) gets an error
/// saying so: systemd loads it all the same.
fn assign_dropin_names(units: &mut [UnitPlan]) {
    let mut last_by_family: HashMap<String, String> = HashMap::new();
    for unit in units.iter() {
        let family = family_of(&unit.name);
        if let Some(last) = unit.merged.dropin_names.iter().next_back() {
            let entry = last_by_family.entry(family).or_default();
            if *last > *entry {
                *entry = last.clone();
            }
        }
    }
    // Families whose template is confined: its drop-in applies to every
    // instance, whether or not one of the instance's own can be written.
    let confined_templates: HashSet<String> = units
        .iter()
        .filter(|u| u.kind == Kind::Template && u.request.is_some())
        .map(|u| family_of(&u.name))
        .collect();
    for unit in units.iter_mut() {
        let last = last_by_family.get(&family_of(&unit.name));
        unit.dropin_name = match last {
            // Empty when there is none: the unit cannot be confined.
            Some(last) if last.as_str() >= DROPIN_NAME => {
                dropin_name_after(last).unwrap_or_default()
            }
            _ => DROPIN_NAME.to_owned(),
        };
        if !unit.dropin_fits() {
            let template_confines =
                unit.kind == Kind::Instance && confined_templates.contains(&family_of(&unit.name));
            report_unwritable(unit, last.map(String::as_str), template_confines);
        }
    }
}

/// A drop-in name that sorts after `last` (the name of a drop-in) and fits
/// in a file name: `<last without .conf>~confinement.conf` (`~` sorts after
/// `.`), or, when that is too long, `last` cut before a byte that sorts
/// before `~`, with `~confinement.conf` put there. `None` when no such byte
/// leaves room (the first 239 bytes of `last` are all `~` or not ASCII).
pub fn dropin_name_after(last: &str) -> Option<String> {
    const AFTER: &str = "~confinement.conf";
    let stem = last.strip_suffix(".conf").unwrap_or(last);
    if stem.len() + AFTER.len() <= NAME_MAX {
        return Some(format!("{stem}{AFTER}"));
    }
    // A byte below `~` is ASCII: cutting before it cuts no character.
    let room = NAME_MAX - AFTER.len();
    let cut = last.as_bytes()[..=room.min(last.len() - 1)]
        .iter()
        .rposition(|&b| b < b'~')?;
    Some(format!("{}{AFTER}", &last[..cut]))
}

/// The error (the warning, for an instance opting out of its template's
/// confinement) of a unit for which no drop-in can be written;
/// `template_confines`: it is an instance of a confined template.
fn report_unwritable(unit: &mut UnitPlan, last: Option<&str>, template_confines: bool) {
    let dir_name = format!("{}.d", unit.name);
    let (location, why) = if dir_name.len() > NAME_MAX {
        let location = unit
            .request
            .as_ref()
            .and_then(|r| r.enable.location.clone())
            .or_else(|| unit.merged.sources.first().map(|f| Location::new(f, 0)));
        let why = format!(
            "its drop-in directory {dir_name} would be a file name of {} bytes, more than \
             the {NAME_MAX} Linux allows; give the unit a shorter name",
            dir_name.len()
        );
        (location, why)
    } else {
        let last = last.unwrap_or_default();
        let location = unit
            .merged
            .sources
            .iter()
            .find(|f| f.file_name() == Some(last))
            .map(|f| Location::new(f, 0));
        let why = format!(
            "no file name of at most {NAME_MAX} bytes sorts after its drop-in {last:?}, \
             which would be applied after ours and could undo it; give that drop-in a shorter name"
        );
        (location, why)
    };
    let name = unit.name.clone();
    if unit.request.is_some() {
        let consequence = if template_confines {
            "systemd loads it with its template's drop-in only, not the confinement its own \
             files ask for"
        } else {
            "systemd loads it all the same, without ours, so it starts unconfined"
        };
        unit.errors.push(Diagnostic::error(
            Some(&name),
            location,
            format!("NOT CONFINED: no drop-in can be written for it, and {consequence}: {why}"),
        ));
    } else {
        unit.warnings.push(Diagnostic::warning(
            Some(&name),
            location,
            format!(
                "cannot opt out of its template's confinement: no drop-in can be written for it: {why}"
            ),
        ));
    }
}

/// Templates and their instances form one family; other units are alone.
fn family_of(name: &str) -> String {
    UnitName::parse(name)
        .and_then(|n| n.template())
        .unwrap_or_else(|| name.to_owned())
}

/// The drop-in every annotated unit gets before its closure is computed:
/// the same for all (it is one file, linked into each unit's directory).
pub fn pending_text() -> String {
    dropin::render_blocked(
        "this unit",
        &[],
        &["the generator did not finish computing the confinement".to_owned()],
    )
}

fn blocked_text(unit: &UnitPlan, errors: &[Diagnostic]) -> String {
    let sources: Vec<&camino::Utf8Path> = unit.merged.sources.iter().map(|s| s.as_path()).collect();
    let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
    dropin::render_blocked(&unit.name, &sources, &reasons)
}

/// The database, opened only when some unit needs it, the closures of the
/// units, and what was learnt about store paths on disk — shared by every
/// unit of a run.
pub struct Database {
    opened: Option<Result<NixDb, DbError>>,
    closures: HashMap<String, Result<Resolved, Vec<Diagnostic>>>,
    /// Node → its position among all known store paths sorted by path.
    ranks: Vec<u32>,
    /// The nodes by rank: `by_rank[ranks[node]] == node`.
    by_rank: Vec<NodeId>,
    /// A bitmap of ranks, reused from unit to unit.
    rank_bits: Vec<u64>,
    /// Node → its symlink target, once looked at.
    symlinks: Vec<Option<Option<Arc<str>>>>,
    /// Looks at store paths on disk, made on first use.
    probe: Option<StoreProbe>,
    /// The closure cache file (logical, under the root), when one is used.
    cache_file: Option<camino::Utf8PathBuf>,
    /// What happened to the cache, for the debug log.
    pub cache_notes: Vec<String>,
    /// What the database was read from, when a cache may be written.
    sources: Option<Sources>,
    /// The database being opened in the background, if it was started.
    opening: Option<Opening>,
    /// Units whose drop-in the drop-in store holds: the file, and the roots
    /// (their closure is not walked unless the cache is written again).
    kept: HashMap<String, (String, Vec<NodeId>)>,
    /// Whether units are confined through views in this run (see
    /// [`crate::view`]); off unless set.
    pub views: Views,
    /// The hash of each store path's name, for the views' digests.
    name_hashes: NameHashes,
    /// Units whose drop-in may be kept in the store once rendered: the file
    /// name to keep it as.
    keep_as: HashMap<String, String>,
}

/// A unit's closure: each node with the node it was first reached from,
/// and what named each root.
struct Resolved {
    reached: Vec<(NodeId, NodeId)>,
    origins: HashMap<NodeId, Origin>,
}

impl Database {
    pub fn new() -> Database {
        Database {
            opened: None,
            closures: HashMap::new(),
            ranks: Vec::new(),
            by_rank: Vec::new(),
            rank_bits: Vec::new(),
            symlinks: Vec::new(),
            probe: None,
            cache_file: None,
            cache_notes: Vec::new(),
            sources: None,
            opening: None,
            kept: HashMap::new(),
            views: Views::Off("not asked for".to_owned()),
            name_hashes: NameHashes::default(),
            keep_as: HashMap::new(),
        }
    }

    /// A database that reads and keeps the closure cache `file` (a logical
    /// path under the root; see [`crate::store::cache`]).
    pub fn with_cache(file: Option<&camino::Utf8Path>) -> Database {
        Database {
            cache_file: file.map(camino::Utf8Path::to_path_buf),
            ..Database::new()
        }
    }

    /// Like [`Database::with_cache`], the database being opened by
    /// `opening` (started with the same configuration).
    pub fn with_opening(file: Option<&camino::Utf8Path>, opening: Opening) -> Database {
        Database {
            opening: Some(opening),
            ..Database::with_cache(file)
        }
    }

    /// Writes the closure cache for the next run, when this run read
    /// something the cache did not have, from a database and store that
    /// were settled when read (see [`Sources::stamp`]). `Err` says why it
    /// could not be written (see [`crate::scratch`] for where it may be).
    pub fn save_cache(&mut self, root: &Root, config: &Config) -> Result<(), String> {
        let (Some(file), Some(Ok(nix_db)), Some(sources)) =
            (&self.cache_file, &mut self.opened, &self.sources)
        else {
            return Ok(());
        };
        if nix_db.cache_dropped {
            self.cache_notes.push(format!(
                "{file}: dropped: a root's id and registration time in it does not match the database"
            ));
        }
        if !self.kept.is_empty() {
            // The closures of units whose drop-in was linked were not
            // walked. Nothing new read: the file holds them as it is. Else
            // the file is written again, with them.
            if nix_db.read_from_database == 0 {
                self.cache_notes.push(format!("{file}: unchanged"));
                return Ok(());
            }
            for (_, roots) in self.kept.values() {
                let _ = nix_db.closure(roots);
            }
        }
        let symlinks = &self.symlinks;
        let symlink_of = |node: NodeId| {
            symlinks
                .get(node as usize)
                .and_then(|known| known.as_ref().map(Option::is_some))
        };
        let Some(tables) = nix_db.cache_to_save(symlink_of) else {
            self.cache_notes.push(format!("{file}: unchanged"));
            return Ok(());
        };
        let paths = crate::store::cache::Tables::len(&tables);
        let written = crate::scratch::split_file(file).and_then(|(dir, name)| {
            let dir = ScratchDir::create(root, dir)?;
            crate::store::cache::write_tables_at(
                dir.fd(),
                name,
                file,
                sources,
                config.store_dir.as_str(),
                &tables,
            )
        });
        match written {
            Ok(()) => {
                self.cache_notes
                    .push(format!("{file}: wrote {paths} store paths"));
                Ok(())
            }
            Err(e) => Err(format!("closure cache {file} not kept: {e}")),
        }
    }

    pub fn opened(&self) -> Option<&Result<NixDb, DbError>> {
        self.opened.as_ref()
    }
}

impl Default for Database {
    fn default() -> Self {
        Self::new()
    }
}

/// Computes the closure of every unit that needs one. One traversal per
/// unit over a graph read once for all units; then all store paths are
/// sorted once, so that each unit's closure sorts as integers.
pub fn resolve_closures(root: &Root, config: &Config, db: &mut Database, units: &[UnitPlan]) {
    resolve_closures_with_store(root, config, db, units, None);
}

/// [`resolve_closures`], except for the units whose drop-in `store` holds:
/// their closures are not walked (see [`Database::save_cache`]).
pub fn resolve_closures_with_store(
    root: &Root,
    config: &Config,
    db: &mut Database,
    units: &[UnitPlan],
    store: Option<&DropinStore>,
) {
    let pending: Vec<&UnitPlan> = units
        .iter()
        .filter(|u| {
            u.request.is_some()
                && !u.is_blocked()
                && !db.closures.contains_key(&u.name)
                && !db.kept.contains_key(&u.name)
        })
        .collect();
    if pending.is_empty() {
        return;
    }
    // First every unit's roots, then the graph below all of them in one
    // walk, then each unit's closure from memory.
    if let Ok(nix_db) = open(root, config, db) {
        // A failure here is reported by the lookups of each unit below.
        let _ = nix_db.look_up_all(
            pending
                .iter()
                .flat_map(|u| u.roots.paths.iter().map(|r| r.store_path.as_str())),
        );
    }
    let mut roots = Vec::with_capacity(pending.len());
    for unit in &pending {
        roots.push(root_nodes(root, config, db, unit));
    }
    // After every root was looked up: a mismatch drops the cache, and no
    // drop-in is then kept or linked.
    if let Some(store) = store {
        let symlinks = cached_symlink_targets(root, config, db);
        for (unit, unit_roots) in pending.iter().zip(&roots) {
            let (Ok((root_nodes, _)), Some(symlinks)) = (unit_roots, &symlinks) else {
                continue;
            };
            let Some(key) = store_key(config, db, unit, store, root_nodes, symlinks) else {
                continue;
            };
            let file = key.file_name();
            if store.holds(&file) {
                db.kept
                    .insert(unit.name.clone(), (file, root_nodes.clone()));
            } else {
                db.keep_as.insert(unit.name.clone(), file);
            }
        }
    }
    let (pending, roots): (Vec<&UnitPlan>, Vec<_>) = pending
        .into_iter()
        .zip(roots)
        .filter(|(unit, _)| !db.kept.contains_key(&unit.name))
        .unzip();
    if pending.is_empty() {
        return;
    }
    let all_roots: Vec<NodeId> = roots
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .flat_map(|(nodes, _)| nodes.iter().copied())
        .collect();
    let loaded = match db.opened.as_mut() {
        Some(Ok(nix_db)) => nix_db.load_graph(&all_roots),
        _ => Ok(()),
    };
    for (unit, unit_roots) in pending.iter().zip(roots) {
        let name = unit.name.as_str();
        let db_error = |e: &DbError| vec![Diagnostic::error(Some(name), None, e.to_string())];
        let resolved = unit_roots.and_then(|(root_nodes, origins)| {
            loaded.as_ref().map_err(db_error)?;
            let Some(Ok(nix_db)) = db.opened.as_mut() else {
                return Err(vec![Diagnostic::error(
                    Some(name),
                    None,
                    "the Nix database is not open",
                )]);
            };
            let reached = nix_db.closure(&root_nodes).map_err(|e| db_error(&e))?;
            Ok(Resolved { reached, origins })
        });
        db.closures.insert(unit.name.clone(), resolved);
    }
    if let Some(Ok(nix_db)) = &db.opened {
        db.ranks = nix_db.path_ranks();
        db.by_rank = vec![0; db.ranks.len()];
        for (node, &rank) in db.ranks.iter().enumerate() {
            db.by_rank[rank as usize] = node as NodeId;
        }
        // The graph is in memory: SQLite's pages are not needed any more,
        // and their memory serves the drop-ins being rendered.
        nix_db.release_memory();
    }
}

/// A unit's root nodes and what named each.
type RootNodes = (Vec<NodeId>, HashMap<NodeId, Origin>);

/// The database nodes of a unit's roots and what named each; a root the
/// database does not know is an error.
fn root_nodes(
    root: &Root,
    config: &Config,
    database: &mut Database,
    unit: &UnitPlan,
) -> Result<RootNodes, Vec<Diagnostic>> {
    let name = unit.name.as_str();
    let db_error = |e: DbError| vec![Diagnostic::error(Some(name), None, e.to_string())];
    let db = open(root, config, database).map_err(|e| db_error(e.clone()))?;
    let mut root_nodes = Vec::new();
    let mut origins: HashMap<NodeId, Origin> = HashMap::new();
    let mut errors = Vec::new();
    for root_path in &unit.roots.paths {
        match db.node_of(&root_path.store_path).map_err(db_error)? {
            Some(node) => {
                origins
                    .entry(node)
                    .or_insert_with(|| root_path.origin.clone());
                root_nodes.push(node);
            }
            None => errors.push(Diagnostic::error(
                Some(name),
                root_path.origin.location.clone(),
                format!(
                    "{}: {} is not a valid path in the Nix database {}",
                    root_path.origin.key, root_path.store_path, db.path
                ),
            )),
        }
    }
    if errors.is_empty() {
        Ok((root_nodes, origins))
    } else {
        Err(errors)
    }
}

/// The database, opened on first use (or taken from the thread that opened
/// it).
fn open<'d>(
    root: &Root,
    config: &Config,
    database: &'d mut Database,
) -> Result<&'d mut NixDb, &'d DbError> {
    if database.opened.is_none() {
        let opened = match database.opening.take() {
            Some(opening) => opening.wait(config),
            None => open_database(root, config, database.cache_file.as_deref()),
        };
        database.opened = Some(opened.db);
        database.cache_notes.extend(opened.notes);
        database.sources = opened.sources;
    }
    match database.opened.as_mut() {
        Some(Ok(db)) => Ok(db),
        Some(Err(e)) => Err(e),
        None => unreachable!("opened above"),
    }
}

/// An opened database and what happened to the closure cache.
struct Opened {
    db: Result<NixDb, DbError>,
    /// What happened to the closure cache, for the debug log.
    notes: Vec<String>,
    /// What the database was read from, when a cache made from it may be
    /// written for the next run (see [`crate::store::cache::Sources`]).
    sources: Option<Sources>,
}

/// Opens the database, with the closure cache `cache_file` of the last run
/// when it was made from the database and store as they are now.
fn open_database(root: &Root, config: &Config, cache_file: Option<&camino::Utf8Path>) -> Opened {
    // Stamped before anything is read: a change after this shows in the
    // stamps the next run compares. Resolved inside the root, as the
    // database is opened.
    let stamped = cache_file.map(|_| {
        let database = root.real(&config.state_dir.join("db/db.sqlite"))?;
        let store = root.real(camino::Utf8Path::new(config.store_dir.as_str()))?;
        Sources::stamp(&database, &store)
    });
    let mut opened = Opened {
        db: NixDb::open(root, &config.state_dir),
        notes: Vec::new(),
        sources: None,
    };
    let (Ok(nix_db), Some(file), Some(stamped)) = (&mut opened.db, cache_file, stamped) else {
        return opened;
    };
    let sources = match stamped {
        Ok(Some(sources)) => sources,
        Ok(None) => {
            opened.notes.push(format!(
                "{file}: not used or kept: the Nix database or the store directory changed \
                 less than a clock tick ago"
            ));
            return opened;
        }
        Err(e) => {
            opened.notes.push(format!(
                "{file}: not used or kept: cannot stamp the database and the store: {e}"
            ));
            return opened;
        }
    };
    opened.sources = Some(sources);
    // Found inside the root, never made here (see [`Opening`]).
    let found = crate::scratch::split_file(file).and_then(|(dir, name)| {
        match ScratchDir::find(root, dir)? {
            Some(dir) => crate::store::cache::read_stamped_at(dir.fd(), name, file),
            None => Ok(None),
        }
    });
    let used = found.and_then(|cache| match cache {
        Some((cache, _)) if *cache.store_dir != *config.store_dir.as_str() => Err(format!(
            "{file}: made for the store {}, not {}",
            cache.store_dir,
            config.store_dir.as_str()
        )),
        Some((cache, _)) if cache.sources != sources => Err(format!(
            "{file}: the Nix database or the store directory changed since it was made"
        )),
        Some((cache, stamp)) => {
            // Every path is checked here, on the worker, once: the units'
            // closures then bind cached paths without checking each again.
            if let Some(bad) = (0..cache.len())
                .map(|i| cache.path(i))
                .find(|&path| !config.store_dir.is_store_path(path))
            {
                return Err(format!(
                    "{file}: holds {bad:?}, which is not a store path in {}",
                    config.store_dir.as_str()
                ));
            }
            let paths = cache.len();
            nix_db
                .use_cache(cache, stamp)
                .map(|()| format!("{file}: read {paths} store paths"))
                .map_err(|e| format!("{file}: {e}"))
        }
        None => Ok(format!("{file}: none yet")),
    });
    opened.notes.push(match used {
        Ok(note) => note,
        Err(e) => format!("not used: {e}"),
    });
    opened
}

/// The database worker: a thread that opens the database and reads the
/// closure cache while the units are planned, then reads the reference
/// graph below each unit's roots as the planner finds them (reading the
/// cache, or the database without one, costs more than planning; this
/// machine has a second core). Whatever it fails to read is read again,
/// and its failure reported, by [`resolve_closures`]. Opening reads and
/// creates nothing that a run without annotated units would not; such a run
/// never waits for it.
pub struct Opening {
    worker: std::thread::JoinHandle<Opened>,
    roots: Option<std::sync::mpsc::Sender<Vec<String>>>,
}

impl Opening {
    pub fn start(root: &Root, config: &Config) -> Opening {
        // A root of its own: `Root` remembers lookups and is not shared.
        let root = Root::new(root.dir());
        let config = config.clone();
        let (sender, receiver) = std::sync::mpsc::channel::<Vec<String>>();
        let worker = std::thread::spawn(move || {
            let mut opened = open_database(&root, &config, config.closure_cache.as_deref());
            // Only with a closure cache: the roots are then looked up and
            // the graph below them is in memory. Without one, reading the
            // database a unit at a time would read its pages more often
            // than one walk over all units at the end does (measured: 95
            // -> 99 ms on the benchmark system).
            if let Ok(db) = opened.db.as_mut()
                && db.uses_cache()
            {
                while let Ok(mut roots) = receiver.recv() {
                    // The roots of every unit planned meanwhile, at once: the
                    // graph is read a level at a time for all of them.
                    while let Ok(more) = receiver.try_recv() {
                        roots.extend(more);
                    }
                    let _ = db.read_ahead(&roots);
                }
            }
            opened
        });
        Opening {
            worker,
            roots: Some(sender),
        }
    }

    /// The store paths a unit's closure starts from, to read ahead.
    pub fn roots_found(&self, roots: Vec<String>) {
        if let Some(sender) = &self.roots {
            let _ = sender.send(roots);
        }
    }

    fn wait(mut self, config: &Config) -> Opened {
        // No more roots: the worker finishes what it has and returns.
        self.roots = None;
        self.worker.join().unwrap_or_else(|_| {
            let error = DbError {
                path: config.state_dir.join("db/db.sqlite"),
                message: "the thread opening it failed".into(),
            };
            Opened {
                db: Err(error),
                notes: Vec::new(),
                sources: None,
            }
        })
    }
}

/// Computes what to write for `unit` (resolving its closure first if
/// [`resolve_closures`] did not). Errors found on the way (unknown roots,
/// database faults, store paths that cannot be bound) are added to the
/// unit's errors. With `explain`, each closure path also carries the
/// reference chain that reached it.
pub fn compute(
    root: &Root,
    config: &Config,
    db: &mut Database,
    unit: &mut UnitPlan,
    explain: bool,
) -> Outcome {
    match compute_with_store(root, config, db, unit, explain, None) {
        Computed::Rendered { outcome, .. } => outcome,
        // Only a store finds a kept drop-in.
        Computed::Kept { .. } => unreachable!("no drop-in store was given"),
    }
}

/// [`compute`], finding the drop-in in `store` when it was kept there.
pub fn compute_with_store(
    root: &Root,
    config: &Config,
    db: &mut Database,
    unit: &mut UnitPlan,
    explain: bool,
    store: Option<&DropinStore>,
) -> Computed {
    let rendered = |outcome| Computed::Rendered {
        outcome,
        keep_as: None,
    };
    if unit.request.is_none() {
        return rendered(Outcome::Empty);
    }
    if store.is_none() {
        // Rendered after all (its kept drop-in could not be linked).
        db.kept.remove(&unit.name);
    }
    // (A unit found kept is left out of the walk, and returned below.)
    if !unit.is_blocked() && !db.closures.contains_key(&unit.name) {
        resolve_closures_with_store(root, config, db, std::slice::from_ref(unit), store);
    }
    if let Some((file, _)) = db.kept.get(&unit.name) {
        return Computed::Kept { file: file.clone() };
    }
    if unit.is_blocked() {
        return rendered(Outcome::Blocked {
            text: blocked_text(unit, &unit.errors),
        });
    }
    let extra_binds = extra_binds_of(unit);
    let inputs = confinement_inputs(config, unit, &extra_binds);
    let keep_as = store.and(db.keep_as.get(&unit.name).cloned());
    let nodes = match closure_nodes(root, config, db, unit) {
        Ok(nodes) => nodes,
        Err(errors) => {
            unit.errors.extend(errors);
            return rendered(Outcome::Blocked {
                text: blocked_text(unit, &unit.errors),
            });
        }
    };
    let Some(Ok(nix_db)) = db.opened.as_ref() else {
        // Cannot happen (a closure was computed from it); fail closed anyway.
        let error = Diagnostic::error(Some(&unit.name), None, "the Nix database is not open");
        unit.errors.push(error);
        return rendered(Outcome::Blocked {
            text: blocked_text(unit, &unit.errors),
        });
    };
    // Borrowed, not cloned: a hundred units bind tens of thousands of paths.
    let closure: Vec<ClosurePath<'_>> = nodes
        .iter()
        .map(|&node| ClosurePath {
            path: nix_db.known_path(node).unwrap_or_default(),
            symlink_target: db
                .symlinks
                .get(node as usize)
                .and_then(|known| known.as_ref())
                .and_then(|target| target.as_deref()),
        })
        .collect();
    // The closure's view, recorded for its unit to mount; where that fails
    // (the record cannot be written), the paths are bound one by one.
    let numbered: Vec<(NodeId, &str)> = nodes
        .iter()
        .zip(&closure)
        .map(|(&node, path)| (node, path.path))
        .collect();
    let recorded = db
        .views
        .digest(config.store_dir.as_str(), &numbered, &mut db.name_hashes);
    let digest = match &recorded {
        Ok(digest) => digest.map(|d| d.to_string()),
        Err(_) => None,
    };
    let text = dropin::render_confinement(&Confinement {
        closure: &closure,
        binding: digest.as_deref().map_or(Binding::PerPath, Binding::View),
        ..inputs
    });
    if let Err(error) = recorded {
        unit.warnings.push(Diagnostic::warning(
            Some(&unit.name),
            None,
            format!(
                "its closure's view cannot be recorded ({error}): each store path is bound instead"
            ),
        ));
    }
    let reached = if explain {
        explain_closure(db, unit, &closure, &nodes)
    } else {
        Vec::new()
    };
    Computed::Rendered {
        outcome: Outcome::Confined {
            text,
            paths: nodes.len(),
            closure: reached,
            view: digest,
        },
        keep_as,
    }
}

/// Exec programs named outside the store, bound where the unit names them;
/// sorted, each once.
fn extra_binds_of(unit: &UnitPlan) -> Vec<(String, String)> {
    unit.roots
        .extra_binds
        .iter()
        .map(|b| (b.source.to_string(), b.target.to_string()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// What the unit's drop-in is rendered from, but its closure.
fn confinement_inputs<'a>(
    config: &'a Config,
    unit: &'a UnitPlan,
    extra_binds: &'a [(String, String)],
) -> Confinement<'a> {
    Confinement {
        unit: &unit.merged,
        store_dir: config.store_dir.as_str(),
        mode: unit.mode,
        bin_sh: unit.roots.bin_sh.as_deref(),
        closure: &[],
        extra_binds,
        binding: Binding::PerPath,
    }
}

/// The key the unit's drop-in is kept under in the drop-in store, when it
/// may be kept: every root of it is a path of the closure cache, which then
/// fixes its closure (a cache is closed under references). Symlinks are
/// resolved through the host's files on every run: the targets of all the
/// cache's symlinks (`symlinks`, see [`cached_symlink_targets`]) are part
/// of every key, so that no closure needs walking to find its own.
fn store_key(
    config: &Config,
    db: &Database,
    unit: &UnitPlan,
    store: &DropinStore,
    roots: &[NodeId],
    symlinks: &[u8],
) -> Option<Key> {
    let Some(Ok(nix_db)) = &db.opened else {
        return None;
    };
    let cache = nix_db.cache_stamp()?;
    if !roots.iter().all(|&node| nix_db.is_cached(node)) {
        return None;
    }
    let mut roots = roots.to_vec();
    roots.sort_unstable();
    roots.dedup();
    let mut hasher = KeyHasher::new();
    (store.binary(), cache, roots).hash(&mut hasher);
    let extra_binds = extra_binds_of(unit);
    let mut encoded = Vec::with_capacity(8192);
    dropin::encode_inputs(
        &confinement_inputs(config, unit, &extra_binds),
        &mut encoded,
    );
    encoded.extend_from_slice(symlinks);
    hasher.write(&encoded);
    Some(hasher.key())
}

/// Every symlink of the closure cache with its resolved target, encoded for
/// [`store_key`]; `None` when one does not resolve (its unit is blocked when
/// rendered, and nothing is kept in that run). Resolved once per run, and
/// remembered for rendering.
fn cached_symlink_targets(root: &Root, config: &Config, db: &mut Database) -> Option<Vec<u8>> {
    let Some(Ok(nix_db)) = &db.opened else {
        return None;
    };
    let mut encoded = Vec::new();
    let mut node: NodeId = 0;
    while let Some(is_symlink) = nix_db.cached_symlink(node) {
        if is_symlink {
            let slot = symlink_slot(&mut db.symlinks, node);
            let target = match slot {
                Some(target) => target.clone()?,
                None => {
                    let path = nix_db.known_path(node)?;
                    // Not resolving is reported for the unit that binds it,
                    // when it is rendered.
                    let target: Arc<str> = resolve_symlink(root, config, path, "").ok()?.into();
                    *slot = Some(Some(target.clone()));
                    target
                }
            };
            encoded.extend_from_slice(&node.to_le_bytes());
            encoded.extend_from_slice(&(target.len() as u64).to_le_bytes());
            encoded.extend_from_slice(target.as_bytes());
        }
        node += 1;
    }
    Some(encoded)
}

/// The unit's closure sorted by path. Each store path is checked once per
/// run: the database must hold a real store path (it is written into the
/// drop-in unescaped), and whether it is a symlink is found out.
fn closure_nodes(
    root: &Root,
    config: &Config,
    database: &mut Database,
    unit: &UnitPlan,
) -> Result<Vec<NodeId>, Vec<Diagnostic>> {
    let name = unit.name.as_str();
    let db_error = |e: DbError| vec![Diagnostic::error(Some(name), None, e.to_string())];
    let resolved = match database.closures.get(name) {
        Some(Ok(resolved)) => resolved,
        Some(Err(errors)) => return Err(errors.clone()),
        None => {
            return Err(vec![Diagnostic::error(
                Some(name),
                None,
                "closure not computed",
            )]);
        }
    };
    let Some(Ok(db)) = database.opened.as_mut() else {
        return Err(vec![Diagnostic::error(
            Some(name),
            None,
            "the Nix database is not open",
        )]);
    };
    // In path order: each node's rank marked in a bitmap, read back in
    // order (sorting each unit's closure cost as much as the rest of this).
    let (ranks, by_rank, bits) = (&database.ranks, &database.by_rank, &mut database.rank_bits);
    bits.clear();
    bits.resize(ranks.len().div_ceil(64), 0);
    // Nodes no rank was given to cannot occur (ranks are made after every
    // closure is resolved); they would come last, by node.
    let mut unranked = Vec::new();
    for &(node, _) in &resolved.reached {
        match ranks.get(node as usize) {
            Some(&rank) => bits[rank as usize / 64] |= 1 << (rank % 64),
            None => unranked.push(node),
        }
    }
    let mut order = Vec::with_capacity(resolved.reached.len());
    for (index, &word) in bits.iter().enumerate() {
        let mut word = word;
        while word != 0 {
            order.push(by_rank[index * 64 + word.trailing_zeros() as usize]);
            word &= word - 1;
        }
    }
    unranked.sort_unstable();
    order.extend(unranked);
    let symlinks = &mut database.symlinks;
    let probe = &mut database.probe;
    for &node in &order {
        let slot = symlink_slot(symlinks, node);
        if slot.is_some() {
            continue;
        }
        db.load_path(node).map_err(db_error)?;
        let path = db.known_path(node).unwrap_or_default();
        // A path from the closure cache was checked when it was read.
        if !db.is_cached(node) && !config.store_dir.is_store_path(path) {
            return Err(vec![Diagnostic::error(
                Some(name),
                None,
                format!(
                    "the Nix database {} holds {path:?}, which is not a store path in {}",
                    db.path,
                    config.store_dir.as_str()
                ),
            )]);
        }
        let target = match db.cached_symlink(node) {
            Some(false) => None,
            Some(true) => Some(resolve_symlink(root, config, path, name).map_err(|e| vec![e])?),
            None => {
                let probe = probe.get_or_insert_with(|| {
                    StoreProbe::new(root, config.store_dir.as_str(), db.statistics().0)
                });
                symlink_target(root, config, probe, path, name).map_err(|e| vec![e])?
            }
        };
        *slot = Some(target.map(Arc::from));
    }
    Ok(order)
}

/// What is known of `node`'s symlink target (see [`Database`]'s
/// `symlinks`), the table grown to hold it.
fn symlink_slot(
    symlinks: &mut Vec<Option<Option<Arc<str>>>>,
    node: NodeId,
) -> &mut Option<Option<Arc<str>>> {
    let index = node as usize;
    if symlinks.len() <= index {
        symlinks.resize(index + 1, None);
    }
    &mut symlinks[index]
}

/// For `explain`: each path of the closure with the chain of references
/// from the root that reached it, and what named that root.
fn explain_closure(
    database: &Database,
    unit: &UnitPlan,
    closure: &[ClosurePath<'_>],
    nodes: &[NodeId],
) -> Vec<Reached> {
    let (Some(Ok(resolved)), Some(Ok(db))) = (database.closures.get(&unit.name), &database.opened)
    else {
        return Vec::new();
    };
    let parent: HashMap<NodeId, NodeId> = resolved.reached.iter().copied().collect();
    closure
        .iter()
        .zip(nodes)
        .map(|(path, &node)| {
            // Walk up to the root that reached this path.
            let mut chain = vec![path.path.to_owned()];
            let mut current = node;
            while parent[&current] != current {
                current = parent[&current];
                chain.push(db.known_path(current).unwrap_or_default().to_owned());
            }
            chain.reverse();
            Reached {
                path: path.path.to_owned(),
                symlink_target: path.symlink_target.map(str::to_owned),
                chain,
                origin: resolved.origins[&current].clone(),
            }
        })
        .collect()
}

/// The fully resolved target of a store path that is a symlink.
fn symlink_target(
    root: &Root,
    config: &Config,
    probe: &StoreProbe,
    path: &str,
    unit: &str,
) -> Result<Option<String>, Diagnostic> {
    // `path` is a validated store path: its name follows the store directory.
    let name = path[config.store_dir.as_str().len()..].trim_start_matches('/');
    let is_link = probe.is_symlink(name);
    if !is_link {
        return Ok(None);
    }
    resolve_symlink(root, config, path, unit).map(Some)
}

/// The fully resolved target of a store path known to be a symlink.
fn resolve_symlink(
    root: &Root,
    config: &Config,
    path: &str,
    unit: &str,
) -> Result<String, Diagnostic> {
    match root.canonicalize(camino::Utf8Path::new(path)) {
        Ok(target) => Ok(target.to_string()),
        Err(error) => Err(Diagnostic::error(
            Some(unit),
            Some(Location::new(path, 0)),
            format!(
                "store path {path} is a symbolic link that does not resolve ({error}); \
                 systemd cannot bind it (store {})",
                config.store_dir.as_str()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_confin_finds_it_anywhere_in_any_case() {
        // Against the obvious search, on every placement and case in text
        // made of the needle's own letters (the worst case for skipping).
        let naive = |b: &[u8]| b.windows(6).any(|w| w.eq_ignore_ascii_case(b"confin"));
        let alphabet = b"confiNnCOF x\n=";
        let mut state = 7_u64;
        for length in 0..200 {
            for _ in 0..20 {
                let text: Vec<u8> = (0..length)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        alphabet[(state >> 33) as usize % alphabet.len()]
                    })
                    .collect();
                assert_eq!(
                    mentions_confin(&text),
                    naive(&text),
                    "{:?}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
        for text in [
            "X-ConfinementEnable=yes",
            "confin",
            "xCONFIN",
            "[Service]\nX-CONFINEMENTPACKAGES=a",
            "confi",
            "onfin",
            "",
        ] {
            assert_eq!(
                mentions_confin(text.as_bytes()),
                naive(text.as_bytes()),
                "{text}"
            );
        }
        assert!(mentions_confin(b"..........X-ConfinementEnable"));
    }

    #[test]
    fn a_dropin_name_after_any_other_fits_and_sorts_after_it() {
        assert_eq!(
            dropin_name_after("zzz-late.conf").as_deref(),
            Some("zzz-late~confinement.conf")
        );
        // Names of every length up to the longest, of bytes around `~`.
        let pieces = ["z", "~", "\u{e9}", "a", ".", "\u{10ffff}", "-"];
        let mut state = 11_u64;
        let mut none = 0;
        for round in 0..20_000 {
            let mut name = String::from("zz");
            let target = 20 + round % 236;
            while name.len() + ".conf".len() < target {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let piece = pieces[(state >> 33) as usize % pieces.len()];
                if name.len() + piece.len() + ".conf".len() > NAME_MAX {
                    break;
                }
                name.push_str(piece);
            }
            name.push_str(".conf");
            match dropin_name_after(&name) {
                Some(after) => {
                    assert!(after.len() <= NAME_MAX, "{} bytes", after.len());
                    assert!(after.as_bytes() > name.as_bytes(), "{after} <= {name}");
                    assert!(after.ends_with("~confinement.conf"), "{after}");
                }
                None => {
                    // Only when nothing before byte 239 sorts below `~`.
                    assert!(name.as_bytes()[..239].iter().all(|&b| b >= b'~'), "{name}");
                    none += 1;
                }
            }
        }
        assert_eq!(none, 0, "names that begin with zz always leave room");
        let hopeless = format!("{}.conf", "~".repeat(250));
        assert_eq!(dropin_name_after(&hopeless), None);
    }
}
