"""POST /v1/voice/calls throughput and latency, as a ratio to a minimal endpoint.

Both servers run the same framework and server (FastAPI on uvicorn, one worker, same
loop/HTTP implementation); the baseline is a minimal JSON POST endpoint, measured in the
same run on the same machine, so the ratio means something on any hardware. The load
generator is a separate process speaking raw keep-alive HTTP/1.1 (much cheaper than
an HTTP client library, so it steals as little CPU as possible from the server).

    .venv/bin/python bench/api.py [--seconds 10] [--connections 16]

Targets (2 cores): >= 1,500 accepted calls/s, p99 <= 25 ms, ratio >= 0.3.
Every accepted call is a real one: a call_requests row in Postgres and a PlaceCall
command acknowledged by Kafka (acks=all) on a throwaway topic prefix.
"""


import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BODY = json.dumps({"to": "+15551234567", "from": "+15559876543",
                   "tts": {"text": "Hello! This is a call from Canary. Press 1 to confirm.",
                           "voice": "en-US-Neural2-F"}}).encode()


# --- the baseline server ------------------------------------------------------------

def baseline_app():
    from fastapi import FastAPI, Request
    from starlette.responses import Response
    import orjson

    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        body = orjson.loads(await request.body())
        return Response(orjson.dumps({"id": "x", "to": body.get("to"), "status": "queued"}),
                        status_code=201, media_type="application/json")

    return app


def serve_baseline(port: int) -> None:
    import uvicorn

    uvicorn.run(baseline_app(), host="127.0.0.1", port=port, access_log=False, log_level="warning",
                server_header=False, backlog=2048)


# --- the load generator (its own process) -----------------------------------------------

async def _worker(host: str, port: int, request: bytes, deadline: float, lat: list[float],
                  codes: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            n = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    n = int(line[15:])
            if n:
                await reader.readexactly(n)
            lat.append(time.perf_counter() - t0)
            codes[status] = codes.get(status, 0) + 1
    finally:
        writer.close()


async def _load(url_path: str, port: int, key: str, seconds: float, conns: int) -> dict:
    request = (f"POST {url_path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n").encode() + BODY
    lat: list[float] = []
    codes: dict[int, int] = {}
    # warm-up (connections, caches, producer batches), not measured
    await asyncio.gather(*(_worker("127.0.0.1", port, request, time.perf_counter() + 2.0, [], {})
                           for _ in range(conns)))
    t0 = time.perf_counter()
    await asyncio.gather(*(_worker("127.0.0.1", port, request, t0 + seconds, lat, codes) for _ in range(conns)))
    elapsed = time.perf_counter() - t0
    lat.sort()
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {"requests": len(lat), "ok": ok, "codes": codes, "seconds": elapsed, "ok_per_s": ok / elapsed,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": lat[-1] * 1000 if lat else float("nan")}


def run_load(path: str, port: int, key: str, seconds: float, conns: int) -> dict:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(_load(path, port, key, seconds, conns))


def load_in_subprocess(path: str, port: int, key: str, seconds: float, conns: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--load", path, "--port", str(port), "--key", key,
                          "--seconds", str(seconds), "--connections", str(conns)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- orchestration -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on {port} did not start")


async def setup(prefix: str) -> str:
    from services.common import accounts, db
    from services.common.kafka import ensure_topics

    await db.migrate()
    await ensure_topics(prefix=prefix)
    conn = await db.connect()
    try:
        acct = await accounts.create_account(conn, f"bench-{uuid.uuid4().hex[:8]}", calls_per_second=1e6)
        # No orchestrator ends these calls: every accepted one stays live for the run, so the
        # cap on concurrent calls (CANARY_MAX_LIVE_CALLS) would answer 429 after the first 100.
        await accounts.set_limits(conn, acct["id"], max_live_calls=10**9)
        await accounts.ensure_number(conn, acct["id"], "+15559876543")
        return (await accounts.create_key(conn, acct["id"], "test"))[1]
    finally:
        await conn.close()


async def cleanup(prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from services.common.config import settings
    from services.common.kafka import topics

    admin = AIOKafkaAdminClient(bootstrap_servers=settings().kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([t.name for t in topics.topic_specs(prefix)])
    except Exception:
        pass
    finally:
        await admin.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--baseline-server", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--load", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--key", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.baseline_server:
        return serve_baseline(a.baseline_server)
    if a.load:
        print(json.dumps(run_load(a.load, a.port, a.key, a.seconds, a.connections)))
        return

    prefix = f"bench{uuid.uuid4().hex[:8]}."
    key = asyncio.run(setup(prefix))
    env = {**os.environ, "CANARY_ENV": "development", "CANARY_TOPIC_PREFIX": prefix, "PYTHONUNBUFFERED": "1",
           "CANARY_LOG_LEVEL": "warning"}
    base_port, api_port = free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen([sys.executable, __file__, "--baseline-server", str(base_port)], env=env,
                                      cwd=ROOT))
        wait_port(base_port)
        base = load_in_subprocess("/echo", base_port, key, a.seconds, a.connections)
        procs[0].terminate()
        procs[0].wait(10)
        procs.append(subprocess.Popen([sys.executable, "-m", "services.api"], cwd=ROOT,
                                      env={**env, "CANARY_API_PORT": str(api_port)}))
        wait_port(api_port)
        api = load_in_subprocess("/v1/voice/calls", api_port, key, a.seconds, a.connections)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        asyncio.run(cleanup(prefix))

    ratio = api["ok_per_s"] / base["ok_per_s"] if base["ok_per_s"] else 0.0
    print(f"cores: {os.cpu_count()}  connections: {a.connections}  seconds: {a.seconds:g}")
    print(f"{'':32}{'ok/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}  status codes")
    for name, r in (("baseline (minimal JSON POST)", base), ("POST /v1/voice/calls", api)):
        print(f"{name:32}{r['ok_per_s']:10.0f}{r['p50_ms']:9.2f}{r['p99_ms']:9.2f}{r['max_ms']:9.1f}  {r['codes']}")
    print(f"ratio (calls / baseline throughput): {ratio:.2f}")
    ok = api["ok_per_s"] >= 1500 and api["p99_ms"] <= 25 and ratio >= 0.3
    print(f"targets (>= 1500/s, p99 <= 25 ms, ratio >= 0.3): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
