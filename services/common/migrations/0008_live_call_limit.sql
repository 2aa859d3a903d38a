-- A per-account cap on concurrent calls (429 too_many_live_calls). NULL: the deployment's
-- default (CANARY_MAX_LIVE_CALLS). The partial index keeps counting an account's live
-- calls cheap however many ended calls it has.
ALTER TABLE accounts ADD COLUMN max_live_calls integer CHECK (max_live_calls IS NULL OR max_live_calls >= 0);
CREATE INDEX orch_calls_live ON orch_calls (account_id)
    WHERE NOT COALESCE((state->>'ended')::boolean, false);
