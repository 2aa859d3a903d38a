"""SQL of the API: call requests (durable) merged with the projection (derived)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from events import trace
from services.common.accounts import iso
from services.common.config import projection_schema
from services.api import signing

P = projection_schema()  # the projection tables this API reads (one schema per deployment)

INSERT_REQUEST = ("INSERT INTO call_requests (id, account_id, to_number, from_number, request, created_at)"
                  " VALUES ($1, $2, $3, $4, $5, $6)")

# One row per call: the projection when it has the call, else the accepted request
# (status queued) -- so a GET right after a POST never 404s while the projector lags.
_COLUMNS = """
  q.id,
  COALESCE(c.to_number, r.to_number) AS to_number,
  COALESCE(c.from_number, r.from_number) AS from_number,
  COALESCE(c.status, 'queued') AS status,
  COALESCE(c.direction, 'outbound') AS direction,
  COALESCE(c.created_at, r.created_at) AS created_at,
  COALESCE(c.updated_at, r.created_at) AS updated_at,
  c.answered_at, c.ended_at, c.duration, c.answered_by, c.end_reason, c.hangup_by, c.sip_code, c.gather,
  c.parent_call_id,
  rec.id AS rec_id, rec.duration_ms AS rec_duration_ms, rec.mp3_ref AS rec_mp3,
  tr.text AS tr_text, tr.confidence AS tr_confidence"""

_JOINS = f"""
LEFT JOIN {P}.calls c ON c.id = q.id AND c.account_id = $1
LEFT JOIN call_requests r ON r.id = q.id AND r.account_id = $1 AND r.state <> 'abandoned'
LEFT JOIN LATERAL (SELECT x.id, x.duration_ms, x.mp3_ref FROM {P}.recordings x
                   WHERE x.call_id = q.id AND x.account_id = $1 ORDER BY x.created_at DESC, x.id LIMIT 1) rec ON true
LEFT JOIN LATERAL (SELECT t.text, t.confidence FROM {P}.transcriptions t
                   WHERE t.call_id = q.id AND t.account_id = $1
                   ORDER BY (t.recording_id = rec.id) DESC NULLS LAST, t.created_at DESC LIMIT 1) tr ON true"""

GET_CALL = f"SELECT {_COLUMNS} FROM (SELECT $2::text AS id) q {_JOINS} WHERE c.id IS NOT NULL OR r.id IS NOT NULL"

GET_EVENTS = (f"SELECT event_id, type, version, occurred_at, data, traceparent, correlation_id"
              f" FROM {P}.call_events WHERE call_id = $1 AND account_id = $2 ORDER BY kafka_offset, event_id LIMIT $3")

# paused_spans: from the recording's event in the timeline (the recordings table predates them).
GET_RECORDING = f"""
SELECT x.id, x.call_id, x.duration_ms, x.mp3_ref, x.wav_ref,
       tr.text AS tr_text, tr.confidence AS tr_confidence, ev.paused_spans
FROM {P}.recordings x
LEFT JOIN LATERAL (SELECT t.text, t.confidence FROM {P}.transcriptions t
                   WHERE t.call_id = x.call_id AND t.account_id = x.account_id
                   ORDER BY (t.recording_id = x.id) DESC, t.created_at DESC LIMIT 1) tr ON true
LEFT JOIN LATERAL (SELECT e.data->'paused_spans' AS paused_spans FROM {P}.call_events e
                   WHERE e.call_id = x.call_id AND e.type = 'recording.completed'
                     AND e.data->>'recording_id' = x.id LIMIT 1) ev ON true
WHERE x.call_id = $1 AND x.account_id = $2
ORDER BY x.created_at DESC, x.id LIMIT 1"""

GET_MEDIA = f"SELECT wav_ref, mp3_ref FROM {P}.recordings WHERE id = $1"


def list_query(status: str | None, to: str | None, from_: str | None, after: datetime | None,
               before: datetime | None, cursor: tuple[datetime, str] | None, limit: int) -> tuple[str, list[Any]]:
    """The merged, filtered, keyset-paginated call list; $1 is the account id."""
    args: list[Any] = []

    def arg(v: Any) -> str:
        args.append(v)
        return f"${len(args) + 1}"

    cf, rf = [], []
    if status:
        cf.append(f"c.status = {arg(status)}")
    if to:
        p = arg(to)
        cf.append(f"c.to_number = {p}")
        rf.append(f"r.to_number = {p}")
    if from_:
        p = arg(from_)
        cf.append(f"c.from_number = {p}")
        rf.append(f"r.from_number = {p}")
    if after:
        p = arg(after)
        cf.append(f"c.created_at >= {p}")
        rf.append(f"r.created_at >= {p}")
    if before:
        p = arg(before)
        cf.append(f"c.created_at < {p}")
        rf.append(f"r.created_at < {p}")
    if cursor:
        pt, pi = arg(cursor[0]), arg(cursor[1])
        cf.append(f"(c.created_at, c.id) < ({pt}, {pi})")
        rf.append(f"(r.created_at, r.id) < ({pt}, {pi})")
    lim = arg(limit + 1)
    c_where = " AND ".join(["c.account_id = $1", *cf])
    # Requests not yet projected are queued by definition.
    r_branch = ""
    if status in (None, "queued"):
        r_where = " AND ".join(["r.account_id = $1", "r.state <> 'abandoned'", *rf])
        r_branch = f"""
      UNION ALL
      (SELECT r.id, r.created_at FROM call_requests r WHERE {r_where}
         AND NOT EXISTS (SELECT 1 FROM {P}.calls p WHERE p.id = r.id)
       ORDER BY r.created_at DESC, r.id DESC LIMIT {lim})"""
    sql = f"""
SELECT {_COLUMNS} FROM (
  SELECT id, created_at FROM (
      (SELECT c.id, c.created_at FROM {P}.calls c WHERE {c_where}
       ORDER BY c.created_at DESC, c.id DESC LIMIT {lim}){r_branch}
  ) m ORDER BY created_at DESC, id DESC LIMIT {lim}
) q {_JOINS}
ORDER BY COALESCE(c.created_at, r.created_at) DESC, q.id DESC"""
    return sql, args


def encode_cursor(created_at: datetime, call_id: str) -> str:
    raw = f"{created_at.isoformat()}|{call_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, call_id = raw.split("|", 1)
        dt = datetime.fromisoformat(ts)
        if dt.tzinfo is None or not call_id.isascii() or len(call_id) > 64 or "\x00" in call_id:
            return None
        return dt, call_id
    except Exception:
        return None


def recording_url(rec_id: str, mp3_ref: str | None) -> str:
    return signing.media_url(rec_id, "mp3" if mp3_ref else "wav")


def call_from_row(row: Any) -> dict[str, Any]:
    rec = None
    if row["rec_id"]:
        rec = {"id": row["rec_id"], "duration": round((row["rec_duration_ms"] or 0) / 1000),
               "url": recording_url(row["rec_id"], row["rec_mp3"])}
    tr = None
    if row["tr_text"] is not None:
        tr = {"text": row["tr_text"], "confidence": round(float(row["tr_confidence"]), 4)}
    g = row["gather"]
    gather = None
    if g:
        gather = {"status": g.get("status"), "digits": g.get("digits", ""),
                  "finished_on_key": g.get("finished_on_key"), "speech": g.get("speech")}
    return {
        "id": row["id"], "to": row["to_number"], "from": row["from_number"], "status": row["status"],
        "direction": row["direction"], "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
        "answered_at": iso(row["answered_at"]), "ended_at": iso(row["ended_at"]), "duration": row["duration"],
        "answered_by": row["answered_by"], "price": None, "end_reason": row["end_reason"],
        "hangup_by": row["hangup_by"],
        "sip_code": row["sip_code"], "recording": rec, "transcription": tr, "gather": gather,
        "parent_call_id": row["parent_call_id"],
    }


def event_trace_id(row: Any) -> str:
    """The trace id of a row of the call's timeline (GET_EVENTS): its event's, as the services
    logged and exported it (a row projected before rows kept it: the correlation id's)."""
    return trace.trace_id_of(row["traceparent"], str(row["correlation_id"] or row["event_id"]))
