"""Webhooks: call events -> signed HTTP POSTs to the customer's URLs, with durable retries.

Layers: `payloads` (pure: event -> webhook body), `policy` (pure: backoff, settings),
`store` (Postgres outbox), `sender` (one signed HTTP attempt), `service` (Kafka intake
+ dispatcher), `cli`. GET /v1/voice/calls/{id}/webhooks is the API's
(services/api/routers/webhooks.py over services/lib/webhook_deliveries.py).
"""
