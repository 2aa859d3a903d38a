"""A tiny real HTTP server that answers from a script, for retry/error tests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

TESTDATA = Path(__file__).resolve().parents[2] / "testdata"


class Reply:
    def __init__(self, status: int = 200, body: Any = None, headers: Optional[Dict[str, str]] = None,
                 delay: float = 0.0, drop: bool = False, raw: Optional[bytes] = None) -> None:
        self.status, self.body, self.headers, self.delay, self.drop, self.raw = (
            status, body, headers or {}, delay, drop, raw)


class ScriptedServer:
    def __init__(self) -> None:
        self.script: List[Reply] = []
        self.default = Reply(404, {"error": {"code": "not_found", "message": "unscripted", "field": None}})
        self.requests: List[Dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                server.requests.append({
                    "method": self.command, "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": json.loads(raw) if raw else None, "at": time.monotonic(),
                })
                reply = server.script.pop(0) if server.script else server.default
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:  # close the socket without answering: a network error
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                payload = reply.raw if reply.raw is not None else (
                    b"" if reply.body is None else json.dumps(reply.body).encode())
                self.send_response(reply.status)
                if reply.raw is None and reply.body is not None:
                    self.send_header("Content-Type", "application/json")
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def then(self, *replies: Reply) -> "ScriptedServer":
        self.script.extend(replies)
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = ScriptedServer()
    yield s
    s.close()


@pytest.fixture
def vectors() -> Dict[str, Any]:
    return json.loads((TESTDATA / "webhook_signatures.json").read_text(encoding="utf-8"))
