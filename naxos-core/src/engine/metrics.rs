//! What the engine measures, through the `metrics` facade: the host installs a recorder
//! (naxos-http's `/metrics` uses Prometheus), or nothing is recorded at no cost.
//!
//! | name | kind | labels |
//! | --- | --- | --- |
//! | `naxos_executions_submitted_total` | counter | `definition` |
//! | `naxos_executions_finished_total` | counter | `definition`, `status` |
//! | `naxos_task_attempts_total` | counter | `function`, `outcome` (`completed`, `retrying`, `failed`, `discarded`, `handed_back`) |
//! | `naxos_task_retries_total` | counter | `function` |
//! | `naxos_task_duration_seconds` | histogram | `function` |
//! | `naxos_task_queue_wait_seconds` | histogram | `function` |
//! | `naxos_tasks_running` | gauge | — (this node) |
//! | `naxos_lease_recoveries_total` | counter | — |
//! | `naxos_messages_republished_total` | counter | — |

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::StatusEvent;

pub(crate) fn submitted(definition: &str) {
    metrics::counter!("naxos_executions_submitted_total", "definition" => definition.to_string()).increment(1);
}

pub(crate) fn events(events: &[StatusEvent]) {
    for e in events {
        if let Some(status) = e.execution_status().filter(|s| s.is_terminal()) {
            metrics::counter!(
                "naxos_executions_finished_total",
                "definition" => e.definition_id.clone(),
                "status" => status.as_str()
            )
            .increment(1);
        }
    }
}

pub(crate) fn attempt(function: &str, outcome: &'static str, ran: Option<Duration>) {
    metrics::counter!("naxos_task_attempts_total", "function" => function.to_string(), "outcome" => outcome)
        .increment(1);
    if outcome == "retrying" {
        metrics::counter!("naxos_task_retries_total", "function" => function.to_string()).increment(1);
    }
    if let Some(ran) = ran {
        metrics::histogram!("naxos_task_duration_seconds", "function" => function.to_string())
            .record(ran.as_secs_f64());
    }
}

pub(crate) fn queue_wait(function: &str, queued_at: Option<DateTime<Utc>>, claimed_at: DateTime<Utc>) {
    if let Some(wait) = queued_at.and_then(|q| (claimed_at - q).to_std().ok()) {
        metrics::histogram!("naxos_task_queue_wait_seconds", "function" => function.to_string())
            .record(wait.as_secs_f64());
    }
}

pub(crate) fn running(count: usize) {
    metrics::gauge!("naxos_tasks_running").set(count as f64);
}

pub(crate) fn swept(recovered: usize, republished: usize) {
    metrics::counter!("naxos_lease_recoveries_total").increment(recovered as u64);
    metrics::counter!("naxos_messages_republished_total").increment(republished as u64);
}
