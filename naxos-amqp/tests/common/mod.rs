//! A fresh AmqpQueue per test: its own exchange and queue names on the test broker.
#![allow(dead_code, unreachable_pub)]

use naxos_amqp::{AmqpConfig, AmqpQueue};
use naxos_core::testkit::{service_url, unique_id};

/// A queue with a unique prefix, or `None` when `NAXOS_TEST_AMQP_URL` is unset (outside CI).
pub async fn queue() -> Option<AmqpQueue> {
    let url = service_url("NAXOS_TEST_AMQP_URL")?;
    let mut config = AmqpConfig::new(url);
    config.prefix = unique_id("t");
    Some(
        AmqpQueue::with_config(config)
            .await
            .expect("connect to the test RabbitMQ"),
    )
}
