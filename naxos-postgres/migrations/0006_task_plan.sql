-- Task plans: what the state machine needs of a task beyond its function (its `when` condition
-- and `trigger`; later the other workflow kinds), as naxos-core's `TaskPlan` JSON. NULL for a
-- plain task, and for everything written before this column existed or by a node of the
-- previous release (which cannot read a definition that has a plan: it is of a newer format).
ALTER TABLE naxos_tasks ADD COLUMN plan JSONB;
-- True when every task of the execution is plain, fixed at creation: only such executions take
-- the hand-written hot paths (claim.rs, settle.rs); the others go through the state module.
ALTER TABLE naxos_executions ADD COLUMN plain BOOLEAN NOT NULL DEFAULT true;
