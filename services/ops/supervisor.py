"""Run every service as a child process in one group, with prefixed, readable logs.

Ctrl-C (or SIGTERM) stops the children with SIGTERM and waits for them; a child that
crashes is restarted with backoff, so one bad service does not take the others down.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass

COLORS = ["36", "32", "33", "35", "34", "31", "96", "92", "93"]


@dataclass(frozen=True)
class Service:
    name: str
    module: str  # python -m <module>
    env: tuple[tuple[str, str], ...] = ()  # settings of this instance only (e.g. its port)


async def _pump(name: str, color: str, stream: asyncio.StreamReader) -> None:
    tty = sys.stdout.isatty()
    label = f"\x1b[{color}m{name:>13}\x1b[0m" if tty else f"{name:>13}"
    while line := await stream.readline():
        sys.stdout.write(f"{label} | {line.decode(errors='replace')}")
        sys.stdout.flush()


async def _run_one(svc: Service, color: str, stopping: asyncio.Event, procs: dict) -> None:
    backoff = 1.0
    while not stopping.is_set():
        # Each service inherits this environment (its settings); CANARY_LOG_COLORS says whether
        # the supervisor's own output is a terminal, since the child's stderr is a pipe.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", svc.module, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={"CANARY_LOG_COLORS": "1" if sys.stdout.isatty() else "0", **os.environ, **dict(svc.env),
                 "PYTHONUNBUFFERED": "1"})
        procs[svc.name] = proc
        await asyncio.gather(_pump(svc.name, color, proc.stdout), proc.wait())
        if stopping.is_set():
            return
        print(f"[supervisor] {svc.name} exited with {proc.returncode}; restarting in {backoff:.0f}s", flush=True)
        try:
            await asyncio.wait_for(stopping.wait(), backoff)
        except asyncio.TimeoutError:
            pass
        backoff = min(backoff * 2, 30)


async def supervise(services: list[Service], ready_message: str = "") -> None:
    """Start all services; return after a clean stop on SIGINT/SIGTERM."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    procs: dict[str, asyncio.subprocess.Process] = {}
    tasks = [asyncio.create_task(_run_one(s, COLORS[i % len(COLORS)], stopping, procs))
             for i, s in enumerate(services)]
    if ready_message:
        print(ready_message, flush=True)
    await stopping.wait()
    print("\n[supervisor] stopping services...", flush=True)
    for p in procs.values():
        if p.returncode is None:
            p.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)
    except asyncio.TimeoutError:
        for p in procs.values():
            if p.returncode is None:
                p.kill()
    print("[supervisor] all services stopped", flush=True)
