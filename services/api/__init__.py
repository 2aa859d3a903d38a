"""The public HTTP API (FastAPI + uvicorn): calls, numbers, voices, recordings.

Run it with ``python -m services.api`` (CANARY_API_HOST:CANARY_API_PORT, default
127.0.0.1:8080). The app factory is :func:`services.api.app.create_app`.
"""
