-- Retention by definition and end state (DESIGN §8): an execution is pruned once finished and
-- its end time is older than its definition version's retention for its end state, else the
-- server's default for that state (CANCELLED follows the failed period).
--
-- The definition version's own periods are copied onto the execution when it is created
-- (NULL: the server's default, which is known only when pruning). Every execution written
-- before these columns existed, or by a node of the previous release (which refuses the
-- definitions that carry a retention: they are of definition format 3), has NULLs. Adding
-- nullable columns without a default rewrites nothing.
ALTER TABLE naxos_executions
    ADD COLUMN retention_completed_ms BIGINT CHECK (retention_completed_ms > 0),
    ADD COLUMN retention_failed_ms BIGINT CHECK (retention_failed_ms > 0);

-- `t` plus `ms` milliseconds. IMMUTABLE, as an index expression needs: adding an interval of
-- time alone (no days or months) to a timestamptz does not depend on the time zone.
CREATE FUNCTION naxos_plus_ms(t TIMESTAMPTZ, ms BIGINT) RETURNS TIMESTAMPTZ
    LANGUAGE SQL IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT t + ms * INTERVAL '1 millisecond' $$;

-- What pruning reads, one small index per class, each holding finished executions only, so
-- that a prune is a range scan that stops at the first one not yet due — never a walk over
-- the executions still within a longer retention:
-- COMPLETED ones that follow the default, by end time;
CREATE INDEX naxos_executions_prune_completed ON naxos_executions (end_time)
    WHERE status = 'COMPLETED' AND retention_completed_ms IS NULL;
-- FAILED and CANCELLED ones that follow the default, by end time;
CREATE INDEX naxos_executions_prune_failed ON naxos_executions (end_time)
    WHERE status IN ('FAILED', 'CANCELLED') AND retention_failed_ms IS NULL;
-- those whose definition has its own period for their end state, by when it runs out.
CREATE INDEX naxos_executions_prune_own_completed
    ON naxos_executions (naxos_plus_ms(end_time, retention_completed_ms))
    WHERE status = 'COMPLETED' AND retention_completed_ms IS NOT NULL;
CREATE INDEX naxos_executions_prune_own_failed
    ON naxos_executions (naxos_plus_ms(end_time, retention_failed_ms))
    WHERE status IN ('FAILED', 'CANCELLED') AND retention_failed_ms IS NOT NULL;

-- naxos_executions_end_time (0001) stays while nodes of the previous release may run beside
-- this one (their prune reads it); a later release drops it.
