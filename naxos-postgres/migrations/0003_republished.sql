-- How many times a QUEUED task's message was published again since it became QUEUED: each
-- republish waits twice as long as the one before, so a task waiting behind a backlog is not
-- published again every republish_after (naxos-core's state module decides; see recovery.rs).
ALTER TABLE naxos_tasks ADD COLUMN republished INTEGER NOT NULL DEFAULT 0;
