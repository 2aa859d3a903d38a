"""The orchestrator: per-call state machine driving a call from request to end."""
