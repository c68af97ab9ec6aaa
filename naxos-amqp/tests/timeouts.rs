//! A broker that stops answering (a network that stops forwarding, modelled by a loopback TCP
//! proxy that stops copying bytes while keeping its sockets open): every call to it fails within
//! its deadline instead of hanging the worker that made it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use naxos_amqp::{AmqpConfig, AmqpQueue};
use naxos_core::backend::Queue;
use naxos_core::model::TaskRef;
use naxos_core::testkit::{service_url, unique_id};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards loopback connections to `target`; while `frozen`, forwards nothing.
async fn proxy(target: String, frozen: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&target).await else {
                continue;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pipe(client_read, server_write, frozen.clone()));
            tokio::spawn(pipe(server_read, client_write, frozen.clone()));
        }
    });
    port
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else { return };
        if n == 0 {
            return;
        }
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_silent_broker_fail_within_their_deadline() {
    let Some(url) = service_url("NAXOS_TEST_AMQP_URL") else {
        return;
    };
    // amqp://user:pass@host:port/vhost → the same through the proxy.
    let (head, rest) = url.split_once('@').unwrap();
    let (hostport, vhost) = rest.split_once('/').unwrap();
    let frozen = Arc::new(AtomicBool::new(false));
    let port = proxy(hostport.to_string(), frozen.clone()).await;
    let mut config = AmqpConfig::new(format!("{head}@127.0.0.1:{port}/{vhost}"));
    config.prefix = unique_id("t");
    // Long enough for the connect and the topology on a busy machine; the publish below tries
    // twice, so it fails within 2 s.
    config.timeout = Duration::from_secs(1);
    let queue = AmqpQueue::with_config(config).await.unwrap();
    let task = TaskRef::new(naxos_core::uuid::Uuid::now_v7(), "a", 1);
    queue.publish(std::slice::from_ref(&task)).await.unwrap();

    frozen.store(true, Ordering::SeqCst);
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

    frozen.store(false, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queue.publish(std::slice::from_ref(&task)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "publishing never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
