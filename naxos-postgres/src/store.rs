//! `impl Store for PgStore`: each method is one statement or one transaction.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use naxos_core::backend::{
    Changes, ClaimRequest, ClaimedTask, Created, DefinitionPut, ExecutionPage, ExecutionQuery, FinishReport, Fired,
    LeaseState, NewExecution, ScheduleTick, SignalOutcome, StopOutcome, StopReason, Store, StoreCounts, TaskFinish,
};
use naxos_core::clock::{after, before};
use naxos_core::model::{
    DefinitionSummary, Execution, ExecutionId, JobDefinition, NodeInfo, RetentionDefaults, Schedule, SchedulePut,
    StoredDefinition, StoredSchedule, TaskRef,
};
use naxos_core::state::Transitioned;
use naxos_core::Result;

use crate::apply::apply;
use crate::error::db;

use crate::{
    batch, claim, definitions, executions, outbox, recovery, schedules, settle, slots, statement, transaction, PgStore,
};

#[async_trait]
impl Store for PgStore {
    async fn put_definition(&self, definition: JobDefinition) -> Result<DefinitionPut> {
        self.within("put definition", async {
            let now = self.now().await?;
            transaction!(self.pool, |tx| definitions::put(&mut tx, definition.clone(), now).await)
        })
        .await
    }

    async fn get_definition(&self, id: &str, version: Option<u32>) -> Result<Arc<StoredDefinition>> {
        self.within("get definition", async {
            definitions::get_one(&self.pool, id, version).await
        })
        .await
    }

    async fn definition_versions(&self, id: &str) -> Result<Vec<Arc<StoredDefinition>>> {
        self.within("definition versions", async {
            definitions::versions(&self.pool, id).await
        })
        .await
    }

    async fn list_definitions(&self) -> Result<Vec<DefinitionSummary>> {
        self.within("list definitions", async { definitions::list(&self.pool).await })
            .await
    }

    async fn create_execution(&self, execution: NewExecution) -> Result<Created> {
        self.within("create execution", async {
            // One statement, so no explicit transaction.
            executions::create(&self.pool, execution, self.now().await?).await
        })
        .await
    }

    async fn create_executions(&self, executions: Vec<NewExecution>) -> Result<Vec<Created>> {
        self.within("create executions", async {
            batch::create_many(&self.pool, executions, self.now().await?).await
        })
        .await
    }

    async fn take_unpublished(&self, limit: usize) -> Result<Changes> {
        self.within("take unpublished executions", async {
            outbox::take(&self.pool, limit).await
        })
        .await
    }

    async fn unpublished_wakeup(&self) -> Result<()> {
        // No deadline: this waits for the next creation in a caller's transaction.
        let channel = outbox::channel(self.schema().await?);
        self.wakeups.next(&self.pool, &channel).await
    }

    async fn get_execution(&self, id: ExecutionId) -> Result<Execution> {
        self.within("get execution", async { executions::get_one(&self.pool, id).await })
            .await
    }

    async fn list_executions(&self, query: &ExecutionQuery) -> Result<ExecutionPage> {
        self.within("list executions", async { executions::list(&self.pool, query).await })
            .await
    }

    async fn claim(&self, request: ClaimRequest) -> Result<ClaimedTask> {
        self.within("claim", async {
            let now = self.now().await?;
            let fast = statement!(self.pool, |conn| claim::claim(&mut conn, &request, now).await)?;
            match fast {
                claim::Fast::Claimed(claimed) => Ok(*claimed),
                // The pause the statement read decides: a pause committed since is as if it came
                // just after this claim.
                claim::Fast::General { paused } => {
                    let mut admitted = transaction!(self.pool, |tx| slots::claim(
                        &mut tx,
                        &request,
                        paused,
                        now,
                        &self.clock
                    )
                    .await)?;
                    // A pause blocked a run that an admission had given a slot.
                    if let Some(ch) = admitted.changes_mut() {
                        slots::admit_freed(&self.pool, ch, now).await?;
                    }
                    admitted.claimed(&request.task)
                }
            }
        })
        .await
    }

    async fn heartbeat(&self, task: &TaskRef, lease: Duration) -> Result<LeaseState> {
        self.within("heartbeat", async {
            let until = after(self.now().await?, lease);
            claim::heartbeat(&self.pool, task, until).await
        })
        .await
    }

    async fn finish(&self, outcomes: Vec<TaskFinish>) -> Result<FinishReport> {
        self.within("finish", async {
            let now = self.now().await?;
            if let [only] = outcomes.as_slice() {
                let mut conn = self.pool.acquire().await.map_err(db)?;
                let result = settle::settle(&mut conn, &only.task, &only.outcome, now).await;
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
            // Executions are locked in id order so that two batches never wait on each other in a
            // cycle; each is loaded once and given all of its outcomes.
            let mut order: Vec<usize> = (0..outcomes.len()).collect();
            order.sort_by_key(|&i| outcomes[i].task.execution_id);
            let mut report = transaction!(self.pool, |tx| {
                let mut results: Vec<Result<()>> = (0..outcomes.len()).map(|_| Ok(())).collect();
                let mut changes = Changes::default();
                for group in order.chunk_by(|&a, &b| outcomes[a].task.execution_id == outcomes[b].task.execution_id) {
                    let id = outcomes[group[0]].task.execution_id;
                    let applied = apply(&mut tx, id, now, |state| {
                        Ok(group
                            .iter()
                            .map(|&i| {
                                let f = &outcomes[i];
                                (i, state.finish(&f.task, f.outcome.clone(), now))
                            })
                            .collect::<Vec<_>>())
                    })
                    .await;
                    match applied {
                        Ok(each) => {
                            for (i, result) in each {
                                results[i] = result.map(|c| changes.extend(c));
                            }
                        }
                        Err(e) if e.is_not_found() => {
                            for &i in group {
                                results[i] = Err(naxos_core::Error::not_found("execution", id));
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
                slots::lock_freed(&mut tx, &changes).await?;
                Ok(FinishReport { results, changes })
            })?;
            slots::admit_freed(&self.pool, &mut report.changes, now).await?;
            Ok(report)
        })
        .await
    }

    async fn release(&self, task: &TaskRef) -> Result<Changes> {
        self.within("release", async {
            let now = self.now().await?;
            let mut changes = transaction!(self.pool, |tx| {
                let changes = apply(&mut tx, task.execution_id, now, |s| s.release(task, now)).await?;
                slots::lock_freed(&mut tx, &changes).await?;
                Ok(changes)
            })?;
            slots::admit_freed(&self.pool, &mut changes, now).await?;
            Ok(changes)
        })
        .await
    }

    async fn stop_execution(&self, id: ExecutionId, reason: StopReason) -> Result<StopOutcome> {
        self.within("stop execution", async {
            let now = self.now().await?;
            let mut outcome = transaction!(self.pool, |tx| {
                let outcome = apply(&mut tx, id, now, |s| s.stop(reason, now)).await?;
                slots::lock_freed(&mut tx, &outcome.changes).await?;
                Ok(outcome)
            })?;
            slots::admit_freed(&self.pool, &mut outcome.changes, now).await?;
            Ok(outcome)
        })
        .await
    }

    async fn retry_execution(&self, id: ExecutionId) -> Result<Changes> {
        self.within("retry execution", async {
            let now = self.now().await?;
            transaction!(self.pool, |tx| {
                let timeout = definitions::timeout_of(&mut tx, id).await?;
                apply(&mut tx, id, now, |s| s.retry(timeout, now)).await
            })
        })
        .await
    }

    async fn retry_from(&self, id: ExecutionId, task_id: &str) -> Result<Changes> {
        self.within("retry from a task", async {
            let now = self.now().await?;
            transaction!(self.pool, |tx| {
                let timeout = definitions::timeout_of(&mut tx, id).await?;
                apply(&mut tx, id, now, |s| s.retry_from(task_id, timeout, now)).await
            })
        })
        .await
    }

    async fn recover_expired(&self, max_lease_expiries: u32, limit: usize) -> Result<Changes> {
        self.within("recover expired", async {
            let now = self.now().await?;
            let mut changes = recovery::recover_expired(&self.pool, now, max_lease_expiries, limit).await?;
            slots::admit_freed(&self.pool, &mut changes, now).await?;
            Ok(changes)
        })
        .await
    }

    async fn take_stale(&self, older_than: Duration, limit: usize) -> Result<Changes> {
        self.within("take stale", async {
            recovery::take_stale(&self.pool, older_than, self.now().await?, limit).await
        })
        .await
    }

    async fn wake(&self, task: &TaskRef) -> Result<Changes> {
        self.within("wake", async {
            let now = self.now().await?;
            transaction!(self.pool, |tx| apply(&mut tx, task.execution_id, now, |s| s
                .wake(task, now))
            .await)
        })
        .await
    }

    async fn wake_due(&self, limit: usize) -> Result<Changes> {
        self.within("wake due", async {
            recovery::wake_due(&self.pool, self.now().await?, limit).await
        })
        .await
    }

    async fn start_delayed(&self, id: ExecutionId) -> Result<Changes> {
        self.within("start delayed execution", async {
            let now = self.now().await?;
            transaction!(self.pool, |tx| apply(&mut tx, id, now, |s| s.start_delayed(now)).await)
        })
        .await
    }

    async fn signal(&self, id: ExecutionId, name: &str, payload: serde_json::Value) -> Result<SignalOutcome> {
        self.within("signal", async {
            let now = self.now().await?;
            transaction!(self.pool, |tx| apply(&mut tx, id, now, |s| s.signal(
                name,
                payload.clone(),
                now
            ))
            .await)
        })
        .await
    }

    async fn set_definition_paused(&self, id: &str, paused: bool) -> Result<()> {
        self.within("pause or resume a definition", async {
            let now = self.now().await?;
            definitions::set_paused(&self.pool, id, paused, now).await
        })
        .await
    }

    async fn admit_blocked(&self, limit: usize) -> Result<Changes> {
        self.within("admit blocked tasks", async {
            let now = self.now().await?;
            let mut changes = recovery::admit_blocked(&self.pool, now, limit).await?;
            for scope in slots::waiting_scopes(&self.pool, limit).await? {
                slots::admit_scope(&self.pool, &scope, now, &mut changes).await?;
            }
            Ok(changes)
        })
        .await
    }

    async fn orphaned_children(&self, limit: usize) -> Result<Vec<ExecutionId>> {
        self.within("orphaned children", async {
            executions::orphaned_children(&self.pool, limit).await
        })
        .await
    }

    async fn overdue_executions(&self, limit: usize) -> Result<Vec<ExecutionId>> {
        self.within("overdue executions", async {
            executions::overdue(&self.pool, self.now().await?, limit).await
        })
        .await
    }

    async fn prune(&self, defaults: RetentionDefaults, limit: usize) -> Result<u64> {
        self.within("prune", async {
            executions::prune(&self.pool, defaults, self.now().await?, limit).await
        })
        .await
    }

    async fn counts(&self) -> Result<StoreCounts> {
        self.within("counts", async { executions::counts(&self.pool).await })
            .await
    }

    async fn pending_executions(&self) -> Result<u64> {
        self.within("pending executions", async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM naxos_executions WHERE status = 'PENDING'")
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            Ok(n as u64)
        })
        .await
    }

    async fn put_node(&self, node: NodeInfo) -> Result<()> {
        self.within("put node", async {
            executions::put_node(&self.pool, node, self.now().await?).await
        })
        .await
    }

    async fn prune_nodes(&self, older_than: Duration) -> Result<u64> {
        self.within("prune nodes", async {
            executions::prune_nodes(&self.pool, before(self.now().await?, older_than)).await
        })
        .await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        self.within("list nodes", async { executions::list_nodes(&self.pool).await })
            .await
    }

    async fn ping(&self) -> Result<()> {
        self.within("ping", async {
            sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn put_schedule(&self, schedule: Schedule) -> Result<SchedulePut> {
        self.within("put schedule", async {
            let now = self.now().await?;
            transaction!(self.pool, |tx| schedules::put(&mut tx, schedule.clone(), now).await)
        })
        .await
    }

    async fn get_schedule(&self, id: &str) -> Result<StoredSchedule> {
        self.within("get schedule", async { schedules::get_one(&self.pool, id).await })
            .await
    }

    async fn list_schedules(&self) -> Result<Vec<StoredSchedule>> {
        self.within("list schedules", async { schedules::list(&self.pool).await })
            .await
    }

    async fn delete_schedule(&self, id: &str) -> Result<()> {
        self.within("delete schedule", async { schedules::delete(&self.pool, id).await })
            .await
    }

    async fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<StoredSchedule> {
        self.within("pause schedule", async {
            let now = self.now().await?;
            transaction!(self.pool, |tx| schedules::set_paused(&mut tx, id, paused, now).await)
        })
        .await
    }

    async fn fire_schedule(&self, tick: ScheduleTick, execution: NewExecution) -> Result<Fired> {
        self.within("fire schedule", async {
            // One statement, so no explicit transaction.
            schedules::fire(&self.pool, &tick, execution, self.now().await?).await
        })
        .await
    }

    async fn skip_schedule_ticks(&self, id: &str, through: chrono::DateTime<chrono::Utc>) -> Result<()> {
        self.within("skip schedule ticks", async {
            schedules::skip(&self.pool, id, through).await
        })
        .await
    }
}
