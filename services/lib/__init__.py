"""Libraries several services share: pure logic and the data access behind the HTTP routers.

Below the services, above ``services.common``: a module here imports ``services.common``
and ``events`` only, never a service (import-linter's contracts in pyproject.toml).
"""
