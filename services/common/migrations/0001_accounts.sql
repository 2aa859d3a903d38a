-- Durable, non-derived state: accounts, API keys (hashes only), verified numbers.
-- Projections (calls, call_events, ...) are not here: they are derived from the event
-- log by the projector, which owns their DDL (services/projector/projection.sql).
CREATE TABLE accounts (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    signing_secret text NOT NULL,
    calls_per_second real NOT NULL DEFAULT 10,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    key_hash    bytea NOT NULL UNIQUE,       -- sha256 of the whole key; the key is shown once
    prefix      text NOT NULL,               -- first characters, to tell keys apart in a list
    mode        text NOT NULL CHECK (mode IN ('test', 'live')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE numbers (
    account_id  text NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    number      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, number)
);

-- What the API accepted, written before the command is acknowledged by Kafka, so a GET
-- right after a POST finds the call even while the projector lags.
CREATE TABLE call_requests (
    id          text PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    to_number   text NOT NULL,
    from_number text NOT NULL,
    request     jsonb NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX call_requests_account_created ON call_requests (account_id, created_at DESC, id DESC);

CREATE TABLE idempotency_keys (
    account_id  text NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    key         text NOT NULL,
    body_sha256 text NOT NULL,
    call_id     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key)
);
