//! Garbage on the task queue lands in the dead-letter queue and does not stall the consumer.

mod common;

use std::time::{Duration, Instant};

use naxos_amqp::lapin::options::BasicPublishOptions;
use naxos_amqp::lapin::BasicProperties;
use naxos_core::backend::Queue;
use naxos_core::model::TaskRef;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_dead_lettered_and_the_consumer_goes_on() {
    let Some(queue) = common::queue().await else { return };
    let connection = queue.pool().get().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    for garbage in [&b"not json"[..], br#"{"executionId": 7}"#, &[0xff, 0xfe, 0x00][..]] {
        channel
            .basic_publish(
                queue.task_queue().into(),
                queue.task_queue().into(),
                BasicPublishOptions::default(),
                garbage,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let good = TaskRef::new(naxos_core::uuid::Uuid::now_v7(), "after-the-garbage", 1);
    queue.publish(std::slice::from_ref(&good)).await.unwrap();

    let mut consumer = queue.consume(4).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(15), consumer.next())
        .await
        .expect("the consumer is not stalled by garbage")
        .unwrap()
        .unwrap();
    assert_eq!(delivery.task, good);
    delivery.ack().await.unwrap();

    let started = Instant::now();
    loop {
        let dead = queue.dead_letters().await.unwrap();
        if dead == Some(3) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "dead letters: {dead:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
