-- SIP trunk of an account: where its live (sk_live_) calls are sent.
-- The password is never stored in clear: password_sealed holds it encrypted and
-- authenticated with the service secret (CANARY_TRUNK_SECRET, see
-- services/telephony/trunks.py); no API or CLI ever returns it (only has_password).
--
-- Caller-ID rules, applied by the gateway to each call's `from`:
--   allowed_from_prefixes empty, caller_id NULL  -> `from` as requested
--   allowed_from_prefixes empty, caller_id set   -> always caller_id (fixed CLI)
--   allowed_from_prefixes set                    -> `from` if it starts with one of them,
--                                                   else caller_id if set, else the call fails
CREATE TABLE sip_trunks (
    account_id      text PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    host            text NOT NULL,
    port            integer NOT NULL DEFAULT 5060 CHECK (port BETWEEN 1 AND 65535),
    transport       text NOT NULL DEFAULT 'udp' CHECK (transport IN ('udp', 'tcp', 'tls')),
    username        text,
    password_sealed bytea,
    caller_id       text,
    allowed_from_prefixes text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
