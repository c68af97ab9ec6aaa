//! `impl Store for PgStore`: each method is one statement or one transaction.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use naxos_core::backend::{
    Changes, ClaimRequest, ClaimedTask, Created, DefinitionPut, ExecutionPage, ExecutionQuery, FinishReport,
    LeaseState, NewExecution, StopOutcome, StopReason, Store, StoreCounts, TaskFinish,
};
use naxos_core::model::{
    DefinitionSummary, Execution, ExecutionId, JobDefinition, NodeInfo, StoredDefinition, TaskRef,
};
use naxos_core::Result;

use crate::error::db;
use crate::transitions::{self, lock};
use crate::{definitions, executions, recovery, settle, transaction, PgStore};

#[async_trait]
impl Store for PgStore {
    async fn put_definition(&self, definition: JobDefinition, now: DateTime<Utc>) -> Result<DefinitionPut> {
        transaction!(self.pool, |tx| definitions::put(&mut tx, definition.clone(), now).await)
    }

    async fn get_definition(&self, id: &str, version: Option<u32>) -> Result<Arc<StoredDefinition>> {
        definitions::get_one(&self.pool, id, version).await
    }

    async fn definition_versions(&self, id: &str) -> Result<Vec<Arc<StoredDefinition>>> {
        definitions::versions(&self.pool, id).await
    }

    async fn list_definitions(&self) -> Result<Vec<DefinitionSummary>> {
        definitions::list(&self.pool).await
    }

    async fn create_execution(&self, execution: NewExecution) -> Result<Created> {
        // One statement, so no explicit transaction.
        executions::create(&self.pool, &execution).await
    }

    async fn get_execution(&self, id: ExecutionId) -> Result<Execution> {
        executions::get_one(&self.pool, id).await
    }

    async fn list_executions(&self, query: &ExecutionQuery) -> Result<ExecutionPage> {
        executions::list(&self.pool, query).await
    }

    async fn claim(&self, request: ClaimRequest) -> Result<ClaimedTask> {
        // One statement, so no explicit transaction: it commits on its own, atomically.
        let mut tries = 0;
        loop {
            tries += 1;
            let mut conn = self.pool.acquire().await.map_err(db)?;
            match transitions::claim(&mut conn, &request).await {
                Err(e) if tries < 5 && crate::error::is_race(&e) => continue,
                other => return other,
            }
        }
    }

    async fn heartbeat(&self, task: &TaskRef, until: DateTime<Utc>) -> Result<LeaseState> {
        transitions::heartbeat(&self.pool, task, until).await
    }

    async fn finish(&self, outcomes: Vec<TaskFinish>) -> Result<FinishReport> {
        if let [only] = outcomes.as_slice() {
            let mut conn = self.pool.acquire().await.map_err(db)?;
            let result = settle::settle(&mut conn, &only.task, &only.outcome, only.now).await;
            drop(conn);
            match result {
                Ok(Some(changes)) => {
                    return Ok(FinishReport {
                        results: vec![Ok(())],
                        changes,
                    })
                }
                // A final failure, or a transition committed while it waited: the general path.
                Ok(None) => {}
                Err(e) if e.is_conflict() || e.is_not_found() => {
                    return Ok(FinishReport {
                        results: vec![Err(e)],
                        changes: Changes::default(),
                    })
                }
                Err(e) if crate::error::is_race(&e) => {}
                Err(e) => return Err(e),
            }
        }
        // Executions are locked in id order so that two batches never wait on each other in a cycle.
        let mut order: Vec<usize> = (0..outcomes.len()).collect();
        order.sort_by_key(|&i| outcomes[i].task.execution_id);
        transaction!(self.pool, |tx| {
            let mut results: Vec<Option<Result<()>>> = (0..outcomes.len()).map(|_| None).collect();
            let mut changes = Changes::default();
            for &i in &order {
                let f = &outcomes[i];
                let result = match lock(&mut tx, f.task.execution_id).await {
                    Ok(ex) => {
                        transitions::finish_one(&mut tx, &ex, &f.task, f.outcome.clone(), f.now, &mut changes).await
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Err(e) if !(e.is_conflict() || e.is_not_found()) => return Err(e),
                    other => results[i] = Some(other),
                }
            }
            Ok(FinishReport {
                results: results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect(),
                changes,
            })
        })
    }

    async fn release(&self, task: &TaskRef, now: DateTime<Utc>) -> Result<Changes> {
        transaction!(self.pool, |tx| transitions::release(&mut tx, task, now).await)
    }

    async fn stop_execution(&self, id: ExecutionId, reason: StopReason, now: DateTime<Utc>) -> Result<StopOutcome> {
        let (status, running, changes) =
            transaction!(self.pool, |tx| transitions::stop(&mut tx, id, reason, now).await)?;
        Ok(StopOutcome {
            status,
            running,
            changes,
        })
    }

    async fn retry_execution(&self, id: ExecutionId, now: DateTime<Utc>) -> Result<Changes> {
        transaction!(self.pool, |tx| transitions::retry(&mut tx, id, now).await)
    }

    async fn recover_expired(&self, now: DateTime<Utc>, max_lease_expiries: u32, limit: usize) -> Result<Changes> {
        recovery::recover_expired(&self.pool, now, max_lease_expiries, limit).await
    }

    async fn take_stale(&self, queued_before: DateTime<Utc>, now: DateTime<Utc>, limit: usize) -> Result<Changes> {
        recovery::take_stale(&self.pool, queued_before, now, limit).await
    }

    async fn overdue_executions(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ExecutionId>> {
        executions::overdue(&self.pool, now, limit).await
    }

    async fn prune(&self, ended_before: DateTime<Utc>, limit: usize) -> Result<u64> {
        executions::prune(&self.pool, ended_before, limit).await
    }

    async fn counts(&self) -> Result<StoreCounts> {
        executions::counts(&self.pool).await
    }

    async fn put_node(&self, node: NodeInfo) -> Result<()> {
        executions::put_node(&self.pool, node).await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        executions::list_nodes(&self.pool).await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        Ok(())
    }
}
