-- Projections derived from voice.call.events. Disposable: `canary-voice replay` rebuilds
-- them into a fresh schema from offset 0 and swaps. {schema} is the target schema.
-- Every column is a function of the event log alone (no now(), no serials), so a replay
-- of the same log gives byte-identical tables.
CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TABLE IF NOT EXISTS {schema}.calls (
    id                 text PRIMARY KEY,
    account_id         text NOT NULL,
    to_number          text,
    from_number        text,
    status             text NOT NULL,
    direction          text NOT NULL DEFAULT 'outbound',
    carrier            text,
    webhook_url        text,
    options            jsonb NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    ringing_at         timestamptz,
    answered_at        timestamptz,
    ended_at           timestamptz,
    duration           integer,
    answered_by        text,
    end_reason         text,
    sip_code           integer,
    hangup_by          text,
    recording_id       text,
    gather             jsonb,
    events_count       integer NOT NULL DEFAULT 0,
    last_event_id      uuid,
    parent_call_id     text  -- a dial step's second call: the call that placed it
);
-- Tables made before the column existed (`canary-voice replay` rebuilds it from the log).
ALTER TABLE {schema}.calls ADD COLUMN IF NOT EXISTS parent_call_id text;
CREATE INDEX IF NOT EXISTS calls_account_created ON {schema}.calls (account_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS calls_account_status ON {schema}.calls (account_id, status);

CREATE TABLE IF NOT EXISTS {schema}.call_events (
    event_id        uuid PRIMARY KEY,
    call_id         text NOT NULL,
    account_id      text NOT NULL,
    type            text NOT NULL,
    version         integer NOT NULL,
    occurred_at     timestamptz NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    causation_id    uuid,
    correlation_id  uuid,
    data            jsonb NOT NULL,
    traceparent     text  -- the event's, as in its envelope (null: it had none); the API shows its trace id
);
-- Tables made before the column existed (`canary-voice replay` fills it for the events of before).
ALTER TABLE {schema}.call_events ADD COLUMN IF NOT EXISTS traceparent text;
CREATE INDEX IF NOT EXISTS call_events_call ON {schema}.call_events (call_id, kafka_offset);

CREATE TABLE IF NOT EXISTS {schema}.gathers (
    event_id        uuid PRIMARY KEY,
    call_id         text NOT NULL,
    account_id      text NOT NULL,
    status          text NOT NULL,            -- completed | timeout
    digits          text NOT NULL DEFAULT '',
    finished_on_key text,
    speech          jsonb,
    step            text,
    occurred_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS gathers_call ON {schema}.gathers (call_id, occurred_at);

CREATE TABLE IF NOT EXISTS {schema}.recordings (
    id              text PRIMARY KEY,
    call_id         text NOT NULL,
    account_id      text NOT NULL,
    wav_ref         text NOT NULL,
    mp3_ref         text,
    duration_ms     integer NOT NULL,
    size_bytes      bigint NOT NULL,
    sha256          text NOT NULL,
    channels        text NOT NULL,
    created_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_call ON {schema}.recordings (call_id);

CREATE TABLE IF NOT EXISTS {schema}.transcriptions (
    recording_id    text PRIMARY KEY,
    call_id         text NOT NULL,
    account_id      text NOT NULL,
    text            text NOT NULL,
    confidence      real NOT NULL,
    segments        jsonb NOT NULL,
    language        text,
    created_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS transcriptions_call ON {schema}.transcriptions (call_id);

-- Consumed positions, written in the same transaction as the rows above: the projector
-- resumes from here, not from Kafka's committed offsets, so nothing is applied twice.
CREATE TABLE IF NOT EXISTS {schema}.offsets (
    consumer        text NOT NULL,
    topic           text NOT NULL,
    kafka_partition integer NOT NULL,
    next_offset     bigint NOT NULL,
    PRIMARY KEY (consumer, topic, kafka_partition)
);
