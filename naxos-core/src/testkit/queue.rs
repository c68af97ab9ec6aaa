//! Queue conformance checks. Each takes a fresh queue (its own names) and panics on a broken rule.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::backend::{Consumer, Delivery, EventSubscription, Queue, SelectedEvents};
use crate::model::{EventKind, Priority, StatusEvent, TaskRef, TaskStatus, TraceParent};

/// How long a check waits for a delivery that must come.
const DEADLINE: Duration = Duration::from_secs(15);

fn message(task: &str) -> TaskRef {
    TaskRef::new(uuid::Uuid::now_v7(), task, 1)
}

async fn next_within(consumer: &mut Box<dyn Consumer>) -> Delivery {
    tokio::time::timeout(DEADLINE, consumer.next())
        .await
        .expect("a delivery within the deadline")
        .expect("consumer error")
        .expect("consumer closed")
}

/// Asserts that nothing is delivered for a while (a bounded wait, for a negative check).
async fn assert_nothing_for(consumer: &mut Box<dyn Consumer>, wait: Duration) {
    if let Ok(d) = tokio::time::timeout(wait, consumer.next()).await {
        panic!("unexpected delivery: {:?}", d.map(|d| d.map(|d| d.task)));
    }
}

/// Published messages are delivered once and, once acked, not again.
pub async fn publish_consume_ack(queue: Arc<dyn Queue>) {
    let sent = vec![message("a"), message("b"), message("c")];
    queue.publish(&sent).await.unwrap();
    let mut consumer = queue.consume(8).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let d = next_within(&mut consumer).await;
        assert!(!d.redelivered);
        got.push(d.task.clone());
        d.ack().await.unwrap();
    }
    got.sort_by(|x, y| x.task_id.cmp(&y.task_id));
    assert_eq!(got, sent);
    assert_nothing_for(&mut consumer, Duration::from_millis(300)).await;
    queue.ping().await.unwrap();
}

/// A message nacked with requeue, or handed back, comes back, marked redelivered.
pub async fn nack_redelivers(queue: Arc<dyn Queue>) {
    let m = message("x");
    queue.publish(std::slice::from_ref(&m)).await.unwrap();
    let mut consumer = queue.consume(4).await.unwrap();
    let first = next_within(&mut consumer).await;
    assert_eq!(first.task, m);
    first.nack(true).await.unwrap();
    let again = next_within(&mut consumer).await;
    assert_eq!(again.task, m);
    assert!(again.redelivered);
    again.hand_back().await.unwrap();
    let third = next_within(&mut consumer).await;
    assert_eq!(third.task, m);
    assert!(third.redelivered);
    third.ack().await.unwrap();
}

/// What a consumer held unacknowledged when it went away goes to another consumer.
pub async fn dropped_consumer_redelivers_to_another(queue: Arc<dyn Queue>) {
    let m = message("y");
    queue.publish(std::slice::from_ref(&m)).await.unwrap();
    let mut dying = queue.consume(4).await.unwrap();
    let held = next_within(&mut dying).await;
    assert_eq!(held.task, m);
    let mut survivor = queue.consume(4).await.unwrap();
    drop(held);
    drop(dying);
    let d = next_within(&mut survivor).await;
    assert_eq!(d.task, m);
    assert!(d.redelivered);
    d.ack().await.unwrap();
}

/// A consumer gets no more than `prefetch` deliveries until it acks one.
pub async fn prefetch_bounds_unacknowledged_deliveries(queue: Arc<dyn Queue>) {
    let sent: Vec<_> = (0..3).map(|i| message(&format!("p{i}"))).collect();
    queue.publish(&sent).await.unwrap();
    let mut consumer = queue.consume(2).await.unwrap();
    let first = next_within(&mut consumer).await;
    let second = next_within(&mut consumer).await;
    assert_nothing_for(&mut consumer, Duration::from_millis(500)).await;
    first.ack().await.unwrap();
    let third = next_within(&mut consumer).await;
    second.ack().await.unwrap();
    third.ack().await.unwrap();
}

/// A short delay is delivered on time even when a longer one was published before it, and
/// neither comes early.
pub async fn short_delay_is_not_blocked_by_a_long_one(queue: Arc<dyn Queue>) {
    let (long, short) = (message("long"), message("short"));
    let start = Instant::now();
    queue
        .publish_delayed(&long, Duration::from_millis(2_000))
        .await
        .unwrap();
    queue.publish_delayed(&short, Duration::from_millis(200)).await.unwrap();
    let mut consumer = queue.consume(4).await.unwrap();
    let first = next_within(&mut consumer).await;
    let first_at = start.elapsed();
    assert_eq!(first.task, short, "the short delay must not wait behind the long one");
    assert!(first_at >= Duration::from_millis(200), "delivered early: {first_at:?}");
    assert!(
        first_at < Duration::from_millis(1_900),
        "blocked behind the long delay: {first_at:?}"
    );
    first.ack().await.unwrap();
    let second = next_within(&mut consumer).await;
    assert_eq!(second.task, long);
    assert!(start.elapsed() >= Duration::from_millis(2_000), "delivered early");
    second.ack().await.unwrap();
}

/// Of the messages waiting, those of a higher priority are delivered first, within what a
/// consumer already holds (its prefetch); within a priority, in the order they were published;
/// and each delivered reference has its priority back, published now or later.
pub async fn higher_priorities_are_delivered_first(queue: Arc<dyn Queue>) {
    let at = |task: &str, level: u64| message(task).with_priority(Priority::new(level).unwrap());
    let backlog: Vec<TaskRef> = (0..20).map(|i| at(&format!("low-{i:02}"), 0)).collect();
    queue.publish(&backlog).await.unwrap();
    let (urgent, middle) = (at("urgent", 9), at("middle", 5));
    queue.publish(&[middle.clone(), urgent.clone()]).await.unwrap();
    let prefetch = 2;
    let mut consumer = queue.consume(prefetch).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..22 {
        let d = next_within(&mut consumer).await;
        got.push(d.task.clone());
        d.ack().await.unwrap();
    }
    let position = |t: &TaskRef| got.iter().position(|g| g == t).expect("delivered");
    assert!(
        position(&urgent) <= prefetch && position(&middle) <= prefetch + 1,
        "priorities 9 and 5 overtake the backlog of priority 0 (after at most the prefetch): {:?}",
        got.iter().map(|t| &t.task_id).collect::<Vec<_>>()
    );
    let lows: Vec<&TaskRef> = got.iter().filter(|t| t.task_id.starts_with("low")).collect();
    assert_eq!(
        lows,
        backlog.iter().collect::<Vec<_>>(),
        "first in, first out within a priority"
    );
    assert_eq!(got[position(&urgent)].priority, Priority::HIGHEST);
    assert_eq!(got[position(&middle)].priority.get(), 5);
    assert!(lows.iter().all(|t| t.priority == Priority::LOWEST));
    let later = at("later", 7);
    queue.publish_delayed(&later, Duration::from_millis(50)).await.unwrap();
    let d = next_within(&mut consumer).await;
    assert_eq!(
        (&d.task, d.task.priority.get()),
        (&later, 7),
        "a delayed message keeps its priority"
    );
    d.ack().await.unwrap();
}

/// A task message carries its reference's trace context beside the body, published now or
/// later, and a message without one is delivered without one.
pub async fn task_messages_carry_their_trace_context(queue: Arc<dyn Queue>) {
    let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let traced = message("traced").with_traceparent(Some(tp));
    let plain = message("plain");
    let later = message("later").with_traceparent(Some(tp.child()));
    queue.publish(&[traced.clone(), plain.clone()]).await.unwrap();
    queue.publish_delayed(&later, Duration::from_millis(100)).await.unwrap();
    let mut consumer = queue.consume(4).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let d = next_within(&mut consumer).await;
        got.push(d.task.clone());
        d.ack().await.unwrap();
    }
    got.sort_by(|x, y| x.task_id.cmp(&y.task_id));
    assert_eq!(got, [later.clone(), plain, traced]);
    let carried: Vec<_> = got.iter().map(|t| t.traceparent).collect();
    assert_eq!(carried, [later.traceparent, None, Some(tp)]);
}

async fn event_within(sub: &mut Box<dyn EventSubscription>) -> StatusEvent {
    tokio::time::timeout(DEADLINE, sub.next())
        .await
        .expect("an event within the deadline")
        .expect("subscription error")
        .expect("subscription ended")
}

/// Every subscriber receives each published event, in publishing order.
pub async fn events_reach_every_subscriber_in_order(queue: Arc<dyn Queue>) {
    let mut one = queue.subscribe_events().await.unwrap();
    let mut two = queue.subscribe_events().await.unwrap();
    let execution_id = uuid::Uuid::now_v7();
    let events: Vec<StatusEvent> = [TaskStatus::Queued, TaskStatus::Running, TaskStatus::Completed]
        .into_iter()
        .map(|status| event(execution_id, status))
        .collect();
    queue.publish_events(&events).await.unwrap();
    for sub in [&mut one, &mut two] {
        let mut got = Vec::new();
        while got.len() < events.len() {
            let e = event_within(sub).await;
            if e.execution_id == execution_id {
                got.push(e);
            }
        }
        assert_eq!(got, events);
    }
}

/// A task event of `execution` (of a definition whose id has a dot, as ids may).
fn event(execution: crate::model::ExecutionId, status: TaskStatus) -> StatusEvent {
    StatusEvent {
        execution_id: execution,
        definition_id: "selected.events".into(),
        kind: EventKind::Task {
            task_id: "t".into(),
            attempt: 1,
            status,
        },
        error: None,
        at: Utc::now(),
    }
}

/// Where the Queue offers selected subscriptions: one receives the events of the executions
/// selected, from when `select` returns, and none of the others; after `deselect`, no more.
/// (Events of the unselected execution are published first: had they been delivered, they
/// would arrive first, so no timeout is needed to prove their absence.)
pub async fn a_selected_subscription_gets_only_what_it_selected(queue: Arc<dyn Queue>) {
    let Some(SelectedEvents {
        mut subscription,
        selector,
    }) = queue.subscribe_selected_events().await.unwrap()
    else {
        return;
    };
    let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    selector.select(a).await.unwrap();
    let statuses = [TaskStatus::Queued, TaskStatus::Running, TaskStatus::Completed];
    let of = |id| statuses.iter().map(|s| event(id, *s)).collect::<Vec<_>>();
    let a_events = of(a);
    queue.publish_events(&of(b)).await.unwrap();
    queue.publish_events(&a_events).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(event_within(&mut subscription).await);
    }
    assert_eq!(got, a_events, "only the selected execution's events, in order");

    selector.deselect(a).await.unwrap();
    selector.select(b).await.unwrap();
    queue.publish_events(&of(a)).await.unwrap();
    queue.publish_events(&of(b)).await.unwrap();
    let next = event_within(&mut subscription).await;
    assert_eq!(next.execution_id, b, "a deselected execution's events no longer arrive");
}
