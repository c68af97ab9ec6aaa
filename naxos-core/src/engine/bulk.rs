//! Bulk cancel and retry by a filter, a page at a time.

use chrono::{DateTime, Utc};

use super::Engine;
use crate::backend::ExecutionQuery;
use crate::model::{ExecutionId, ExecutionStatus, ExecutionSummary};
use crate::{Error, Result};

/// Executions a page of a bulk action looks at: each action is its own short transition, so
/// no statement of a large bulk action holds many locks or runs long.
const PAGE: usize = 100;

/// Which executions a bulk action applies to. At least one field must be set: an empty filter
/// (every execution) is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    /// Only executions of this definition.
    pub definition_id: Option<String>,
    /// Only executions in this status.
    pub status: Option<ExecutionStatus>,
    /// Only executions created before this instant.
    pub created_before: Option<DateTime<Utc>>,
}

impl ExecutionFilter {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.definition_id.is_none() && self.status.is_none() && self.created_before.is_none()
    }
}

/// What a bulk action does to one execution.
#[derive(Clone, Copy)]
enum Action {
    Cancel,
    Retry,
}

impl Action {
    /// Whether the action applies to an execution in `status`.
    fn applies(self, status: ExecutionStatus) -> bool {
        match self {
            Action::Cancel => !status.is_terminal(),
            Action::Retry => matches!(status, ExecutionStatus::Failed | ExecutionStatus::Cancelled),
        }
    }
}

impl Engine {
    /// Cancels every unfinished execution `filter` matches, one transition each, a page of
    /// executions at a time; returns how many it cancelled (finished ones are not counted).
    /// [`Error::InvalidInput`] for an empty filter.
    pub async fn cancel_matching(&self, filter: &ExecutionFilter) -> Result<u64> {
        self.bulk(filter, Action::Cancel).await
    }

    /// Retries the failed part of every FAILED or CANCELLED execution `filter` matches, as
    /// [`Engine::retry`] does, a page at a time; returns how many it retried.
    /// [`Error::InvalidInput`] for an empty filter.
    pub async fn retry_matching(&self, filter: &ExecutionFilter) -> Result<u64> {
        self.bulk(filter, Action::Retry).await
    }

    async fn bulk(&self, filter: &ExecutionFilter, action: Action) -> Result<u64> {
        if filter.is_empty() {
            return Err(Error::InvalidInput(
                "a bulk action needs a filter: at least one of definitionId, status, createdBefore".into(),
            ));
        }
        let mut query = ExecutionQuery {
            status: filter.status,
            definition_id: filter.definition_id.clone(),
            limit: PAGE,
            cursor: None,
            ..ExecutionQuery::default()
        };
        let mut matched = 0;
        loop {
            let page = self.executions(&query).await?;
            for summary in page.executions.iter().filter(|s| selected(filter, action, s)) {
                if self.act(action, summary.id).await? {
                    matched += 1;
                }
            }
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return Ok(matched),
            }
        }
    }

    /// Applies `action` to `id`; false when the execution moved on meanwhile (finished,
    /// retried or deleted by someone else).
    async fn act(&self, action: Action, id: ExecutionId) -> Result<bool> {
        let done = match action {
            Action::Cancel => self.cancel(id).await.map(drop),
            Action::Retry => self.retry(id).await.map(drop),
        };
        match done {
            Ok(()) => Ok(true),
            Err(e) if e.is_conflict() || e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Whether the listing's `summary` is one the action applies to (the listing filtered by
/// status and definition already; the creation time is checked here).
fn selected(filter: &ExecutionFilter, action: Action, summary: &ExecutionSummary) -> bool {
    filter.created_before.is_none_or(|before| summary.created_at < before) && action.applies(summary.status)
}
