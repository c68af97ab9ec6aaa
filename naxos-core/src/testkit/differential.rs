//! The differential test: the same random scenarios on a Store and on the in-memory store (the
//! state module itself), step by step, asserting identical results,
//! [`Changes`](crate::backend::Changes), events, attempt records and executions, and the trace
//! context each task reference carries. A backend's hand-written fast paths are held to the
//! state module this way; a backend that applies the state module passes it by construction.
//!
//! Every scenario runs on one execution of its own definition, at fixed whole-second times
//! (so no store rounds them), and ends with the execution stopped if it is not finished, so
//! the recovery scans of the next scenario find nothing of it.

use std::fmt::Debug;
use std::sync::Arc;

use proptest::test_runner::{TestCaseError, TestRunner};

use super::scenario::{
    apply_to_store, cases, child_definition, config, drain_step, epoch, resolve, scenario, trace_contexts, Call,
    Observed, Scenario,
};
use crate::backend::{ExecutionQuery, StopReason, Store};
use crate::memory::MemoryStore;
use crate::model::ExecutionId;
use crate::{Clock, ManualClock};

/// Operations per scenario, at most.
const MAX_OPS: usize = 24;

/// Runs the differential test on `store` (which reads its time from `clock`) with `rt`:
/// `NAXOS_PROPTEST_CASES` scenarios (default 32), panicking with the first (shrunk) scenario on
/// which the two stores disagree.
pub fn run(rt: &tokio::runtime::Runtime, store: Arc<dyn Store>, clock: ManualClock) {
    let mut runner = TestRunner::new(config(cases(32)));
    let result = runner.run(&scenario(MAX_OPS), |s| {
        rt.block_on(check(&*store, &clock, &s)).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("the store disagrees with the state module: {e}");
    }
}

/// Runs one scenario on `store` and on a fresh [`MemoryStore`], both reading the time from
/// `clock` (set to [`epoch`] first); the first difference is the error.
pub async fn check(store: &dyn Store, clock: &ManualClock, scenario: &Scenario) -> Result<(), String> {
    clock.set(epoch());
    let reference = MemoryStore::with_clock(Clock::Manual(clock.clone()));
    let def = scenario.definition();
    if scenario.has_sub_jobs() {
        let child = child_definition(&def.id);
        store.put_definition(child.clone()).await.map_err(|e| e.to_string())?;
        reference.put_definition(child).await.map_err(|e| e.to_string())?;
    }
    let put = store.put_definition(def.clone()).await.map_err(|e| e.to_string())?;
    reference.put_definition(def).await.map_err(|e| e.to_string())?;
    let new = scenario.execution(&put.definition);
    let id = new.id;
    let (a, b) = (
        reference.create_execution(new.clone()).await.map(|c| c.changes),
        store.create_execution(new).await.map(|c| c.changes),
    );
    same("create", &a.map_err(|e| e.to_string()), &b.map_err(|e| e.to_string()))?;
    same_execution(&reference, store, id, "create").await?;
    let mut step = 0;
    for op in &scenario.ops {
        let snapshot = reference.get_execution(id).await.map_err(|e| e.to_string())?;
        let Some(call) = resolve(op, &snapshot, clock) else {
            continue;
        };
        step += 1;
        both(&reference, store, id, &call, &format!("step {step} ({op:?})")).await?;
    }
    // Drive the execution to its end, so completions, fan-ins and the verdict are compared too.
    for _ in 0..4 * super::scenario::MAX_TASKS {
        let snapshot = reference.get_execution(id).await.map_err(|e| e.to_string())?;
        let Some(call) = drain_step(&snapshot, clock) else {
            break;
        };
        step += 1;
        both(&reference, store, id, &call, &format!("drain step {step}")).await?;
    }
    let end = store.get_execution(id).await.map_err(|e| e.to_string())?;
    if !end.status.is_terminal() {
        let call = Call::Stop(id, StopReason::Cancelled);
        both(&reference, store, id, &call, "final stop").await?;
    }
    // Children a stopped parent left running (the engine would stop them): stopped too, so
    // that the scans of the next scenario find nothing of this one.
    for child in children(&reference, id).await? {
        if !reference
            .get_execution(child)
            .await
            .map_err(|e| e.to_string())?
            .status
            .is_terminal()
        {
            let call = Call::Stop(child, StopReason::Cancelled);
            both(&reference, store, id, &call, "final stop of a child").await?;
        }
    }
    Ok(())
}

/// A scan's changes grouped by execution (in id order), each execution's in the order they
/// were made.
fn by_execution(observed: &mut Observed) {
    if let Observed::Changed(Ok(ch)) = observed {
        ch.ready.sort_by_key(|t| t.execution_id);
        ch.delayed.sort_by_key(|(t, _)| t.execution_id);
        ch.waiting.sort_by_key(|(t, _)| t.execution_id);
        ch.events.sort_by_key(|e| e.execution_id);
        ch.history.sort_by_key(|h| h.execution_id);
    }
}

/// The children of `parent`'s sub-jobs in `store`, found by their parent link.
async fn children(store: &dyn Store, parent: ExecutionId) -> Result<Vec<ExecutionId>, String> {
    let page = store
        .list_executions(&ExecutionQuery {
            limit: 1_000,
            ..ExecutionQuery::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(page
        .executions
        .iter()
        .filter(|e| e.parent.as_ref().is_some_and(|p| p.execution_id == parent))
        .map(|e| e.id)
        .collect())
}

/// Applies `call` to both stores and compares what they returned and what they hold after.
async fn both(
    reference: &MemoryStore,
    store: &dyn Store,
    id: ExecutionId,
    call: &Call,
    at: &str,
) -> Result<(), String> {
    let (mut a, mut b) = (apply_to_store(reference, call).await, apply_to_store(store, call).await);
    if matches!(call, Call::Recover(_) | Call::TakeStale(_) | Call::WakeDue) {
        // A scan visits the executions (a parent and its children) in the store's own order.
        by_execution(&mut a);
        by_execution(&mut b);
    }
    same(&format!("{at}: {call:?}"), &a, &b)?;
    same(
        &format!("{at}: the trace contexts of {call:?}"),
        &trace_contexts(&a),
        &trace_contexts(&b),
    )?;
    same_execution(reference, store, id, at).await
}

/// Compares the execution and its sub-jobs' children in both stores, then checks that each
/// store's listing by status finds it under its status, and that the reference (which holds
/// nothing else) counts it and its children once each.
async fn same_execution(reference: &MemoryStore, store: &dyn Store, id: ExecutionId, at: &str) -> Result<(), String> {
    let a = reference.get_execution(id).await.map_err(|e| e.to_string())?;
    let b = store.get_execution(id).await.map_err(|e| e.to_string())?;
    same(&format!("{at}: the execution after it"), &a, &b)?;
    let mut expected: std::collections::BTreeMap<crate::model::ExecutionStatus, u64> = [(a.status, 1)].into();
    for child in children(reference, id).await? {
        let a = reference.get_execution(child).await.map_err(|e| e.to_string())?;
        let b = store.get_execution(child).await.map_err(|e| e.to_string())?;
        same(&format!("{at}: the child {child} after it"), &a, &b)?;
        *expected.entry(a.status).or_default() += 1;
    }
    let query = ExecutionQuery {
        status: Some(a.status),
        definition_id: Some(a.definition_id.clone()),
        ..ExecutionQuery::default()
    };
    for (name, s) in [("state module", reference as &dyn Store), ("store", store)] {
        let listed = s.list_executions(&query).await.map_err(|e| e.to_string())?;
        let ids: Vec<ExecutionId> = listed.executions.iter().map(|e| e.id).collect();
        same(
            &format!("{at}: the {name}'s listing by status {}", a.status),
            &vec![id],
            &ids,
        )?;
    }
    let counts = reference.counts().await.map_err(|e| e.to_string())?;
    same(
        &format!("{at}: the state module's counts"),
        &expected.into_iter().collect(),
        &counts.executions,
    )
}

fn same<T: PartialEq + Debug>(what: &str, reference: &T, store: &T) -> Result<(), String> {
    if reference == store {
        return Ok(());
    }
    let (a, b) = (format!("{reference:#?}"), format!("{store:#?}"));
    Err(format!("{what}\n{}", diff(&a, &b)))
}

/// The lines of `a` and `b` that differ (a longest-common-subsequence diff), each with the two
/// lines before it: enough to see what disagrees without printing two whole executions.
fn diff(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    let mut context: Vec<&str> = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            context.push(a[i]);
            (i, j) = (i + 1, j + 1);
            continue;
        }
        for line in context.drain(..).rev().take(2).collect::<Vec<_>>().into_iter().rev() {
            out.push_str(&format!("    {line}\n"));
        }
        if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("  + {}   <- store\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("  - {}   <- state module\n", a[i]));
            i += 1;
        }
    }
    out
}
