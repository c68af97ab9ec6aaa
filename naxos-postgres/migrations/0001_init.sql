-- The naxos schema. Every name is unqualified: the tables live in the connection's
-- search_path schema, so one database can hold several isolated naxos installations.

-- Definitions: immutable versions, (id, version) is the key.
CREATE TABLE naxos_definitions (
    id         TEXT        NOT NULL,
    version    INTEGER     NOT NULL CHECK (version > 0),
    name       TEXT        NOT NULL,
    body       JSONB       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE TABLE naxos_executions (
    id                 UUID        PRIMARY KEY,          -- UUIDv7: sorts by creation time
    definition_id      TEXT        NOT NULL,
    definition_version INTEGER     NOT NULL,
    status             TEXT        NOT NULL CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    params             JSONB       NOT NULL,
    error              TEXT,
    idempotency_key    TEXT,
    deadline           TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    start_time         TIMESTAMPTZ,
    end_time           TIMESTAMPTZ,
    FOREIGN KEY (definition_id, definition_version) REFERENCES naxos_definitions (id, version),
    UNIQUE (definition_id, idempotency_key)
);
-- Listing newest first, filtered by status or by definition, paged by id.
CREATE INDEX naxos_executions_status_id ON naxos_executions (status, id DESC);
CREATE INDEX naxos_executions_definition_id ON naxos_executions (definition_id, id DESC);
-- The deadline scan looks at unfinished executions only.
CREATE INDEX naxos_executions_deadline ON naxos_executions (deadline)
    WHERE deadline IS NOT NULL AND status IN ('PENDING', 'RUNNING');
-- Pruning looks at finished executions by end time.
CREATE INDEX naxos_executions_end_time ON naxos_executions (end_time) WHERE end_time IS NOT NULL;

-- One row per task of an execution: its whole state machine.
CREATE TABLE naxos_tasks (
    execution_id   UUID        NOT NULL REFERENCES naxos_executions (id) ON DELETE CASCADE,
    task_id        TEXT        NOT NULL,
    position       INTEGER     NOT NULL,                 -- the definition's sorted order
    name           TEXT        NOT NULL,
    function_name  TEXT        NOT NULL,
    status         TEXT        NOT NULL CHECK (status IN
                       ('PENDING', 'QUEUED', 'RUNNING', 'RETRYING', 'COMPLETED', 'FAILED', 'SKIPPED', 'CANCELLED')),
    dependencies   TEXT[]      NOT NULL,
    dependents     TEXT[]      NOT NULL,
    remaining      INTEGER     NOT NULL CHECK (remaining >= 0), -- dependencies not yet COMPLETED
    attempt        INTEGER     NOT NULL,                 -- the fencing dispatch number
    attempts       INTEGER     NOT NULL DEFAULT 0,       -- times started
    failures       INTEGER     NOT NULL DEFAULT 0,       -- failed attempts (the retry budget)
    lease_expiries INTEGER     NOT NULL DEFAULT 0,
    error          TEXT,
    output         JSONB,
    lease_owner    TEXT,
    lease_expires_at TIMESTAMPTZ,
    queued_at      TIMESTAMPTZ,
    due_at         TIMESTAMPTZ,
    start_time     TIMESTAMPTZ,
    end_time       TIMESTAMPTZ,
    PRIMARY KEY (execution_id, task_id)
);
-- The three recovery scans, each over the few rows in its status.
CREATE INDEX naxos_tasks_expired ON naxos_tasks (lease_expires_at) WHERE status = 'RUNNING';
CREATE INDEX naxos_tasks_stale ON naxos_tasks (queued_at) WHERE status = 'QUEUED';
CREATE INDEX naxos_tasks_due ON naxos_tasks (due_at) WHERE status = 'RETRYING';

-- History: one row per started attempt, never overwritten.
CREATE TABLE naxos_attempts (
    execution_id UUID        NOT NULL,
    task_id      TEXT        NOT NULL,
    attempt      INTEGER     NOT NULL,                   -- the dispatch number that ran
    node         TEXT        NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    ended_at     TIMESTAMPTZ,
    outcome      TEXT,                                   -- COMPLETED, FAILED, RETRYING, RELEASED, EXPIRED, CANCELLED
    error        TEXT,
    PRIMARY KEY (execution_id, task_id, attempt),
    FOREIGN KEY (execution_id, task_id) REFERENCES naxos_tasks (execution_id, task_id) ON DELETE CASCADE
);

CREATE TABLE naxos_nodes (
    id          TEXT        PRIMARY KEY,
    role        TEXT        NOT NULL,
    concurrency INTEGER     NOT NULL,
    running     INTEGER     NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    last_seen   TIMESTAMPTZ NOT NULL
);
