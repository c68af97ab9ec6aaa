-- The W3C trace context (`traceparent`) of the request that submitted an execution, so that its
-- tasks' spans join that trace. NULL when it came without one, and for everything written before
-- this column existed or by a node of the previous release while it still runs beside upgraded
-- ones (those nodes neither write nor read it).
ALTER TABLE naxos_executions ADD COLUMN traceparent TEXT;
