-- Orchestrator state: one row per call, written in the same transaction as the consumed
-- offsets, so a restart resumes exactly where the last committed batch ended.
CREATE TABLE orch_calls (
    call_id     text PRIMARY KEY,
    account_id  text NOT NULL,
    state       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orch_offsets (
    consumer        text NOT NULL,
    topic           text NOT NULL,
    kafka_partition integer NOT NULL,
    next_offset     bigint NOT NULL,
    PRIMARY KEY (consumer, topic, kafka_partition)
);

-- Durable timers (ring timeout, pacing slot, max duration): they survive a restart and
-- fire as timer.fired events on the log.
CREATE TABLE orch_timers (
    call_id     text NOT NULL,
    name        text NOT NULL,
    account_id  text NOT NULL,
    due_at      timestamptz NOT NULL,
    token       text NOT NULL DEFAULT '',
    scope       text NOT NULL DEFAULT '',      -- topic prefix of the orchestrator that owns it
    PRIMARY KEY (call_id, name)
);
CREATE INDEX orch_timers_due ON orch_timers (scope, due_at);

-- Per-account dial pacing: the next free slot.
CREATE TABLE orch_pacing (
    scope       text NOT NULL DEFAULT '',
    account_id  text NOT NULL,
    next_slot   timestamptz NOT NULL,
    PRIMARY KEY (scope, account_id)
);

-- Which gateway owns a live call; a lease it keeps renewing. A dial.requested seen twice
-- finds its row and is not dialled again; an expired lease means the gateway died.
CREATE TABLE telephony_calls (
    call_id     text PRIMARY KEY,
    account_id  text NOT NULL,
    scope       text NOT NULL DEFAULT '',
    dial_event  uuid NOT NULL,
    gateway_id  text NOT NULL,
    lease_until timestamptz NOT NULL,
    ended       boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telephony_calls_live ON telephony_calls (scope, lease_until) WHERE NOT ended;

-- Sandbox scripted callees: what a sandbox number does when called.
CREATE TABLE sandbox_callees (
    number      text NOT NULL,
    account_id  text NOT NULL DEFAULT '',      -- '' = every account
    script      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (number, account_id)
);
