"""Drift check: both SDKs cover every field of schemas/openapi.json for the Voice resources.

Fails when the API grows a request/response field (or an endpoint) that the Python
`canary` package or the Node `@canary/node` TypeScript types do not know, and when an SDK
sends a request field the API does not accept. Needs no server.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, Set

import pytest

ROOT = Path(__file__).resolve().parents[3]
OPENAPI = ROOT / "schemas" / "openapi.json"
TS_TYPES = ROOT / "sdk" / "node" / "src" / "types.ts"
TS_SOURCES = ROOT / "sdk" / "node" / "src"
PY_SOURCES = ROOT / "sdk" / "python" / "src" / "canary"

if not OPENAPI.exists():
    pytest.skip("schemas/openapi.json is not there yet (written by the API service)", allow_module_level=True)

if str(ROOT / "sdk" / "python" / "src") not in sys.path:  # works without `pip install -e sdk/python`
    sys.path.insert(0, str(ROOT / "sdk" / "python" / "src"))

import canary  # noqa: E402
from canary import resources  # noqa: E402
from canary import types as py_types  # noqa: E402

SPEC: Dict[str, Any] = json.loads(OPENAPI.read_text(encoding="utf-8"))

# Endpoints an SDK does not call by path: the signed media URL is followed from a recording's `url`.
NOT_CALLED_BY_PATH = {"/v1/voice/recordings/{}/media", "/healthz", "/readyz"}


# -- OpenAPI helpers --------------------------------------------------------------------


def resolve(schema: Dict[str, Any]) -> Dict[str, Any]:
    """Follow $ref and unwrap anyOf/oneOf [X, null] down to an object schema."""
    seen = 0
    while seen < 20:
        seen += 1
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = SPEC["components"]["schemas"][name]
            continue
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema:
                options = [s for s in schema[key] if s.get("type") != "null"]
                if len(options) == 1:
                    schema = options[0]
                    break
        else:
            return schema
    return schema


def props(schema: Dict[str, Any]) -> Set[str]:
    return set(resolve(schema).get("properties", {}))


def prop(schema: Dict[str, Any], name: str) -> Dict[str, Any]:
    return resolve(resolve(schema)["properties"][name])


def items(schema: Dict[str, Any]) -> Dict[str, Any]:
    return resolve(resolve(schema)["items"])


def op(method: str, path: str) -> Dict[str, Any]:
    return SPEC["paths"][path][method]


def response(method: str, path: str, status: str) -> Dict[str, Any]:
    return resolve(op(method, path)["responses"][status]["content"]["application/json"]["schema"])


def request_body(method: str, path: str) -> Dict[str, Any]:
    return resolve(op(method, path)["requestBody"]["content"]["application/json"]["schema"])


# -- SDK introspection ------------------------------------------------------------------


def py_kwargs(fn: Any, exclude: Iterable[str] = ()) -> Set[str]:
    out = set()
    for name, p in inspect.signature(fn).parameters.items():
        if name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or name in exclude:
            continue
        out.add("from" if name == "from_" else name)
    return out


def py_model(cls: type) -> Set[str]:
    names: Set[str] = set()
    for klass in cls.__mro__:
        names.update(getattr(klass, "__annotations__", {}))
    return {"from" if n == "from_" else n for n in names if not n.startswith("_")}


def py_typeddict(cls: type) -> Set[str]:
    return set(typing.get_type_hints(cls).keys()) if hasattr(cls, "__annotations__") else set()


def ts_interface(name: str) -> Set[str]:
    source = TS_TYPES.read_text(encoding="utf-8")
    m = re.search(r"export interface " + re.escape(name) + r"(?:\s+extends\s+[\w, ]+)?\s*\{", source)
    assert m, f"TypeScript interface {name} not found in sdk/node/src/types.ts"
    depth, i, body_start = 1, m.end(), m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(source[i], 0)
        i += 1
    body = source[body_start:i - 1]
    keys, depth = set(), 0
    for line in body.splitlines():
        stripped = line.strip()
        if depth == 0:
            km = re.match(r"^(?:readonly\s+)?['\"]?([A-Za-z_][\w]*)['\"]?\??\s*:", stripped)
            if km:
                keys.add(km.group(1))
        depth += stripped.count("{") - stripped.count("}")
    return keys


def missing(expected: Set[str], have: Set[str]) -> Set[str]:
    return expected - have


# -- request bodies ---------------------------------------------------------------------

CALL_CREATE = request_body("post", "/v1/voice/calls")


def test_call_create_request_python():
    fields = props(CALL_CREATE)
    assert {"to", "from", "tts", "record"} <= fields
    for fn in (resources.Calls.create, resources.AsyncCalls.create):
        sdk = py_kwargs(fn, exclude=resources.REQUEST_OPTIONS)
        assert not missing(fields, sdk), f"{fn.__qualname__} lacks API fields {sorted(fields - sdk)}"
        assert not (sdk - fields), f"{fn.__qualname__} sends fields the API rejects: {sorted(sdk - fields)}"


def test_call_create_request_node():
    fields = props(CALL_CREATE)
    sdk = ts_interface("CallCreateParams")
    assert not missing(fields, sdk), f"CallCreateParams lacks API fields {sorted(fields - sdk)}"
    assert not (sdk - fields), f"CallCreateParams has fields the API rejects: {sorted(sdk - fields)}"


@pytest.mark.parametrize("field,py_cls,ts_name", [
    ("tts", py_types.TtsParams, "TtsParams"),
    ("gather", py_types.GatherParams, "GatherParams"),
])
def test_nested_request_objects(field, py_cls, ts_name):
    fields = props(prop(CALL_CREATE, field))
    assert fields, f"no properties for {field}"
    assert not missing(fields, py_typeddict(py_cls)), f"python {py_cls.__name__} lacks {sorted(fields - py_typeddict(py_cls))}"
    assert not missing(fields, ts_interface(ts_name)), f"TS {ts_name} lacks {sorted(fields - ts_interface(ts_name))}"


def test_list_calls_query_parameters():
    params = {p["name"] for p in op("get", "/v1/voice/calls").get("parameters", []) if p["in"] == "query"}
    assert {"cursor", "limit"} <= params
    for fn in (resources.Calls.list, resources.AsyncCalls.list):
        sdk = py_kwargs(fn, exclude={"extra_params"})
        assert not missing(params, sdk), f"{fn.__qualname__} lacks query parameters {sorted(params - sdk)}"
    ts = ts_interface("CallListParams")
    assert not missing(params, ts), f"CallListParams lacks {sorted(params - ts)}"


def test_number_create_request():
    fields = props(request_body("post", "/v1/voice/numbers"))
    for fn in (resources.Numbers.create, resources.AsyncNumbers.create):
        assert not missing(fields, py_kwargs(fn, exclude={"idempotency_key"}))


def test_sandbox_and_trunk_requests_node():
    for method, path, ts_name in (("post", "/v1/voice/sandbox/callees", "SandboxCalleeParams"),
                                  ("put", "/v1/voice/trunk", "TrunkParams")):
        if path not in SPEC["paths"]:
            continue
        fields = props(request_body(method, path))
        assert not missing(fields, ts_interface(ts_name)), f"{ts_name} lacks {sorted(fields - ts_interface(ts_name))}"


# -- responses --------------------------------------------------------------------------

CALL = response("get", "/v1/voice/calls/{call_id}", "200")
RESPONSES = [
    ("Call (GET /calls/{id})", lambda: CALL, canary.Call, "Call"),
    ("CallCreated (POST /calls)", lambda: response("post", "/v1/voice/calls", "201"), canary.Call, "Call"),
    ("Call (list item)", lambda: items(prop(response("get", "/v1/voice/calls", "200"), "data")), canary.Call, "Call"),
    ("Call.recording", lambda: prop(CALL, "recording"), canary.RecordingRef, "RecordingRef"),
    ("Call.transcription", lambda: prop(CALL, "transcription"), canary.Transcription, "Transcription"),
    ("Call.gather", lambda: prop(CALL, "gather"), canary.GatherResult, "GatherResult"),
    ("CallEvent", lambda: items(prop(response("get", "/v1/voice/calls/{call_id}/events", "200"), "data")),
     canary.CallEvent, "CallEvent"),
    ("Recording", lambda: response("get", "/v1/voice/calls/{call_id}/recording", "200"), canary.Recording, "Recording"),
    ("Voice", lambda: items(prop(response("get", "/v1/voice/voices", "200"), "data")), canary.Voice, "Voice"),
    ("Number", lambda: items(prop(response("get", "/v1/voice/numbers", "200"), "data")), canary.PhoneNumber,
     "PhoneNumber"),
]


@pytest.mark.parametrize("label,schema,py_cls,ts_name", RESPONSES, ids=[r[0] for r in RESPONSES])
def test_response_fields(label, schema, py_cls, ts_name):
    fields = props(schema())
    assert fields, f"{label}: no properties in the OpenAPI schema"
    py = py_model(py_cls)
    assert not missing(fields, py), f"python {py_cls.__name__} lacks {label} fields {sorted(fields - py)}"
    ts = ts_interface(ts_name)
    assert not missing(fields, ts), f"TS {ts_name} lacks {label} fields {sorted(fields - ts)}"


def test_list_envelope_is_what_pagination_reads():
    envelope = props(response("get", "/v1/voice/calls", "200"))
    assert {"data", "has_more", "next_cursor"} <= envelope
    cursor = {p["name"] for p in op("get", "/v1/voice/calls")["parameters"] if p["in"] == "query"}
    from canary.pagination import CURSOR_PARAM

    assert CURSOR_PARAM in cursor
    assert "CURSOR_PARAM = 'cursor'" in (TS_SOURCES / "pagination.ts").read_text(encoding="utf-8")


# -- endpoints --------------------------------------------------------------------------


def _normalize(path: str) -> str:
    return re.sub(r"\$?\{[^}]*\}", "{}", path)


def _paths_in(directory: Path, pattern: str) -> Set[str]:
    found: Set[str] = set()
    for file in directory.rglob(pattern):
        for m in re.finditer(r"[\"'`](/v1/voice/[^\"'`?]*)", file.read_text(encoding="utf-8")):
            found.add(_normalize(m.group(1)))
    return found


@pytest.mark.parametrize("sdk,directory,pattern", [("python", PY_SOURCES, "*.py"), ("node", TS_SOURCES, "*.ts")])
def test_every_voice_endpoint_is_covered(sdk, directory, pattern):
    api = {_normalize(p) for p in SPEC["paths"] if p.startswith("/v1/voice/")} - NOT_CALLED_BY_PATH
    have = _paths_in(directory, pattern)
    assert not (api - have), f"the {sdk} SDK has no method for {sorted(api - have)}"
