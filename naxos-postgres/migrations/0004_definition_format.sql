-- The format a definition's body is written in (naxos-core's `JobDefinition::FORMAT`). A node
-- refuses a definition of a format newer than it knows, and never claims a task of one, instead
-- of misreading it. Everything written before this column existed is format 1, and so is what
-- a node of the previous release writes while it still runs beside upgraded ones (the default).
ALTER TABLE naxos_definitions ADD COLUMN format INTEGER NOT NULL DEFAULT 1 CHECK (format > 0);
