"""The lifecycle every long-running service shares: start, run until a signal, stop."""

from __future__ import annotations

import asyncio
import gc
import signal
from typing import Any, Protocol


class Service(Protocol):
    stopping: asyncio.Event

    async def start(self) -> None: ...

    async def run(self) -> None: ...

    async def stop(self) -> None: ...


def quiet_gc() -> None:
    """After start-up: long-lived objects leave the GC's generations and young collections run
    less often. A full collection over every module and cache costs tens of milliseconds,
    which lands in a latency tail (an API response, a media frame due on a 20 ms clock)."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def serve(svc: Service, log: Any, name: str, stats: Any = None) -> None:
    """Run `svc` until SIGINT/SIGTERM, then stop it cleanly and log `stats()` if given.

    With ``CANARY_HEALTH_PORT`` set, ``GET /healthz`` on it reports the service's health
    (services/common/health.py) from before it starts until it stops."""
    from services.common import tracing
    from services.common.config import settings
    from services.common.health import HEALTH, serve_health

    s = settings()
    # Derived span ids and exported spans name the service (an event worker: its group).
    tracing.setup(getattr(svc, "trace_name", None) or name, log)
    HEALTH.stall_s = s.health_stall_s
    server = await serve_health(s.health_port, name, s.health_host) if s.health_port else None
    try:
        await svc.start()
        quiet_gc()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, svc.stopping.set)
        try:
            await svc.run()
        finally:
            await svc.stop()
            log.info(f"{name} stopped", **(stats() if stats else {}))
    finally:
        tracing.shutdown()
        if server is not None:
            server.close()
