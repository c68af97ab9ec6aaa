-- Sub-jobs (`subJob`, DESIGN §8): an execution a sub-job task started names its parent task, at
-- the attempt that started it, and how deep it is nested. NULL for every other execution, which
-- every row written before these columns existed is. Adding nullable columns without a default
-- rewrites nothing.
ALTER TABLE naxos_executions
    ADD COLUMN parent_execution_id UUID,
    ADD COLUMN parent_task_id TEXT,
    ADD COLUMN parent_attempt INTEGER,
    ADD COLUMN parent_depth INTEGER;

-- The sweepers' scan for children still running under a parent that finished (its stop reaches
-- them through the engine unless a node died in between): only unfinished children.
CREATE INDEX naxos_executions_children ON naxos_executions (parent_execution_id)
    WHERE parent_execution_id IS NOT NULL AND status IN ('PENDING', 'RUNNING');
