-- Exact acceptance (docs/architecture.md, "What a 2xx means"): a call the API answered
-- with an error is never placed. The API writes its request row as 'pending' before it
-- publishes the PlaceCall ('published' once Kafka acked, on the idempotent path, so a
-- retry knows); the orchestrator moves a 'pending' or 'published' row to 'accepted' in
-- the transaction that decides the call; an API whose publish failed moves a 'pending'
-- row to 'abandoned' and answers 503 only if it got there first. A PlaceCall whose row is 'abandoned' (its
-- send landed after all) is dead-lettered, never dialed.
ALTER TABLE call_requests ADD COLUMN state text NOT NULL DEFAULT 'pending'
    CHECK (state IN ('pending', 'published', 'accepted', 'abandoned'));
