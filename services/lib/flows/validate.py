"""Flow validation on save: the JSON Schema, then the graph (targets, reachability, loops).

Every error names where it is: `field` is `start` or `steps.<name>` (what the API's 422
reports), `path` the exact spot inside the step (`steps.menu.branches.2`).

    >>> [e.code for e in validate_flow({"start": "a", "steps": {"a": {"kind": "goto", "step": "a"}}})]
    ['loop_without_gather']
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "schemas" / "flows" / "flow.schema.json"
KINDS = ("say", "play", "gather", "record", "pause", "webhook", "stream", "goto", "hangup", "answered_by", "dial",
         "transfer")
TOP_KEYS = ("name", "description", "voice", "start", "steps")


@dataclass(frozen=True, slots=True)
class FlowError:
    field: str  # "start" | "steps.<name>" | "steps" | "flow"
    code: str  # invalid_flow | invalid_step | unknown_step_kind | missing_target | unreachable | loop_without_gather
    message: str
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "code": self.code, "message": self.message, "path": self.path or self.field}


class FlowInvalid(ValueError):
    """Raised by `check_flow`; carries every error found."""

    def __init__(self, errors: list[FlowError]):
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


@lru_cache(maxsize=None)
def _validator(ref: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/$defs/{ref}", "$defs": schema()["$defs"]})


def targets(step: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, target step name) for every step a step can lead to."""
    for key in ("next", "default", "on_timeout", "on_failed"):
        if isinstance(step.get(key), str):
            yield key, step[key]
    if step.get("kind") == "goto" and isinstance(step.get("step"), str):
        yield "step", step["step"]
    branches = step.get("branches")
    if isinstance(branches, dict):
        for k, v in branches.items():
            if isinstance(v, str):
                yield f"branches.{k}", v


def _schema_errors(name_field: str, step: Any) -> list[FlowError]:
    """Kind check first (a clear message instead of eight oneOf failures), then the kind's schema."""
    if not isinstance(step, dict):
        return [FlowError(name_field, "invalid_step", "a step must be an object")]
    kind = step.get("kind")
    if kind not in KINDS:
        return [FlowError(name_field, "unknown_step_kind",
                          f"unknown step kind {kind!r} (expected one of {', '.join(KINDS)})", f"{name_field}.kind")]
    out = []
    for err in sorted(_validator(kind).iter_errors(step), key=lambda e: list(map(str, e.absolute_path))):
        sub = ".".join(str(p) for p in err.absolute_path)
        out.append(FlowError(name_field, "invalid_step", f"{kind} step: {(sub + ': ') if sub else ''}{err.message}",
                             f"{name_field}.{sub}" if sub else name_field))
    if not out and kind in ("dial", "transfer"):
        out += _dial_errors(name_field, step)
    if not out and isinstance(step.get("language"), str):
        from services.lib.languages import language_problem

        if problem := language_problem(step["language"]):
            out.append(FlowError(name_field, "invalid_step", f"{kind} step: language: {problem}",
                                 f"{name_field}.language"))
    return out


def _dial_errors(name_field: str, step: dict[str, Any]) -> list[FlowError]:
    """A dial or transfer step's numbers are possible phone numbers (the schema checks only their shape)."""
    from events.catalog import e164

    out = []
    for key in ("to", "caller_id"):
        value = step.get(key)
        if isinstance(value, str) and value.startswith("+"):
            try:
                e164(value)
            except ValueError as exc:
                out.append(FlowError(name_field, "invalid_step", f"{step['kind']} step: {key}: {exc}", f"{name_field}.{key}"))
    return out


def validate_steps(steps: list[Any], known: set[str]) -> list[FlowError]:
    """Unnamed steps (a webhook's answer): schema per step, targets must be in `known`."""
    errors: list[FlowError] = []
    for i, step in enumerate(steps):
        field = f"steps.{i}"
        errs = _schema_errors(field, step)
        errors += errs
        if not errs:
            for where, target in targets(step):
                if where != "next" and target not in known:
                    errors.append(FlowError(field, "missing_target", f"{where} -> {target!r} is not a step",
                                            f"{field}.{where}"))
    return errors


def validate_flow(flow: Any) -> list[FlowError]:
    """Every error in `flow` (empty list = valid)."""
    if not isinstance(flow, dict):
        return [FlowError("flow", "invalid_flow", "a flow must be a JSON object")]
    errors: list[FlowError] = []
    for key in flow:
        if key not in TOP_KEYS:
            errors.append(FlowError(key, "invalid_flow", f"unknown field {key!r}"))
    for key in ("name", "description", "voice"):
        if key in flow and not isinstance(flow[key], str):
            errors.append(FlowError(key, "invalid_flow", f"{key} must be a string"))
    steps = flow.get("steps")
    if not isinstance(steps, dict) or not steps:
        return errors + [FlowError("steps", "invalid_flow", "steps must be a non-empty object of named steps")]
    name_check = Draft202012Validator(schema()["properties"]["steps"]["propertyNames"])
    for name in steps:
        if not name_check.is_valid(name):
            errors.append(FlowError(f"steps.{name}", "invalid_step",
                                    "step names are letters, digits, _ and -, starting with a letter (max 64)"))
    valid: dict[str, dict[str, Any]] = {}
    for name, step in steps.items():
        errs = _schema_errors(f"steps.{name}", step)
        errors += errs
        if isinstance(step, dict):
            valid[name] = step  # graph checks still run on steps with field errors

    start = flow.get("start")
    if not isinstance(start, str) or start not in steps:
        errors.append(FlowError("start", "missing_target", f"start {start!r} is not a step"))
        start = None

    # Missing targets.
    for name, step in valid.items():
        for where, target in targets(step):
            if target not in steps:
                errors.append(FlowError(f"steps.{name}", "missing_target", f"{where} -> {target!r} is not a step",
                                        f"steps.{name}.{where}"))

    if start is None:
        return errors

    # Reachability from start.
    seen = {start}
    todo = [start]
    while todo:
        for _, t in targets(valid.get(todo.pop(), {})):
            if t in steps and t not in seen:
                seen.add(t)
                todo.append(t)
    for name in steps:
        if name not in seen:
            errors.append(FlowError(f"steps.{name}", "unreachable", f"step {name!r} cannot be reached from start"))

    # Loops that never wait for the caller: a cycle through non-gather steps only.
    errors += _loops_without_gather(valid, steps)
    return errors


def _loops_without_gather(valid: dict[str, dict[str, Any]], steps: dict[str, Any]) -> list[FlowError]:
    out: list[FlowError] = []
    color: dict[str, int] = {}  # 1 = on the DFS stack, 2 = done
    reported: set[str] = set()

    def edges(name: str) -> list[str]:
        step = valid.get(name, {})
        if step.get("kind") == "gather":
            return []
        return [t for _, t in targets(step) if t in steps and valid.get(t, {}).get("kind") != "gather"]

    for root in steps:
        if color.get(root) or valid.get(root, {}).get("kind") == "gather":
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(edges(root)))]
        trail = [root]
        color[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                color[node] = 2
                stack.pop()
                trail.pop()
                continue
            if color.get(nxt) == 1:  # back edge: node closes a loop
                loop = trail[trail.index(nxt):] + [nxt]
                if node not in reported:
                    reported.add(node)
                    out.append(FlowError(f"steps.{node}", "loop_without_gather",
                                         "loop without a gather: " + " -> ".join(loop)
                                         + " never waits for the caller"))
            elif not color.get(nxt):
                color[nxt] = 1
                stack.append((nxt, iter(edges(nxt))))
                trail.append(nxt)
    return out


def check_flow(flow: Any) -> dict[str, Any]:
    """Return `flow` if valid, else raise FlowInvalid."""
    errors = validate_flow(flow)
    if errors:
        raise FlowInvalid(errors)
    return flow
