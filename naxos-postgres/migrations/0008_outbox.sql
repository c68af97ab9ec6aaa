-- Executions created in a caller's own transaction (PgStore::execute_in) whose ready tasks no
-- node has published yet. The creating transaction inserts the row and notifies the store's
-- channel; on commit a listening node takes the row (DELETE … SKIP LOCKED: one node per row)
-- and publishes the tasks. A row left by a crash is taken by the next sweep on any node.
CREATE TABLE naxos_outbox (
    execution_id UUID PRIMARY KEY REFERENCES naxos_executions (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL
);
