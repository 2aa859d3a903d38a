-- Webhook delivery (services/webhooks): durable outbox with retries, per-call ordering.
-- Not a projection: attempts, status codes and latencies are facts about our HTTP
-- calls, not functions of the event log, so they live here and survive a replay.

-- What a call's request said about where to send webhooks (learned from call.queued).
CREATE TABLE webhook_calls (
    call_id            text PRIMARY KEY,
    account_id         text NOT NULL,
    webhook_url        text,
    gather_webhook_url text,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_calls_account ON webhook_calls (account_id, call_id);

-- One row per event to deliver; the event id is the key, so a redelivered Kafka
-- record enqueues nothing new. `seq` orders a call's deliveries: only the oldest
-- pending delivery of a call may be attempted.
CREATE TABLE webhook_deliveries (
    event_id         text PRIMARY KEY,
    seq              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    source_topic     text NOT NULL,            -- the events topic the worker reads (one worker set per topic)
    call_id          text NOT NULL,
    account_id       text NOT NULL,
    event_type       text NOT NULL,
    url              text NOT NULL,
    body             bytea NOT NULL,           -- exact bytes signed and sent on every attempt
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    leased_until     timestamptz,              -- a worker owns the attempt until then (crash = lease expires)
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (source_topic, next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_call_pending ON webhook_deliveries (call_id, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_call ON webhook_deliveries (call_id, seq);

-- Every HTTP attempt, for GET /v1/voice/calls/{id}/webhooks.
CREATE TABLE webhook_attempts (
    event_id     text NOT NULL REFERENCES webhook_deliveries (event_id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    started_at   timestamptz NOT NULL,
    status_code  integer,
    latency_ms   integer NOT NULL,
    error        text,
    PRIMARY KEY (event_id, attempt)
);
