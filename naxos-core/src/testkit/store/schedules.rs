//! Store checks of cron schedules: create, read, pause, resume, delete; one execution per tick
//! however many callers race for it; executions listed by schedule.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::backend::{ExecutionQuery, Fired, NewExecution, ScheduleTick, StopReason, Store};
use crate::clock::{after, ManualClock};
use crate::model::{CatchUp, ExecutionId, RetentionDefaults, Schedule, StoredDefinition};
use crate::testkit::fixtures::{diamond, unique_id};

/// A registered diamond and a schedule of it, every 10 seconds, stored.
async fn scheduled(store: &dyn Store) -> (Arc<StoredDefinition>, Schedule) {
    let def = store.put_definition(diamond()).await.unwrap().definition;
    let schedule = Schedule::new(unique_id("every-10s"), def.definition.id.clone(), "*/10 * * * * *")
        .params(json!({"from": "schedule"}));
    assert!(store.put_schedule(schedule.clone()).await.unwrap().created);
    (def, schedule)
}

/// Fires `schedule`'s tick at `at` with a fresh execution of `def`.
async fn fire(store: &dyn Store, def: &StoredDefinition, schedule: &str, at: DateTime<Utc>) -> Fired {
    let tick = ScheduleTick {
        schedule_id: schedule.to_string(),
        at,
    };
    store
        .fire_schedule(tick, NewExecution::new(def, json!({"from": "schedule"})))
        .await
        .unwrap_or_else(|e| panic!("fire {schedule} at {at}: {e}"))
}

fn created(fired: Fired) -> ExecutionId {
    match fired {
        Fired::Created(c) => {
            assert!(c.created);
            c.execution_id
        }
        other => panic!("expected the tick to create an execution, got {other:?}"),
    }
}

/// Create (cursor at now), identical again (unchanged, paused state kept), changed (replaced,
/// cursor at the change), list, pause, resume (cursor at the resume), delete.
pub async fn schedules_are_created_paused_resumed_and_deleted(store: Arc<dyn Store>, clock: ManualClock) {
    let created_at = clock.now();
    let (_, schedule) = scheduled(&*store).await;
    let id = schedule.id.clone();
    let stored = store.get_schedule(&id).await.unwrap();
    assert_eq!(stored.schedule, schedule);
    assert_eq!((stored.created_at, stored.last_tick), (created_at, created_at));

    clock.advance(Duration::from_secs(5));
    let paused = store.set_schedule_paused(&id, true).await.unwrap();
    assert!(paused.schedule.paused);
    assert_eq!(paused.last_tick, created_at, "a pause leaves the cursor");
    let again = store.put_schedule(schedule.clone()).await.unwrap();
    assert!(!again.created && !again.updated, "identical: unchanged");
    assert!(
        again.schedule.schedule.paused,
        "an identical put keeps the paused state"
    );

    clock.advance(Duration::from_secs(60));
    let resumed_at = clock.now();
    let resumed = store.set_schedule_paused(&id, false).await.unwrap();
    assert!(!resumed.schedule.paused);
    assert_eq!(
        resumed.last_tick, resumed_at,
        "a resume moves the cursor past the paused ticks"
    );
    assert_eq!(
        store.set_schedule_paused(&id, false).await.unwrap(),
        resumed,
        "resuming twice changes nothing"
    );

    clock.advance(Duration::from_secs(5));
    let changed = Schedule {
        cron: "0 * * * *".into(),
        ..schedule.clone()
    }
    .catch_up(CatchUp::All);
    let put = store.put_schedule(changed.clone()).await.unwrap();
    assert!(!put.created && put.updated);
    assert_eq!(put.schedule.schedule, changed);
    assert_eq!(put.schedule.created_at, created_at);
    assert_eq!(
        put.schedule.last_tick,
        clock.now(),
        "a changed cadence starts from the change"
    );
    assert_eq!(store.get_schedule(&id).await.unwrap(), put.schedule);

    let other = Schedule::new(unique_id("other"), schedule.definition_id.clone(), "0 0 * * *");
    store.put_schedule(other.clone()).await.unwrap();
    let listed: Vec<String> = store
        .list_schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.schedule.id)
        .filter(|s| *s == id || *s == other.id)
        .collect();
    let mut expected = vec![id.clone(), other.id.clone()];
    expected.sort();
    assert_eq!(listed, expected, "listed by id");

    store.delete_schedule(&id).await.unwrap();
    assert!(store.get_schedule(&id).await.unwrap_err().is_not_found());
    assert!(store.delete_schedule(&id).await.unwrap_err().is_not_found());
    assert!(store.set_schedule_paused(&id, true).await.unwrap_err().is_not_found());
    assert!(store.get_schedule(&other.id).await.is_ok(), "the other one stays");
}

/// Many callers racing for one tick: exactly one creates its execution, the rest see it taken;
/// a tick at or before the cursor is taken; a paused schedule fires nothing; skipping moves the
/// cursor forward only; a deleted schedule is not found.
pub async fn a_tick_fires_once_when_callers_race(store: Arc<dyn Store>, clock: ManualClock) {
    let (def, schedule) = scheduled(&*store).await;
    let id = schedule.id.clone();
    let tick = after(clock.now(), Duration::from_secs(10));
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let (store, def, id) = (store.clone(), def.clone(), id.clone());
            tokio::spawn(async move { fire(&*store, &def, &id, tick).await })
        })
        .collect();
    let mut winners = Vec::new();
    for racer in racers {
        match racer.await.unwrap() {
            Fired::Created(c) => winners.push(c.execution_id),
            Fired::Taken => {}
            Fired::Paused => panic!("not paused"),
        }
    }
    assert_eq!(winners.len(), 1, "one execution per tick: {winners:?}");
    let execution = store.get_execution(winners[0]).await.unwrap();
    assert_eq!(execution.schedule_id.as_deref(), Some(id.as_str()));
    assert_eq!(execution.data, json!({"from": "schedule"}));
    assert_eq!(
        store.get_schedule(&id).await.unwrap().last_tick,
        tick,
        "the cursor is at the tick"
    );
    assert!(
        matches!(fire(&*store, &def, &id, tick).await, Fired::Taken),
        "once more: taken"
    );
    let earlier = after(clock.now(), Duration::from_secs(5));
    assert!(
        matches!(fire(&*store, &def, &id, earlier).await, Fired::Taken),
        "behind the cursor: taken"
    );

    let later = after(tick, Duration::from_secs(10));
    store.skip_schedule_ticks(&id, later).await.unwrap();
    store.skip_schedule_ticks(&id, tick).await.unwrap();
    assert_eq!(
        store.get_schedule(&id).await.unwrap().last_tick,
        later,
        "skipping never moves back"
    );
    assert!(
        matches!(fire(&*store, &def, &id, later).await, Fired::Taken),
        "skipped: taken"
    );

    store.set_schedule_paused(&id, true).await.unwrap();
    let next = after(later, Duration::from_secs(10));
    assert!(matches!(fire(&*store, &def, &id, next).await, Fired::Paused));
    store.set_schedule_paused(&id, false).await.unwrap();
    created(fire(&*store, &def, &id, next).await);

    store.delete_schedule(&id).await.unwrap();
    let ghost = ScheduleTick {
        schedule_id: id.clone(),
        at: after(next, Duration::from_secs(10)),
    };
    let e = store
        .fire_schedule(ghost, NewExecution::new(&def, json!({})))
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(store.skip_schedule_ticks(&id, next).await.unwrap_err().is_not_found());
}

/// Executions started by ticks carry their schedule's id, and list by it, newest first, in
/// pages; other executions do not show; pruning takes them out of the listing.
pub async fn executions_list_by_schedule(store: Arc<dyn Store>, clock: ManualClock) {
    let (def, schedule) = scheduled(&*store).await;
    let other = Schedule::new(unique_id("other"), schedule.definition_id.clone(), "*/10 * * * * *");
    store.put_schedule(other.clone()).await.unwrap();
    let mut mine = Vec::new();
    for i in 1..=5 {
        let at = after(clock.now(), Duration::from_secs(10 * i));
        mine.push(created(fire(&*store, &def, &schedule.id, at).await));
    }
    let theirs = created(fire(&*store, &def, &other.id, after(clock.now(), Duration::from_secs(10))).await);
    let plain = store
        .create_execution(NewExecution::new(&def, json!({})))
        .await
        .unwrap()
        .execution_id;
    assert_eq!(store.get_execution(plain).await.unwrap().schedule_id, None);

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_executions(&ExecutionQuery {
                schedule_id: Some(schedule.id.clone()),
                limit: 2,
                cursor,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.executions.len() <= 2);
        for e in &page.executions {
            assert_eq!(e.schedule_id.as_deref(), Some(schedule.id.as_str()));
        }
        seen.extend(page.executions.iter().map(|e| e.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut newest_first = mine.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    let theirs_listed = store
        .list_executions(&ExecutionQuery {
            schedule_id: Some(other.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        theirs_listed.executions.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![theirs]
    );
    let by_definition = store
        .list_executions(&ExecutionQuery {
            definition_id: Some(def.definition.id.clone()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_definition.executions.len(),
        7,
        "the definition's listing holds all three kinds"
    );

    // Pruned once finished and past retention: gone from the schedule's listing too.
    for id in &mine {
        store.stop_execution(*id, StopReason::Cancelled).await.unwrap();
    }
    clock.advance(Duration::from_secs(3600));
    while store
        .prune(RetentionDefaults::uniform(Duration::from_secs(60)), 1_000)
        .await
        .unwrap()
        > 0
    {}
    let after_prune = store
        .list_executions(&ExecutionQuery {
            schedule_id: Some(schedule.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(after_prune.executions.is_empty(), "{:?}", after_prune.executions);
}
