-- What a trunk's calls accept (services/telephony/sip/policy.py, docs/security.md "SIP
-- signalling and media"). Strict by default: challenges of the first realm the trunk's
-- own address uses, digest with qop only, in-dialog requests to the trunk only.
ALTER TABLE sip_trunks
    ADD COLUMN digest_realm text CHECK (digest_realm IS NULL OR length(digest_realm) BETWEEN 1 AND 128),
    ADD COLUMN allow_legacy_digest boolean NOT NULL DEFAULT false,
    ADD COLUMN allow_foreign_hops boolean NOT NULL DEFAULT false;
