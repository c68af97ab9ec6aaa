-- A counter every transition that can end a task or the execution bumps (claims do not). The
-- one-statement finish compares the locked row's revision with the one its snapshot saw: equal
-- means no such transition committed in between, so its snapshot-based reads are current.
ALTER TABLE naxos_executions ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
