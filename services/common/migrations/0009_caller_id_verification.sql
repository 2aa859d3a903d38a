-- Caller-ID verification by call (docs/security.md, "Caller ids"). How each number became
-- verified: 'operator' (the CLI, and every number from before this migration), 'call' (a
-- live key's verification call, answered with its code: POST /v1/voice/numbers/{n}/verify)
-- or 'sandbox' (a sk_test_ key's shortcut: usable by sandbox calls only, never by live ones).
ALTER TABLE numbers ADD COLUMN verified_by text NOT NULL DEFAULT 'operator'
    CHECK (verified_by IN ('operator', 'call', 'sandbox'));

-- A verification call in progress, one per number of an account. The code is never stored:
-- code_hash is an HMAC keyed with a service secret (a 6-digit code's plain hash would be
-- reversed at once from a copy of the table). A right code moves the number to `numbers`
-- ('call') and removes the row; five wrong ones, or ten minutes, and a new call is needed.
CREATE TABLE caller_id_verifications (
    account_id  text NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    number      text NOT NULL,
    code_hash   bytea NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    expires_at  timestamptz NOT NULL,
    call_id     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, number)
);
CREATE INDEX caller_id_verifications_sent ON caller_id_verifications (account_id, sent_at);
