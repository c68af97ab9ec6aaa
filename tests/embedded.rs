//! The example server on its default, durable embedded backends (LmdbStore + LmdbCache in one
//! data directory, the in-memory queue), killed with SIGKILL at several moments and started
//! again on the same directory: every execution completes, no task that had completed runs
//! again, and the definitions and their versions are intact.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{call, finished, scratch_dir, start_with, stop_gracefully, submit_sample_2, DEADLINE};
use hyper::{Method, StatusCode};
use naxos::serde_json::Value;

/// Diamonds per run, and their tasks.
const DIAMONDS: usize = 20;
const TASKS: usize = DIAMONDS * 4;

/// A definition of the test's own, registered in two versions before the kill.
const LOOP_V1: &str = r#"{"id":"kept","name":"Kept v1","tasks":{"a":{"id":"a","name":"a","functionName":"echo"}}}"#;
const LOOP_V2: &str = r#"{"id":"kept","name":"Kept v2","tasks":{"a":{"id":"a","name":"a","functionName":"echo"}}}"#;

fn env(dir: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("NAXOS_LMDB_PATH", dir),
        ("NAXOS_LEASE_TTL_MS", "1500"),
        ("NAXOS_REPUBLISH_AFTER_MS", "1000"),
        ("NAXOS_SWEEP_INTERVAL_MS", "200"),
    ]
}

/// The (execution, task) pairs COMPLETED now, read over HTTP.
async fn completed(base: &str, ids: &[String]) -> HashSet<(String, String)> {
    let mut done = HashSet::new();
    for id in ids {
        let (status, exec) = call(base, Method::GET, &format!("/api/v1/jobs/{id}/status"), "").await;
        assert_eq!(status, StatusCode::OK, "{exec}");
        for task in exec["tasks"].as_array().unwrap() {
            if task["status"] == "COMPLETED" {
                done.insert((id.clone(), task["taskId"].as_str().unwrap().to_string()));
            }
        }
    }
    done
}

async fn kill_after(tasks_done: usize) {
    let dir = scratch_dir("embedded");
    let dir_str = dir.display().to_string();
    let env = env(&dir_str);
    let mut first = start_with(&env).await;
    assert!(
        first.banner.contains("store lmdb (") && first.banner.contains(&dir_str),
        "the banner says where the data is: {}",
        first.banner
    );
    for body in [LOOP_V1, LOOP_V2] {
        let (status, put) = call(&first.base, Method::POST, "/api/v1/job-definitions", body).await;
        assert_eq!(status, StatusCode::CREATED, "{put}");
    }
    let mut ids = Vec::new();
    for _ in 0..DIAMONDS {
        ids.push(submit_sample_2(&first.base, r#"{"sleepMs": 150}"#).await);
    }
    let started = Instant::now();
    let mut seen = completed(&first.base, &ids).await;
    while seen.len() < tasks_done {
        assert!(started.elapsed() < DEADLINE, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(10)).await;
        seen = completed(&first.base, &ids).await;
    }
    first.child.kill().await.expect("SIGKILL");
    assert!(seen.len() < TASKS, "the kill should land mid-run");

    let mut second = start_with(&env).await;
    for id in &ids {
        let exec = finished(&second.base, id).await;
        assert_eq!(exec["status"], "COMPLETED", "{exec}");
        for task in exec["tasks"].as_array().unwrap() {
            assert_eq!(task["status"], "COMPLETED");
            assert_eq!(task["output"]["sleptMs"], 150);
            let key = (id.clone(), task["taskId"].as_str().unwrap().to_string());
            if seen.contains(&key) {
                assert_eq!(task["attempts"], 1, "{key:?} completed before the kill and ran again");
            }
        }
    }
    let (status, versions) = call(&second.base, Method::GET, "/api/v1/job-definitions/kept/versions", "").await;
    assert_eq!(status, StatusCode::OK, "{versions}");
    let names: Vec<&Value> = versions.as_array().unwrap().iter().map(|v| &v["name"]).collect();
    assert_eq!(names, ["Kept v1", "Kept v2"], "{versions}");
    stop_gracefully(&mut second).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_the_submits_loses_nothing() {
    kill_after(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_a_quarter_through_loses_nothing() {
    kill_after(TASKS / 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_three_quarters_through_loses_nothing() {
    kill_after(TASKS * 3 / 4).await;
}

/// A data directory belongs to one process: a second server on it stops at start (exit code 1)
/// naming the directory, and the first one goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_directory_stops_naming_it() {
    let dir = scratch_dir("held");
    let dir_str = dir.display().to_string();
    let mut first = start_with(&env(&dir_str)).await;
    let out = common::command(&[("NAXOS_SERVER_PORT", "0"), ("NAXOS_LMDB_PATH", &dir_str)])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("NAXOS_LMDB_PATH") && stderr.contains(&dir_str) && stderr.contains("another process"),
        "{stderr}"
    );
    let (status, _) = call(&first.base, Method::GET, "/health", "").await;
    assert_eq!(status, StatusCode::OK);
    stop_gracefully(&mut first).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `POST /api/v1/system/backup` while the server runs: a copy under `<data>/backups/` that
/// opens as a store of its own, holding every execution and definition of that instant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_opens_as_a_store() {
    use naxos::backend::Store;
    let dir = scratch_dir("backup");
    let dir_str = dir.display().to_string();
    let mut server = start_with(&env(&dir_str)).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(submit_sample_2(&server.base, "{}").await);
    }
    for id in &ids {
        assert_eq!(finished(&server.base, id).await["status"], "COMPLETED");
    }
    let (status, backup) = call(&server.base, Method::POST, "/api/v1/system/backup", "").await;
    assert_eq!(status, StatusCode::CREATED, "{backup}");
    let file = std::path::PathBuf::from(backup["path"].as_str().unwrap());
    assert!(file.starts_with(dir.join("backups")), "{backup}");
    // The server keeps serving meanwhile; the copy is a store of its own.
    let (status, _) = call(&server.base, Method::GET, "/health", "").await;
    assert_eq!(status, StatusCode::OK);
    let copy = naxos_lmdb::LmdbStore::open(file.parent().unwrap()).unwrap();
    for id in &ids {
        let exec = copy.get_execution(id.parse().unwrap()).await.unwrap();
        assert_eq!(exec.status, naxos::ExecutionStatus::Completed);
    }
    assert!(copy.get_definition("sample-2", None).await.is_ok());
    drop(copy);
    stop_gracefully(&mut server).await;
    let _ = std::fs::remove_dir_all(&dir);
}
