//! The local Nix database (`<state dir>/db/db.sqlite`): which store paths
//! are valid and what each one references, read without creating or changing
//! any file (the generator may run on a read-only root, and must never leave
//! `-wal`/`-shm` files behind in a store it does not own).

use crate::rootfs::Root;
use camino::{Utf8Path, Utf8PathBuf};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::collections::HashMap;
use std::fmt;

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

/// An open database with the references read so far, shared by every unit of
/// a run so that common subgraphs are read once.
pub struct NixDb {
    conn: Connection,
    pub path: Utf8PathBuf,
    pub mode: OpenMode,
    /// path → id, for roots.
    ids: HashMap<String, i64>,
    /// id → referenced ids (self references removed).
    references: HashMap<i64, Box<[i64]>>,
    /// id → path.
    paths: HashMap<i64, String>,
}

impl fmt::Debug for NixDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NixDb")
            .field("path", &self.path)
            .field("mode", &self.mode)
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
        let real = root.join(&logical);
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
        check_tables(&conn).map_err(error)?;
        Ok(NixDb {
            conn,
            path: logical,
            mode,
            ids: HashMap::new(),
            references: HashMap::new(),
            paths: HashMap::new(),
        })
    }

    /// The database id of a store path, or `None` when it is not valid.
    pub fn id_of(&mut self, path: &str) -> Result<Option<i64>, DbError> {
        if let Some(&id) = self.ids.get(path) {
            return Ok(Some(id));
        }
        let id = retry_once(|| {
            self.conn
                .prepare_cached("SELECT id FROM ValidPaths WHERE path = ?1")?
                .query_row([path], |row| row.get::<_, i64>(0))
                .optional()
        })
        .map_err(|e| self.error(format!("looking up {path}: {e}")))?;
        if let Some(id) = id {
            self.ids.insert(path.to_owned(), id);
            self.paths.entry(id).or_insert_with(|| path.to_owned());
        }
        Ok(id)
    }

    /// The paths `id` references (without itself).
    pub fn references(&mut self, id: i64) -> Result<&[i64], DbError> {
        if !self.references.contains_key(&id) {
            let refs = retry_once(|| {
                let mut statement = self
                    .conn
                    .prepare_cached("SELECT reference FROM Refs WHERE referrer = ?1")?;
                let rows = statement.query_map([id], |row| row.get::<_, i64>(0))?;
                rows.filter(|r| r.as_ref().map_or(true, |&r| r != id))
                    .collect::<Result<Vec<i64>, _>>()
            })
            .map_err(|e| self.error(format!("reading references of path id {id}: {e}")))?;
            self.references.insert(id, refs.into_boxed_slice());
        }
        Ok(&self.references[&id])
    }

    /// The store path of `id`.
    pub fn path(&mut self, id: i64) -> Result<&str, DbError> {
        if !self.paths.contains_key(&id) {
            let path = retry_once(|| {
                self.conn
                    .prepare_cached("SELECT path FROM ValidPaths WHERE id = ?1")?
                    .query_row([id], |row| row.get::<_, String>(0))
            })
            .map_err(|e| self.error(format!("reading path id {id}: {e}")))?;
            self.paths.insert(id, path);
        }
        Ok(&self.paths[&id])
    }

    /// Ids in the closure of `roots` (the roots included), with for each the
    /// id it was first reached from (for `explain`); roots map to themselves.
    pub fn closure(&mut self, roots: &[i64]) -> Result<HashMap<i64, i64>, DbError> {
        let mut reached: HashMap<i64, i64> = HashMap::with_capacity(1024);
        let mut queue: std::collections::VecDeque<i64> = std::collections::VecDeque::new();
        for &root in roots {
            if reached.insert(root, root).is_none() {
                queue.push_back(root);
            }
        }
        while let Some(id) = queue.pop_front() {
            let refs = self.references(id)?.to_vec();
            for reference in refs {
                if let std::collections::hash_map::Entry::Vacant(slot) = reached.entry(reference) {
                    slot.insert(id);
                    queue.push_back(reference);
                }
            }
        }
        Ok(reached)
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
    let text = std::fs::read_to_string(root.join(schema))
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

fn check_tables(conn: &Connection) -> Result<(), String> {
    for (table, query) in [
        ("ValidPaths", "SELECT id, path FROM ValidPaths LIMIT 0"),
        ("Refs", "SELECT referrer, reference FROM Refs LIMIT 0"),
    ] {
        conn.prepare(query)
            .and_then(|mut s| s.query([]).map(|_| ()))
            .map_err(|e| format!("table {table} is missing or unreadable: {e}"))?;
    }
    Ok(())
}
