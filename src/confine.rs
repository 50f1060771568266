//! What is written for a planned unit: its closure (from [`Closures`]), its
//! closure's view (from [`Views`]) and its settings rendered into the
//! drop-in text ([`crate::dropin`]), or the blocking drop-in and why.

use crate::closure::{Closures, Reached};
use crate::config::Config;
use crate::diag::Diagnostic;
use crate::dropin::{self, Binding, ClosurePath, Confinement};
use crate::plan::UnitPlan;
use crate::store::summaries::Summary;
use crate::view::closure_list::Digest;
use crate::view::record::{NameHashes, RecordError, Views};
use std::collections::BTreeSet;

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

impl Outcome {
    pub fn text(&self) -> &str {
        match self {
            Outcome::Confined { text, .. } | Outcome::Blocked { text } => text,
            Outcome::Empty => "",
        }
    }
}

/// How a run confines: its closures, its views and the hashes of the store
/// path names their digests are made of.
pub struct Confiner<'r> {
    pub config: &'r Config,
    pub closures: Closures,
    pub views: Views,
    name_hashes: NameHashes,
}

impl<'r> Confiner<'r> {
    pub fn new(config: &'r Config, closures: Closures, views: Views) -> Confiner<'r> {
        Confiner {
            config,
            closures,
            views,
            name_hashes: NameHashes::default(),
        }
    }

    /// What to write for `unit`. Errors found on the way (unknown roots,
    /// database faults, store paths that cannot be bound) are added to the
    /// unit's errors, and it is blocked; a closure whose view cannot be
    /// recorded is bound path by path, with a warning. With `explain`, each
    /// closure path also carries the reference chain that reached it.
    pub fn confine(&mut self, unit: &mut UnitPlan, explain: bool) -> Outcome {
        if unit.request.is_none() {
            return Outcome::Empty;
        }
        if !explain
            && !unit.is_blocked()
            && let Some(outcome) = self.confine_summarised(unit)
        {
            return outcome;
        }
        let nodes = if unit.is_blocked() {
            Err(Vec::new())
        } else {
            self.closures.order(unit)
        };
        let nodes = match nodes {
            Ok(nodes) => nodes,
            Err(errors) => {
                unit.errors.extend(errors);
                return Outcome::Blocked {
                    text: blocked_text(unit),
                };
            }
        };
        let closure = self.closures.closure(nodes);
        // The closure's view, recorded for its unit to mount.
        let numbered: Vec<(u32, &str)> = closure
            .nodes
            .iter()
            .zip(&closure.paths)
            .map(|(&node, path)| (node, path.path))
            .collect();
        let recorded = self.views.digest(
            self.config.store_dir.as_str(),
            &numbered,
            &mut self.name_hashes,
        );
        let view = match &recorded {
            Ok(digest) => digest.map(|d| d.to_string()),
            Err(_) => None,
        };
        let paths = closure.paths.len();
        let text = self.render(unit, &closure.paths, paths, view.as_deref());
        let reached = if explain {
            self.closures.explain(unit, &closure)
        } else {
            Vec::new()
        };
        if let Some(digest) = &view {
            // What a symlink store path resolves to is read from the host's
            // files: the next run resolves each again (in path order, as
            // the closure is).
            let symlinks = closure
                .paths
                .iter()
                .filter(|p| p.symlink_target.is_some())
                .map(|p| p.path.to_owned())
                .collect();
            let summary = Summary {
                digest: digest.clone(),
                paths,
                symlinks,
            };
            self.closures.keep_summary(unit, summary);
        }
        if let Err(error) = recorded {
            unit.warnings.push(view_not_recorded(unit, &error));
        }
        Outcome::Confined {
            text,
            paths,
            closure: reached,
            view,
        }
    }
}

/// The warning of a unit whose closure's view could not be recorded.
fn view_not_recorded(unit: &UnitPlan, error: &RecordError) -> Diagnostic {
    Diagnostic::warning(
        Some(&unit.name),
        None,
        format!(
            "its closure's view cannot be recorded ({error}): each store path is bound instead"
        ),
    )
}

impl Confiner<'_> {
    /// What to write for `unit`, whose closure's view could not be
    /// recorded (`error`, found after [`Confiner::confine`] named the
    /// view): each store path bound on its own, with a warning.
    pub fn confine_path_by_path(&mut self, unit: &mut UnitPlan, error: &RecordError) -> Outcome {
        let views = std::mem::replace(&mut self.views, Views::Off(error.to_string()));
        let outcome = self.confine(unit, false);
        self.views = views;
        unit.warnings.push(view_not_recorded(unit, error));
        outcome
    }

    /// The unit confined from the last run's summary of its closure, when
    /// there is one and its view's record is still in place: nothing of the
    /// closure is read.
    fn confine_summarised(&mut self, unit: &UnitPlan) -> Option<Outcome> {
        let summary = self.closures.summary(unit)?.clone();
        if !self.views.reuse(Digest::parse(&summary.digest)?) {
            return None;
        }
        let text = self.render(unit, &[], summary.paths, Some(&summary.digest));
        let outcome = Outcome::Confined {
            text,
            paths: summary.paths,
            closure: Vec::new(),
            view: Some(summary.digest.clone()),
        };
        self.closures.keep_summary(unit, summary);
        Some(outcome)
    }

    /// The unit's drop-in: bound through the view `view`, else each path
    /// of `closure` (of `paths` store paths) on its own.
    fn render(
        &self,
        unit: &UnitPlan,
        closure: &[ClosurePath<'_>],
        paths: usize,
        view: Option<&str>,
    ) -> String {
        let extra_binds = extra_binds_of(unit);
        dropin::render_confinement(&Confinement {
            unit: &unit.merged,
            store_dir: self.config.store_dir.as_str(),
            mode: unit.mode,
            bin_sh: unit.roots.bin_sh.as_deref(),
            closure,
            paths,
            extra_binds: &extra_binds,
            binding: view.map_or(Binding::PerPath, Binding::View),
            host: &unit.roots.host,
        })
    }
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

/// The drop-in of a blocked unit, with its errors as the reasons.
fn blocked_text(unit: &UnitPlan) -> String {
    let sources: Vec<&camino::Utf8Path> = unit.merged.sources.iter().map(|s| s.as_path()).collect();
    let reasons: Vec<String> = unit.errors.iter().map(ToString::to_string).collect();
    dropin::render_blocked(&unit.name, &sources, &reasons)
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
