"""The web console at /console: the static build of console/ (`make install` makes it).

Any path under /console that is not a built file answers index.html, so the console's
own routes (/console/calls/call_…) survive a reload. Without a build, /console says how
to make one instead of a bare 404.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

DIST = Path(__file__).resolve().parents[2] / "console" / "dist"

# The console only talks to this API and plays recordings it fetched as blobs.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

MISSING = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Canary Voice console</title></head>
<body><h1>The console is not built</h1><p>Run <code>make install</code> (it builds <code>console/</code> into
<code>console/dist</code>), then reload this page.</p></body></html>"""


def _file(dist: Path, path: str) -> Path | None:
    """The built file at `path`, never one outside the build."""
    target = (dist / path).resolve()
    if path and target.is_file() and target.is_relative_to(dist.resolve()):
        return target
    return None


def install(app: FastAPI, dist: Path | None = None) -> None:
    """Serve the console build under /console (not part of the OpenAPI document)."""
    root = dist or DIST

    @app.get("/console", include_in_schema=False)
    async def console_root() -> Response:
        return RedirectResponse("/console/", status_code=308)

    @app.get("/console/{path:path}", include_in_schema=False)
    async def console(path: str, request: Request) -> Response:
        index = root / "index.html"
        if not index.is_file():
            return HTMLResponse(MISSING, status_code=503, headers=_HEADERS)
        found = _file(root, path)
        if found is not None:
            # Vite names assets by their content hash: a new build is a new name.
            cache = "public, max-age=31536000, immutable" if path.startswith("assets/") else "no-cache"
            return FileResponse(found, headers={**_HEADERS, "Cache-Control": cache})
        if path.startswith("assets/"):
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(index, headers={**_HEADERS, "Cache-Control": "no-cache"})
