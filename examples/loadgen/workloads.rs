//! The workloads: job shapes and their task functions.

use std::time::Duration;

use naxos::model::{JobDefinition, TaskBuilder};
use naxos::serde_json::json;
use naxos::Engine;

/// A workload: one job shape, run `count` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    /// `a → (b, c) → d`, no-op tasks.
    Diamond,
    /// Ten no-op tasks in a row (hop latency).
    Chain,
    /// `start → 100 branches → join`, no-op tasks.
    Fanout,
    /// The diamond with tasks that sleep 50 ms (I/O-bound).
    Sleep,
}

impl Workload {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "diamond" => Self::Diamond,
            "chain" => Self::Chain,
            "fanout" => Self::Fanout,
            "sleep" => Self::Sleep,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Diamond => "diamond",
            Self::Chain => "chain",
            Self::Fanout => "fanout",
            Self::Sleep => "sleep",
        }
    }

    /// Tasks per execution.
    pub(crate) fn tasks(self) -> usize {
        match self {
            Self::Diamond | Self::Sleep => 4,
            Self::Chain => 10,
            Self::Fanout => 102,
        }
    }

    pub(crate) fn definition(self) -> JobDefinition {
        let id = format!("load-{}", self.name());
        let f = if self == Self::Sleep { "sleep50" } else { "noop" };
        match self {
            Self::Diamond | Self::Sleep => JobDefinition::builder(id)
                .task(TaskBuilder::new("a", f))
                .task(TaskBuilder::new("b", f).after(["a"]))
                .task(TaskBuilder::new("c", f).after(["a"]))
                .task(TaskBuilder::new("d", f).after(["b", "c"]))
                .build(),
            Self::Chain => {
                let mut b = JobDefinition::builder(id).task(TaskBuilder::new("t00", f));
                for i in 1..10 {
                    b = b.task(TaskBuilder::new(format!("t{i:02}"), f).after([format!("t{:02}", i - 1)]));
                }
                b.build()
            }
            Self::Fanout => {
                let mut b = JobDefinition::builder(id).task(TaskBuilder::new("start", f));
                let branches: Vec<String> = (0..100).map(|i| format!("b{i:03}")).collect();
                for x in &branches {
                    b = b.task(TaskBuilder::new(x.clone(), f).after(["start"]));
                }
                b.task(TaskBuilder::new("join", f).after(branches)).build()
            }
        }
    }
}

/// Registers the task functions every workload uses.
pub(crate) fn register(engine: &Engine) {
    engine.register("noop", |_ctx| async move { Ok(json!(null)) });
    engine.register("sleep50", |_ctx| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(json!(null))
    });
}
