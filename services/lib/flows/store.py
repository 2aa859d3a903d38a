"""Versioned flow storage in Postgres (tables from migration 0004_flows.sql).

JSON goes in and out as text (`::text::jsonb`, `definition::text`), so these functions
work on any asyncpg connection whatever jsonb codec it has installed.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import asyncpg
import orjson


def new_flow_id() -> str:
    return "flow_" + uuid.uuid4().hex[:20]


def _ts(v: datetime | None) -> str | None:
    if v is None:
        return None
    return v.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _out(r: asyncpg.Record) -> dict[str, Any]:
    return {"id": r["id"], "object": "flow", "version": r["version"], "latest_version": r["latest_version"],
            "name": r["name"], "flow": orjson.loads(r["definition"]), "created_at": _ts(r["created_at"]),
            "updated_at": _ts(r["updated_at"]), "version_created_at": _ts(r["version_created_at"])}


_SELECT = ("SELECT f.id, f.name, f.latest_version, f.created_at, f.updated_at, v.version,"
           " v.definition::text AS definition, v.created_at AS version_created_at"
           " FROM flows f JOIN flow_versions v ON v.flow_id = f.id")


async def create(conn: asyncpg.Connection, account_id: str, definition: dict[str, Any],
                 flow_id: str | None = None) -> dict[str, Any]:
    fid = flow_id or new_flow_id()
    async with conn.transaction():
        await conn.execute("INSERT INTO flows (id, account_id, name, latest_version) VALUES ($1, $2, $3, 1)",
                           fid, account_id, definition.get("name"))
        await conn.execute("INSERT INTO flow_versions (flow_id, version, definition) VALUES ($1, 1, $2::text::jsonb)",
                           fid, orjson.dumps(definition).decode())
    return await get(conn, account_id, fid)  # type: ignore[return-value]


async def get(conn: asyncpg.Connection, account_id: str, flow_id: str, version: int | None = None,
              include_deleted: bool = False) -> dict[str, Any] | None:
    """The latest (or a given) version of a live flow of this account."""
    r = await conn.fetchrow(
        _SELECT + " WHERE f.id = $1 AND f.account_id = $2 AND v.version = coalesce($3, f.latest_version)"
        + ("" if include_deleted else " AND f.deleted_at IS NULL"), flow_id, account_id, version)
    return _out(r) if r else None


async def list_flows(conn: asyncpg.Connection, account_id: str, limit: int = 100) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        _SELECT + " WHERE f.account_id = $1 AND v.version = f.latest_version AND f.deleted_at IS NULL"
        " ORDER BY f.created_at DESC, f.id DESC LIMIT $2", account_id, limit)
    return [_out(r) for r in rows]


async def versions(conn: asyncpg.Connection, account_id: str, flow_id: str) -> list[dict[str, Any]] | None:
    rows = await conn.fetch(
        "SELECT v.version, v.created_at FROM flows f JOIN flow_versions v ON v.flow_id = f.id"
        " WHERE f.id = $1 AND f.account_id = $2 AND f.deleted_at IS NULL ORDER BY v.version", flow_id, account_id)
    return [{"version": r["version"], "created_at": _ts(r["created_at"])} for r in rows] or None


async def update(conn: asyncpg.Connection, account_id: str, flow_id: str,
                 definition: dict[str, Any]) -> dict[str, Any] | None:
    """Store `definition` as the next version; None if there is no such live flow."""
    async with conn.transaction():
        latest = await conn.fetchval(
            "SELECT latest_version FROM flows WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL FOR UPDATE",
            flow_id, account_id)
        if latest is None:
            return None
        await conn.execute("INSERT INTO flow_versions (flow_id, version, definition) VALUES ($1, $2, $3::text::jsonb)",
                           flow_id, latest + 1, orjson.dumps(definition).decode())
        await conn.execute("UPDATE flows SET latest_version = $2, name = $3, updated_at = now() WHERE id = $1",
                           flow_id, latest + 1, definition.get("name"))
    return await get(conn, account_id, flow_id)


async def delete(conn: asyncpg.Connection, account_id: str, flow_id: str) -> bool:
    """Hide the flow (versions are kept for calls that ran them)."""
    res = await conn.execute("UPDATE flows SET deleted_at = now() WHERE id = $1 AND account_id = $2"
                             " AND deleted_at IS NULL", flow_id, account_id)
    return res.endswith(" 1")


async def load_definition(conn: asyncpg.Connection, account_id: str, flow_id: str,
                          version: int | None = None) -> tuple[int, dict[str, Any]] | None:
    """(version, document) for the orchestrator. Without `version`: the latest of a live
    flow (a new call); with it: that version even if the flow was deleted since (replay)."""
    row = await get(conn, account_id, flow_id, version, include_deleted=version is not None)
    return (row["version"], row["flow"]) if row else None
