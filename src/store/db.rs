//! The local Nix database (`<state dir>/db/db.sqlite`): which store paths
//! are valid and what each one references, read without creating or changing
//! any file (the generator may run on a read-only root, and must never leave
//! `-wal`/`-shm` files behind in a store it does not own).

use crate::fast_map::FastMap as IdMap;
use crate::rootfs::Root;
use crate::store::cache::{ClosureCache, FileStamp, Tables};
use camino::{Utf8Path, Utf8PathBuf};
use rusqlite::types::Value;
use rusqlite::vtab::array::Array;
use rusqlite::{Connection, OpenFlags};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

/// Nix's database schema versions that have `ValidPaths(id, path)` and
/// `Refs(referrer, reference)` as we read them (Nix 2.x writes 10).
const SUPPORTED_SCHEMAS: std::ops::RangeInclusive<u32> = 7..=10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    /// The file involved (logical).
    pub path: Utf8PathBuf,
    pub message: String,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nix database {}: {}", self.path, self.message)
    }
}

impl std::error::Error for DbError {}

/// Why [`NixDb::use_cache`] refused a closure cache (which file it is, the
/// caller says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheNotUsed {
    /// Nodes were read from the database already: the cache's would not
    /// come first.
    DatabaseReadBefore,
    /// The cache is damaged: a database id appears twice.
    IdTwice(i64),
}

impl fmt::Display for CacheNotUsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheNotUsed::DatabaseReadBefore => {
                write!(f, "the database was read before the cache")
            }
            CacheNotUsed::IdTwice(db_id) => write!(f, "path id {db_id} appears twice"),
        }
    }
}

impl std::error::Error for CacheNotUsed {}

/// How the database was opened, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// No `-wal` file: every committed transaction is in the main file.
    Immutable,
    /// A writer is or was active: read through the WAL.
    ReadOnlyWal,
    /// A `-wal` exists but could not be read through (read-only file system,
    /// no `-shm`): rows still only in the WAL are not seen.
    ImmutableIgnoringWal,
}

/// SQLite's page cache sizes (`PRAGMA cache_size`, negative: KiB).
const SMALL_PAGE_CACHE: &str = "PRAGMA cache_size = -256";
const DEFAULT_PAGE_CACHE: &str = "PRAGMA cache_size = -2000";

/// A row of `ValidPaths` as read: id, path, registration time.
type PathRow = (i64, Arc<str>, Option<i64>);

/// Store paths per batched query (the rows of a batch of references are
/// held at once: 1,024 keeps that under 200 KiB).
const BATCH: usize = 1024;

/// A store path known to this run, by its index in [`NixDb`]'s node table.
pub type NodeId = u32;

struct Node {
    /// `ValidPaths.id`.
    db_id: i64,
    /// Read from the database; a node taken from the closure cache has its
    /// path in the cache (see [`NixDb::known_path`]).
    path: Option<Arc<str>>,
    /// Whether the path was read by [`NixDb::load_paths`].
    loaded: bool,
    /// Referenced nodes (self references removed), once read from the
    /// database; a cached node's are in the cache.
    references: Option<Box<[NodeId]>>,
    /// `ValidPaths.registrationTime`, once read.
    registration_time: Option<i64>,
}

/// The cache, when `node` is one of its entries: while a cache is trusted,
/// its store paths are the first nodes, node `i` its entry `i` (see
/// [`NixDb::use_cache`]).
fn cache_holding(cache: Option<&ClosureCache>, node: NodeId) -> Option<&ClosureCache> {
    cache.filter(|cache| (node as usize) < cache.len())
}

/// The store path of `node`: in the cache, or read from the database.
fn path_of<'a>(
    nodes: &'a [Node],
    cache: Option<&'a ClosureCache>,
    node: NodeId,
) -> Option<&'a str> {
    match cache_holding(cache, node) {
        Some(cache) => Some(cache.path(node as usize)),
        None => nodes[node as usize].path.as_deref(),
    }
}

/// The references of `node`: in the cache, or read from the database.
fn references_of<'a>(
    nodes: &'a [Node],
    cache: Option<&'a ClosureCache>,
    node: NodeId,
) -> Option<&'a [NodeId]> {
    match cache_holding(cache, node) {
        Some(cache) => Some(cache.references(node as usize)),
        None => nodes[node as usize].references.as_deref(),
    }
}

/// An open database with the part of the reference graph read so far,
/// shared by every unit of a run so that common subgraphs are read once.
pub struct NixDb {
    conn: Connection,
    pub path: Utf8PathBuf,
    pub mode: OpenMode,
    nodes: Vec<Node>,
    by_db_id: IdMap<i64, NodeId>,
    /// Traversal marks: `mark[n] == epoch` means visited in this traversal.
    mark: Vec<u32>,
    epoch: u32,
    /// The database file on this machine, to open a second connection.
    real: Utf8PathBuf,
    /// The closure cache of an earlier run, while it is trusted: its store
    /// paths are the first nodes, node `i` its entry `i`, whose path and
    /// references stay in its flat tables (copying them into a node each
    /// was a fifth of a run's time with the cache). While it is `Some`,
    /// node `i` is cached exactly when `i < cache.len()`: looking that up
    /// needs no access to the node.
    cache: Option<ClosureCache>,
    /// The file the cache was read from.
    cache_stamp: Option<FileStamp>,
    /// Whether the cache's paths are in order (checked when it was taken,
    /// on the database worker, so that ranking the paths needs no sort).
    cache_sorted: bool,
    /// Whether the cache turned out not to match the database.
    pub cache_dropped: bool,
    /// Every node's references in one array, for walking the graph a
    /// hundred times without chasing a pointer per node; rebuilt when nodes
    /// were added since.
    adjacency: Option<Adjacency>,
    /// The nodes every [`NixDb::load_graph`] of this run read, with all
    /// below them.
    in_graph: Vec<bool>,
    /// Store paths looked up by [`NixDb::look_up_all`]: id and
    /// registration time, `None` when not valid.
    looked_up: IdMap<String, Option<(i64, Option<i64>)>>,
    /// Store paths whose references were read from the database (not taken
    /// from the cache) in this run.
    pub read_from_database: usize,
}

impl fmt::Debug for NixDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NixDb")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl NixDb {
    /// Opens `<state_dir>/db/db.sqlite` under `root`.
    pub fn open(root: &Root, state_dir: &Utf8Path) -> Result<NixDb, DbError> {
        let db_dir = state_dir.join("db");
        let logical = db_dir.join("db.sqlite");
        let error = |message: String| DbError {
            path: logical.clone(),
            message,
        };
        check_schema_version(root, &db_dir.join("schema"))?;
        // Resolved inside the root: an absolute link, or `..` in StateDir=,
        // must not lead to the host's database.
        let real = root
            .real(&logical)
            .map_err(|e| error(format!("cannot be read: {e}")))?;
        match std::fs::metadata(&real) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(error("is not a regular file".into())),
            Err(e) => return Err(error(format!("cannot be read: {e}"))),
        }
        let wal = Utf8PathBuf::from(format!("{real}-wal"));
        let shm = Utf8PathBuf::from(format!("{real}-shm"));
        let (conn, mode) = if !wal.exists() {
            (
                open_immutable(&real).map_err(|e| error(e.to_string()))?,
                OpenMode::Immutable,
            )
        } else if shm.exists() {
            match open_read_only(&real) {
                Ok(conn) => (conn, OpenMode::ReadOnlyWal),
                Err(_) => (
                    open_immutable(&real).map_err(|e| error(e.to_string()))?,
                    OpenMode::ImmutableIgnoringWal,
                ),
            }
        } else {
            // Without `-shm`, SQLite would create one to read the WAL.
            (
                open_immutable(&real).map_err(|e| error(e.to_string()))?,
                OpenMode::ImmutableIgnoringWal,
            )
        };
        check_tables(&conn, &logical)?;
        rusqlite::vtab::array::load_module(&conn).map_err(|e| error(e.to_string()))?;

        Ok(NixDb {
            conn,
            path: logical,
            mode,
            nodes: Vec::new(),
            by_db_id: IdMap::default(),
            mark: Vec::new(),
            epoch: 0,
            real,
            cache: None,
            cache_stamp: None,
            cache_sorted: false,
            adjacency: None,
            looked_up: IdMap::default(),
            cache_dropped: false,
            in_graph: Vec::new(),
            read_from_database: 0,
        })
    }

    /// Takes the closure cache of an earlier run, which its caller found
    /// made from this very database (see [`crate::store::cache::Sources`]):
    /// its store paths become the first nodes, with their paths and
    /// references, as if read from the database. [`NixDb::node_of`] still
    /// checks every root against the database and drops the cache's data
    /// if a root's id or registration time differ. Refused when it is
    /// damaged (an id twice).
    pub fn use_cache(&mut self, cache: ClosureCache, stamp: FileStamp) -> Result<(), CacheNotUsed> {
        if !self.nodes.is_empty() {
            return Err(CacheNotUsed::DatabaseReadBefore);
        }
        let n = cache.len();
        self.by_db_id.reserve(n);
        for (index, &db_id) in cache.db_ids.iter().enumerate() {
            if self.by_db_id.insert(db_id, index as NodeId).is_some() {
                self.by_db_id.clear();
                return Err(CacheNotUsed::IdTwice(db_id));
            }
        }
        self.nodes.reserve(n);
        for index in 0..n {
            self.nodes.push(Node {
                db_id: cache.db_ids[index],
                path: None,
                loaded: true,
                references: None,
                registration_time: Some(cache.registration_times[index]),
            });
        }
        self.cache_sorted = (1..n).all(|i| cache.path(i - 1) < cache.path(i));
        self.cache = Some(cache);
        self.cache_stamp = Some(stamp);
        // With the closures cached, only the roots are looked up: one or
        // two pages each, never read twice. SQLite's default 2 MiB page
        // cache would only add to the peak memory (it is restored before
        // the graph is read, if it must be).
        let _ = self.conn.execute_batch(SMALL_PAGE_CACHE);
        Ok(())
    }

    /// Forgets everything taken from the cache: those nodes keep their ids
    /// (a node stands for a database id) but are read from the database
    /// again when needed.
    fn drop_cache(&mut self) {
        let cached = self.cache.take().map_or(0, |cache| cache.len());
        self.adjacency = None;
        self.in_graph.clear();
        for node in &mut self.nodes[..cached] {
            node.loaded = false;
            node.registration_time = None;
        }
        // References read from the database may lead to dropped nodes: they
        // are still right (a node is an id), and the dropped nodes' own
        // references are read again.
    }

    /// Whether a closure cache is in use.
    pub fn uses_cache(&self) -> bool {
        self.cache.is_some()
    }

    /// The file the closure cache in use was read from; `None` without a
    /// cache (or once it was dropped).
    pub fn cache_stamp(&self) -> Option<FileStamp> {
        self.cache.as_ref().and(self.cache_stamp)
    }

    /// Whether the cache says the store path of `node` is a symlink.
    pub fn cached_symlink(&self, node: NodeId) -> Option<bool> {
        cache_holding(self.cache.as_ref(), node).map(|cache| cache.symlinks[node as usize])
    }

    /// Whether `node` was taken from the closure cache (and is still trusted).
    pub fn is_cached(&self, node: NodeId) -> bool {
        cache_holding(self.cache.as_ref(), node).is_some()
    }

    /// The references of `node`, when known.
    fn node_references(&self, node: NodeId) -> Option<&[NodeId]> {
        references_of(&self.nodes, self.cache.as_ref(), node)
    }

    /// Keeps every store path of the cache read at the start in the next
    /// run's cache, as if walked: closures taken from summaries were not
    /// walked, and their paths are in it (see [`crate::store::summaries`]).
    pub fn keep_cached(&mut self) {
        let cached = self.cache.as_ref().map_or(0, ClosureCache::len);
        if self.in_graph.len() < cached {
            self.in_graph.resize(cached, false);
        }
        self.in_graph[..cached].fill(true);
    }

    /// What the next run's cache should hold: the store paths
    /// [`NixDb::load_graph`] read in this run (the closures of its units) whose
    /// path, registration time, references and symlink flag (`symlink_of`)
    /// are known, and whose references are all in it too. `None` when that
    /// is what the cache read at the start holds. `ranks` is the run's path
    /// order ([`NixDb::path_ranks`]), which saves sorting the paths again.
    pub fn cache_to_save(
        &self,
        symlink_of: impl Fn(NodeId) -> Option<bool>,
        ranks: &[u32],
    ) -> Option<CacheTables<'_>> {
        // Nothing read and every cached path kept (as after
        // `keep_cached`): the cache read is the one that would be written.
        if self.read_from_database == 0
            && let Some(cache) = &self.cache
            && self.nodes.len() == cache.len()
            && self.in_graph.len() >= cache.len()
            && self.in_graph[..cache.len()].iter().all(|&kept| kept)
        {
            return None;
        }
        let symlink = |n: NodeId| symlink_of(n).or_else(|| self.cached_symlink(n));
        let complete = |n: NodeId| {
            self.in_graph.get(n as usize).copied().unwrap_or(false)
                && self.node_references(n).is_some()
                && self.known_path(n).is_some()
                && self.nodes[n as usize].registration_time.is_some()
                && symlink(n).is_some()
        };
        let mut kept: Vec<bool> = (0..self.nodes.len() as NodeId).map(complete).collect();
        // Drop whatever references a dropped path, until nothing changes: a
        // cached path's closure must be whole.
        loop {
            let mut changed = false;
            for n in 0..self.nodes.len() {
                if kept[n]
                    && self
                        .node_references(n as NodeId)
                        .is_some_and(|r| r.iter().any(|&m| !kept[m as usize]))
                {
                    kept[n] = false;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut nodes: Vec<NodeId> = (0..self.nodes.len() as NodeId)
            .filter(|&n| kept[n as usize])
            .collect();
        // Checked before sorting: a daemon-reload that read nothing new
        // (the usual case) sorts nothing.
        if self.read_from_database == 0
            && self.cache.as_ref().is_some_and(|c| c.len() == nodes.len())
        {
            return None;
        }
        // In path order: the next run then needs no sort (see `path_ranks`).
        // The ranks the run's path order gave the nodes say it without
        // comparing paths (when they were made after every node kept).
        if nodes.iter().all(|&n| (n as usize) < ranks.len()) {
            nodes.sort_unstable_by_key(|&n| ranks[n as usize]);
        } else {
            nodes.sort_unstable_by(|&a, &b| self.known_path(a).cmp(&self.known_path(b)));
        }
        let mut position = vec![u32::MAX; self.nodes.len()];
        for (i, &n) in nodes.iter().enumerate() {
            position[n as usize] = i as u32;
        }
        let symlinks = nodes
            .iter()
            .map(|&n| symlink(n).unwrap_or_default())
            .collect();
        Some(CacheTables {
            db: self,
            nodes,
            position,
            symlinks,
        })
    }

    /// Gives back the memory of SQLite's page cache (no reading is left to
    /// do), so that what comes next reuses it instead of adding to the peak.
    pub fn release_memory(&self) {
        let _ = self.conn.execute_batch("PRAGMA shrink_memory");
    }

    fn intern(&mut self, db_id: i64) -> NodeId {
        if let Some(&node) = self.by_db_id.get(&db_id) {
            return node;
        }
        let node = NodeId::try_from(self.nodes.len()).expect("fewer than 2^32 store paths");
        self.nodes.push(Node {
            db_id,
            path: None,
            loaded: false,
            references: None,
            registration_time: None,
        });
        self.by_db_id.insert(db_id, node);
        node
    }

    /// The node of a store path, or `None` when it is not valid. This is
    /// where a cached closure is checked against the database: the path
    /// must still have the id and registration time it had when cached.
    pub fn node_of(&mut self, path: &str) -> Result<Option<NodeId>, DbError> {
        // Nothing to read when `look_up_all` read it already.
        self.look_up_all([path])?;
        let Some(&Some((db_id, registration_time))) = self.looked_up.get(path) else {
            return Ok(None);
        };
        let node = self.intern(db_id);
        if self.is_cached(node)
            && (self.nodes[node as usize].registration_time != registration_time
                || self.known_path(node) != Some(path))
        {
            // Ids are never reused: this is not the database the cache was
            // made from. Trust none of it.
            self.drop_cache();
            self.cache_dropped = true;
        }
        if self.known_path(node).is_none() {
            self.nodes[node as usize].path = Some(path.into());
        }
        self.nodes[node as usize].registration_time = registration_time;
        Ok(Some(node))
    }

    /// Looks up the ids and registration times of `paths` (the roots of
    /// every unit) in batches, sorted, for [`NixDb::node_of`]: one statement
    /// per batch instead of one per root, and the path index walked
    /// forwards.
    pub fn look_up_all<'p>(
        &mut self,
        paths: impl IntoIterator<Item = &'p str>,
    ) -> Result<(), DbError> {
        let mut paths: Vec<&str> = paths
            .into_iter()
            .filter(|p| !self.looked_up.contains_key(*p))
            .collect();
        paths.sort_unstable();
        paths.dedup();
        for batch in paths.chunks(BATCH) {
            let values: Array =
                Rc::new(batch.iter().map(|p| Value::Text((*p).to_owned())).collect());
            let rows = retry_once(|| {
                let mut statement = self.conn.prepare_cached(
                    "SELECT path, id, registrationTime FROM ValidPaths \
                     WHERE path IN rarray(?1)",
                )?;
                let rows = statement.query_map([&values], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                    ))
                })?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| {
                let more = match batch.len() {
                    1 => String::new(),
                    n => format!(" and {} more", n - 1),
                };
                self.error(format!("looking up {}{more}: {e}", batch[0]))
            })?;
            for &path in batch {
                self.looked_up.insert(path.to_owned(), None);
            }
            for (path, db_id, registration_time) in rows {
                self.looked_up
                    .insert(path, Some((db_id, registration_time)));
            }
        }
        Ok(())
    }

    /// Reads the references of every node in `nodes` that are not known
    /// yet, a batch of ids per query: far fewer statements than one per
    /// store path, which is what costs (SQLite's per-statement overhead, not
    /// the index lookups, dominated a query per path).
    fn load_references(&mut self, nodes: &[NodeId]) -> Result<(), DbError> {
        let missing = self.missing(nodes, |db, node| db.node_references(node).is_none());
        if !missing.is_empty() {
            // References are about to change.
            self.adjacency = None;
        }
        if !missing.is_empty() && self.read_from_database == 0 && self.cache.is_some() {
            let _ = self.conn.execute_batch(DEFAULT_PAGE_CACHE);
        }
        self.read_from_database += missing.len();
        for batch in missing.chunks(BATCH) {
            let ids = self.id_array(batch);
            // Rows come in batch order (ascending ids: the join walks the
            // batch and seeks the index for each id); sorting them is then
            // linear and makes the merge with the batch below correct
            // whatever order SQLite chose.
            let pairs = retry_once(|| {
                let mut statement = self.conn.prepare_cached(
                    "SELECT r.referrer, r.reference FROM rarray(?1) AS a \
                     CROSS JOIN Refs AS r ON r.referrer = a.value",
                )?;
                let mut rows = statement.query([&ids])?;
                let mut pairs: Vec<(i64, i64)> = Vec::with_capacity(batch.len() * 12);
                while let Some(row) = rows.next()? {
                    pairs.push((row.get_ref(0)?.as_i64()?, row.get_ref(1)?.as_i64()?));
                }
                Ok(pairs)
            })
            .map_err(|e| self.error(format!("reading references: {e}")))?;
            let mut pairs = pairs;
            pairs.sort_by_key(|&(referrer, _)| referrer);
            let mut next_pair = 0;
            let mut references: Vec<NodeId> = Vec::new();
            for &node in batch {
                let db_id = self.nodes[node as usize].db_id;
                references.clear();
                // Rows of ids not in the batch cannot occur; skip them anyway.
                while next_pair < pairs.len() && pairs[next_pair].0 < db_id {
                    next_pair += 1;
                }
                while next_pair < pairs.len() && pairs[next_pair].0 == db_id {
                    let reference = pairs[next_pair].1;
                    next_pair += 1;
                    if reference != db_id {
                        let referenced = self.intern(reference);
                        references.push(referenced);
                    }
                }
                self.nodes[node as usize].references = Some(references.as_slice().into());
            }
        }
        Ok(())
    }

    /// The nodes of `nodes` that `needs` reading, once each, in database id
    /// order: the index and the table are then walked forwards, a page at a
    /// time.
    fn missing(&self, nodes: &[NodeId], needs: impl Fn(&NixDb, NodeId) -> bool) -> Vec<NodeId> {
        let mut missing: Vec<NodeId> = nodes.iter().copied().filter(|&n| needs(self, n)).collect();
        missing.sort_unstable_by_key(|&n| self.nodes[n as usize].db_id);
        missing.dedup();
        missing
    }

    /// The database ids of `batch`, bound to a query as `rarray(?1)`.
    fn id_array(&self, batch: &[NodeId]) -> Array {
        Rc::new(
            batch
                .iter()
                .map(|&n| Value::Integer(self.nodes[n as usize].db_id))
                .collect(),
        )
    }

    /// Reads the paths of every node in `nodes` not known yet, in batches.
    pub fn load_paths(&mut self, nodes: &[NodeId]) -> Result<(), DbError> {
        let missing = self.missing(nodes, |db, node| !db.nodes[node as usize].loaded);
        for batch in missing.chunks(BATCH) {
            let ids = self.id_array(batch);
            let mut rows = Vec::with_capacity(batch.len());
            retry_once(|| {
                rows.clear();
                query_paths(&self.conn, &ids, &mut rows)
            })
            .map_err(|e| self.error(format!("reading paths: {e}")))?;
            self.take_paths(rows);
        }
        Ok(())
    }

    /// How many store paths and references were read.
    pub fn statistics(&self) -> (usize, usize) {
        let references = (0..self.nodes.len() as NodeId)
            .filter_map(|n| self.node_references(n).map(<[NodeId]>::len))
            .sum();
        (self.nodes.len(), references)
    }

    /// The store path of a node, when known (read from the database, or
    /// in the cache).
    pub fn known_path(&self, node: NodeId) -> Option<&str> {
        path_of(&self.nodes, self.cache.as_ref(), node)
    }

    /// Reads the store path of a node from the database, unless it is
    /// known ([`NixDb::known_path`] then has it).
    pub fn load_path(&mut self, node: NodeId) -> Result<(), DbError> {
        if self.known_path(node).is_some() {
            return Ok(());
        }
        let db_id = self.nodes[node as usize].db_id;
        let path: Arc<str> = retry_once(|| {
            self.conn
                .prepare_cached("SELECT path FROM ValidPaths WHERE id = ?1")?
                .query_row([db_id], |row| {
                    row.get_ref(0).map(|v| v.as_str().map(Arc::from))
                })
        })
        .map_err(|e| self.error(format!("reading path id {db_id}: {e}")))?
        .map_err(|e| self.error(format!("path id {db_id} is not text: {e}")))?;
        self.nodes[node as usize].path = Some(path);
        Ok(())
    }

    /// Reads the references and paths of everything reachable from `roots`
    /// (the roots of every unit of a run): one breadth-first walk over the
    /// union, a level at a time, each level's store paths read in id order,
    /// so that the database's pages are read about once rather than once per
    /// unit that needs them. [`NixDb::closure`] then needs no more reading.
    pub fn load_graph(&mut self, roots: &[NodeId]) -> Result<(), DbError> {
        // Reading the paths of what each level reached is a third of a walk
        // that reads thousands of references: without a closure cache, on
        // the first walk, a second connection does it on a thread
        // meanwhile (when it cannot be opened, they are read at the end).
        let second = (!self.in_graph.contains(&true) && self.cache.is_none())
            .then(|| self.second_connection())
            .flatten();
        let Some(second) = second else {
            return self.walk(roots, None);
        };
        let (sender, receiver) = std::sync::mpsc::channel::<Vec<i64>>();
        let (walked, read) = std::thread::scope(|scope| {
            let reader = scope.spawn(move || read_paths(&second, receiver));
            let walked = self.walk(roots, Some(sender));
            (walked, reader.join())
        });
        if let Ok(Ok(rows)) = read {
            self.take_paths(rows);
        }
        walked?;
        // Whatever the second connection did not read (it failed) is read
        // here, and its failure reported.
        let all: Vec<NodeId> = (0..self.nodes.len() as NodeId)
            .filter(|&n| self.in_graph.get(n as usize).copied().unwrap_or(false))
            .collect();
        self.load_paths(&all)
    }

    /// A second read-only connection to the database, opened as the first.
    fn second_connection(&self) -> Option<Connection> {
        let conn = match self.mode {
            OpenMode::ReadOnlyWal => open_read_only(&self.real).ok()?,
            OpenMode::Immutable | OpenMode::ImmutableIgnoringWal => {
                open_immutable(&self.real).ok()?
            }
        };
        rusqlite::vtab::array::load_module(&conn).ok()?;
        // It reads a table in id order a batch at a time: a small page
        // cache does, and keeps the peak memory down.
        conn.execute_batch(SMALL_PAGE_CACHE).ok()?;
        Some(conn)
    }

    /// Stores the paths [`read_paths`] read.
    fn take_paths(&mut self, rows: Vec<PathRow>) {
        for (db_id, path, registration_time) in rows {
            if let Some(&node) = self.by_db_id.get(&db_id) {
                let entry = &mut self.nodes[node as usize];
                if !entry.loaded {
                    entry.path = Some(path);
                    entry.loaded = true;
                    entry.registration_time = registration_time;
                }
            }
        }
    }

    /// The breadth-first walk of [`NixDb::load_graph`]. With `paths`, each
    /// level's nodes whose paths are not known are sent there to be read;
    /// without, all paths are read at the end.
    fn walk(
        &mut self,
        roots: &[NodeId],
        paths: Option<std::sync::mpsc::Sender<Vec<i64>>>,
    ) -> Result<(), DbError> {
        let epoch = self.next_epoch();
        let mut all: Vec<NodeId> = Vec::new();
        self.in_graph.resize(self.nodes.len(), false);
        // What an earlier walk read needs no reading, nor does anything
        // below it; nor does a store path of the closure cache, whose
        // closure is all in it (a cache holds whole closures). Closures mark
        // what they reach (see `closure_in_memory`).
        let mut frontier: Vec<NodeId> = roots
            .iter()
            .copied()
            .filter(|&n| !self.in_graph[n as usize] && !self.is_cached(n) && self.visit(n, epoch))
            .collect();
        while !frontier.is_empty() {
            if let Some(paths) = &paths {
                let unread = self.missing(&frontier, |db, node| !db.nodes[node as usize].loaded);
                for batch in unread.chunks(BATCH) {
                    let ids = batch
                        .iter()
                        .map(|&n| self.nodes[n as usize].db_id)
                        .collect();
                    let _ = paths.send(ids);
                }
            }
            self.load_references(&frontier)?;
            self.mark.resize(self.mark.len().max(self.nodes.len()), 0);
            self.in_graph.resize(self.nodes.len(), false);
            let (nodes, cache) = (&self.nodes, self.cache.as_ref());
            let (mark, in_graph) = (&mut self.mark, &self.in_graph);
            let mut next = Vec::new();
            for &node in &frontier {
                for &reference in references_of(nodes, cache, node).unwrap_or_default() {
                    if mark[reference as usize] != epoch && !in_graph[reference as usize] {
                        mark[reference as usize] = epoch;
                        next.push(reference);
                    }
                }
            }
            all.append(&mut frontier);
            frontier = next;
        }
        if paths.is_none() {
            self.load_paths(&all)?;
        }
        self.in_graph.resize(self.nodes.len(), false);
        for &node in &all {
            self.in_graph[node as usize] = true;
        }
        Ok(())
    }

    fn next_epoch(&mut self) -> u32 {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.mark.iter_mut().for_each(|m| *m = 0);
            self.epoch = 1;
        }
        self.epoch
    }

    /// The closure of `roots` (roots included), each node with the node it
    /// was first reached from; roots map to themselves.
    pub fn closure(&mut self, roots: &[NodeId]) -> Result<Vec<(NodeId, NodeId)>, DbError> {
        // Reads what no walk read yet (nothing, when resolve_closures read
        // the graph below every unit's roots).
        self.load_graph(roots)?;
        Ok(self.closure_in_memory(roots))
    }

    /// [`NixDb::closure`] of roots whose graph [`NixDb::load_graph`] read:
    /// nothing to read, a plain breadth-first walk (the same order as the
    /// level-by-level one: a queue is a level after another).
    fn closure_in_memory(&mut self, roots: &[NodeId]) -> Vec<(NodeId, NodeId)> {
        let epoch = self.next_epoch();
        self.mark.resize(self.mark.len().max(self.nodes.len()), 0);
        // Every node from the closure cache: its references are in rows
        // already, and copying them (a daemon-reload whose other closures
        // come from summaries walks only a few) would cost more than the walks.
        let all_cached = self
            .cache
            .as_ref()
            .is_some_and(|cache| cache.len() == self.nodes.len());
        if !all_cached
            && self
                .adjacency
                .as_ref()
                .is_none_or(|a| a.starts.len() != self.nodes.len() + 1)
        {
            self.adjacency = Some(Adjacency::of(self));
        }
        let (nodes, cache, adjacency, mark) = (
            &self.nodes,
            self.cache.as_ref(),
            &self.adjacency,
            &mut self.mark,
        );
        let references_of = |node: NodeId| -> &[NodeId] {
            match adjacency {
                Some(adjacency) if !all_cached => adjacency.of_node(node),
                _ => references_of(nodes, cache, node).unwrap_or_default(),
            }
        };
        let mut reached: Vec<(NodeId, NodeId)> = Vec::with_capacity(1024);
        for &root in roots {
            if mark[root as usize] != epoch {
                mark[root as usize] = epoch;
                reached.push((root, root));
            }
        }
        let mut next = 0;
        while next < reached.len() {
            let node = reached[next].0;
            next += 1;
            for &reference in references_of(node) {
                if mark[reference as usize] != epoch {
                    mark[reference as usize] = epoch;
                    reached.push((reference, node));
                }
            }
        }
        // Part of this run's graph, for the cache it leaves (a cached path
        // is not walked: see `walk`).
        self.in_graph.resize(self.nodes.len(), false);
        for &(node, _) in &reached {
            self.in_graph[node as usize] = true;
        }
        reached
    }

    /// Reads the graph below `roots` (store paths; those that are not valid
    /// are left for [`NixDb::node_of`] to report), adding to what was read.
    pub fn read_ahead(&mut self, roots: &[String]) -> Result<(), DbError> {
        let nodes = self.look_up_roots(roots)?;
        self.load_graph(&nodes)
    }

    /// Looks up `roots` (store paths) in the database, without reading the
    /// graph below them: the nodes of those that are valid.
    pub fn look_up_roots(&mut self, roots: &[String]) -> Result<Vec<NodeId>, DbError> {
        self.look_up_all(roots.iter().map(String::as_str))?;
        let mut nodes = Vec::with_capacity(roots.len());
        for root in roots {
            if let Some(node) = self.node_of(root)? {
                nodes.push(node);
            }
        }
        Ok(nodes)
    }

    /// Marks `node` visited in this traversal; false when it already was.
    fn visit(&mut self, node: NodeId, epoch: u32) -> bool {
        let index = node as usize;
        if self.mark.len() <= index {
            self.mark.resize(self.nodes.len().max(index + 1), 0);
        }
        if self.mark[index] == epoch {
            return false;
        }
        self.mark[index] = epoch;
        true
    }

    /// Ranks every node with a known path by path, so that closures sort as
    /// integers: `rank[node]`; nodes without a path rank last.
    pub fn path_ranks(&self) -> Vec<u32> {
        // Nodes taken from the closure cache come in path order (it is
        // written sorted, and that was checked when it was read); when
        // nothing else was read, that is the order.
        let count = self.nodes.len() as NodeId;
        if self.cache_sorted
            && self
                .cache
                .as_ref()
                .is_some_and(|c| c.len() == self.nodes.len())
        {
            return (0..count).collect();
        }
        // All paths share the store directory, so the first eight bytes after
        // the longest common prefix of two paths decide almost every
        // comparison: sort by them as an integer, and by the whole path only
        // on a tie.
        let prefix = (0..count)
            .find_map(|n| self.known_path(n))
            .and_then(|p| p.rfind('/').map(|i| i + 1))
            .unwrap_or(0);
        let key = |node: NodeId| -> u64 {
            let bytes = self.known_path(node).unwrap_or("").as_bytes();
            let mut word = [0u8; 8];
            for (slot, &b) in word.iter_mut().zip(bytes.iter().skip(prefix)) {
                *slot = b;
            }
            u64::from_be_bytes(word)
        };
        let mut order: Vec<(u64, NodeId)> = (0..self.nodes.len() as NodeId)
            .map(|n| (key(n), n))
            .collect();
        order.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| self.known_path(a.1).cmp(&self.known_path(b.1)))
        });
        let mut rank = vec![0u32; self.nodes.len()];
        for (position, (_, node)) in order.into_iter().enumerate() {
            rank[node as usize] = position as u32;
        }
        rank
    }

    fn error(&self, message: String) -> DbError {
        DbError {
            path: self.path.clone(),
            message,
        }
    }
}

/// "A read error is retried once" (a writer's commit can briefly lock a
/// database that is not in WAL mode).
fn retry_once<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    f().or_else(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        f()
    })
}

fn check_schema_version(root: &Root, schema: &Utf8Path) -> Result<(), DbError> {
    let error = |message: String| DbError {
        path: schema.to_owned(),
        message,
    };
    let text = root
        .real(schema)
        .and_then(std::fs::read_to_string)
        .map_err(|e| error(format!("cannot read the schema version: {e}")))?;
    let version: u32 = text
        .trim()
        .parse()
        .map_err(|_| error(format!("schema version {:?} is not a number", text.trim())))?;
    if !SUPPORTED_SCHEMAS.contains(&version) {
        return Err(error(format!(
            "schema version {version} is not supported (supported: {}–{})",
            SUPPORTED_SCHEMAS.start(),
            SUPPORTED_SCHEMAS.end()
        )));
    }
    Ok(())
}

fn uri(real: &Utf8Path, parameters: &str) -> String {
    // Percent-encode what the URI syntax reserves; paths are otherwise
    // taken literally.
    let mut encoded = String::with_capacity(real.as_str().len());
    for b in real.as_str().bytes() {
        match b {
            b'%' | b'?' | b'#' => encoded.push_str(&format!("%{b:02X}")),
            _ => encoded.push(b as char),
        }
    }
    format!("file:{encoded}?{parameters}")
}

fn open_immutable(real: &Utf8Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(uri(real, "immutable=1"), flags)
}

fn open_read_only(real: &Utf8Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri(real, "mode=ro"), flags)?;
    conn.busy_timeout(std::time::Duration::from_millis(500))?;
    // Opening is lazy: make SQLite read the header and WAL index now, so a
    // failure here falls back instead of failing a later query.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    Ok(conn)
}

fn check_tables(conn: &Connection, path: &Utf8Path) -> Result<(), DbError> {
    for (table, query) in [
        ("ValidPaths", "SELECT id, path FROM ValidPaths LIMIT 0"),
        ("Refs", "SELECT referrer, reference FROM Refs LIMIT 0"),
    ] {
        conn.prepare(query)
            .and_then(|mut s| s.query([]).map(|_| ()))
            .map_err(|e| DbError {
                path: path.to_owned(),
                message: format!("table {table} is missing or unreadable: {e}"),
            })?;
    }
    Ok(())
}

/// The store paths [`NixDb::cache_to_save`] chose, as the cache's tables.
pub struct CacheTables<'a> {
    db: &'a NixDb,
    nodes: Vec<NodeId>,
    /// Node → its index in `nodes`.
    position: Vec<u32>,
    symlinks: Vec<bool>,
}

impl CacheTables<'_> {
    fn node(&self, i: usize) -> &Node {
        &self.db.nodes[self.nodes[i] as usize]
    }
}

impl Tables for CacheTables<'_> {
    fn len(&self) -> usize {
        self.nodes.len()
    }
    fn db_id(&self, i: usize) -> i64 {
        self.node(i).db_id
    }
    fn registration_time(&self, i: usize) -> i64 {
        self.node(i).registration_time.unwrap_or_default()
    }
    fn symlink(&self, i: usize) -> bool {
        self.symlinks[i]
    }
    fn path(&self, i: usize) -> &str {
        self.db.known_path(self.nodes[i]).unwrap_or_default()
    }
    fn references(&self, i: usize, out: &mut Vec<u32>) {
        let references = self.db.node_references(self.nodes[i]).unwrap_or_default();
        out.extend(references.iter().map(|&m| self.position[m as usize]));
    }
}

/// The reference graph in compressed rows: the references of node `n` are
/// `references[starts[n]..starts[n + 1]]`.
struct Adjacency {
    starts: Vec<u32>,
    references: Vec<NodeId>,
}

impl Adjacency {
    fn of(db: &NixDb) -> Adjacency {
        let count = db.nodes.len();
        let mut starts = Vec::with_capacity(count + 1);
        let mut references = Vec::new();
        starts.push(0);
        for node in 0..count as NodeId {
            references.extend_from_slice(db.node_references(node).unwrap_or_default());
            starts.push(references.len() as u32);
        }
        Adjacency { starts, references }
    }

    fn of_node(&self, node: NodeId) -> &[NodeId] {
        let node = node as usize;
        &self.references[self.starts[node] as usize..self.starts[node + 1] as usize]
    }
}

/// Reads the path and registration time of each batch of ids received, on
/// its own connection, until the sender is gone.
fn read_paths(
    conn: &Connection,
    batches: std::sync::mpsc::Receiver<Vec<i64>>,
) -> rusqlite::Result<Vec<PathRow>> {
    let mut rows = Vec::new();
    for ids in batches {
        let ids: Array = Rc::new(ids.into_iter().map(Value::Integer).collect());
        query_paths(conn, &ids, &mut rows)?;
    }
    Ok(rows)
}

/// Appends the id, path and registration time of each of `ids` to `rows`.
fn query_paths(conn: &Connection, ids: &Array, rows: &mut Vec<PathRow>) -> rusqlite::Result<()> {
    let mut statement = conn.prepare_cached(
        "SELECT v.id, v.path, v.registrationTime FROM rarray(?1) AS a \
         CROSS JOIN ValidPaths AS v ON v.id = a.value",
    )?;
    let mut query = statement.query([ids])?;
    while let Some(row) = query.next()? {
        rows.push((
            row.get::<_, i64>(0)?,
            Arc::<str>::from(row.get_ref(1)?.as_str()?),
            row.get::<_, Option<i64>>(2)?,
        ));
    }
    Ok(())
}
