//! Closures: each confined unit's store paths, read from the Nix database
//! (through the closure cache of the last run when it still holds), in path
//! order, with what each symlink store path resolves to.
//!
//! The database is opened, and the closure cache read, on a worker thread
//! while the units are planned, once their files are read
//! ([`Closures::start`], told by the planner through
//! [`crate::plan::Progress`]); the reference graph
//! below every unit's roots is then read in one walk ([`Closures::resolve`])
//! and each unit's closure taken from memory ([`Closures::order`]). A
//! `daemon-reload` takes a unit's closure from the last run's summary of it
//! when it can ([`Closures::summary`], see [`crate::store::summaries`]).

use crate::config::Config;
use crate::diag::{Diagnostic, Location, counted};
use crate::dropin::ClosurePath;
use crate::path_order::PathOrder;
use crate::plan::UnitPlan;
use crate::rootfs::Root;
use crate::roots::Origin;
use crate::scratch::ScratchDir;
use crate::store::cache::{CacheError, CacheErrorKind, FileStamp, Sources};
use crate::store::db::NodeId;
use crate::store::disk::StoreProbe;
use crate::store::summaries::{self, MadeWith, Summaries, Summary};
use crate::store::{DbError, NixDb};
use std::collections::HashMap;
use std::sync::Arc;

/// A store path in a unit's closure and how it got there (for `explain`).
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

/// Whether a store path is a symlink on disk, once looked at.
#[derive(Debug, Clone, Default)]
enum Symlink {
    #[default]
    NotLookedAt,
    No,
    /// Yes: its fully resolved target.
    To(Arc<str>),
}

/// The closures of a run's units, and the database they are read from.
pub struct Closures {
    /// A root of its own (`Root` remembers lookups and is not shared).
    root: Root,
    config: Config,
    database: Database,
    resolved: HashMap<String, Result<Resolved, Vec<Diagnostic>>>,
    order: PathOrder,
    /// Node → whether its store path is a symlink.
    symlinks: Vec<Symlink>,
    /// Looks at store paths on disk, made on first use.
    probe: Option<StoreProbe>,
    /// Whether units the last run summarised skip their walk (see
    /// [`crate::store::summaries`]).
    summarise: bool,
    /// The units whose closure is taken from the last run's summaries.
    summarised: HashMap<String, Summary>,
    /// The summaries this run leaves for the next.
    next_summaries: Summaries,
    /// The closure cache file this run's closures hold for (the one it
    /// trusted, or the one it wrote), once saved.
    cache_held: Option<FileStamp>,
}

/// The database: being opened on the worker, or opened.
enum Database {
    Opening(Opening),
    Opened(Box<Opened>),
}

/// A unit's closure: each node with the node it was first reached from,
/// and what named each root.
struct Resolved {
    reached: Vec<(NodeId, NodeId)>,
    origins: HashMap<NodeId, Origin>,
}

/// A unit's root nodes and what named each.
struct RootNodes {
    nodes: Vec<NodeId>,
    origins: HashMap<NodeId, Origin>,
}

/// A unit's closure in path order.
pub struct Closure<'c> {
    pub paths: Vec<ClosurePath<'c>>,
    /// The database's node of each path.
    pub nodes: Vec<NodeId>,
}

impl Closures {
    /// Starts the worker thread that opens the database (and reads the
    /// closure cache) once the unit files are read. With `summarise` (the
    /// generator's runs), a unit whose roots the last run summarised is not
    /// walked: see [`Closures::summary`].
    pub fn start(root: &Root, config: &Config, summarise: bool) -> Closures {
        Closures {
            root: Root::new(root.dir()),
            config: config.clone(),
            database: Database::Opening(Opening::start(root, config, summarise)),
            resolved: HashMap::new(),
            order: PathOrder::default(),
            symlinks: Vec::new(),
            probe: None,
            summarise,
            summarised: HashMap::new(),
            next_summaries: Summaries::default(),
            cache_held: None,
        }
    }

    /// The database, opened (on first use, or taken from the worker).
    pub fn database(&mut self) -> &mut Opened {
        if let Database::Opening(_) = self.database {
            let Database::Opening(opening) = std::mem::replace(
                &mut self.database,
                Database::Opened(Box::new(Opened::not_yet())),
            ) else {
                unreachable!("matched above")
            };
            self.database = Database::Opened(Box::new(opening.wait(&self.config)));
        }
        match &mut self.database {
            Database::Opened(opened) => opened,
            Database::Opening(_) => unreachable!("replaced above"),
        }
    }

    /// The database, when some unit needed it.
    pub fn opened(&self) -> Option<&Opened> {
        match &self.database {
            Database::Opened(opened) => Some(opened),
            Database::Opening(_) => None,
        }
    }

    /// Reads the closure of every unit that needs one: first every unit's
    /// roots, then the graph below all of them in one walk, then each
    /// unit's closure from memory. A unit the last run summarised (when
    /// this run summarises) is left at its roots: see [`Closures::summary`].
    pub fn resolve(&mut self, units: &[UnitPlan]) {
        self.resolve_units(units, self.summarise);
    }

    fn resolve_units(&mut self, units: &[UnitPlan], summarise: bool) {
        let pending: Vec<&UnitPlan> = units
            .iter()
            .filter(|u| {
                let summarised = summarise && self.summarised.contains_key(&u.name);
                u.request.is_some()
                    && !u.is_blocked()
                    && !self.resolved.contains_key(&u.name)
                    && !summarised
            })
            .collect();
        if pending.is_empty() {
            return;
        }
        if let Ok(nix_db) = &mut self.database().db {
            // A failure here is reported by the lookups of each unit below.
            let _ = nix_db.look_up_all(
                pending
                    .iter()
                    .flat_map(|u| u.roots.paths.iter().map(|r| r.store_path.as_str())),
            );
        }
        let mut roots: Vec<_> = pending.iter().map(|unit| self.root_nodes(unit)).collect();
        if summarise {
            // Known roots only (an unknown one is the unit's error), and
            // while the cache the summaries were made with is trusted (a
            // root not matching it drops it).
            let opened = self.database();
            let trusted = opened.db.as_ref().is_ok_and(NixDb::uses_cache);
            let found: Vec<Option<Summary>> = pending
                .iter()
                .zip(&roots)
                .map(|(unit, unit_roots)| {
                    summary_key(unit)
                        .and_then(|key| opened.summaries.get(&key))
                        .filter(|_| trusted && unit_roots.is_ok())
                        .cloned()
                })
                .collect();
            for ((unit, unit_roots), summary) in pending.iter().zip(&mut roots).zip(found) {
                // Each symlink store path must still resolve (else the
                // closure is walked, and the unit blocked for it).
                let store_dir = self.config.store_dir.as_str();
                let summary = summary.filter(|s| {
                    s.symlinks.iter().all(|link| {
                        resolve_symlink(&self.root, store_dir, link, &unit.name).is_ok()
                    })
                });
                if let Some(summary) = summary {
                    self.summarised.insert(unit.name.clone(), summary);
                    *unit_roots = Err(Vec::new());
                }
            }
        }
        let all_roots: Vec<NodeId> = roots
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .flat_map(|r| r.nodes.iter().copied())
            .collect();
        let loaded = match &mut self.database().db {
            Ok(nix_db) => nix_db.load_graph(&all_roots),
            Err(_) => Ok(()),
        };
        for (unit, unit_roots) in pending.iter().zip(roots) {
            let name = unit.name.as_str();
            if self.summarised.contains_key(name) && summarise {
                continue;
            }
            let db_error = |e: &DbError| vec![Diagnostic::error(Some(name), None, e.to_string())];
            let resolved = unit_roots.and_then(|RootNodes { nodes, origins }| {
                loaded.as_ref().map_err(db_error)?;
                let nix_db = self.database().db.as_mut().map_err(|e| db_error(e))?;
                let reached = nix_db.closure(&nodes).map_err(|e| db_error(&e))?;
                Ok(Resolved { reached, origins })
            });
            self.resolved.insert(unit.name.clone(), resolved);
        }
        if let Ok(nix_db) = &self.database().db {
            let order = PathOrder::of(nix_db);
            // The graph is in memory: SQLite's pages are not needed any
            // more, and their memory serves the drop-ins being rendered.
            nix_db.release_memory();
            self.order = order;
        }
    }

    /// The last run's summary of the unit's closure, when this run took it
    /// from there and did not walk the closure: its view's digest and size,
    /// valid only while that view's record is in place (else
    /// [`Closures::order`] walks it now).
    pub fn summary(&self, unit: &UnitPlan) -> Option<&Summary> {
        self.summarised.get(&unit.name)
    }

    /// Keeps `summary` of the unit's closure for the next run (see
    /// [`crate::store::summaries`]).
    pub fn keep_summary(&mut self, unit: &UnitPlan, summary: Summary) {
        if let Some(key) = summary_key(unit) {
            self.next_summaries.insert(key, summary);
        }
    }

    /// The database nodes of a unit's roots and what named each; a root the
    /// database does not know is an error.
    fn root_nodes(&mut self, unit: &UnitPlan) -> Result<RootNodes, Vec<Diagnostic>> {
        let name = unit.name.as_str();
        let db_error = |e: &DbError| vec![Diagnostic::error(Some(name), None, e.to_string())];
        let db = self.database().db.as_mut().map_err(|e| db_error(e))?;
        let mut found = RootNodes {
            nodes: Vec::new(),
            origins: HashMap::new(),
        };
        let mut errors = Vec::new();
        for root_path in &unit.roots.paths {
            match db
                .node_of(&root_path.store_path)
                .map_err(|e| db_error(&e))?
            {
                Some(node) => {
                    found
                        .origins
                        .entry(node)
                        .or_insert_with(|| root_path.origin.clone());
                    found.nodes.push(node);
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
            Ok(found)
        } else {
            Err(errors)
        }
    }

    /// The unit's closure sorted by path (resolved first if
    /// [`Closures::resolve`] did not), as database nodes for
    /// [`Closures::closure`]. Each store path is checked once per run: the
    /// database must hold a real store path (it is written into the drop-in
    /// unescaped), and whether it is a symlink is found out.
    pub fn order(&mut self, unit: &UnitPlan) -> Result<Vec<NodeId>, Vec<Diagnostic>> {
        let name = unit.name.as_str();
        if !self.resolved.contains_key(name) {
            // Walked now even when summarised: its caller needs the paths.
            self.resolve_units(std::slice::from_ref(unit), false);
        }
        let error = |message: String| vec![Diagnostic::error(Some(name), None, message)];
        let resolved = match self.resolved.get(name) {
            Some(Ok(resolved)) => resolved,
            Some(Err(errors)) => return Err(errors.clone()),
            None => return Err(error("closure not computed".into())),
        };
        let order = self
            .order
            .sort(resolved.reached.iter().map(|&(node, _)| node));
        let Database::Opened(opened) = &mut self.database else {
            return Err(error("the Nix database is not open".into()));
        };
        let Ok(db) = &mut opened.db else {
            return Err(error("the Nix database is not open".into()));
        };
        let store_dir = &self.config.store_dir;
        for &node in &order {
            let index = node as usize;
            if self.symlinks.len() <= index {
                self.symlinks.resize(index + 1, Symlink::NotLookedAt);
            }
            if !matches!(self.symlinks[index], Symlink::NotLookedAt) {
                continue;
            }
            db.load_path(node).map_err(|e| error(e.to_string()))?;
            let path = db.known_path(node).unwrap_or_default();
            // A path from the closure cache was checked when it was read.
            if !db.is_cached(node) && !store_dir.is_store_path(path) {
                return Err(error(format!(
                    "the Nix database {} holds {path:?}, which is not a store path in {}",
                    db.path,
                    store_dir.as_str()
                )));
            }
            let is_link = match db.cached_symlink(node) {
                Some(known) => known,
                None => {
                    let probe = self.probe.get_or_insert_with(|| {
                        StoreProbe::new(&self.root, store_dir.as_str(), db.statistics().0)
                    });
                    // A validated store path: its name follows the store
                    // directory.
                    probe.is_symlink(path[store_dir.as_str().len()..].trim_start_matches('/'))
                }
            };
            self.symlinks[index] = if is_link {
                let target = resolve_symlink(&self.root, store_dir.as_str(), path, name)
                    .map_err(|e| vec![e])?;
                Symlink::To(target.into())
            } else {
                Symlink::No
            };
        }
        Ok(order)
    }

    /// The store paths of `nodes` (as [`Closures::order`] gave them).
    pub fn closure(&self, nodes: Vec<NodeId>) -> Closure<'_> {
        // `order` gives nodes only from an open database.
        let Some(Ok(db)) = self.opened().map(|opened| &opened.db) else {
            return Closure {
                paths: Vec::new(),
                nodes: Vec::new(),
            };
        };
        let paths = nodes
            .iter()
            .map(|&node| ClosurePath {
                path: db.known_path(node).unwrap_or_default(),
                symlink_target: match self.symlinks.get(node as usize) {
                    Some(Symlink::To(target)) => Some(target),
                    _ => None,
                },
            })
            .collect();
        Closure { paths, nodes }
    }

    /// For `explain`: each path of the unit's closure (as
    /// [`Closures::closure`] gave it) with the chain of references from the root that reached
    /// it, and what named that root.
    pub fn explain(&self, unit: &UnitPlan, closure: &Closure<'_>) -> Vec<Reached> {
        let (Some(Ok(resolved)), Some(Ok(db))) = (
            self.resolved.get(&unit.name),
            self.opened().map(|opened| &opened.db),
        ) else {
            return Vec::new();
        };
        let parent: HashMap<NodeId, NodeId> = resolved.reached.iter().copied().collect();
        closure
            .paths
            .iter()
            .zip(&closure.nodes)
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

    /// Writes the closure cache for the next run, when this run read
    /// something the cache did not have, from a database and store that
    /// were settled when read (see [`Sources::stamp`]). `Err` says why it
    /// could not be written (see [`crate::scratch`] for where it may be).
    pub fn save_cache(&mut self) -> Result<(), CacheNotKept> {
        let Database::Opened(opened) = &mut self.database else {
            return Ok(());
        };
        let (Some(file), Ok(nix_db), Some(sources)) =
            (&self.config.closure_cache, &mut opened.db, &opened.sources)
        else {
            return Ok(());
        };
        if !self.summarised.is_empty() {
            nix_db.keep_cached();
        }
        if nix_db.cache_dropped {
            opened.notes.push(format!(
                "{file}: dropped: a root's id and registration time in it does not match the database"
            ));
        }
        let symlinks = &self.symlinks;
        let symlink_of = |node: NodeId| match symlinks.get(node as usize) {
            Some(Symlink::No) => Some(false),
            Some(Symlink::To(_)) => Some(true),
            _ => None,
        };
        let Some(tables) = nix_db.cache_to_save(symlink_of, self.order.ranks()) else {
            opened.notes.push(format!("{file}: unchanged"));
            self.cache_held = nix_db.cache_stamp();
            return Ok(());
        };
        let paths = crate::store::cache::Tables::len(&tables);
        let written = (|| {
            let (dir, name) = crate::scratch::split_file(file)?;
            let dir = ScratchDir::create(&self.root, dir)?;
            crate::store::cache::write_tables_at(
                dir.fd(),
                name,
                file,
                sources,
                self.config.store_dir.as_str(),
                &tables,
            )
        })();
        match written {
            Ok(stamp) => {
                opened.notes.push(format!(
                    "{file}: wrote {}",
                    counted(paths, "store path", "store paths")
                ));
                self.cache_held = Some(stamp);
                Ok(())
            }
            Err(cause) => Err(CacheNotKept {
                file: file.clone(),
                cause,
            }),
        }
    }

    /// Writes the summaries of this run's closures beside the closure cache
    /// they hold for (after [`Closures::save_cache`]); removes them when
    /// there are none or no cache holds. Unchanged summaries of an unchanged
    /// cache are not written again.
    pub fn save_summaries(&mut self) {
        let (Some(file), Database::Opened(opened)) =
            (&self.config.closure_cache, &mut self.database)
        else {
            return;
        };
        let Some((dir, name)) = summaries_file(file) else {
            return;
        };
        let Ok(Some(dir)) = ScratchDir::find(&self.root, dir) else {
            return;
        };
        let made_with = self
            .cache_held
            .filter(|_| !self.next_summaries.is_empty())
            .and_then(|stamp| MadeWith::this_program(stamp, self.config.store_dir.as_str()));
        let shown = dir.path().join(&name);
        if !self.summarised.is_empty() {
            opened.notes.push(format!(
                "{shown}: the closures of {} taken from it",
                counted(self.summarised.len(), "unit", "units")
            ));
        }
        let Some(made_with) = made_with else {
            summaries::remove_at(dir.fd(), &name);
            return;
        };
        let cache_read = opened.db.as_ref().ok().and_then(NixDb::cache_stamp);
        if cache_read == Some(made_with.cache) && self.next_summaries == opened.summaries {
            opened.notes.push(format!("{shown}: unchanged"));
            return;
        }
        let text = self.next_summaries.encode(&made_with);
        opened
            .notes
            .push(match summaries::write_at(dir.fd(), &name, &text) {
                Ok(()) => format!(
                    "{shown}: wrote {}",
                    counted(self.next_summaries.len(), "closure", "closures")
                ),
                Err(e) => format!("{shown}: not written: {e}"),
            });
    }
}

/// The planner's news goes to the database worker, while there is one.
impl crate::plan::Progress for Closures {
    fn units_read(&self) {
        if let Database::Opening(opening) = &self.database {
            opening.send(ToWorker::UnitsRead);
        }
    }

    /// The store paths a unit's closure starts from, for the worker to read
    /// ahead while the other units are planned.
    fn roots_found(&self, roots: Vec<String>) {
        if let Database::Opening(opening) = &self.database {
            opening.send(ToWorker::Roots(roots));
        }
    }
}

/// Why [`Closures::save_cache`] did not write the closure cache `file`.
#[derive(Debug)]
pub struct CacheNotKept {
    pub file: camino::Utf8PathBuf,
    pub cause: CacheError,
}

impl std::fmt::Display for CacheNotKept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "closure cache {} not kept: {}", self.file, self.cause)
    }
}

impl std::error::Error for CacheNotKept {}

/// The fully resolved target of a store path known to be a symlink.
fn resolve_symlink(
    root: &Root,
    store_dir: &str,
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
                 systemd cannot bind it (store {store_dir})"
            ),
        )),
    }
}

/// An opened database and what happened to the closure cache.
pub struct Opened {
    pub db: Result<NixDb, DbError>,
    /// What happened to the closure cache, for the debug log.
    pub notes: Vec<String>,
    /// What the database was read from, when a cache made from it may be
    /// written for the next run (see [`crate::store::cache::Sources`]).
    sources: Option<Sources>,
    /// The last run's summaries, made with the cache in use.
    summaries: Summaries,
}

impl Opened {
    /// A stand-in while the worker's result is taken.
    fn not_yet() -> Opened {
        Opened {
            db: Err(DbError {
                path: camino::Utf8PathBuf::new(),
                message: "not opened yet".into(),
            }),
            notes: Vec::new(),
            sources: None,
            summaries: Summaries::default(),
        }
    }
}

/// Opens the database, with the closure cache `cache_file` of the last run
/// when it was made from the database and store as they are now.
fn open_database(
    root: &Root,
    config: &Config,
    cache_file: Option<&camino::Utf8Path>,
    summarise: bool,
) -> Opened {
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
        summaries: Summaries::default(),
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
    let found = (|| {
        let (dir, name) = crate::scratch::split_file(file)?;
        match ScratchDir::find(root, dir)? {
            Some(dir) => crate::store::cache::read_stamped_at(dir.fd(), name, file),
            None => Ok(None),
        }
    })();
    let refused = |why: String| CacheError {
        path: file.to_owned(),
        kind: CacheErrorKind::Refused(why),
    };
    let used = found.and_then(|cache| match cache {
        Some((cache, _)) if *cache.store_dir != *config.store_dir.as_str() => {
            Err(refused(format!(
                "made for the store {}, not {}",
                cache.store_dir,
                config.store_dir.as_str()
            )))
        }
        Some((cache, _)) if cache.sources != sources => Err(refused(
            "the Nix database or the store directory changed since it was made".into(),
        )),
        Some((cache, stamp)) => {
            // Every path is checked here, on the worker, once: the units'
            // closures then bind cached paths without checking each again.
            if let Some(bad) = (0..cache.len())
                .map(|i| cache.path(i))
                .find(|&path| !config.store_dir.is_store_path(path))
            {
                return Err(refused(format!(
                    "holds {bad:?}, which is not a store path in {}",
                    config.store_dir.as_str()
                )));
            }
            let paths = cache.len();
            nix_db
                .use_cache(cache, stamp)
                .map(|()| {
                    format!(
                        "{file}: read {}",
                        counted(paths, "store path", "store paths")
                    )
                })
                .map_err(|e| refused(e.to_string()))
        }
        None => Ok(format!("{file}: none yet")),
    });
    opened.notes.push(match used {
        Ok(note) => note,
        Err(e) => format!("not used: {e}"),
    });
    if summarise {
        opened.summaries = read_summaries(root, config, file, &opened.db);
    }
    opened
}

/// Where the summaries of the closure cache `file` are kept: beside it.
fn summaries_file(file: &camino::Utf8Path) -> Option<(&camino::Utf8Path, String)> {
    let (dir, name) = crate::scratch::split_file(file).ok()?;
    Some((dir, format!("{name}.summaries")))
}

/// The last run's summaries, when they were made with the cache `db` uses
/// (read from `file`) and by this program.
fn read_summaries(
    root: &Root,
    config: &Config,
    file: &camino::Utf8Path,
    db: &Result<NixDb, DbError>,
) -> Summaries {
    let made_with = db
        .as_ref()
        .ok()
        .and_then(NixDb::cache_stamp)
        .and_then(|stamp| MadeWith::this_program(stamp, config.store_dir.as_str()));
    let (Some(made_with), Some((dir, name))) = (made_with, summaries_file(file)) else {
        return Summaries::default();
    };
    match ScratchDir::find(root, dir) {
        Ok(Some(dir)) => summaries::read_at(dir.fd(), &name, &made_with),
        _ => Summaries::default(),
    }
}

/// The key a unit's closure is summarised under: its roots.
fn summary_key(unit: &UnitPlan) -> Option<String> {
    summaries::key(unit.roots.paths.iter().map(|r| r.store_path.as_str()))
}

/// The database worker: a thread that opens the database and reads the
/// closure cache while the units are planned, then reads the reference
/// graph below each unit's roots as the planner finds them (reading the
/// cache, or the database without one, costs about what planning does, and
/// the planner leaves a CPU free once the unit files are read). Whatever
/// it fails to read is read again, and its failure reported, by
/// [`Closures::resolve`]. Opening reads and creates nothing that a run
/// without annotated units would not; such a run never waits for it.
struct Opening {
    worker: std::thread::JoinHandle<Opened>,
    planner: Option<std::sync::mpsc::Sender<ToWorker>>,
}

/// What the planner tells the database worker.
enum ToWorker {
    /// The unit files are read: the worker may take a CPU.
    UnitsRead,
    /// The roots of a unit just planned, to read ahead.
    Roots(Vec<String>),
}

impl Opening {
    fn start(root: &Root, config: &Config, summarise: bool) -> Opening {
        // A root of its own: `Root` remembers lookups and is not shared.
        let root = Root::new(root.dir());
        let config = config.clone();
        let (sender, receiver) = std::sync::mpsc::channel::<ToWorker>();
        let worker = std::thread::spawn(move || {
            // Nothing is done before the unit files are read: two threads
            // read them, and a third taking a CPU from them (this machine,
            // like many, has two) slowed a daemon-reload more than opening
            // the database early gained (see benches/README.md). Any word
            // from the planner, or its hanging up, ends the wait.
            let mut news = receiver.recv().ok();
            let mut opened =
                open_database(&root, &config, config.closure_cache.as_deref(), summarise);
            // Only with a closure cache: the roots are then looked up and
            // the graph below them is in memory. Without one, reading the
            // database a unit at a time would read its pages more often
            // than one walk over all units at the end does (measured on the
            // benchmark system; see benches/README.md).
            if let Ok(db) = opened.db.as_mut()
                && db.uses_cache()
            {
                // A unit the last run summarised is not walked: its roots
                // are only looked up.
                let summaries = &opened.summaries;
                let summarised = |roots: &Vec<String>| {
                    summaries::key(roots.iter().map(String::as_str))
                        .is_some_and(|key| summaries.contains(&key))
                };
                while let Some(first) = news.take().or_else(|| receiver.recv().ok()) {
                    // The roots of every unit planned meanwhile, at once: the
                    // graph is read a level at a time for all of them.
                    let (mut walked, mut looked_up) = (Vec::new(), Vec::new());
                    let all_roots = std::iter::once(first)
                        .chain(receiver.try_iter())
                        .filter_map(|news| match news {
                            ToWorker::Roots(roots) => Some(roots),
                            ToWorker::UnitsRead => None,
                        });
                    for roots in all_roots {
                        if summarised(&roots) {
                            looked_up.extend(roots);
                        } else {
                            walked.extend(roots);
                        }
                    }
                    let _ = db.look_up_roots(&looked_up);
                    let _ = db.read_ahead(&walked);
                }
            }
            opened
        });
        Opening {
            worker,
            planner: Some(sender),
        }
    }

    fn send(&self, news: ToWorker) {
        if let Some(sender) = &self.planner {
            let _ = sender.send(news);
        }
    }

    fn wait(mut self, config: &Config) -> Opened {
        // No more roots: the worker finishes what it has and returns.
        self.planner = None;
        self.worker.join().unwrap_or_else(|_| {
            let error = DbError {
                path: config.state_dir.join("db/db.sqlite"),
                message: "the thread opening it failed".into(),
            };
            Opened {
                db: Err(error),
                notes: Vec::new(),
                sources: None,
                summaries: Summaries::default(),
            }
        })
    }
}
