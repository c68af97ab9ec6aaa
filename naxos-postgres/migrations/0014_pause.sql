-- Pause and resume of a definition (DESIGN §8): a paused definition's executions start no new
-- task. A row here is a pause (of every version of the definition).
CREATE TABLE naxos_paused_definitions (
    id TEXT PRIMARY KEY,
    paused_at TIMESTAMPTZ NOT NULL
);

-- Why a QUEUED task waits without its message (`paused`, for now): it is published when
-- admitted again, never by the stale sweep. NULL for every other task, which every row written
-- before this column existed is. Adding a nullable column without a default rewrites nothing.
ALTER TABLE naxos_tasks ADD COLUMN blocked_by TEXT;

-- The admission scan after a resume: only blocked tasks.
CREATE INDEX naxos_tasks_blocked ON naxos_tasks (execution_id) WHERE blocked_by IS NOT NULL;
