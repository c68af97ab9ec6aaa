//! The bundled naxos server: `cargo run --release --example server`.
//!
//! Serves the REST API on `127.0.0.1:8080` with the demo task functions and the two sample
//! definitions, durable in `./naxos-data` (LMDB, no service to run); in memory with
//! `NAXOS_STORE=memory`, on PostgreSQL when `NAXOS_POSTGRES_URL` is set (see `backends`).
//! Configuration comes from the environment (`NAXOS_SERVER_HOST`,
//! `NAXOS_SERVER_PORT`, `NAXOS_WORKER_CONCURRENCY`, `NAXOS_RUN_READY_HERE`, `NAXOS_NODE_ID`, `NAXOS_ROLE`,
//! `NAXOS_MAX_BODY_BYTES`, `NAXOS_DEFINITIONS_FILE`, `NAXOS_STORE`, `NAXOS_LMDB_PATH`,
//! `NAXOS_LMDB_MAP_SIZE`, `NAXOS_BACKUP_DIR`, `NAXOS_POSTGRES_URL`, `NAXOS_AMQP_URL`,
//! `NAXOS_AMQP_PREFIX`, `NAXOS_API_TOKEN`,
//! `NAXOS_LEASE_TTL_MS`, `NAXOS_REPUBLISH_AFTER_MS`, `NAXOS_SWEEP_INTERVAL_MS`,
//! `NAXOS_SHUTDOWN_GRACE_MS`, `NAXOS_RETENTION_COMPLETED_MS`, `NAXOS_RETENTION_FAILED_MS`,
//! `NAXOS_MAX_PENDING_EXECUTIONS`, `NAXOS_CALL_LOG`); a bad value
//! stops it at start with a message naming the variable. Logs go to stderr (`RUST_LOG` filters them); the one-line
//! banner goes to stdout.

mod backends;
mod call_log;
mod config;
mod demo;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use config::{Role, ServerConfig};
use naxos::{Engine, EngineConfig, JobDefinition};
use naxos_http::HttpConfig;

/// mimalloc instead of the system allocator: the engine allocates per task and event, and
/// glibc's malloc was a quarter of the in-memory engine's CPU (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if std::env::var("NAXOS_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().with_current_span(true).with_span_list(true).init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let config = match config::from_env(|name| std::env::var(name).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("naxos: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("naxos: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: ServerConfig) -> anyhow::Result<()> {
    let mut engine_config = EngineConfig {
        concurrency: config.concurrency,
        run_ready_here: config.run_ready_here,
        role: config.role.to_string(),
        workers: config.role != Role::Api,
        ..EngineConfig::default()
    };
    if let Some(id) = &config.node_id {
        engine_config.node_id = id.clone();
    }
    let ms = |v: usize| std::time::Duration::from_millis(v as u64);
    if let Some(ttl) = config.lease_ttl_ms {
        engine_config.lease_ttl = ms(ttl);
    }
    if let Some(after) = config.republish_after_ms {
        engine_config.republish_after = ms(after);
    }
    if let Some(every) = config.sweep_interval_ms {
        engine_config.sweep_interval = ms(every);
    }
    if let Some(grace) = config.shutdown_grace_ms {
        engine_config.shutdown_grace = ms(grace);
    }
    if let Some(keep) = config.retention_completed_ms {
        engine_config.retention_completed = ms(keep);
    }
    if let Some(keep) = config.retention_failed_ms {
        engine_config.retention_failed = ms(keep);
    }
    if let Some(limit) = config.max_pending_executions {
        engine_config.max_pending_executions = Some(limit as u64);
    }
    let (builder, backends) = backends::open(&config, Engine::builder().config(engine_config)).await?;
    let engine = builder.build().context("the engine's settings")?;
    let call_log = match &config.call_log {
        Some(path) => Some(
            call_log::CallLog::open(path, &engine.config().node_id)
                .with_context(|| format!("NAXOS_CALL_LOG: cannot open {}", path.display()))?,
        ),
        None => None,
    };
    demo::register(&engine, call_log);
    for definition in demo::samples() {
        engine.register_definition(definition).await?;
    }
    if let Some(file) = &config.definitions_file {
        load_definitions(&engine, file).await?;
    }
    let listener = tokio::net::TcpListener::bind((config.host, config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    let addr = listener.local_addr()?;
    let runs_workers = config.role != Role::Api;
    // Every role sweeps and registers itself; `api` nodes run no workers.
    engine.start()?;
    let metrics = naxos_http::install_prometheus().context("installing the metrics recorder")?;
    let router = match config.role {
        Role::Worker => naxos_http::health_router(engine.clone(), Some(metrics)),
        Role::All | Role::Api => naxos_http::router(
            engine.clone(),
            HttpConfig {
                max_body_bytes: config.max_body_bytes,
                api_token: config.api_token.clone(),
                metrics: Some(metrics),
                backup_dir: config.backup_dir.clone(),
                ..HttpConfig::default()
            },
        ),
    };
    let workers = if runs_workers {
        format!("{} workers", config.concurrency)
    } else {
        "no workers".to_string()
    };
    println!(
        "naxos listening on http://{addr} (role {}, node {}, {workers}; {})",
        config.role,
        engine.config().node_id,
        backends.0
    );
    std::io::stdout().flush()?;
    naxos_http::serve(listener, router, engine, async {
        shutdown_signal().await;
        tracing::info!("stopping: no new work; finishing running tasks and requests");
    })
    .await?;
    Ok(())
}

/// Registers the definitions in a JSON file: one definition or an array of them.
async fn load_definitions(engine: &Engine, file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("NAXOS_DEFINITIONS_FILE: cannot read {}", file.display()))?;
    let value: naxos::serde_json::Value = naxos::serde_json::from_str(&text)
        .with_context(|| format!("NAXOS_DEFINITIONS_FILE: {} is not valid JSON", file.display()))?;
    let items = match value {
        naxos::serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    for item in items {
        let definition: JobDefinition = naxos::serde_json::from_value(item).with_context(|| {
            format!(
                "NAXOS_DEFINITIONS_FILE: a definition in {} does not parse",
                file.display()
            )
        })?;
        let id = definition.id.clone();
        let put = engine
            .register_definition(definition)
            .await
            .with_context(|| format!("NAXOS_DEFINITIONS_FILE: definition `{id}`"))?;
        tracing::info!(id, version = put.definition.version, "definition loaded");
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
