//! An order pipeline on the in-memory engine, showing the workflow features of a definition
//! built in Rust: `cargo run --example order_pipeline`.
//!
//! ```text
//! validate ─┬─ express  (when params.express)  ─┬─ delivery ─ reserve ─ approval ─ ship
//!           └─ standard (when !params.express) ─┘  noneFailed  forEach   waitFor    subJob
//! ```
//!
//! - **A branch**: `express` and `standard` carry opposite `when` conditions, so one of them is
//!   SKIPPED (`condition false`) and never runs. `delivery` joins them with the `noneFailed`
//!   trigger, so it runs after the branch that was not taken; under the default `allSuccess`
//!   it would be SKIPPED too.
//! - **A fan-out**: `reserve` runs once per element of `params.items` (`forEach`); each
//!   instance reads its item and index, and the task's output is the instances' outputs in order.
//! - **A signal**: `approval` waits, holding no worker, until the signal `approve` is sent to
//!   the execution — here with [`Engine::signal`], over the REST API with `POST
//!   /api/v1/jobs/{executionId}/signals/approve` — and completes with its payload. Unanswered
//!   past its timeout, it FAILS and nothing below it runs.
//! - **A sub-job**: `ship` starts an execution of the `shipping` definition, with the params
//!   its CEL expression builds, and completes with that child's outputs by task id; the child
//!   names its parent.
//!
//! `cargo test --example order_pipeline` runs the same pipeline down both branches, and once
//! without an approval, and checks each of the above.

use std::time::Duration;

use anyhow::{bail, ensure, Context};
use naxos::model::{TaskRun, Trigger};
use naxos::serde_json::{json, Value};
use naxos::{Engine, Execution, ExecutionId, JobDefinition, TaskBuilder, TaskError, TaskStatus};

/// The longest the example waits for any one thing.
const LIMIT: Duration = Duration::from_secs(30);

/// The order's tasks in the order they run (an execution lists them by id).
const STEPS: [&str; 7] = [
    "validate", "express", "standard", "delivery", "reserve", "approval", "ship",
];

/// The `order` definition: the pipeline above. `approval_timeout` bounds the wait for the signal.
fn order_definition(approval_timeout: Duration) -> JobDefinition {
    JobDefinition::builder("order")
        .task(TaskBuilder::new("validate", "validate"))
        .task(
            TaskBuilder::new("express", "express")
                .after(["validate"])
                .when("params.express"),
        )
        .task(
            TaskBuilder::new("standard", "standard")
                .after(["validate"])
                .when("!params.express"),
        )
        .task(
            TaskBuilder::new("delivery", "delivery")
                .after(["express", "standard"])
                .trigger(Trigger::NoneFailed),
        )
        .task(
            TaskBuilder::new("reserve", "reserve")
                .after(["delivery"])
                .for_each("params.items")
                .max_retry(2),
        )
        .task(
            TaskBuilder::wait_for("approval", "approve")
                .after(["reserve"])
                .signal_timeout(approval_timeout),
        )
        .task(
            TaskBuilder::sub_job("ship", "shipping")
                .after(["approval"])
                .sub_job_params(
                    "{'orderId': params.orderId, 'parcels': size(params.items), 'approvedBy': upstream.approval.by}",
                )
                .max_retry(1),
        )
        .build()
}

/// The `shipping` definition that `ship` runs as a child: print a label, book a pickup.
fn shipping_definition() -> JobDefinition {
    JobDefinition::builder("shipping")
        .task(TaskBuilder::new("label", "label"))
        .task(TaskBuilder::new("pickup", "pickup").after(["label"]))
        .build()
}

/// The task functions of both definitions.
fn register(engine: &Engine) {
    engine.register("validate", |ctx| async move {
        let items = ctx.params()["items"].as_array().map_or(0, Vec::len);
        if items == 0 {
            return Err(TaskError::fatal("an order needs at least one item"));
        }
        Ok(json!({ "items": items }))
    });
    engine.register("express", |_ctx| async { Ok(json!({ "carrier": "air", "days": 1 })) });
    engine.register("standard", |_ctx| async { Ok(json!({ "carrier": "road", "days": 4 })) });
    // The join: one branch COMPLETED with a quote, the other was SKIPPED and has no output.
    engine.register("delivery", |ctx| async move {
        let quote = ctx.upstream("express").or_else(|| ctx.upstream("standard"));
        quote.cloned().ok_or_else(|| TaskError::fatal("neither branch ran"))
    });
    // One instance per item of the order.
    engine.register("reserve", |ctx| async move {
        let (Some(item), Some(index)) = (ctx.item(), ctx.index()) else {
            return Err(TaskError::fatal("`reserve` runs as a forEach"));
        };
        Ok(json!({ "line": index + 1, "sku": item["sku"], "qty": item["qty"] }))
    });
    engine.register("label", |ctx| async move {
        let order: String = ctx.param("orderId").ok_or_else(|| TaskError::fatal("no orderId"))?;
        Ok(json!(format!("LBL-{order}")))
    });
    engine.register("pickup", |ctx| async move {
        Ok(json!({
            "label": ctx.upstream("label"),
            "parcels": ctx.params()["parcels"],
            "approvedBy": ctx.params()["approvedBy"],
        }))
    });
}

/// A started in-memory engine with the functions and both definitions registered.
async fn start(approval_timeout: Duration) -> anyhow::Result<Engine> {
    let engine = Engine::in_memory();
    register(&engine);
    // `shipping` first: a sub-job's definition must exist when the parent's is registered.
    engine.register_definition(shipping_definition()).await?;
    engine.register_definition(order_definition(approval_timeout)).await?;
    engine.start()?;
    Ok(engine)
}

/// What became of one order: its execution, and the shipping child if `ship` started one.
#[derive(Debug)]
struct Outcome {
    order: Execution,
    shipping: Option<Execution>,
}

/// Places `order` and, with an `approval` payload, sends it as the signal `approve` once the
/// pipeline waits for it; returns when the order's execution has finished.
async fn place_order(engine: &Engine, order: Value, approval: Option<Value>) -> anyhow::Result<Outcome> {
    let id = engine.execute("order", order).await?.execution_id;
    if let Some(payload) = approval {
        until_waiting(engine, id, "approval").await?;
        let taken_by = engine.signal(id, "approve", payload).await?;
        ensure!(
            taken_by.as_deref() == Some("approval"),
            "the signal went to {taken_by:?}"
        );
    }
    let order = engine.wait_for_timeout(id, LIMIT).await?;
    let shipping = match order.task("ship").and_then(|t| t.plan.child) {
        Some(child) => Some(engine.execution(child).await?),
        None => None,
    };
    Ok(Outcome { order, shipping })
}

/// Waits until the task `task_id` of execution `id` is WAITING. The Store is the truth and an
/// event a wake-up: it reads the execution again at each of its status events.
async fn until_waiting(engine: &Engine, id: ExecutionId, task_id: &str) -> anyhow::Result<()> {
    // Opened before the first read, so that no change between the two is missed.
    let mut events = engine.watch(id).await?;
    let waiting = async {
        loop {
            let execution = engine.execution(id).await?;
            if execution.task(task_id).is_some_and(|t| t.status == TaskStatus::Waiting) {
                return Ok(());
            }
            if execution.status.is_terminal() {
                bail!(
                    "the execution ended {} before `{task_id}` waited: {:?}",
                    execution.status,
                    execution.error
                );
            }
            if events.next().await.is_none() {
                bail!("the execution's event stream ended before `{task_id}` waited");
            }
        }
    };
    tokio::time::timeout(LIMIT, waiting)
        .await
        .with_context(|| format!("`{task_id}` did not wait within {LIMIT:?}"))?
}

/// The instances of the fan-out `task_id`, in order.
fn instances<'a>(execution: &'a Execution, task_id: &str) -> Vec<&'a TaskRun> {
    let mut runs: Vec<&TaskRun> = execution
        .tasks
        .iter()
        .filter(|t| t.plan.instance.as_ref().is_some_and(|i| i.of == task_id))
        .collect();
    runs.sort_by_key(|t| t.plan.instance.as_ref().map(|i| i.index));
    runs
}

/// One line of the account: a task's id, status, and its output (or its error).
fn line(indent: &str, task: &TaskRun) -> String {
    let detail = match task.status {
        TaskStatus::Completed => task.output.as_ref().map(Value::to_string),
        _ => task.error.clone(),
    };
    let (id, status) = (&task.task_id, task.status.as_str());
    let width = 16 - indent.len();
    format!("{indent}{id:<width$}{status:<10}{}", detail.unwrap_or_default())
}

/// Prints what happened to an order, task by task, and to its shipping child.
fn print_outcome(outcome: &Outcome) {
    let order = &outcome.order;
    let order_id = order.data["orderId"].as_str().unwrap_or("?");
    println!("order {order_id} ({}): {}", order.id, order.status);
    for task in STEPS.iter().filter_map(|step| order.task(step)) {
        println!("{}", line("  ", task));
        for instance in instances(order, &task.task_id) {
            println!("{}", line("    ", instance));
        }
    }
    let Some(child) = &outcome.shipping else {
        println!("no shipping child was started");
        return;
    };
    let parent = child
        .parent
        .as_ref()
        .map(|p| format!("{}/{}", p.execution_id, p.task_id));
    println!(
        "shipping ({}), the child of {}: {}",
        child.id,
        parent.unwrap_or_default(),
        child.status
    );
    println!("  {:<14}{}", "params", child.data);
    for task in &child.tasks {
        println!("{}", line("  ", task));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let engine = start(Duration::from_secs(3_600)).await?;
    let order = json!({
        "orderId": "A-1001",
        "express": true,
        "items": [{ "sku": "tea", "qty": 2 }, { "sku": "honey", "qty": 1 }, { "sku": "figs", "qty": 3 }],
    });
    let outcome = place_order(&engine, order, Some(json!({ "by": "dana" }))).await?;
    print_outcome(&outcome);
    engine.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use naxos::ExecutionStatus;

    use super::*;

    fn order(express: bool) -> Value {
        json!({
            "orderId": "B-7",
            "express": express,
            "items": [{ "sku": "tea", "qty": 2 }, { "sku": "honey", "qty": 1 }, { "sku": "figs", "qty": 3 }],
        })
    }

    /// The outputs of an execution's tasks by task id: what a sub-job task completes with.
    fn outputs(execution: &Execution) -> Value {
        let outputs = execution
            .tasks
            .iter()
            .filter_map(|t| Some((t.task_id.clone(), t.output.clone()?)));
        Value::Object(outputs.collect())
    }

    fn task<'a>(execution: &'a Execution, task_id: &str) -> &'a TaskRun {
        execution.task(task_id).unwrap_or_else(|| panic!("no task `{task_id}`"))
    }

    /// Down either branch: the other side is SKIPPED and the join runs, every item is reserved
    /// once and in order, the approval carries the signal's payload, and the shipping child
    /// runs with the params built for it and hands its outputs back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn either_branch_reserves_every_item_and_ships_once_approved() {
        let engine = start(LIMIT).await.unwrap();
        for (express, taken, untaken, carrier) in [
            (true, "express", "standard", "air"),
            (false, "standard", "express", "road"),
        ] {
            let Outcome { order: done, shipping } = place_order(&engine, order(express), Some(json!({ "by": "dana" })))
                .await
                .unwrap();
            assert_eq!(done.status, ExecutionStatus::Completed, "{done:#?}");

            let skipped = task(&done, untaken);
            assert_eq!(
                (skipped.status, skipped.error.as_deref(), skipped.attempts),
                (TaskStatus::Skipped, Some("condition false"), 0),
                "the branch not taken never ran"
            );
            assert_eq!(task(&done, taken).status, TaskStatus::Completed);
            let delivery = task(&done, "delivery");
            assert_eq!(
                delivery.status,
                TaskStatus::Completed,
                "the join ran after a skipped branch"
            );
            assert_eq!(delivery.output.as_ref().unwrap()["carrier"], carrier);

            let reserved: Vec<(String, TaskStatus, Option<Value>)> = instances(&done, "reserve")
                .into_iter()
                .map(|t| (t.task_id.clone(), t.status, t.output.clone()))
                .collect();
            let lines = [
                json!({ "line": 1, "sku": "tea", "qty": 2 }),
                json!({ "line": 2, "sku": "honey", "qty": 1 }),
                json!({ "line": 3, "sku": "figs", "qty": 3 }),
            ];
            let expected: Vec<(String, TaskStatus, Option<Value>)> = lines
                .iter()
                .enumerate()
                .map(|(i, l)| (format!("reserve[{i}]"), TaskStatus::Completed, Some(l.clone())))
                .collect();
            assert_eq!(reserved, expected, "one instance per item, reading its item and index");
            assert_eq!(
                task(&done, "reserve").output,
                Some(json!(lines)),
                "the outputs in order"
            );

            let approval = task(&done, "approval");
            assert_eq!(approval.status, TaskStatus::Completed);
            assert_eq!(approval.output, Some(json!({ "by": "dana" })), "the signal's payload");

            let ship = task(&done, "ship");
            let child = shipping.expect("`ship` started a child");
            assert_eq!(ship.status, TaskStatus::Completed);
            assert_eq!(ship.plan.child, Some(child.id));
            assert_eq!(child.status, ExecutionStatus::Completed);
            assert_eq!(child.definition_id, "shipping");
            let parent = child.parent.as_ref().expect("the child names its parent");
            assert_eq!((parent.execution_id, parent.task_id.as_str()), (done.id, "ship"));
            assert_eq!(
                child.data,
                json!({ "orderId": "B-7", "parcels": 3, "approvedBy": "dana" }),
                "the params from `sub_job_params`"
            );
            assert_eq!(ship.output, Some(outputs(&child)), "the child's outputs by task id");
            assert_eq!(
                ship.output,
                Some(json!({
                    "label": "LBL-B-7",
                    "pickup": { "label": "LBL-B-7", "parcels": 3, "approvedBy": "dana" },
                }))
            );
        }
        engine.shutdown().await;
    }

    /// Without an approval the wait times out: the order FAILS at `approval`, after the items
    /// were reserved, and no shipping child is ever started.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_order_never_approved_fails_at_the_approval_and_ships_nothing() {
        let engine = start(Duration::from_millis(200)).await.unwrap();
        let Outcome { order: done, shipping } = place_order(&engine, order(true), None).await.unwrap();
        assert_eq!(done.status, ExecutionStatus::Failed, "{done:#?}");
        assert_eq!(task(&done, "reserve").status, TaskStatus::Completed);
        let approval = task(&done, "approval");
        assert_eq!(
            (approval.status, approval.error.as_deref()),
            (TaskStatus::Failed, Some("signal approve timed out"))
        );
        let ship = task(&done, "ship");
        assert_eq!(ship.status, TaskStatus::Skipped);
        assert_eq!(ship.plan.child, None, "the sub-job never started");
        assert!(shipping.is_none());
        engine.shutdown().await;
    }
}
