//! Transactional enqueue inside an axum handler: an order and the workflow that fulfils it are
//! written in **one** PostgreSQL transaction, so neither exists without the other.
//!
//! ```text
//! NAXOS_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --example transactional
//! curl -s -XPOST localhost:3100/orders -H 'content-type: application/json' -d '{"item":"book","quantity":2}'
//! ```
//!
//! The handler begins a transaction on the service's own pool, inserts the order, calls
//! [`PgStore::execute_in`] with that transaction, and commits; a refused order rolls back both.
//! Once committed, the engine (here in the same process; any node listening on the same
//! database would do) starts the workflow within milliseconds.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use naxos::memory::MemoryQueue;
use naxos::model::{JobDefinition, TaskBuilder};
use naxos::serde_json::{json, Value};
use naxos::{Engine, ExecuteRequest};
use naxos_postgres::sqlx::{self, PgPool};
use naxos_postgres::{PgConfig, PgStore};

/// What the handlers share: the service's own pool and the naxos store.
#[derive(Clone)]
struct App {
    pool: PgPool,
    store: PgStore,
}

/// `POST /orders {"item", "quantity"}`: 201 with the order's id and its workflow's execution
/// id; 422 (nothing written) when the quantity is not positive.
async fn place_order(State(app): State<App>, Json(order): Json<Value>) -> (StatusCode, Json<Value>) {
    match place(&app, &order).await {
        Ok(body) => (StatusCode::CREATED, Json(body)),
        Err((status, error)) => (status, Json(json!({ "error": error }))),
    }
}

async fn place(app: &App, order: &Value) -> Result<Value, (StatusCode, String)> {
    let internal = |e: &dyn std::fmt::Display| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let mut tx = app.pool.begin().await.map_err(|e| internal(&e))?;
    let id: i64 = sqlx::query_scalar("INSERT INTO orders (item, quantity) VALUES ($1, $2) RETURNING id")
        .bind(order["item"].as_str().unwrap_or_default())
        .bind(order["quantity"].as_i64().unwrap_or(0))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| internal(&e))?;
    let run = app
        .store
        .execute_in(&mut tx, ExecuteRequest::new("fulfil", json!({ "orderId": id })))
        .await
        .map_err(|e| internal(&e))?;
    if order["quantity"].as_i64().unwrap_or(0) <= 0 {
        // Dropping `tx` would roll back too; said out loud here.
        tx.rollback().await.map_err(|e| internal(&e))?;
        return Err((StatusCode::UNPROCESSABLE_ENTITY, "quantity must be positive".into()));
    }
    tx.commit().await.map_err(|e| internal(&e))?;
    Ok(json!({ "orderId": id, "executionId": run.execution_id }))
}

/// The service: its own table, the naxos store in schema `naxos`, an engine that runs the
/// `fulfil` workflow, and the router.
async fn service(url: &str) -> Result<(Router, Engine, App), Box<dyn std::error::Error>> {
    let pool = PgPool::connect(url).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS orders (id BIGSERIAL PRIMARY KEY, item TEXT NOT NULL, quantity INT NOT NULL)",
    )
    .execute(&pool)
    .await?;
    let mut config = PgConfig::new(url);
    config.schema = Some("naxos".into());
    let store = PgStore::with_config(config).await?;
    let engine = Engine::builder()
        .store(Arc::new(store.clone()))
        .queue(Arc::new(MemoryQueue::new()))
        .build()?;
    engine.register("reserve", |ctx| async move {
        Ok(json!({ "reserved": ctx.params()["orderId"] }))
    });
    engine.register("ship", |ctx| async move {
        Ok(json!({ "shipped": ctx.params()["orderId"] }))
    });
    engine
        .register_definition(
            JobDefinition::builder("fulfil")
                .task(TaskBuilder::new("reserve", "reserve"))
                .task(TaskBuilder::new("ship", "ship").after(["reserve"]))
                .build(),
        )
        .await?;
    engine.start()?;
    let app = App { pool, store };
    let router = Router::new()
        .route("/orders", post(place_order))
        .with_state(app.clone());
    Ok((router, engine, app))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NAXOS_POSTGRES_URL").map_err(|_| "set NAXOS_POSTGRES_URL to a PostgreSQL URL")?;
    let (router, engine, _) = service(&url).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3100").await?;
    println!("POST http://127.0.0.1:3100/orders {{\"item\":\"book\",\"quantity\":2}}");
    axum::serve(listener, router).await?;
    engine.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use naxos::{ExecutionId, ExecutionStatus};
    use tower::ServiceExt;

    use super::*;

    async fn post(router: &Router, body: Value) -> (StatusCode, Value) {
        let request = Request::post("/orders")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, naxos::serde_json::from_slice(&bytes).unwrap())
    }

    /// A placed order's workflow runs to the end; a refused one leaves neither the order nor
    /// an execution.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_order_and_its_workflow_commit_or_roll_back_together() {
        let Some(url) = naxos::testkit::service_url("NAXOS_TEST_POSTGRES_URL") else {
            return;
        };
        let (router, engine, app) = service(&url).await.unwrap();
        let (status, placed) = post(&router, json!({ "item": "book", "quantity": 2 })).await;
        assert_eq!(status, StatusCode::CREATED, "{placed}");
        let id: ExecutionId = placed["executionId"].as_str().unwrap().parse().unwrap();
        let done = engine.wait_for_timeout(id, Duration::from_secs(20)).await.unwrap();
        assert_eq!(done.status, ExecutionStatus::Completed);
        assert_eq!(
            done.task("ship").unwrap().output,
            Some(json!({ "shipped": placed["orderId"] }))
        );

        let count = |table: &'static str| {
            let pool = app.pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        let (orders, executions) = (count("orders").await, count("naxos.naxos_executions").await);
        let (status, refused) = post(&router, json!({ "item": "book", "quantity": 0 })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
        assert_eq!(count("orders").await, orders, "no order");
        assert_eq!(count("naxos.naxos_executions").await, executions, "no execution");
        engine.shutdown().await;
    }
}
