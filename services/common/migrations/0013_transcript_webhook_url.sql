-- Where a call's live transcripts are POSTed (its transcribe_webhook_url, or its webhook_url
-- with transcribe_webhooks; null: not sent), learned from call.queued like the other routes.
ALTER TABLE webhook_calls ADD COLUMN IF NOT EXISTS transcript_url text;
