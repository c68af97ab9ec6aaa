//! Crash-testing a service's own DAG with `naxos::testing` (feature `testing`).
//!
//! An order pipeline: `validate → (reserve, charge) → ship → notify`. `charge` calls a payment
//! provider, which must never charge one order twice however often the task runs; `reserve`
//! counts stock down. Both make their side effect idempotent with a key derived from the
//! execution, as a real provider's idempotency key does.
//!
//! `cargo run --example crash_test --features testing` prints how often each function ran under
//! each fault; `cargo test --example crash_test --features testing` checks the guarantees — and
//! so that no order was charged twice, which `notify` checks as the pipeline's last step.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use naxos::serde_json::{json, Value};
use naxos::testing::{Harness, Report};
use naxos::{Engine, JobDefinition, TaskBuilder, TaskError};

/// The outside world of one scenario: what the payment provider charged and the stock
/// reserved, by idempotency key. It outlives the nodes of a scenario, as the real one does.
#[derive(Debug, Default)]
struct World {
    charged: Mutex<Vec<String>>,
    reserved: Mutex<HashSet<String>>,
}

thread_local! {
    /// Each scenario runs on a thread of its own, so each gets a fresh world.
    static WORLD: Arc<World> = Arc::default();
}

fn order_pipeline() -> JobDefinition {
    JobDefinition::builder("order")
        .task(TaskBuilder::new("validate", "validate"))
        .task(TaskBuilder::new("reserve", "reserve").after(["validate"]))
        .task(TaskBuilder::new("charge", "charge").after(["validate"]).max_retry(3))
        .task(TaskBuilder::new("ship", "ship").after(["reserve", "charge"]))
        .task(TaskBuilder::new("notify", "notify").after(["ship"]))
        .build()
}

/// The service's own registration, as it runs in production.
fn register(engine: &Engine) {
    let world = WORLD.with(Arc::clone);
    engine.register("validate", |ctx| async move {
        let total = ctx.params()["total"]
            .as_f64()
            .ok_or_else(|| TaskError::fatal("no total"))?;
        Ok(json!({ "total": total }))
    });
    let w = world.clone();
    engine.register("reserve", move |ctx| {
        let w = w.clone();
        async move {
            let key = format!("{}/reserve", ctx.execution_id());
            w.reserved.lock().unwrap().insert(key);
            tokio::task::yield_now().await;
            Ok(json!("reserved"))
        }
    });
    let w = world.clone();
    engine.register("charge", move |ctx| {
        let w = w.clone();
        async move {
            // The provider deduplicates by key: a second call with it charges nothing.
            let key = format!("{}/charge", ctx.execution_id());
            {
                let mut charged = w.charged.lock().unwrap();
                if !charged.contains(&key) {
                    charged.push(key.clone());
                }
            }
            tokio::task::yield_now().await;
            Ok(json!({ "payment": key }))
        }
    });
    engine.register("ship", |ctx| async move {
        let payment: Value = ctx.upstream("charge").cloned().unwrap_or(Value::Null);
        Ok(json!({ "shipped": true, "payment": payment["payment"] }))
    });
    // The last step checks the world: a second charge of the order would fail it, and the
    // harness would report the execution ending otherwise than without faults.
    engine.register("notify", move |_ctx| {
        let w = world.clone();
        async move {
            let charges = w.charged.lock().unwrap().len();
            if charges != 1 {
                return Err(TaskError::fatal(format!("the order was charged {charges} times")));
            }
            Ok(json!("sent"))
        }
    });
}

/// Runs the pipeline under every fault the harness knows.
fn crash_test() -> Report {
    Harness::new(register)
        .definition(order_pipeline())
        .execute("order", json!({ "total": 42.0 }))
        .run()
}

fn main() {
    let report = crash_test();
    println!("{report}");
    report.assert_guarantees();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_pipeline_survives_every_fault_and_charges_once() {
        let report = crash_test();
        report.assert_guarantees();
        // `charge` does run twice under some crashes: its side effect must be (and is) idempotent.
        assert_eq!(report.most_runs("charge"), 2, "{report}");
        assert!(report.scenarios.len() > 30, "every fault ran: {report}");
    }
}
