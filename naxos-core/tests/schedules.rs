//! Cron schedules in the engine, on the in-memory store with a manual clock: what each
//! `catchUp` mode does after a down period, pauses, daylight-saving changes, and validation.
//!
//! The engine is not started: each test runs scheduler passes itself
//! ([`Engine::schedule_once`]) at the times it sets, the way every node's scheduler loop does.

use std::time::Duration;

use chrono::{DateTime, Utc};
use naxos_core::backend::ExecutionQuery;
use naxos_core::clock::ManualClock;
use naxos_core::model::{CatchUp, JobDefinition, Schedule, TaskBuilder};
use naxos_core::serde_json::json;
use naxos_core::{Clock, Engine, EngineConfig, Error};

/// A tick not fired within this long after its time is missed.
const GRACE: Duration = Duration::from_secs(10);

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// An unstarted engine on the in-memory store, reading `clock`, with job `job` registered.
async fn engine(clock: &ManualClock, grace: Duration) -> Engine {
    engine_with(EngineConfig {
        clock: Clock::Manual(clock.clone()),
        schedule_grace: grace,
        ..EngineConfig::default()
    })
    .await
}

/// An engine with `config`, the function `f` and the one-task definition `job` registered.
async fn engine_with(config: EngineConfig) -> Engine {
    let engine = Engine::builder().config(config).build().unwrap();
    engine.register("f", |_ctx| async move { Ok(json!(null)) });
    engine
        .register_definition(
            JobDefinition::builder("job")
                .task(TaskBuilder::new("only", "f"))
                .build(),
        )
        .await
        .unwrap();
    engine
}

/// How many executions the schedule has started.
async fn runs(engine: &Engine, schedule: &str) -> usize {
    let query = ExecutionQuery {
        schedule_id: Some(schedule.into()),
        limit: 1_000,
        ..Default::default()
    };
    engine.executions(&query).await.unwrap().executions.len()
}

/// Runs a scheduler pass at `now`.
async fn pass_at(engine: &Engine, clock: &ManualClock, now: &str) {
    clock.set(at(now));
    engine.schedule_once().await.unwrap();
}

/// A minute schedule with `mode`: one run at 10:01, then no node runs from 10:01:01 to 10:06:30
/// (the ticks 10:02 … 10:06 are missed: 5), then one pass; returns the runs after it and the
/// schedule's cursor. A pass at 10:07:01 then runs the 10:07 tick in every mode.
async fn down_for_five_ticks(mode: CatchUp) -> (usize, DateTime<Utc>) {
    let clock = ManualClock::new(at("2024-01-01T10:00:00Z"));
    let engine = engine(&clock, GRACE).await;
    let id = format!("every-minute-{}", mode.as_str());
    engine
        .schedule(Schedule::new(&id, "job", "* * * * *").catch_up(mode))
        .await
        .unwrap();
    pass_at(&engine, &clock, "2024-01-01T10:00:30Z").await;
    assert_eq!(runs(&engine, &id).await, 0, "no tick yet");
    pass_at(&engine, &clock, "2024-01-01T10:01:01Z").await;
    assert_eq!(runs(&engine, &id).await, 1, "the 10:01 tick, on time");
    pass_at(&engine, &clock, "2024-01-01T10:01:02Z").await;
    assert_eq!(runs(&engine, &id).await, 1, "a tick fires once");

    pass_at(&engine, &clock, "2024-01-01T10:06:30Z").await;
    let after_gap = runs(&engine, &id).await - 1;
    let cursor = engine.get_schedule(&id).await.unwrap().last_tick;
    pass_at(&engine, &clock, "2024-01-01T10:06:40Z").await;
    assert_eq!(runs(&engine, &id).await - 1, after_gap, "the gap is dealt with once");
    pass_at(&engine, &clock, "2024-01-01T10:07:01Z").await;
    assert_eq!(
        runs(&engine, &id).await - 1,
        after_gap + 1,
        "then the schedule carries on"
    );
    (after_gap, cursor)
}

#[tokio::test]
async fn catch_up_skip_runs_none_of_the_missed_ticks() {
    let (runs, cursor) = down_for_five_ticks(CatchUp::Skip).await;
    assert_eq!(runs, 0);
    assert_eq!(
        cursor,
        at("2024-01-01T10:06:00Z"),
        "skipped through the latest missed tick"
    );
}

#[tokio::test]
async fn catch_up_one_runs_the_latest_missed_tick() {
    let (runs, cursor) = down_for_five_ticks(CatchUp::One).await;
    assert_eq!(runs, 1);
    assert_eq!(cursor, at("2024-01-01T10:06:00Z"), "the run was the 10:06 tick");
}

#[tokio::test]
async fn catch_up_all_runs_every_missed_tick() {
    let (runs, cursor) = down_for_five_ticks(CatchUp::All).await;
    assert_eq!(runs, 5);
    assert_eq!(cursor, at("2024-01-01T10:06:00Z"));
}

#[tokio::test]
async fn ticks_missed_while_paused_are_never_caught_up() {
    let clock = ManualClock::new(at("2024-01-01T10:00:00Z"));
    let engine = engine(&clock, GRACE).await;
    engine
        .schedule(Schedule::new("paused", "job", "* * * * *").catch_up(CatchUp::All))
        .await
        .unwrap();
    pass_at(&engine, &clock, "2024-01-01T10:01:01Z").await;
    assert_eq!(runs(&engine, "paused").await, 1);
    assert!(engine.pause_schedule("paused").await.unwrap().schedule.paused);
    for minute in 2..=6 {
        pass_at(&engine, &clock, &format!("2024-01-01T10:0{minute}:01Z")).await;
    }
    assert_eq!(runs(&engine, "paused").await, 1, "paused: nothing fires");
    clock.set(at("2024-01-01T10:06:30Z"));
    let resumed = engine.resume_schedule("paused").await.unwrap();
    assert_eq!(resumed.next_tick(clock.now()), Some(at("2024-01-01T10:07:00Z")));
    pass_at(&engine, &clock, "2024-01-01T10:06:31Z").await;
    assert_eq!(
        runs(&engine, "paused").await,
        1,
        "the five paused ticks are not caught up"
    );
    pass_at(&engine, &clock, "2024-01-01T10:07:01Z").await;
    assert_eq!(runs(&engine, "paused").await, 2, "the next tick after the resume fires");
}

/// Passes every 5 minutes from `from` to `to` (a scheduler that never stops); returns the
/// schedule's runs and cursor.
async fn daily_at_half_past_two_in_berlin(from: &str, to: &str) -> (usize, DateTime<Utc>) {
    let clock = ManualClock::new(at(from));
    let engine = engine(&clock, Duration::from_secs(600)).await;
    engine
        .schedule(
            Schedule::new("berlin", "job", "30 2 * * *")
                .timezone("Europe/Berlin")
                .catch_up(CatchUp::All),
        )
        .await
        .unwrap();
    while clock.now() < at(to) {
        clock.advance(Duration::from_secs(300));
        engine.schedule_once().await.unwrap();
    }
    let cursor = engine.get_schedule("berlin").await.unwrap().last_tick;
    (runs(&engine, "berlin").await, cursor)
}

/// 2024-03-31: Berlin's clocks jump from 02:00 to 03:00, so 02:30 does not exist that day.
#[tokio::test]
async fn a_wall_time_skipped_by_dst_does_not_fire() {
    let (runs, cursor) = daily_at_half_past_two_in_berlin("2024-03-30T12:00:00Z", "2024-04-01T12:00:00Z").await;
    assert_eq!(runs, 1, "only April 1st's 02:30 (the 31st has none)");
    assert_eq!(cursor, at("2024-04-01T00:30:00Z"), "02:30 CEST");
}

/// 2024-10-27: Berlin's clocks go back from 03:00 to 02:00, so 02:30 happens twice.
#[tokio::test]
async fn a_wall_time_repeated_by_dst_fires_once() {
    let (runs, cursor) = daily_at_half_past_two_in_berlin("2024-10-26T12:00:00Z", "2024-10-27T12:00:00Z").await;
    assert_eq!(runs, 1, "02:30 fires once");
    assert_eq!(
        cursor,
        at("2024-10-27T00:30:00Z"),
        "at its first occurrence (02:30 CEST)"
    );
}

#[tokio::test]
async fn a_bad_schedule_is_refused_naming_the_field() {
    let clock = ManualClock::new(at("2024-01-01T10:00:00Z"));
    let engine = engine(&clock, GRACE).await;
    let field = |r: naxos_core::Result<_>| match r {
        Err(Error::InvalidSchedule { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(engine.schedule(Schedule::new("s", "job", "every minute")).await),
        "cron"
    );
    assert_eq!(
        field(
            engine
                .schedule(Schedule::new("s", "job", "* * * * *").timezone("Nowhere/Land"))
                .await
        ),
        "timezone"
    );
    assert_eq!(
        field(engine.schedule(Schedule::new("s", "no-such-job", "* * * * *")).await),
        "definitionId"
    );
    assert!(engine.schedules().await.unwrap().is_empty(), "nothing was stored");
    let created = engine.schedule(Schedule::new("s", "job", "* * * * *")).await.unwrap();
    assert!(created.created);
    let again = engine.schedule(Schedule::new("s", "job", "* * * * *")).await.unwrap();
    assert!(!again.created && !again.updated);
    engine.delete_schedule("s").await.unwrap();
    assert!(engine.get_schedule("s").await.unwrap_err().is_not_found());
}

/// The scheduler loop wakes at each tick, not only every `schedule_interval`: with a 30 s
/// interval, a schedule firing every second starts three executions within ten seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_wakes_at_each_tick_between_its_passes() {
    let engine = engine_with(EngineConfig {
        schedule_interval: Duration::from_secs(30),
        ..EngineConfig::default()
    })
    .await;
    engine
        .schedule(Schedule::new("every-second", "job", "* * * * * *"))
        .await
        .unwrap();
    engine.start().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while runs(&engine, "every-second").await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ticks between passes never fired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // How late each run was created after its tick (a whole second): for BENCHMARKS.md.
    let query = ExecutionQuery {
        schedule_id: Some("every-second".into()),
        ..Default::default()
    };
    let lags: Vec<i64> = engine
        .executions(&query)
        .await
        .unwrap()
        .executions
        .iter()
        .map(|e| i64::from(e.created_at.timestamp_subsec_millis()))
        .collect();
    eprintln!("schedule tick to execution created, ms: {lags:?}");
    engine.shutdown().await;
}
