//! What a Store does after a transition for the execution's family, in the same transaction:
//! create the children that sub-jobs started, and settle the parent task of a child that
//! ended — and so on up and down, since a new child may start its own sub-jobs at once and a
//! settled parent may end and settle its own parent.
//!
//! The rules are in `subjob.rs`; this file only walks the family, through the [`Family`] a
//! Store gives it (its executions and definitions, within the transaction or under the lock of
//! the transition). The walk is bounded: nesting is at most
//! [`MAX_SUB_JOB_DEPTH`](crate::model::MAX_SUB_JOB_DEPTH) deep, and each step settles or
//! creates one execution.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Changes, ChildStart, ExecutionState};
use crate::backend::{ClaimedTask, LeaseState, NewExecution, SignalOutcome, StopOutcome};
use crate::model::{ExecutionId, StoredDefinition, TaskRef};
use crate::Result;

/// A Store's executions and definitions as one transition's transaction sees them.
pub trait Family {
    /// Version `version` of definition `id`.
    fn definition(&mut self, id: &str, version: u32) -> Result<Arc<StoredDefinition>>;
    /// Creates `execution` (its sub-jobs pinned as [`Store::create_execution`](crate::backend::Store::create_execution)
    /// does), without walking its family; returns its state and what its creation changed.
    fn create(&mut self, execution: NewExecution, now: DateTime<Utc>) -> Result<(ExecutionState, Changes)>;
    /// An execution's state, if it exists.
    fn load(&mut self, id: ExecutionId) -> Result<Option<ExecutionState>>;
    /// Persists `after`, the state `before` was changed into.
    fn save(&mut self, before: &ExecutionState, after: ExecutionState) -> Result<()>;
}

/// One step of a [`FamilyWalk`].
#[derive(Debug)]
pub enum FamilyStep {
    /// Create a child a sub-job started (of its definition version), then pass it to
    /// [`FamilyWalk::created`].
    Create(ChildStart),
    /// Settle the parent's task (first of the pair) with the child (second) that ended:
    /// load both and pass them to [`FamilyWalk::settle`].
    Settle(TaskRef, ExecutionId),
}

/// The walk over an execution's family after a transition, without I/O: a Store asks for the
/// [`next_step`](FamilyWalk::next_step) step, does it within the transition's transaction, and reports
/// back. [`settle_family`] is the walk for a Store whose transaction is synchronous.
#[derive(Debug, Default)]
pub struct FamilyWalk {
    steps: Vec<FamilyStep>,
}

impl FamilyWalk {
    /// The walk after a transition changed an execution into `state` (already saved;
    /// `was_finished`: it was finished before), with the changes `ch` (its `children` are
    /// taken). `None` when there is nothing to do — most transitions.
    pub fn after(state: &ExecutionState, was_finished: bool, ch: &mut Changes) -> Option<Self> {
        if ch.children.is_empty() && state.settles_parent(was_finished).is_none() {
            return None;
        }
        let mut walk = Self::default();
        walk.plan(state, was_finished, ch);
        Some(walk)
    }

    /// The next step, or `None` when the walk is over.
    pub fn next_step(&mut self) -> Option<FamilyStep> {
        self.steps.pop()
    }

    /// A [`FamilyStep::Create`] was done: `state` is the new child (saved) and `ch` its creation's
    /// changes (its `children` are taken).
    pub fn created(&mut self, state: &ExecutionState, ch: &mut Changes) {
        self.plan(state, false, ch);
    }

    /// Does a [`FamilyStep::Settle`] on the loaded `parent` (to save afterwards when this returns
    /// changes) with its `child`; `None` when the parent moved on (finished, its task
    /// cancelled, restarted or on another child): nothing to save.
    pub fn settle(
        &mut self,
        parent: &mut ExecutionState,
        task: &TaskRef,
        child: &ExecutionState,
        now: DateTime<Utc>,
    ) -> Result<Option<Changes>> {
        let was_finished = parent.is_finished();
        match parent.child_ended(task, child, now) {
            Ok(mut ch) => {
                self.plan(parent, was_finished, &mut ch);
                Ok(Some(ch))
            }
            Err(e) if e.is_conflict() || e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The steps that `state`'s latest changes `ch` call for.
    fn plan(&mut self, state: &ExecutionState, was_finished: bool, ch: &mut Changes) {
        self.steps.extend(ch.children.drain(..).map(FamilyStep::Create));
        if let Some(task) = state.settles_parent(was_finished) {
            self.steps.push(FamilyStep::Settle(task, state.summary().id));
        }
    }
}

/// After a transition on `state` (already saved; `was_finished`: it was finished before),
/// whose changes are `ch`: creates the children it started (emptying `ch.children`) and
/// settles the parent task of a child it ended, then does the same for each execution those
/// steps changed, adding every step's changes to `ch`. A parent that is gone or has moved on
/// is left as it is.
pub fn settle_family<F: Family>(
    family: &mut F,
    state: &ExecutionState,
    was_finished: bool,
    ch: &mut Changes,
    now: DateTime<Utc>,
) -> Result<()> {
    let Some(mut walk) = FamilyWalk::after(state, was_finished, ch) else {
        return Ok(());
    };
    while let Some(step) = walk.next_step() {
        match step {
            FamilyStep::Create(child) => {
                let definition = family.definition(&child.definition_id, child.version)?;
                let (created, mut more) = family.create(child.execution(&definition), now)?;
                walk.created(&created, &mut more);
                ch.extend(more);
            }
            FamilyStep::Settle(task, child_id) => {
                let Some(child) = family.load(child_id)? else { continue };
                let Some(mut parent) = family.load(task.execution_id)? else {
                    continue;
                };
                let before = parent.clone();
                if let Some(more) = walk.settle(&mut parent, &task, &child, now)? {
                    family.save(&before, parent)?;
                    ch.extend(more);
                }
            }
        }
    }
    Ok(())
}

/// What a transition returns, with the [`Changes`] it made inside (none for a heartbeat): a
/// Store adds to them what [`settle_family`] changed.
pub trait Transitioned {
    /// The changes inside.
    fn changes_mut(&mut self) -> Option<&mut Changes>;
}

impl Transitioned for Changes {
    fn changes_mut(&mut self) -> Option<&mut Changes> {
        Some(self)
    }
}

impl Transitioned for ClaimedTask {
    fn changes_mut(&mut self) -> Option<&mut Changes> {
        Some(&mut self.changes)
    }
}

impl Transitioned for StopOutcome {
    fn changes_mut(&mut self) -> Option<&mut Changes> {
        Some(&mut self.changes)
    }
}

impl Transitioned for SignalOutcome {
    fn changes_mut(&mut self) -> Option<&mut Changes> {
        Some(&mut self.changes)
    }
}

impl Transitioned for LeaseState {
    fn changes_mut(&mut self) -> Option<&mut Changes> {
        None
    }
}

impl<T: Transitioned> Transitioned for Vec<(usize, Result<T>)> {
    /// The changes of the first item that has some (a batch of outcomes of one execution).
    fn changes_mut(&mut self) -> Option<&mut Changes> {
        self.iter_mut()
            .find_map(|(_, r)| r.as_mut().ok().and_then(Transitioned::changes_mut))
    }
}
