//! Message versions on the broker: a message without a version (the original naxos's, or any
//! other service's) is version 1; a task message of a newer version is handed back for a newer
//! node, never delivered as something else; a status event of a newer version is skipped.

mod common;

use std::time::{Duration, Instant};

use naxos_amqp::lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions};
use naxos_amqp::lapin::types::{AMQPValue, FieldTable};
use naxos_amqp::lapin::{BasicProperties, Channel};
use naxos_amqp::{AmqpConfig, AmqpQueue};
use naxos_core::backend::Queue;
use naxos_core::chrono::Utc;
use naxos_core::model::{EventKind, ExecutionStatus, StatusEvent, TaskRef};
use naxos_core::testkit::{service_url, unique_id};
use naxos_core::uuid::Uuid;

const HEADER: &str = "x-naxos-version";

fn versioned(version: u32) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(HEADER.into(), AMQPValue::LongUInt(version));
    BasicProperties::default().with_delivery_mode(2).with_headers(headers)
}

/// Publishes `body` as it is to `exchange` with `routing_key`, and waits for the confirm.
async fn raw_publish(channel: &Channel, exchange: &str, routing_key: &str, body: &[u8], properties: BasicProperties) {
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn channel(queue: &AmqpQueue) -> Channel {
    queue.pool().get().await.unwrap().create_channel().await.unwrap()
}

/// The original naxos's body, with no version anywhere.
/// Publishes a task message in today's body, marked with the next format version; returns it.
async fn publish_from_the_future(queue: &AmqpQueue, channel: &Channel) -> TaskRef {
    let task_queue = queue.task_queue();
    let future = TaskRef::new(Uuid::now_v7(), "from-the-future", 1);
    raw_publish(
        channel,
        task_queue,
        task_queue,
        &go_body(&future),
        versioned(TaskRef::VERSION + 1),
    )
    .await;
    future
}

fn go_body(task: &TaskRef) -> Vec<u8> {
    format!(
        r#"{{"executionId":"{}","taskId":"{}","attempt":{}}}"#,
        task.execution_id, task.task_id, task.attempt
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_marked_version_1_and_unmarked_ones_are_version_1() {
    let Some(queue) = common::queue().await else { return };
    let channel = channel(&queue).await;

    // What naxos publishes: the original's body, and the version in a header.
    let ours = TaskRef::new(Uuid::now_v7(), "ours", 1);
    queue.publish(std::slice::from_ref(&ours)).await.unwrap();
    let got = channel
        .basic_get(queue.task_queue().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("the message is on the queue");
    let body: naxos_core::serde_json::Value = naxos_core::serde_json::from_slice(&got.delivery.data).unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["attempt", "executionId", "taskId"], "the body is the original's");
    let header = got
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(HEADER).cloned());
    assert_eq!(header, Some(AMQPValue::LongUInt(TaskRef::VERSION)));
    got.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();

    // What the original naxos (or a script) publishes: no header at all.
    let go = TaskRef::new(Uuid::now_v7(), "from-go", 2);
    let task_queue = queue.task_queue().to_string();
    raw_publish(
        &channel,
        &task_queue,
        &task_queue,
        &go_body(&go),
        BasicProperties::default().with_delivery_mode(2),
    )
    .await;
    let mut consumer = queue.consume(4).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(15), consumer.next())
        .await
        .expect("the unmarked message is consumed")
        .unwrap()
        .unwrap();
    assert_eq!(delivery.task, go);
    delivery.ack().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_message_of_a_newer_version_is_handed_back_not_misread() {
    let Some(queue) = common::queue().await else { return };
    let channel = channel(&queue).await;
    let task_queue = queue.task_queue().to_string();
    // A body this build would read as a perfectly good task, marked as a newer version: a
    // reader that ignored the version would run it as something it is not.
    let future = publish_from_the_future(&queue, &channel).await;
    let now = TaskRef::new(Uuid::now_v7(), "of-today", 1);
    queue.publish(std::slice::from_ref(&now)).await.unwrap();

    let mut consumer = queue.consume(4).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(15), consumer.next())
        .await
        .expect("the consumer goes on past the newer message")
        .unwrap()
        .unwrap();
    assert_eq!(delivery.task, now);
    delivery.ack().await.unwrap();
    // It comes back after each hand-back, and each time it is handed back again.
    let more = tokio::time::timeout(Duration::from_secs(3), consumer.next()).await;
    assert!(
        more.is_err(),
        "the newer message must not be delivered: {:?}",
        more.map(|d| d.map(|d| d.map(|d| d.task)))
    );
    drop(consumer);

    // It is still on the task queue, for a newer node, marked as delivered before.
    let started = Instant::now();
    let got = loop {
        let got = channel
            .basic_get(task_queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap();
        if let Some(got) = got {
            break got;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the message was not handed back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(got.delivery.data, go_body(&future));
    assert!(got.delivery.redelivered, "it was delivered and handed back");
    got.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
    assert_eq!(queue.dead_letters().await.unwrap(), Some(0));
}

/// When no node understands it, the queue's delivery limit dead-letters it after that many
/// hand-backs (the Store, which still holds the task QUEUED, has it published again later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_task_message_nobody_understands_is_dead_lettered_in_the_end() {
    let Some(url) = service_url("NAXOS_TEST_AMQP_URL") else {
        return;
    };
    let mut config = AmqpConfig::new(url);
    config.prefix = unique_id("t");
    config.delivery_limit = 2;
    let queue = AmqpQueue::with_config(config).await.unwrap();
    let channel = channel(&queue).await;
    publish_from_the_future(&queue, &channel).await;
    let mut consumer = queue.consume(4).await.unwrap();
    let watch = tokio::spawn(async move {
        let next = consumer.next().await;
        next.map(|d| d.map(|d| d.task))
    });
    let started = Instant::now();
    while queue.dead_letters().await.unwrap() != Some(1) {
        assert!(started.elapsed() < Duration::from_secs(20), "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if watch.is_finished() {
        panic!("the consumer must deliver nothing: {:?}", watch.await);
    }
    watch.abort();
    let dead = channel
        .basic_get(queue.dead_letter_queue().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("the dead letter");
    let death = dead
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-death").cloned());
    let reason = match &death {
        Some(AMQPValue::FieldArray(deaths)) => match deaths.as_slice().first() {
            Some(AMQPValue::FieldTable(first)) => match first.inner().get("reason") {
                Some(AMQPValue::LongString(reason)) => String::from_utf8_lossy(reason.as_bytes()).into_owned(),
                other => format!("{other:?}"),
            },
            other => format!("{other:?}"),
        },
        other => format!("{other:?}"),
    };
    assert_eq!(
        reason, "delivery_limit",
        "dead-lettered by the delivery limit, not rejected"
    );
}

fn event(id: Uuid, status: ExecutionStatus) -> StatusEvent {
    StatusEvent {
        execution_id: id,
        definition_id: "versions".into(),
        kind: EventKind::Execution { status },
        error: None,
        at: Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_event_of_a_newer_version_is_skipped() {
    let Some(queue) = common::queue().await else { return };
    let channel = channel(&queue).await;
    let mut events = queue.subscribe_events().await.unwrap();
    let id = Uuid::now_v7();
    let events_exchange = queue.events_exchange().to_string();
    let publish_raw = |e: StatusEvent, properties: BasicProperties| {
        let (channel, exchange) = (channel.clone(), events_exchange.clone());
        async move {
            let body = naxos_core::serde_json::to_vec(&e).unwrap();
            raw_publish(&channel, &exchange, &e.routing_key(), &body, properties).await;
        }
    };
    // Unmarked (another service's, or an older naxos's): version 1, read.
    publish_raw(event(id, ExecutionStatus::Running), BasicProperties::default()).await;
    // Newer: skipped, although this build could parse its body.
    publish_raw(event(id, ExecutionStatus::Failed), versioned(StatusEvent::VERSION + 1)).await;
    // This build's.
    queue
        .publish_events(&[event(id, ExecutionStatus::Completed)])
        .await
        .unwrap();

    let mut seen = Vec::new();
    for _ in 0..2 {
        let next = tokio::time::timeout(Duration::from_secs(15), events.next())
            .await
            .expect("an event")
            .unwrap()
            .unwrap();
        seen.push(next.execution_status());
    }
    assert_eq!(seen, [Some(ExecutionStatus::Running), Some(ExecutionStatus::Completed)]);
}
