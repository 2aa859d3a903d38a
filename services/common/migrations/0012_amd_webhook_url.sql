-- Where a call's machine detection result is POSTed (its amd_webhook_url option; null:
-- the call's webhook_url), learned from call.queued like the other routes.
ALTER TABLE webhook_calls ADD COLUMN amd_webhook_url text;
