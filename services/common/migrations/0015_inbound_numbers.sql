-- Inbound calls to an account's numbers (docs/architecture.md "Inbound calls"). A number
-- answers with the flow its app returns from voice_url (asked on every call, signed like
-- every webhook) or with a stored flow (flow_id, its latest version when the call comes
-- in); webhook_url gets the status webhooks of its calls. Neither route: the number is a
-- caller id only, and a call to it is refused (SIP 404).
ALTER TABLE numbers
    ADD COLUMN voice_url text CHECK (voice_url IS NULL OR length(voice_url) BETWEEN 1 AND 2048),
    ADD COLUMN flow_id text,
    ADD COLUMN webhook_url text CHECK (webhook_url IS NULL OR length(webhook_url) BETWEEN 1 AND 2048),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT numbers_one_route CHECK (voice_url IS NULL OR flow_id IS NULL);
-- The gateway loads the routable numbers of its trunks' accounts in one query.
CREATE INDEX numbers_routable ON numbers (account_id) WHERE voice_url IS NOT NULL OR flow_id IS NOT NULL;
