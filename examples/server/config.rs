//! The server's configuration, from the environment; a bad value fails start-up naming its variable.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

/// What this node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// API and workers.
    All,
    /// API only: submits work, runs none.
    Api,
    /// Workers only (and `/health`).
    Worker,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Worker => "worker",
        })
    }
}

/// Where the node keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// LMDB in `NAXOS_LMDB_PATH` (the default with no backend variables): durable, no service.
    Lmdb,
    /// Process memory: gone at exit (`NAXOS_STORE=memory`).
    Memory,
    /// PostgreSQL at `NAXOS_POSTGRES_URL`.
    Postgres,
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreKind::Lmdb => "lmdb",
            StoreKind::Memory => "memory",
            StoreKind::Postgres => "postgres",
        })
    }
}

/// The data directory when `NAXOS_LMDB_PATH` is unset.
pub(crate) const DEFAULT_LMDB_PATH: &str = "naxos-data";

/// Everything the environment configures.
#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    pub(crate) host: IpAddr,
    pub(crate) port: u16,
    pub(crate) role: Role,
    pub(crate) node_id: Option<String>,
    pub(crate) concurrency: usize,
    /// [`naxos::EngineConfig::run_ready_here`].
    pub(crate) run_ready_here: bool,
    pub(crate) max_body_bytes: usize,
    pub(crate) definitions_file: Option<PathBuf>,
    pub(crate) store: StoreKind,
    /// The LMDB data directory (the store's and the definition cache's).
    pub(crate) lmdb_path: PathBuf,
    /// The LMDB store's map size in bytes (its default when unset).
    pub(crate) lmdb_map_size: Option<usize>,
    /// Where `POST /api/v1/system/backup` writes (`<lmdb_path>/backups` on the LMDB store).
    pub(crate) backup_dir: Option<PathBuf>,
    pub(crate) postgres_url: Option<String>,
    pub(crate) amqp_url: Option<String>,
    pub(crate) amqp_prefix: Option<String>,
    pub(crate) api_token: Option<String>,
    pub(crate) lease_ttl_ms: Option<usize>,
    pub(crate) republish_after_ms: Option<usize>,
    pub(crate) sweep_interval_ms: Option<usize>,
    /// On shutdown, how long running tasks may take before they are handed back.
    pub(crate) shutdown_grace_ms: Option<usize>,
    /// How long finished executions are kept by end state when their definition sets no
    /// `retention` (engine default when unset).
    pub(crate) retention_completed_ms: Option<usize>,
    pub(crate) retention_failed_ms: Option<usize>,
    /// Unstarted executions above which submits answer 503 (engine default when unset).
    pub(crate) max_pending_executions: Option<usize>,
    /// A file each demo function call is appended to (for crash tests).
    pub(crate) call_log: Option<PathBuf>,
}

/// A variable with a value the server cannot use.
#[derive(Debug)]
pub(crate) struct ConfigError {
    pub(crate) variable: &'static str,
    pub(crate) problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.problem)
    }
}

fn bad(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

/// Reads the configuration through `var` (the process environment in the server).
pub(crate) fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<ServerConfig, ConfigError> {
    let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if let Some(format) = get("NAXOS_LOG_FORMAT").filter(|f| f != "json" && f != "text") {
        return Err(bad("NAXOS_LOG_FORMAT", format!("`{format}` is not one of text, json")));
    }
    let api_token = get("NAXOS_API_TOKEN");
    if api_token.as_ref().is_some_and(|t| t.len() < 16) {
        return Err(bad("NAXOS_API_TOKEN", "use a token of at least 16 characters"));
    }
    let host = match get("NAXOS_SERVER_HOST") {
        None => IpAddr::from([127, 0, 0, 1]),
        Some(h) if h == "localhost" => IpAddr::from([127, 0, 0, 1]),
        Some(h) => h
            .parse()
            .map_err(|_| bad("NAXOS_SERVER_HOST", format!("`{h}` is not an IP address")))?,
    };
    let port = match get("NAXOS_SERVER_PORT") {
        None => 8080,
        Some(p) => p
            .parse()
            .map_err(|_| bad("NAXOS_SERVER_PORT", format!("`{p}` is not a port number (0-65535)")))?,
    };
    let role = match get("NAXOS_ROLE").as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("all") => Role::All,
        Some("api") => Role::Api,
        Some("worker") => Role::Worker,
        Some(other) => return Err(bad("NAXOS_ROLE", format!("`{other}` is not one of all, api, worker"))),
    };
    let postgres_url = get("NAXOS_POSTGRES_URL");
    let amqp_url = get("NAXOS_AMQP_URL").or_else(|| get("NAXOS_RABBITMQ_URL"));
    let store = match (
        get("NAXOS_STORE").map(|s| s.to_ascii_lowercase()).as_deref(),
        &postgres_url,
    ) {
        (None, Some(_)) | (Some("postgres"), Some(_)) => StoreKind::Postgres,
        (None | Some("lmdb"), None) => StoreKind::Lmdb,
        (Some("memory"), None) => StoreKind::Memory,
        (Some("postgres"), None) => return Err(bad("NAXOS_STORE", "`postgres` needs NAXOS_POSTGRES_URL")),
        (Some(kind @ ("lmdb" | "memory")), Some(_)) => {
            return Err(bad(
                "NAXOS_STORE",
                format!("`{kind}` contradicts NAXOS_POSTGRES_URL: unset one of them"),
            ))
        }
        (Some(other), _) => {
            return Err(bad(
                "NAXOS_STORE",
                format!("`{other}` is not one of lmdb, memory, postgres"),
            ))
        }
    };
    if role != Role::All && (postgres_url.is_none() || amqp_url.is_none()) {
        return Err(bad(
            "NAXOS_ROLE",
            format!("`{role}` needs the shared backends: set NAXOS_POSTGRES_URL and NAXOS_AMQP_URL"),
        ));
    }
    let concurrency = positive(get("NAXOS_WORKER_CONCURRENCY"), "NAXOS_WORKER_CONCURRENCY", 16)?;
    let run_ready_here = match get("NAXOS_RUN_READY_HERE").map(|v| v.to_ascii_lowercase()).as_deref() {
        Some("true") => true,
        None | Some("false") => false,
        Some(other) => return Err(bad("NAXOS_RUN_READY_HERE", format!("`{other}` is not true or false"))),
    };
    let max_body_bytes = positive(get("NAXOS_MAX_BODY_BYTES"), "NAXOS_MAX_BODY_BYTES", 1 << 20)?;
    let node_id = get("NAXOS_NODE_ID");
    if let Some(id) = &node_id {
        if !naxos::model::is_valid_id(id) {
            return Err(bad(
                "NAXOS_NODE_ID",
                format!("`{id}` must match [A-Za-z0-9_.-]{{1,128}}"),
            ));
        }
    }
    let lmdb_path = get("NAXOS_LMDB_PATH").map_or_else(|| PathBuf::from(DEFAULT_LMDB_PATH), PathBuf::from);
    let backup_dir = match get("NAXOS_BACKUP_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => (store == StoreKind::Lmdb).then(|| lmdb_path.join("backups")),
    };
    Ok(ServerConfig {
        host,
        port,
        role,
        node_id,
        concurrency,
        run_ready_here,
        max_body_bytes,
        definitions_file: get("NAXOS_DEFINITIONS_FILE").map(PathBuf::from),
        store,
        lmdb_path,
        backup_dir,
        lmdb_map_size: optional(get("NAXOS_LMDB_MAP_SIZE"), "NAXOS_LMDB_MAP_SIZE")?,
        postgres_url,
        amqp_url,
        amqp_prefix: get("NAXOS_AMQP_PREFIX"),
        api_token,
        lease_ttl_ms: optional(get("NAXOS_LEASE_TTL_MS"), "NAXOS_LEASE_TTL_MS")?,
        republish_after_ms: optional(get("NAXOS_REPUBLISH_AFTER_MS"), "NAXOS_REPUBLISH_AFTER_MS")?,
        sweep_interval_ms: optional(get("NAXOS_SWEEP_INTERVAL_MS"), "NAXOS_SWEEP_INTERVAL_MS")?,
        shutdown_grace_ms: optional(get("NAXOS_SHUTDOWN_GRACE_MS"), "NAXOS_SHUTDOWN_GRACE_MS")?,
        retention_completed_ms: optional(get("NAXOS_RETENTION_COMPLETED_MS"), "NAXOS_RETENTION_COMPLETED_MS")?,
        retention_failed_ms: optional(get("NAXOS_RETENTION_FAILED_MS"), "NAXOS_RETENTION_FAILED_MS")?,
        max_pending_executions: optional(get("NAXOS_MAX_PENDING_EXECUTIONS"), "NAXOS_MAX_PENDING_EXECUTIONS")?,
        call_log: get("NAXOS_CALL_LOG").map(PathBuf::from),
    })
}

fn positive(raw: Option<String>, variable: &'static str, default: usize) -> Result<usize, ConfigError> {
    Ok(optional(raw, variable)?.unwrap_or(default))
}

fn optional(raw: Option<String>, variable: &'static str) -> Result<Option<usize>, ConfigError> {
    raw.map(|v| {
        v.parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad(variable, format!("`{v}` is not a positive whole number")))
    })
    .transpose()
}
