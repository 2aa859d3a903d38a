-- A delivery carries its event's trace (W3C traceparent, docs/architecture.md "Following a
-- call"): every attempt sends a `traceparent` header in the call's trace, so the receiving
-- app can join it. Null for deliveries enqueued before.
ALTER TABLE webhook_deliveries ADD COLUMN traceparent text;
