-- Concurrency limits (DESIGN §8): a task with a `concurrency` limit carries its slot's scope
-- (definition, task and key value, as a JSON array) from when it starts, and holds a slot of
-- it while it runs (and once admitted, while its message travels). NULL / false for every
-- other task, which every row written before these columns existed is; a constant default
-- rewrites nothing.
ALTER TABLE naxos_tasks ADD COLUMN slot TEXT, ADD COLUMN holds_slot BOOLEAN NOT NULL DEFAULT false;

-- The runs holding a slot of a scope, counted at each claim that needs one.
CREATE INDEX naxos_tasks_slot_held ON naxos_tasks (slot) WHERE holds_slot;

-- The runs waiting for a slot of a scope, oldest first: admitted in that order.
CREATE INDEX naxos_tasks_slot_waiting ON naxos_tasks (slot, queued_at) WHERE blocked_by = 'concurrency';
