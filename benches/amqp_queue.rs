//! AmqpQueue's publish + consume + ack rate beside raw lapin on the same broker.
//!
//! Run it through `scripts/bench-amqp.sh`, which starts a throwaway RabbitMQ and sets
//! `NAXOS_BENCH_AMQP_URL`. Without that variable it prints a note and exits.
//! All runs: persistent JSON messages, publisher confirms (pipelined, 500 in flight), one
//! consumer acking each message, publishing and consuming at the same time.

use std::time::{Duration, Instant};

use naxos_amqp::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use naxos_amqp::lapin::types::{AMQPValue, FieldTable};
use naxos_amqp::lapin::{BasicProperties, Connection, ConnectionProperties};
use naxos_amqp::{AmqpConfig, AmqpQueue};
use naxos_core::backend::Queue;
use naxos_core::model::TaskRef;

const N: usize = 20_000;
const BATCH: usize = 500;

async fn raw(url: &str, quorum: bool) -> Duration {
    use futures_util::StreamExt;
    let name = format!(
        "bench-raw-{}",
        &naxos_core::uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let connection = Connection::connect(url, ConnectionProperties::default()).await.unwrap();
    let publisher = connection.create_channel().await.unwrap();
    publisher.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let mut args = FieldTable::default();
    if quorum {
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    }
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    publisher
        .queue_declare(name.as_str().into(), durable, args)
        .await
        .unwrap();
    let consumer_channel = connection.create_channel().await.unwrap();
    consumer_channel
        .basic_qos(256, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consumer_channel
        .basic_consume(
            name.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let body = serde_json::to_vec(&TaskRef::new(naxos_core::uuid::Uuid::now_v7(), "bench-task", 1)).unwrap();
    let start = Instant::now();
    let consuming = tokio::spawn(async move {
        for _ in 0..N {
            let d = consumer.next().await.unwrap().unwrap();
            d.acker.ack(BasicAckOptions::default()).await.unwrap();
        }
    });
    for _ in 0..N / BATCH {
        let mut confirms = Vec::with_capacity(BATCH);
        for _ in 0..BATCH {
            let props = BasicProperties::default().with_delivery_mode(2);
            let c = publisher
                .basic_publish(
                    "".into(),
                    name.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    props,
                )
                .await
                .unwrap();
            confirms.push(c);
        }
        for c in confirms {
            assert!(c.await.unwrap().is_ack());
        }
    }
    consuming.await.unwrap();
    start.elapsed()
}

async fn naxos_queue(url: &str) -> Duration {
    let mut config = AmqpConfig::new(url);
    config.prefix = format!("bench-{}", &naxos_core::uuid::Uuid::new_v4().simple().to_string()[..8]);
    let queue = AmqpQueue::with_config(config).await.unwrap();
    let mut consumer = queue.consume(256).await.unwrap();
    let batch: Vec<TaskRef> = (0..BATCH)
        .map(|i| TaskRef::new(naxos_core::uuid::Uuid::now_v7(), format!("t{i}"), 1))
        .collect();
    let start = Instant::now();
    let consuming = tokio::spawn(async move {
        for _ in 0..N {
            let d = consumer.next().await.unwrap().unwrap();
            d.ack().await.unwrap();
        }
    });
    for _ in 0..N / BATCH {
        queue.publish(&batch).await.unwrap();
    }
    consuming.await.unwrap();
    start.elapsed()
}

fn main() {
    let Ok(url) = std::env::var("NAXOS_BENCH_AMQP_URL") else {
        eprintln!("amqp_queue: NAXOS_BENCH_AMQP_URL is not set; run scripts/bench-amqp.sh");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rate = |d: Duration| N as f64 / d.as_secs_f64();
        let classic = raw(&url, false).await;
        println!(
            "amqp raw lapin, classic durable queue: {N} msgs in {:.2} s = {:.0} msg/s",
            classic.as_secs_f64(),
            rate(classic)
        );
        let quorum = raw(&url, true).await;
        println!(
            "amqp raw lapin, quorum queue: {N} msgs in {:.2} s = {:.0} msg/s",
            quorum.as_secs_f64(),
            rate(quorum)
        );
        let ours = naxos_queue(&url).await;
        println!(
            "amqp AmqpQueue (quorum queue): {N} msgs in {:.2} s = {:.0} msg/s",
            ours.as_secs_f64(),
            rate(ours)
        );
    });
}
