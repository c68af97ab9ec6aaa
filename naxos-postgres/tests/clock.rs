//! The store's clock is the database's, read now and then and carried forward on the node's
//! monotonic clock (`time.rs`). A reading taken through a link that stalled must not move it:
//! the database answered at some unknown point of a long round trip, and a clock off by half
//! of it makes this node judge every lease wrongly. Ahead, its sweeper takes live leases from
//! the other nodes (each take counts against the task's `max_lease_expiries`, so a few in a
//! row FAIL a healthy task); behind, the leases it grants are over before they start.

mod common;

use std::time::Duration;

use naxos_core::backend::{ClaimRequest, LeaseState, NewExecution, Store};
use naxos_core::model::{JobDefinition, TaskBuilder, TaskStatus};
use naxos_core::serde_json::json;
use naxos_core::testkit::proxy::{host_port, FreezingProxy};
use naxos_core::testkit::{service_url, unique_id};
use naxos_postgres::{PgConfig, PgStore};

/// How long the store keeps a reading before it reads the database's clock again (`time.rs`),
/// and a little more.
const PAST_REFRESH: Duration = Duration::from_millis(5_300);
/// How long the link stays silent.
const STALL: Duration = Duration::from_secs(4);
/// The lease of the task that another node runs: well inside the clock error a 4 s stall
/// used to cause (about 2 s), well above the time the test needs between claim and sweep.
const LEASE: Duration = Duration::from_secs(1);

async fn store(url: &str, schema: &str) -> PgStore {
    let mut config = PgConfig::new(url);
    config.schema = Some(schema.to_string());
    config.max_connections = 4;
    PgStore::with_config(config).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_reading_through_a_stalled_link_takes_no_live_lease() {
    let Some(url) = service_url("NAXOS_TEST_POSTGRES_URL") else {
        return;
    };
    let schema = unique_id("clock").replace('-', "_");
    // Two nodes on one database: `direct` runs a task, `stalled` reaches the database through a
    // link that goes silent.
    let direct = store(&url, &schema).await;
    let proxy = FreezingProxy::start(host_port(&url)).await;
    let stalled = store(&proxy.url_for(&url), &schema).await;

    // `stalled` reads the database's clock, and then that reading ages until the next call
    // reads it again...
    stalled.recover_expired(3, 10).await.unwrap();
    tokio::time::sleep(PAST_REFRESH).await;
    // ... which happens while the link is silent: the answer comes back after the stall.
    proxy.freeze();
    let sweep = tokio::spawn({
        let stalled = stalled.clone();
        async move { stalled.recover_expired(3, 10).await }
    });
    tokio::time::sleep(STALL).await;
    proxy.thaw();
    sweep.await.unwrap().expect("the sweep after the stall");

    // Another node claims a task, with a lease of 1 s...
    let job = JobDefinition::builder(unique_id("clock"))
        .task(TaskBuilder::new("only", "f"))
        .build();
    let put = direct.put_definition(job).await.unwrap();
    let created = direct
        .create_execution(NewExecution::new(&put.definition, json!({})))
        .await
        .unwrap();
    let task = created.changes.ready[0].clone();
    direct
        .claim(ClaimRequest {
            task: task.clone(),
            owner: "direct".into(),
            lease: LEASE,
        })
        .await
        .unwrap();
    // ... which the node whose link stalled must not find expired.
    let recovered = stalled.recover_expired(3, 10).await.unwrap();
    assert!(
        recovered.ready.is_empty() && recovered.history.is_empty(),
        "a live lease was taken by the node whose clock reading went through the stall: {recovered:?}"
    );
    let execution = direct.get_execution(task.execution_id).await.unwrap();
    assert_eq!(execution.tasks[0].status, TaskStatus::Running);
    assert_eq!(
        direct.heartbeat(&task, LEASE).await.unwrap(),
        LeaseState::Active,
        "the lease still belongs to the node that claimed it"
    );
}
