//! Batch submission: many executions in one call, one Store write and one publish.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::{metrics, Engine, ExecuteRequest, Submitted};
use crate::backend::{Changes, NewExecution};
use crate::model::StoredDefinition;
use crate::{Error, Result};

/// The most executions one batch submits ([`Engine::submit_many`]).
pub const MAX_BATCH: usize = 1_000;

impl Engine {
    /// Runs the latest version of a definition once for each of `params`, as
    /// [`execute`](Self::execute) runs it once, and returns what it did for each, in order.
    /// See [`submit_many`](Self::submit_many).
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> naxos::Result<()> {
    /// use naxos::model::{JobDefinition, TaskBuilder};
    /// use naxos::{serde_json::json, Engine};
    ///
    /// let engine = Engine::in_memory();
    /// engine.register("ship", |ctx| async move { Ok(json!(ctx.param::<u64>("id"))) });
    /// engine.register_definition(JobDefinition::builder("orders").task(TaskBuilder::new("ship", "ship")).build()).await?;
    /// let submitted = engine.execute_many("orders", (1..=3).map(|id| json!({ "id": id }))).await?;
    /// assert_eq!(submitted.len(), 3);
    /// # Ok(()) }
    /// ```
    pub async fn execute_many<P: Serialize>(
        &self,
        definition_id: &str,
        params: impl IntoIterator<Item = P>,
    ) -> Result<Vec<Submitted>> {
        let requests = params
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let params = serde_json::to_value(p)
                    .map_err(|e| Error::InvalidInput(format!("item {i}: the params do not serialize to JSON: {e}")))?;
                Ok(ExecuteRequest::new(definition_id, params))
            })
            .collect::<Result<Vec<_>>>()?;
        self.submit_many(requests).await
    }

    /// Runs a job once for each of `requests` (1 to [`MAX_BATCH`]), as [`submit`](Self::submit)
    /// runs one, and returns what it did for each, in order: the executions are created by one
    /// Store call and their first tasks published together, which costs far less than as many
    /// submits.
    ///
    /// Every request is checked before anything is created: a bad one fails the whole batch
    /// with [`Error::InvalidInput`] naming its index (`item 3: …`), an unknown definition with
    /// `NotFound`. Admission ([`EngineConfig::max_pending_executions`](super::EngineConfig::max_pending_executions))
    /// takes or refuses the batch whole. On PostgreSQL and LMDB the batch is created in one
    /// transaction, all or none; on other Stores ([`Store::create_executions`](crate::backend::Store::create_executions))
    /// one by one, so give the requests idempotency keys to repeat a failed batch safely.
    #[tracing::instrument(name = "batch", skip_all, fields(items = requests.len()))]
    pub async fn submit_many(&self, requests: Vec<ExecuteRequest>) -> Result<Vec<Submitted>> {
        if requests.is_empty() || requests.len() > MAX_BATCH {
            return Err(Error::InvalidInput(format!(
                "a batch holds 1 to {MAX_BATCH} executions, not {}",
                requests.len()
            )));
        }
        let inner = &self.inner;
        // Each definition (and pinned version) is read once for the batch.
        let mut definitions: HashMap<(String, Option<u32>), Arc<StoredDefinition>> = HashMap::new();
        let mut news = Vec::with_capacity(requests.len());
        for (i, request) in requests.into_iter().enumerate() {
            let key = (request.definition_id.clone(), request.version);
            let stored = match definitions.get(&key) {
                Some(d) => d.clone(),
                None => {
                    let d = inner.store.get_definition(&key.0, key.1).await?;
                    definitions.insert(key, d.clone());
                    d
                }
            };
            news.push(request.into_new(&stored).map_err(|e| match e {
                Error::InvalidInput(why) => Error::InvalidInput(format!("item {i}: {why}")),
                other => other,
            })?);
        }
        create(self, news).await
    }
}

/// Admits, creates and publishes the checked batch `news`.
async fn create(engine: &Engine, news: Vec<NewExecution>) -> Result<Vec<Submitted>> {
    let inner = &engine.inner;
    let n = news.len() as u64;
    let definition_ids: Vec<String> = news.iter().map(|e| e.definition_id.clone()).collect();
    inner.admission.admit(inner, n).await?;
    let created = match inner.store.create_executions(news).await {
        Ok(created) => created,
        Err(e) => {
            inner.admission.cancel(n);
            return Err(e);
        }
    };
    let mut changes = Changes::default();
    let mut submitted = Vec::with_capacity(created.len());
    for (c, definition_id) in created.into_iter().zip(definition_ids) {
        if c.created {
            metrics::submitted(&definition_id);
        } else {
            inner.admission.cancel(1);
        }
        submitted.push(Submitted {
            execution_id: c.execution_id,
            created: c.created,
            status: c.status,
            scheduled_for: c.changes.scheduled.first().map(|&(_, at)| at),
        });
        changes.extend(c.changes);
    }
    super::worker::dispatch_here(inner, changes).await;
    Ok(submitted)
}
