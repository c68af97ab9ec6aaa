-- Delayed executions (`?delayMs=`, `?runAt=`, DESIGN §8): created at once, PENDING with no task
-- queued until `scheduled_for`; then started (roots queued, `start_time` set). NULL for an
-- execution that started at once, which every row written before this column existed did.
-- Adding a nullable column without a default rewrites nothing.
ALTER TABLE naxos_executions ADD COLUMN scheduled_for TIMESTAMPTZ;

-- The sweepers' scan for delayed executions whose time has come and that no node's timer
-- started: only those still waiting (naxos-core's `ExecutionSummary::is_delayed`), by time.
CREATE INDEX naxos_executions_delayed ON naxos_executions (scheduled_for)
    WHERE status = 'PENDING' AND start_time IS NULL AND scheduled_for IS NOT NULL;
