-- Which status webhooks a call asked for (its `status_callback_events`, as public statuses);
-- NULL: all of them, as before the option existed.
ALTER TABLE webhook_calls ADD COLUMN IF NOT EXISTS status_events text[];
