//! The fault-injection harness (`naxos::testing`) on its own: it injects each fault, sees the
//! engine keep its guarantees, and reports a function that is not safe to run twice.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use naxos_core::serde_json::json;
use naxos_core::testing::{Fault, Harness, Report, Scenario, StoreCall};
use naxos_core::{Engine, ExecutionStatus, JobDefinition, TaskBuilder, TaskError};

/// `a → (b, c) → d`.
fn diamond() -> JobDefinition {
    JobDefinition::builder("diamond")
        .task(TaskBuilder::new("a", "step"))
        .task(TaskBuilder::new("b", "step").after(["a"]))
        .task(TaskBuilder::new("c", "step").after(["a"]))
        .task(TaskBuilder::new("d", "step").after(["b", "c"]))
        .build()
}

fn steps(engine: &Engine) {
    engine.register("step", |ctx| async move {
        // One await, so that a crash "in the function" lands in the middle of it.
        tokio::task::yield_now().await;
        Ok(json!({ "task": ctx.task_id() }))
    });
}

/// Every fault of every task and a Store error on each call: the diamond ends COMPLETED each
/// time, and each fault did what it says to the number of runs.
#[test]
fn a_diamond_keeps_every_guarantee_under_every_fault() {
    let report = Harness::new(steps)
        .definition(diamond())
        .execute("diamond", json!({}))
        .run();
    println!("{report}");
    report.assert_guarantees();
    let runs = |fault: Fault, task: &str| report.scenario(&fault).expect("ran").runs[task];
    assert!(report.scenarios[0].faults.is_empty(), "the baseline comes first");
    for t in ["a", "b", "c", "d"] {
        let name = t.to_string();
        assert_eq!(report.scenarios[0].runs[t], 1);
        assert_eq!(
            runs(Fault::CrashAfterClaim(name.clone()), t),
            1,
            "claimed, never ran, then ran"
        );
        assert_eq!(
            runs(Fault::CrashInFunction(name.clone()), t),
            2,
            "cut short, then ran again"
        );
        assert_eq!(
            runs(Fault::CrashBeforeRecord(name.clone()), t),
            2,
            "result lost, ran again"
        );
        assert_eq!(
            runs(Fault::CrashBeforePublish(name.clone()), t),
            1,
            "recorded: never again"
        );
        assert_eq!(
            runs(Fault::DuplicateMessage(name.clone()), t),
            1,
            "the second message is refused"
        );
        assert_eq!(runs(Fault::LoseMessage(name.clone()), t), 1, "sent again by the sweep");
    }
    for call in StoreCall::ALL {
        assert!(
            report.scenario(&Fault::StoreError(call, 1)).is_some(),
            "{call:?} was faulted"
        );
    }
    assert!(report
        .scenarios
        .iter()
        .all(|s| s.status == Some(ExecutionStatus::Completed)));
    assert_eq!(report.most_runs("a"), 2);
}

thread_local! {
    /// The payment provider's record of charges: it outlives a node, as the outside world
    /// does. Each scenario runs on a thread of its own, so each starts with none.
    static CHARGES: Arc<AtomicU32> = Arc::new(AtomicU32::new(0));
}

/// A function with a side effect that refuses to happen twice (a payment that fails on a
/// second charge): without faults the execution completes; under the crashes that run it
/// again, the harness reports that the execution ends otherwise.
#[test]
fn a_function_that_is_not_safe_to_run_twice_is_reported() {
    let job = JobDefinition::builder("pay")
        .task(TaskBuilder::new("charge", "charge"))
        .task(TaskBuilder::new("receipt", "step").after(["charge"]))
        .build();
    let report = Harness::new(|engine: &Engine| {
        steps(engine);
        let charges = CHARGES.with(Arc::clone);
        engine.register("charge", move |_ctx| {
            let charges = charges.clone();
            async move {
                // The provider charges the card, then its answer travels back.
                let earlier = charges.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                if earlier > 0 {
                    return Err(TaskError::fatal("card charged twice"));
                }
                Ok(json!("charged"))
            }
        });
    })
    .definition(job)
    .execute("pay", json!({}))
    .faults([
        Fault::CrashInFunction("charge".into()),
        Fault::CrashAfterClaim("charge".into()),
    ])
    .run();
    println!("{report}");
    let broken: Vec<_> = report.violations().collect();
    assert_eq!(broken.len(), 3, "the execution, `charge` and `receipt`: {broken:?}");
    assert!(broken
        .iter()
        .all(|(s, _)| s.faults == [Fault::CrashInFunction("charge".into())]));
    assert!(
        broken[0].1.contains("ended FAILED, without faults it ends COMPLETED"),
        "{broken:?}"
    );
    let crashed = report.scenario(&Fault::CrashInFunction("charge".into())).unwrap();
    assert_eq!(crashed.status, Some(ExecutionStatus::Failed));
    assert_eq!(crashed.runs["charge"], 2);
    assert_eq!(crashed.runs["receipt"], 0);
    let claimed = report.scenario(&Fault::CrashAfterClaim("charge".into())).unwrap();
    assert!(claimed.violations.is_empty(), "ran once: {:?}", claimed.violations);
    let panicked = std::panic::catch_unwind(|| report.assert_guarantees()).expect_err("broken");
    let message = panicked.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("crash in the function of `charge`"), "{message}");
}

/// A seeded random schedule: scenarios of several faults each (a crash, then another crash of
/// the node that took over, a lost message...), the same draw for the same seed, and the
/// guarantees kept under all of them.
#[test]
fn random_schedules_of_several_faults_keep_the_guarantees() {
    let run = || {
        Harness::new(steps)
            .definition(diamond())
            .execute("diamond", json!({}))
            .faults([])
            .random(7, 25)
            .run()
    };
    let report = run();
    println!("{report}");
    report.assert_guarantees();
    assert_eq!(report.scenarios.len(), 1, "only the baseline: no fault to draw from");
    let report = Harness::new(steps)
        .definition(diamond())
        .execute("diamond", json!({}))
        .random(7, 25)
        .run();
    let drawn: Vec<_> = report.scenarios.iter().filter(|s| s.faults.len() > 1).collect();
    assert_eq!(drawn.len(), 25);
    assert!(drawn.iter().all(|s| (2..=4).contains(&s.faults.len())));
    println!("{report}");
    report.assert_guarantees();
    let faults = |r: &Report| r.scenarios.iter().map(|s| s.faults.clone()).collect::<Vec<_>>();
    let again = Harness::new(steps)
        .definition(diamond())
        .execute("diamond", json!({}))
        .random(7, 25)
        .run();
    assert_eq!(faults(&report), faults(&again), "the seed decides the draw");
    // Some drawn scenario crashed two node lives in a row and still ended as the baseline did.
    let crashes = |s: &&Scenario| s.faults.iter().filter(|f| f.to_string().starts_with("crash")).count();
    assert!(drawn.iter().any(|s| crashes(s) >= 2), "{report}");
}
