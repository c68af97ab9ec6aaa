-- Durable waits: a `sleep` or `waitFor` task is WAITING (holding no worker) until its due time
-- (`due_at`, NULL for a wait without a timeout) or its signal.
ALTER TABLE naxos_tasks DROP CONSTRAINT naxos_tasks_status_check;
ALTER TABLE naxos_tasks ADD CONSTRAINT naxos_tasks_status_check CHECK (status IN
    ('PENDING', 'QUEUED', 'RUNNING', 'RETRYING', 'WAITING', 'COMPLETED', 'FAILED', 'SKIPPED', 'CANCELLED'));
-- The sweepers' scan for waits that are due and that no node's timer woke.
CREATE INDEX naxos_tasks_waiting ON naxos_tasks (due_at) WHERE status = 'WAITING';
-- Signals sent before a task waited for them, in order, as naxos-core's `Signal` JSON list;
-- NULL when there are none.
ALTER TABLE naxos_executions ADD COLUMN signals JSONB;
