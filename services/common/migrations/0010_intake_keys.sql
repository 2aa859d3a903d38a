-- Kafka intake authentication (docs/security.md, "Commands on Kafka"): a producer other
-- than the API signs each command with its account's intake key. Stored as such (it has to
-- be, to check an HMAC, like accounts.signing_secret); NULL: the account has none, so only
-- the API (the service key) can place its calls when the intake requires signatures.
ALTER TABLE accounts ADD COLUMN intake_secret text;
