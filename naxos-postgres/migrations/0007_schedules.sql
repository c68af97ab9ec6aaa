-- Cron schedules (DESIGN §8). `last_tick` is the scheduler's cursor: every tick up to it is
-- done with (fired, skipped as missed, or passed while paused); a tick fires only by moving it
-- forward, under the row's lock, in the statement that creates the tick's execution.
CREATE TABLE naxos_schedules (
    id            TEXT        PRIMARY KEY,
    definition_id TEXT        NOT NULL,
    cron          TEXT        NOT NULL,
    timezone      TEXT        NOT NULL,
    params        JSONB       NOT NULL,
    catch_up      TEXT        NOT NULL CHECK (catch_up IN ('skip', 'one', 'all')),
    paused        BOOLEAN     NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    last_tick     TIMESTAMPTZ NOT NULL
);

-- The schedule and tick that started an execution: NULL for every other execution, for
-- everything written before these columns existed, and for what a node of the previous
-- release writes while it still runs beside upgraded ones (those nodes run no scheduler).
ALTER TABLE naxos_executions ADD COLUMN schedule_id TEXT, ADD COLUMN schedule_tick TIMESTAMPTZ;
-- One execution per (schedule, tick), whatever the number of nodes.
CREATE UNIQUE INDEX naxos_executions_schedule_tick ON naxos_executions (schedule_id, schedule_tick)
    WHERE schedule_id IS NOT NULL;
-- Listing a schedule's executions newest first, paged by id.
CREATE INDEX naxos_executions_schedule_id ON naxos_executions (schedule_id, id DESC) WHERE schedule_id IS NOT NULL;
