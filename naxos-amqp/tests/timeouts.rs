//! A broker that stops answering (a network that stops forwarding, modelled by a loopback TCP
//! proxy that stops copying bytes while keeping its sockets open): every call to it fails within
//! its deadline instead of hanging the worker that made it.

mod common;

use std::time::Duration;

use naxos_amqp::{AmqpConfig, AmqpQueue};
use naxos_core::backend::Queue;
use naxos_core::model::TaskRef;
use naxos_core::testkit::proxy::{host_port, FreezingProxy};
use naxos_core::testkit::{service_url, unique_id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_silent_broker_fail_within_their_deadline() {
    let Some(url) = service_url("NAXOS_TEST_AMQP_URL") else {
        return;
    };
    let proxy = FreezingProxy::start(host_port(&url)).await;
    let mut config = AmqpConfig::new(proxy.url_for(&url));
    config.prefix = unique_id("t");
    // Long enough for the connect and the topology on a busy machine; the publish below tries
    // twice, so it fails within 2 s.
    config.timeout = Duration::from_secs(1);
    let queue = AmqpQueue::with_config(config).await.unwrap();
    let task = TaskRef::new(naxos_core::uuid::Uuid::now_v7(), "a", 1);
    queue.publish(std::slice::from_ref(&task)).await.unwrap();

    proxy.freeze();
    // Without deadlines these would wait for ever; the test gives each 5 s.
    let publish = tokio::time::timeout(Duration::from_secs(5), queue.publish(std::slice::from_ref(&task)))
        .await
        .expect("the publish returned");
    let error = publish.unwrap_err();
    assert!(
        error.is_transient() && error.to_string().contains("did not answer"),
        "{error}"
    );
    let ping = tokio::time::timeout(Duration::from_secs(5), queue.ping())
        .await
        .expect("the ping returned");
    assert!(ping.unwrap_err().is_transient());

    proxy.thaw();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queue.publish(std::slice::from_ref(&task)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "publishing never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
