//! A run that finds the scratch state of the runs before it (the closure
//! cache, its closures' summaries and the views' records in `/run`, as
//! every `daemon-reload` does)
//! writes exactly what a run without it writes (the first run after boot),
//! whatever happened in between to the Nix database, the store and the
//! units. Random sequences of real Nix operations and edits; after every
//! step both runs are compared byte for byte.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use support::{TestRoot, VIEW_RECORDS, store_path};

/// The generator's scratch directory under the test root (the closure
/// cache, its summaries and the views' records, in the shipped
/// configuration).
const SCRATCH: &str = "/run/nix-confinement-generator";
const UNITS: usize = 4;
const SEEDS: u64 = 10;
const STEPS: usize = 30;

/// A small deterministic random source (xorshift), so that a failing seed
/// can be run again.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, list: &'a [T]) -> Option<&'a T> {
        (!list.is_empty()).then(|| &list[self.below(list.len())])
    }
}

/// What the database holds, as far as the test knows: each valid path with
/// its references (all older valid paths).
#[derive(Clone, Default)]
struct Valid {
    paths: BTreeMap<String, Vec<String>>,
}

impl Valid {
    fn referrers_of(&self, path: &str) -> usize {
        self.paths
            .iter()
            .filter(|(p, refs)| p.as_str() != path && refs.iter().any(|r| r == path))
            .count()
    }
}

struct Scenario {
    root: TestRoot,
    random: Random,
    valid: Valid,
    /// Every store path ever named (valid or not), so that units and
    /// packages can also name paths that are gone.
    named: Vec<String>,
    /// Copies of the database file, with what it held then.
    backups: Vec<(PathBuf, Valid)>,
    /// A copy of the closure summaries of an earlier run.
    old_summaries: Option<Vec<u8>>,
    next_path: u64,
}

impl Scenario {
    fn new(seed: u64) -> Scenario {
        let root = TestRoot::new(&format!("differential-{seed}"));
        std::fs::create_dir_all(root.path("/etc/hostdir-a")).unwrap();
        std::fs::create_dir_all(root.path("/etc/hostdir-b")).unwrap();
        let mut scenario = Scenario {
            root,
            random: Random(0x9e37_79b9_7f4a_7c15 ^ (seed + 1).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            valid: Valid::default(),
            named: Vec::new(),
            backups: Vec::new(),
            old_summaries: None,
            next_path: seed * 1_000_000,
        };
        for _ in 0..6 {
            scenario.register_new();
        }
        for unit in 0..UNITS {
            scenario.edit_unit(unit);
        }
        scenario
    }

    fn new_path(&mut self, name: &str) -> String {
        self.next_path += 1;
        let path = store_path(self.next_path, name);
        self.named.push(path.clone());
        path
    }

    /// Some valid paths, each with probability `percent`.
    fn some_valid(&mut self, percent: u64) -> Vec<String> {
        let paths: Vec<String> = self.valid.paths.keys().cloned().collect();
        paths
            .into_iter()
            .filter(|_| self.random.chance(percent))
            .collect()
    }

    fn load(&mut self, path: &str, references: &[String]) {
        let references: Vec<&str> = references.iter().map(String::as_str).collect();
        self.root.register(&[(path, &references)]);
    }

    /// A new path referencing some valid ones; now and then a symlink on
    /// disk (to another store path or to a host directory).
    fn register_new(&mut self) -> String {
        let references = self.some_valid(30);
        let symlink = self.random.chance(20);
        let path = self.new_path(if symlink { "link" } else { "pkg" });
        if symlink {
            let target = self.symlink_target();
            self.root.symlink(&target, &path);
        }
        self.load(&path, &references);
        self.valid.paths.insert(path.clone(), references);
        path
    }

    fn symlink_target(&mut self) -> String {
        let valid: Vec<String> = self.valid.paths.keys().cloned().collect();
        match self.random.below(3) {
            0 => "/etc/hostdir-a".to_owned(),
            1 => "/etc/hostdir-b".to_owned(),
            _ => self
                .random
                .pick(&valid)
                .cloned()
                .unwrap_or_else(|| "/etc/hostdir-a".to_owned()),
        }
    }

    /// `nix-store --load-db` of a valid path with other references: Nix
    /// keeps its id and adds the new rows to `Refs`.
    fn reregister(&mut self) -> Option<String> {
        let paths: Vec<String> = self.valid.paths.keys().cloned().collect();
        let path = self.random.pick(&paths)?.clone();
        let added: Vec<String> = paths
            .into_iter()
            .filter(|p| *p != path && self.random.chance(40))
            .collect();
        self.load(&path, &added);
        let references = self.valid.paths.get_mut(&path).unwrap();
        for reference in added {
            if !references.contains(&reference) {
                references.push(reference);
            }
        }
        Some(path)
    }

    /// `nix-store --delete` of a path nothing references.
    fn delete(&mut self) -> Option<String> {
        let deletable: Vec<String> = self
            .valid
            .paths
            .keys()
            .filter(|p| self.valid.referrers_of(p) == 0)
            .cloned()
            .collect();
        let path = self.random.pick(&deletable)?.clone();
        self.root.delete(&[&path]);
        self.valid.paths.remove(&path);
        Some(path)
    }

    /// Deleted, then registered again (a new id) with other references.
    fn delete_and_register_again(&mut self) -> Option<String> {
        let path = self.delete()?;
        let references: Vec<String> = self
            .some_valid(30)
            .into_iter()
            .filter(|p| *p != path)
            .collect();
        let on_disk = self.root.path(&path);
        if std::fs::symlink_metadata(&on_disk).is_err() {
            std::fs::create_dir_all(&on_disk).unwrap();
        }
        self.load(&path, &references);
        self.valid.paths.insert(path.clone(), references);
        Some(path)
    }

    fn database(&self) -> PathBuf {
        self.root.path("/nix/var/nix/db/db.sqlite")
    }

    fn back_up(&mut self) {
        let copy = self
            .root
            .path(&format!("/backup-{}.sqlite", self.backups.len()));
        std::fs::copy(self.database(), &copy).unwrap();
        self.backups.push((copy, self.valid.clone()));
    }

    /// `cp backup db.sqlite`: the same file (device and inode), older rows.
    fn restore(&mut self) -> Option<()> {
        let (copy, valid) = self.random.pick(&self.backups)?.clone();
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.database().display()));
        }
        std::fs::copy(&copy, self.database()).unwrap();
        self.valid = valid;
        Some(())
    }

    /// A store path on disk made a symlink, pointed elsewhere, removed, or
    /// made a directory again; the database is not told.
    fn change_on_disk(&mut self) -> Option<String> {
        let path = self.random.pick(&self.named)?.clone();
        let on_disk = self.root.path(&path);
        let is_link = std::fs::symlink_metadata(&on_disk).is_ok_and(|m| m.is_symlink());
        Some(match self.random.below(3) {
            0 => {
                let target = self.symlink_target();
                if target != path {
                    remove(&on_disk);
                    self.root.symlink(&target, &path);
                }
                format!("{path} made a symlink to {target}")
            }
            1 => {
                remove(&on_disk);
                format!("{path} removed")
            }
            _ => {
                if is_link {
                    remove(&on_disk);
                }
                std::fs::create_dir_all(&on_disk).unwrap();
                format!("{path} made a directory")
            }
        })
    }

    /// A unit rewritten: its program, packages in a drop-in, the whole unit
    /// scanned or not.
    fn edit_unit(&mut self, unit: usize) {
        let program = self.random.pick(&self.named).cloned().unwrap_or_default();
        let environment = self.random.pick(&self.named).cloned().unwrap_or_default();
        let full_unit = self.random.chance(30);
        self.root.unit(
            &format!("u{unit}.service"),
            &format!(
                "[Service]\nExecStart={program}/bin/run\nEnvironment=DATA={environment}\n\
                 X-ConfinementEnable=yes\nX-ConfinementFullUnit={}\n",
                if full_unit { "yes" } else { "no" }
            ),
        );
        let dropin = format!("/etc/systemd/system/u{unit}.service.d/packages.conf");
        if self.random.chance(40) {
            let package = self.random.pick(&self.named).cloned().unwrap_or_default();
            self.root.write(
                &dropin,
                &format!("[Service]\nX-ConfinementPackages={package}\n"),
            );
        } else {
            let _ = std::fs::remove_file(self.root.path(&dropin));
        }
    }

    fn step(&mut self) -> String {
        match self.random.below(10) {
            0 | 1 => format!("register {}", self.register_new()),
            2 => format!("re-register {:?}", self.reregister()),
            3 => format!("delete {:?}", self.delete()),
            4 => format!(
                "delete and register again {:?}",
                self.delete_and_register_again()
            ),
            5 => {
                if self.backups.is_empty() || self.random.chance(50) {
                    self.back_up();
                    "back up the database".to_owned()
                } else {
                    format!("restore the database from a copy: {:?}", self.restore())
                }
            }
            6 => format!("on disk: {:?}", self.change_on_disk()),
            7 | 8 => {
                let unit = self.random.below(UNITS);
                self.edit_unit(unit);
                format!("edit u{unit}.service")
            }
            _ => match self.random.below(3) {
                0 => self.remove_a_view_record(),
                1 => self.keep_or_put_back_summaries(),
                _ => "nothing".to_owned(),
            },
        }
    }

    /// The closure summaries copied, or an earlier copy put back: what a
    /// run killed after writing the closure cache and before writing the
    /// summaries leaves (summaries of another cache).
    fn keep_or_put_back_summaries(&mut self) -> String {
        let file = self.root.path(&format!("{SCRATCH}/closures.summaries"));
        match self.old_summaries.take() {
            Some(old) if self.random.chance(60) => {
                std::fs::write(&file, old).unwrap();
                "summaries of an earlier run put back".to_owned()
            }
            _ => {
                self.old_summaries = std::fs::read(&file).ok();
                "summaries copied".to_owned()
            }
        }
    }

    /// One closure view's record removed (a run then finds a summary of a
    /// closure whose record is gone, and must record it again).
    fn remove_a_view_record(&mut self) -> String {
        let records: Vec<PathBuf> = std::fs::read_dir(self.root.path(VIEW_RECORDS))
            .map(|dir| dir.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        match self.random.pick(&records) {
            Some(record) => {
                std::fs::remove_file(record).unwrap();
                format!("view record {} removed", record.display())
            }
            None => "no view record to remove".to_owned(),
        }
    }

    /// A run that keeps the scratch state, as a daemon-reload; whether it
    /// took closures from the closure cache.
    fn run_kept(&self, out: &Path) -> (Written, Kept) {
        let (written, log) = written(&self.root, out);
        let used = Kept {
            cache: log.contains(&format!("closure cache {SCRATCH}/closures: read ")),
            summaries: log.contains(&format!("{SCRATCH}/closures.summaries: the closures of ")),
        };
        (written, used)
    }

    /// A run without scratch state, as the first run after boot: the
    /// directory is put aside and back.
    fn run_fresh(&self, out: &Path) -> Written {
        let scratch = self.root.path(SCRATCH);
        let aside = self.root.path("/run/scratch-aside");
        let had = scratch.exists();
        if had {
            std::fs::rename(&scratch, &aside).unwrap();
        }
        let (result, _) = written(&self.root, out);
        let _ = std::fs::remove_dir_all(&scratch);
        if had {
            std::fs::rename(&aside, &scratch).unwrap();
        }
        result
    }
}

fn remove(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).unwrap(),
        Ok(_) => std::fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

/// What a run with the scratch state of the runs before took from it: the
/// closure cache, the summaries of the closures.
struct Kept {
    cache: bool,
    summaries: bool,
}

/// What a run wrote: its exit status and every file of the output
/// directory with its bytes.
#[derive(Debug, PartialEq, Eq)]
struct Written {
    status: i32,
    files: BTreeMap<String, String>,
}

fn written(root: &TestRoot, out: &Path) -> (Written, String) {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap();
    let run = root.run_debug(&[out.to_str().unwrap()]);
    assert!(
        run.stderr.lines().all(|l| !l.contains("panicked")),
        "{}",
        run.stderr
    );
    let mut files = BTreeMap::new();
    collect(out, out, &mut files);
    let written = Written {
        status: run.status,
        files,
    };
    (written, run.stderr)
}

fn collect(base: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.strip_prefix(base).unwrap().display().to_string();
        if path.is_dir() {
            files.insert(format!("{name}/"), String::new());
            collect(base, &path, files);
        } else {
            files.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
}

fn differences(kept: &Written, fresh: &Written) -> String {
    let mut report = format!(
        "exit status {} (kept) / {} (fresh)\n",
        kept.status, fresh.status
    );
    for (name, text) in &kept.files {
        match fresh.files.get(name) {
            None => report.push_str(&format!("only in the kept run: {name}\n")),
            Some(other) if other != text => report.push_str(&format!(
                "{name} differs:\n--- kept\n{text}\n--- fresh\n{other}\n"
            )),
            Some(_) => {}
        }
    }
    for name in fresh.files.keys().filter(|n| !kept.files.contains_key(*n)) {
        report.push_str(&format!("only in the fresh run: {name}\n"));
    }
    report
}

fn run_seed(seed: u64) {
    let mut scenario = Scenario::new(seed);
    let kept_out = scenario.root.path("/../out-kept");
    let fresh_out = scenario.root.path("/../out-fresh");
    let mut history = vec!["set up".to_owned()];
    // The first run makes the scratch state the others find.
    scenario.run_kept(&kept_out);
    let (mut cache_used, mut summaries_used) = (0, 0);
    for step in 0..STEPS {
        let done = scenario.step();
        history.push(done);
        let (kept, used) = scenario.run_kept(&kept_out);
        cache_used += usize::from(used.cache);
        summaries_used += usize::from(used.summaries);
        let fresh = scenario.run_fresh(&fresh_out);
        assert!(
            kept == fresh,
            "seed {seed}, step {step}: the run with the scratch state of the runs before wrote \
             something else than a run without it.\nSteps:\n  {}\n{}",
            history.join("\n  "),
            differences(&kept, &fresh)
        );
    }
    // Steps that change neither the database nor the store (unit edits,
    // nothing, a back-up) leave the cache usable: the comparison covered
    // runs that used it.
    assert!(
        cache_used >= 3,
        "seed {seed}: only {cache_used} of {STEPS} runs used the closure cache:\n  {}",
        history.join("\n  ")
    );
    assert!(
        summaries_used >= 2,
        "seed {seed}: only {summaries_used} of {STEPS} runs took closures from the summaries:\n  {}",
        history.join("\n  ")
    );
}

#[test]
fn runs_with_kept_scratch_state_write_what_fresh_runs_write() {
    // Seeds on two threads (each step runs real Nix and the generator
    // three times).
    let seeds: Vec<u64> = (0..SEEDS).collect();
    let (left, right) = seeds.split_at(seeds.len() / 2);
    std::thread::scope(|scope| {
        let a = scope.spawn(|| left.iter().for_each(|&s| run_seed(s)));
        let b = scope.spawn(|| right.iter().for_each(|&s| run_seed(s)));
        let (a, b) = (a.join(), b.join());
        if let Err(panic) = a.and(b) {
            std::panic::resume_unwind(panic);
        }
    });
}
