//! The Store as one node sees it: every call stops when the node dies; the scenario's fault
//! fires at its point.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::fault::{Fault, StoreCall};
use super::node::Node;
use crate::backend::{
    Changes, ClaimRequest, ClaimedTask, Created, DefinitionPut, ExecutionPage, ExecutionQuery, FinishReport,
    LeaseState, NewExecution, SignalOutcome, StopOutcome, StopReason, Store, StoreCounts, TaskFinish,
};
use crate::model::{
    DefinitionSummary, Execution, ExecutionId, JobDefinition, NodeInfo, RetentionDefaults, StoredDefinition, TaskRef,
};
use crate::Result;

#[derive(Debug)]
pub(crate) struct FaultyStore {
    pub(crate) inner: Arc<dyn Store>,
    pub(crate) node: Arc<Node>,
}

#[async_trait]
impl Store for FaultyStore {
    // Every other call: nothing before it, nothing after it once the node died.
    async fn put_definition(&self, definition: JobDefinition) -> Result<DefinitionPut> {
        self.node.alive().await;
        let out = self.inner.put_definition(definition).await;
        self.node.alive().await;
        out
    }

    async fn definition_versions(&self, id: &str) -> Result<Vec<Arc<StoredDefinition>>> {
        self.node.alive().await;
        let out = self.inner.definition_versions(id).await;
        self.node.alive().await;
        out
    }

    async fn list_definitions(&self) -> Result<Vec<DefinitionSummary>> {
        self.node.alive().await;
        let out = self.inner.list_definitions().await;
        self.node.alive().await;
        out
    }

    async fn get_execution(&self, id: ExecutionId) -> Result<Execution> {
        self.node.alive().await;
        let out = self.inner.get_execution(id).await;
        self.node.alive().await;
        out
    }

    async fn list_executions(&self, query: &ExecutionQuery) -> Result<ExecutionPage> {
        self.node.alive().await;
        let out = self.inner.list_executions(query).await;
        self.node.alive().await;
        out
    }

    async fn heartbeat(&self, task: &TaskRef, lease: Duration) -> Result<LeaseState> {
        self.node.alive().await;
        let out = self.inner.heartbeat(task, lease).await;
        self.node.alive().await;
        out
    }

    async fn release(&self, task: &TaskRef) -> Result<Changes> {
        self.node.alive().await;
        let out = self.inner.release(task).await;
        self.node.alive().await;
        out
    }

    async fn stop_execution(&self, id: ExecutionId, reason: StopReason) -> Result<StopOutcome> {
        self.node.alive().await;
        let out = self.inner.stop_execution(id, reason).await;
        self.node.alive().await;
        out
    }

    async fn retry_execution(&self, id: ExecutionId) -> Result<Changes> {
        self.node.alive().await;
        let out = self.inner.retry_execution(id).await;
        self.node.alive().await;
        out
    }

    async fn retry_from(&self, id: ExecutionId, task_id: &str) -> Result<Changes> {
        self.node.alive().await;
        let out = self.inner.retry_from(id, task_id).await;
        self.node.alive().await;
        out
    }

    async fn recover_expired(&self, max_lease_expiries: u32, limit: usize) -> Result<Changes> {
        self.node.alive().await;
        let out = self.inner.recover_expired(max_lease_expiries, limit).await;
        self.node.alive().await;
        out
    }

    async fn take_stale(&self, older_than: Duration, limit: usize) -> Result<Changes> {
        self.node.alive().await;
        let out = self.inner.take_stale(older_than, limit).await;
        self.node.alive().await;
        out
    }

    async fn wake(&self, task: &TaskRef) -> Result<Changes> {
        self.node.alive().await;
        let out = self.inner.wake(task).await;
        self.node.alive().await;
        out
    }

    async fn wake_due(&self, limit: usize) -> Result<Changes> {
        self.node.alive().await;
        let out = self.inner.wake_due(limit).await;
        self.node.alive().await;
        out
    }

    async fn start_delayed(&self, id: ExecutionId) -> Result<Changes> {
        self.node.alive().await;
        let out = self.inner.start_delayed(id).await;
        self.node.alive().await;
        out
    }

    async fn signal(&self, id: ExecutionId, name: &str, payload: serde_json::Value) -> Result<SignalOutcome> {
        self.node.alive().await;
        let out = self.inner.signal(id, name, payload).await;
        self.node.alive().await;
        out
    }

    async fn set_definition_paused(&self, id: &str, paused: bool) -> Result<()> {
        self.node.alive().await;
        let out = self.inner.set_definition_paused(id, paused).await;
        self.node.alive().await;
        out
    }

    async fn admit_blocked(&self, limit: usize) -> Result<Changes> {
        self.node.alive().await;
        let out = self.inner.admit_blocked(limit).await;
        self.node.alive().await;
        out
    }

    async fn orphaned_children(&self, limit: usize) -> Result<Vec<ExecutionId>> {
        self.node.alive().await;
        let out = self.inner.orphaned_children(limit).await;
        self.node.alive().await;
        out
    }

    async fn overdue_executions(&self, limit: usize) -> Result<Vec<ExecutionId>> {
        self.node.alive().await;
        let out = self.inner.overdue_executions(limit).await;
        self.node.alive().await;
        out
    }

    async fn prune(&self, defaults: RetentionDefaults, limit: usize) -> Result<u64> {
        self.node.alive().await;
        let out = self.inner.prune(defaults, limit).await;
        self.node.alive().await;
        out
    }

    async fn counts(&self) -> Result<StoreCounts> {
        self.node.alive().await;
        let out = self.inner.counts().await;
        self.node.alive().await;
        out
    }

    async fn pending_executions(&self) -> Result<u64> {
        self.node.alive().await;
        let out = self.inner.pending_executions().await;
        self.node.alive().await;
        out
    }

    async fn put_node(&self, node: NodeInfo) -> Result<()> {
        self.node.alive().await;
        let out = self.inner.put_node(node).await;
        self.node.alive().await;
        out
    }

    async fn prune_nodes(&self, older_than: Duration) -> Result<u64> {
        self.node.alive().await;
        let out = self.inner.prune_nodes(older_than).await;
        self.node.alive().await;
        out
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        self.node.alive().await;
        let out = self.inner.list_nodes().await;
        self.node.alive().await;
        out
    }

    async fn ping(&self) -> Result<()> {
        self.node.alive().await;
        let out = self.inner.ping().await;
        self.node.alive().await;
        out
    }

    async fn backup(&self, directory: &Path) -> Result<PathBuf> {
        self.node.alive().await;
        let out = self.inner.backup(directory).await;
        self.node.alive().await;
        out
    }

    async fn get_definition(&self, id: &str, version: Option<u32>) -> Result<Arc<StoredDefinition>> {
        self.node.alive().await;
        self.node.count(StoreCall::GetDefinition)?;
        self.inner.get_definition(id, version).await
    }

    async fn create_execution(&self, execution: NewExecution) -> Result<Created> {
        self.node.alive().await;
        self.node.count(StoreCall::CreateExecution)?;
        self.inner.create_execution(execution).await
    }

    async fn create_executions(&self, executions: Vec<NewExecution>) -> Result<Vec<Created>> {
        self.node.alive().await;
        self.node.count(StoreCall::CreateExecution)?;
        self.inner.create_executions(executions).await
    }

    async fn claim(&self, request: ClaimRequest) -> Result<ClaimedTask> {
        self.node.alive().await;
        self.node.count(StoreCall::Claim)?;
        let task = request.task.task_id.clone();
        let claimed = self.inner.claim(request).await;
        if claimed.is_ok() && self.node.fire(&Fault::CrashAfterClaim(task)) {
            return self.node.die().await;
        }
        self.node.alive().await;
        claimed
    }

    async fn finish(&self, outcomes: Vec<TaskFinish>) -> Result<FinishReport> {
        self.node.alive().await;
        self.node.count(StoreCall::Finish)?;
        let tasks: Vec<String> = outcomes.iter().map(|o| o.task.task_id.clone()).collect();
        if tasks
            .iter()
            .any(|t| self.node.fire(&Fault::CrashBeforeRecord(t.clone())))
        {
            return self.node.die().await;
        }
        let report = self.inner.finish(outcomes).await;
        if report.is_ok()
            && tasks
                .iter()
                .any(|t| self.node.fire(&Fault::CrashBeforePublish(t.clone())))
        {
            return self.node.die().await;
        }
        self.node.alive().await;
        report
    }
}
