-- Rate limits (DESIGN §8): a task with a `rateLimit` carries its limit's scope from when it
-- starts; NULL for every other task.
ALTER TABLE naxos_tasks ADD COLUMN rate TEXT;

-- One row per rate-limit scope: the times of its last starts (at most `burst`, oldest first),
-- the turn the next booking gets at the earliest, and how many booked turns are still to come.
-- A claim of a rate-limited task locks its scope's row after the execution's row, decides, and
-- writes the row back.
CREATE TABLE naxos_rate_limits (
    scope TEXT PRIMARY KEY,
    starts TIMESTAMPTZ[] NOT NULL DEFAULT '{}',
    booked_until TIMESTAMPTZ,
    pending INTEGER NOT NULL DEFAULT 0
);

-- The stale sweep's fallback for a rate-limited task whose booked message was lost.
CREATE INDEX naxos_tasks_rate_due ON naxos_tasks (due_at) WHERE blocked_by = 'rateLimit';
