-- IVR flows (services/flows): stored per account and versioned. PUT adds a version and
-- never rewrites one, so a call that ran version N can always be explained (and
-- replayed) against exactly that document. DELETE hides a flow from the API and from
-- new calls but keeps its versions for the same reason.
CREATE TABLE flows (
    id             text PRIMARY KEY,
    account_id     text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name           text,
    latest_version integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);
CREATE INDEX flows_account_live ON flows (account_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE flow_versions (
    flow_id    text NOT NULL REFERENCES flows (id) ON DELETE CASCADE,
    version    integer NOT NULL CHECK (version >= 1),
    definition jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flow_id, version)
);
