-- Priorities (DESIGN §8): an execution's priority, 0 (the lowest) to 9, copied onto its task
-- rows so that the runs waiting for a concurrency slot are admitted the highest priority first,
-- then the oldest, from one index. 0 for every row written before these columns existed; a
-- constant default rewrites nothing.
ALTER TABLE naxos_executions ADD COLUMN priority SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE naxos_tasks ADD COLUMN priority SMALLINT NOT NULL DEFAULT 0;

-- The runs waiting for a slot of a scope, in the order they are admitted.
DROP INDEX naxos_tasks_slot_waiting;
CREATE INDEX naxos_tasks_slot_waiting ON naxos_tasks (slot, priority DESC, queued_at) WHERE blocked_by = 'concurrency';
