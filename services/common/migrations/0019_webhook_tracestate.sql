-- A delivery carries its event's W3C tracestate next to its traceparent (docs/architecture.md
-- "Following a call"): vendors' entries the client sent reach the receiving app unchanged.
-- Null when there was none, or for deliveries enqueued before.
ALTER TABLE webhook_deliveries ADD COLUMN tracestate text;
