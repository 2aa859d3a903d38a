"""Settings: the one place configuration is read from the environment.

Every knob is a typed field of :class:`Settings` or of one of its sections
(``settings().api``, ``.webhooks``, ``.media``, ...), made with :func:`var`, which
records the environment variable, its default (as the string the variable would
hold) and a one-line description. docs/configuration.md lists them all; regenerate
its table with ``python -m services.common.config`` after adding one (a unit test
checks the two agree, and another that no module outside this one reads
``os.environ``).

``settings()`` reads the environment on each call, so tests that set variables
keep working; a component on a hot path reads what it needs once, at start-up.
A value that does not parse raises :class:`ConfigError`, naming the variable.

Adding a setting: a ``var(...)`` field in the section it belongs to (or a new
frozen section dataclass, added to :class:`Settings` with :func:`section`).
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping


class ConfigError(ValueError):
    """An environment variable whose value cannot be used (the message names it)."""


# --- parsers: raw string -> typed value; ValueError with a reason on a bad value --------


def _int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)  # "2.0" and "1e3" were accepted where the value went through float()
    except ValueError:
        raise ValueError("expected an integer") from None
    if not math.isfinite(value):
        raise ValueError("expected an integer")
    return int(value)


def _float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError("expected a number") from None


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def _bool(raw: str) -> bool:
    v = raw.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError("expected 1/true/yes or 0/false/no")


def _optional(raw: str) -> str | None:
    """Stripped; empty means unset."""
    return raw.strip() or None


def _optional_path(raw: str) -> Path | None:
    return Path(raw) if raw else None


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        v = raw.strip().lower()
        if v not in allowed:
            raise ValueError("expected one of " + ", ".join(repr(a) for a in allowed))
        return v

    parse.__name__ = "choice"
    return parse


def _choice_or_default(default: str, *allowed: str) -> Callable[[str], str]:
    """Like _choice, an empty value meaning the default."""
    strict = _choice(*allowed)

    def parse(raw: str) -> str:
        return strict(raw) if raw.strip() else default

    return parse


def _nameservers(raw: str) -> tuple[tuple[str, int], ...]:
    """``host[:port],...`` (``[v6]:port`` for an IPv6 address with a port) as (address, port) pairs."""
    out = []
    for item in (i.strip() for i in raw.split(",")):
        if not item:
            continue
        m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?|([0-9A-Fa-f:.]+)", item)
        if m is None:
            raise ValueError(f"{item!r} is not host[:port]")
        host = m.group(1) or m.group(3) or m.group(5)
        port = int(m.group(2) or m.group(4) or 53)
        if not 1 <= port <= 65535:
            raise ValueError(f"{item!r}: port out of range")
        out.append((host, port))
    return tuple(out)


def _schema_name(raw: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", raw):
        raise ValueError("not a plain schema name ([a-z_][a-z0-9_]*, at most 41 characters)")
    return raw


# --- fields -------------------------------------------------------------------------------


def _read(environ: Mapping[str, str], env: str, default: str | None, parse: Callable[[str], Any]) -> Any:
    raw = environ.get(env)
    if raw is None:
        return None if default is None else parse(default)
    try:
        return parse(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{env}={raw!r}: {exc}") from None


def var(env: str, default: str | None, parse: Callable[[str], Any], doc: str, *,
        shown: str | None = None, secret: bool = False) -> Any:
    """A setting read from ``env``; ``default`` is the string used when it is unset (None: the
    field is None). ``shown`` is how the docs describe a default that is not a plain string."""
    return field(default_factory=lambda: _read(os.environ, env, default, parse), repr=not secret,
                 metadata={"env": env, "default": default, "parse": parse, "doc": doc, "shown": shown})


def section(cls: type) -> Any:
    """A nested group of settings (a frozen dataclass whose fields are made with `var`)."""
    return field(default_factory=cls, metadata={"section": cls})


def load(cls: type, environ: Mapping[str, str] | None = None) -> Any:
    """``cls`` (Settings or a section) read from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    kwargs = {}
    for f in fields(cls):
        if "section" in f.metadata:
            kwargs[f.name] = load(f.metadata["section"], env)
        elif "env" in f.metadata:
            m = f.metadata
            kwargs[f.name] = _read(env, m["env"], m["default"], m["parse"])
    return cls(**kwargs)


# --- sections -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = var("CANARY_LOG_LEVEL", "info", str, "log level of the services (debug, info, warning, error)")
    format: str = var("CANARY_LOG_FORMAT", "json", _choice_or_default("json", "json", "console"),
                      "`json` (one object a line) or `console` (for humans; `canary-voice run` sets it)")
    # None: colours when stderr is a terminal (the supervisor passes its own answer down).
    colors: bool | None = var("CANARY_LOG_COLORS", None, _bool, "colours in console logs (`1`/`0`)",
                              shown="when stderr is a terminal")


_EXPORTERS = ("console", "otlp", "none")


def _exporters(raw: str) -> tuple[str, ...]:
    """A comma-separated list of span exporters (OpenTelemetry's form); `none` or empty: off."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))
    for n in names:
        if n not in _EXPORTERS:
            raise ValueError("expected a comma-separated list of " + ", ".join(repr(a) for a in _EXPORTERS))
    return tuple(n for n in names if n != "none")


@dataclass(frozen=True, slots=True)
class TraceSettings:
    exporter: tuple[str, ...] | None = var(
        "CANARY_OTEL_EXPORTER", None, _exporters,
        "OpenTelemetry span export: `console` (one JSON span a line on stdout), `otlp` (needs the"
        " `opentelemetry-exporter-otlp` package; its standard `OTEL_EXPORTER_OTLP_*` variables apply), both"
        " comma-separated, or `none`; unset: `OTEL_TRACES_EXPORTER` decides. Off records no span at all;"
        " the trace context travels in the envelope either way", shown="off")
    otel_exporter: tuple[str, ...] | None = var(
        "OTEL_TRACES_EXPORTER", None, _exporters,
        "OpenTelemetry's standard variable, read when `CANARY_OTEL_EXPORTER` is unset (same values)", shown="off")

    @property
    def exporters(self) -> tuple[str, ...]:
        """The span exporters to run (empty: no spans)."""
        chosen = self.exporter if self.exporter is not None else self.otel_exporter
        return chosen or ()


@dataclass(frozen=True, slots=True)
class ApiSettings:
    host: str = var("CANARY_API_HOST", "127.0.0.1", str, "address the API listens on")
    port: int = var("CANARY_API_PORT", "8080", _int, "port the API listens on")
    workers: int = var("CANARY_API_WORKERS", "1", _int, "uvicorn worker processes")
    log_level: str = var("CANARY_API_LOG_LEVEL", "warning", str, "uvicorn's own log level")
    send_timeout: float = var("CANARY_API_SEND_TIMEOUT", "5.0", _float,
                              "seconds to wait for Kafka to acknowledge a command before answering 503")
    auth_ttl: float = var("CANARY_API_AUTH_TTL", "30.0", _float,
                          "seconds an API key lookup is cached in each API process")
    max_body: int = var("CANARY_API_MAX_BODY", "131072", _int, "largest request body for calls, bytes")
    burst_seconds: float = var("CANARY_API_BURST_SECONDS", "2.0", _float,
                               "token bucket size, in seconds of an account's calls-per-second (at least 20 calls)")
    numbers_ttl: float = var("CANARY_API_NUMBERS_TTL", "5.0", _float,
                             "seconds an account's verified numbers are cached")
    db_pool: int = var("CANARY_API_DB_POOL", "20", _int, "Postgres connections per API process")
    sync_commit: str = var("CANARY_API_SYNC_COMMIT", "off", str,
                           "Postgres `synchronous_commit` for the API's connections")
    linger_ms: int = var("CANARY_API_LINGER_MS", "1", _int, "Kafka producer linger of the API, ms")
    max_live_calls: int = var("CANARY_MAX_LIVE_CALLS", "100", _int,
                              "concurrent calls of an account unless set for it (`canary-voice accounts limits`)")
    # Request budgets (token buckets in each API process, burst: CANARY_API_BURST_SECONDS of
    # the rate, at least 20). Calls are limited by the account's calls_per_second.
    read_rate: float = var("CANARY_API_READ_RATE", "50", _float,
                           "GET requests per second of an account")
    write_rate: float = var("CANARY_API_WRITE_RATE", "10", _float,
                            "other changes (numbers, flows, trunk, sandbox) per second of an account")
    hangup_rate: float = var("CANARY_API_HANGUP_RATE", "10", _float,
                             "hangup requests per second of an account")
    auth_fail_rate: float = var("CANARY_API_AUTH_FAIL_RATE", "1", _float,
                                "failed authentications (missing, malformed, unknown, revoked key) per second"
                                " of a client address")
    media_rate: float = var("CANARY_API_MEDIA_RATE", "10", _float,
                            "recording downloads (signed links) per second of a client address")
    auth_negative_ttl: float = var("CANARY_API_AUTH_NEGATIVE_TTL", "5.0", _float,
                                   "seconds an unknown API key is remembered as unknown (at most the auth TTL)")
    # Caller-ID verification by call (docs/security.md): a sk_live_ key's new caller id gets a
    # call speaking a code, placed by the deployment's own account, from its own number.
    caller_id_account: str | None = var("CANARY_CALLER_ID_ACCOUNT", "", _optional,
                                        "account (id or name) that places caller-id verification calls: the"
                                        " deployment's own, with its SIP trunk; unset: sk_live_ keys cannot add"
                                        " caller ids (503 `verification_unavailable`)", shown="unset")
    caller_id_from: str | None = var("CANARY_CALLER_ID_FROM", "", _optional,
                                     "caller id of the verification calls, a number verified for that account",
                                     shown="unset")
    caller_id_carrier: str = var("CANARY_CALLER_ID_CARRIER", "sip", _choice("sip", "sandbox"),
                                 "carrier of the verification calls: `sip` (that account's trunk) or `sandbox`"
                                 " (a staging deployment: nothing leaves the machine)")
    caller_id_cooldown: float = var("CANARY_CALLER_ID_COOLDOWN", "60", _float,
                                    "seconds before another verification call to the same number")
    caller_id_hourly: int = var("CANARY_CALLER_ID_HOURLY", "10", _int,
                                "verification calls an account may start per hour")


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Delivery knobs of the webhooks worker (services/webhooks/README.md explains them)."""

    max_attempts: int = var("CANARY_WEBHOOK_MAX_ATTEMPTS", "8", _int, "attempts before dead-lettering")
    backoff_base: float = var("CANARY_WEBHOOK_BACKOFF_BASE", "2.0", _float,
                              "seconds before the first retry (doubles each attempt, with jitter)")
    backoff_max: float = var("CANARY_WEBHOOK_BACKOFF_MAX", "3600.0", _float, "longest wait between attempts, seconds")
    timeout: float = var("CANARY_WEBHOOK_TIMEOUT", "10.0", _float, "seconds per attempt (connect to last byte)")
    concurrency: int = var("CANARY_WEBHOOK_CONCURRENCY", "64", _int, "in-flight attempts in the fast lane")
    # One account / one endpoint can hold at most this many of the slots, so a slow or
    # failing customer never starves the others.
    per_account: int = var("CANARY_WEBHOOK_PER_ACCOUNT", "16", _int, "in-flight attempts per account")
    per_endpoint: int = var("CANARY_WEBHOOK_PER_ENDPOINT", "8", _int, "in-flight attempts per endpoint")
    # Endpoints whose recent latency is above this use the small slow lane only.
    slow_ms: float = var("CANARY_WEBHOOK_SLOW_MS", "1000.0", _float,
                         "latency (EWMA, ms) above which an endpoint uses the slow lane")
    slow_lane: int = var("CANARY_WEBHOOK_SLOW_LANE", "8", _int, "in-flight attempts in the slow lane")
    poll_interval: float = var("CANARY_WEBHOOK_POLL", "0.25", _float, "seconds between polls for due retries")
    flow_in_flight: int = var("CANARY_WEBHOOK_FLOW_IN_FLIGHT", "64", _int,
                              "flow-webhook requests (flow `webhook` steps) asked of apps at once; the intake "
                              "waits when they are all busy")

    @property
    def lease(self) -> float:
        """How long an attempt owns its row; a crashed worker's lease expires after this."""
        return self.timeout + 5.0


@dataclass(frozen=True, slots=True)
class S3Settings:
    bucket: str | None = var("CANARY_S3_BUCKET", None, _optional, "bucket (required with `CANARY_MEDIA_STORE=s3`)")
    prefix: str = var("CANARY_S3_PREFIX", "", str, "key prefix inside the bucket")
    endpoint_url: str | None = var("CANARY_S3_ENDPOINT_URL", None, _optional,
                                   "S3-compatible endpoint (MinIO & co.); unset: AWS")
    region: str | None = var("CANARY_S3_REGION", None, _optional, "region",
                             shown="`AWS_REGION`, `AWS_DEFAULT_REGION`, else `us-east-1`")


@dataclass(frozen=True, slots=True)
class MediaSettings:
    workers: int = var("CANARY_MEDIA_WORKERS", "2", _int, "threads for blocking media work (codecs, models) per process")
    store: str = var("CANARY_MEDIA_STORE", "local", _choice_or_default("local", "local", "s3"),
                     "where audio blobs live: `local` (a directory) or `s3`")
    dir: Path | None = var("CANARY_MEDIA_DIR", None, _optional_path, "directory of the local media store",
                           shown="`.local/media` in the working directory")
    offset_reset: str = var("CANARY_MEDIA_OFFSET_RESET", "earliest", str,
                            "Kafka `auto_offset_reset` of the media workers' consumer groups")
    retries: int = var("CANARY_MEDIA_RETRIES", "3", _int,
                       "a media worker retries a transient failure (connection, timeout) this many times, with "
                       "capped backoff, before it emits `recording.failed` / `transcription.failed`")
    s3: S3Settings = section(S3Settings)


@dataclass(frozen=True, slots=True)
class TtsSettings:
    espeak_bin: str | None = var("CANARY_ESPEAK_BIN", None, _optional, "espeak-ng binary",
                                 shown="`espeak-ng` on the PATH")
    piper_model: Path | None = var("CANARY_PIPER_MODEL", None, _optional_path, "Piper voice model (.onnx)",
                                   shown="the bundled voice")


@dataclass(frozen=True, slots=True)
class TranscriptionSettings:
    whisper_model: Path | None = var("CANARY_WHISPER_MODEL", None, _optional_path,
                                     "faster-whisper model directory", shown="the bundled tiny model")
    whisper_threads: int = var("CANARY_WHISPER_THREADS", "2", _int, "CPU threads per whisper job")
    multilingual_model: Path | None = var("CANARY_WHISPER_MULTILINGUAL_MODEL", None, _optional_path,
                                          "faster-whisper model for languages other than English (and auto)",
                                          shown="whisper base from PyPI, joined into the model cache")
    vad: str = var("CANARY_VAD", "silero", _choice("silero", "energy"),
                   "voice activity detector ending utterances in speech gathers and live transcription:"
                   " `silero` (trained model) or `energy` (threshold)")
    model_cache: Path = var("CANARY_MODEL_CACHE", "~/.cache/canary-voice", lambda raw: Path(raw).expanduser(),
                            "where models assembled from PyPI parts are kept")
    timeout_s: float = var("CANARY_TRANSCRIPTION_TIMEOUT_S", "300.0", _float,
                           "seconds a post-call transcription may take, plus `timeout_per_audio_s` per second of "
                           "audio; then it is `transcription.failed`")
    timeout_per_audio_s: float = var("CANARY_TRANSCRIPTION_TIMEOUT_PER_AUDIO_S", "2.0", _float,
                                     "seconds a post-call transcription may take per second of recorded audio")


@dataclass(frozen=True, slots=True)
class GatherSettings:
    """Speech gathers recognised by the transcription service (services/transcription/speech_gather.py)."""

    max_calls: int = var("CANARY_GATHER_MAX_CALLS", "1000", _int, "open speech gathers tracked at once")
    idle_s: float = var("CANARY_GATHER_IDLE_S", "10.0", _float, "an open gather with no audio for this long is dropped")
    queue_size: int = var("CANARY_GATHER_QUEUE", "64", _int, "recognition jobs waiting at most")
    concurrency: int = var("CANARY_GATHER_CONCURRENCY", "1", _int, "recognition jobs at once (at least 1)")
    job_timeout_s: float = var("CANARY_GATHER_JOB_TIMEOUT_S", "15.0", _float, "seconds one recognition may take")
    max_lag_s: float = var("CANARY_GATHER_MAX_LAG_S", "30.0", _float, "audio older than this is skipped, seconds")
    offset_reset: str = var("CANARY_GATHER_OFFSET_RESET", "earliest", str,
                            "Kafka `auto_offset_reset` of the speech-gather consumer group")


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """Live transcription (services/transcription/live.py)."""

    partial_first_ms: int = var("CANARY_LIVE_PARTIAL_FIRST_MS", "800", _int, "speech before the first partial, ms")
    partial_every_ms: int = var("CANARY_LIVE_PARTIAL_EVERY_MS", "1000", _int, "more speech between partials, ms")
    end_silence_ms: int = var("CANARY_LIVE_END_SILENCE_MS", "700", _int, "quiet that ends an utterance, ms")
    max_calls: int = var("CANARY_LIVE_MAX_CALLS", "1000", _int, "calls transcribed at once")
    idle_s: float = var("CANARY_LIVE_IDLE_S", "30.0", _float, "a call with no audio for this long is finalised")
    queue_size: int = var("CANARY_LIVE_QUEUE", "64", _int, "transcription jobs waiting at most")
    concurrency: int = var("CANARY_LIVE_CONCURRENCY", "1", _int, "transcription jobs at once (at least 1)")
    job_timeout_s: float = var("CANARY_LIVE_JOB_TIMEOUT_S", "30.0", _float, "seconds one transcription may take")
    max_lag_s: float = var("CANARY_LIVE_MAX_LAG_S", "60.0", _float, "audio older than this is skipped, seconds")
    language: str | None = var("CANARY_LIVE_LANGUAGE", None, _optional,
                               "ISO 639-1 language of live transcripts", shown="detected")
    offset_reset: str = var("CANARY_LIVE_OFFSET_RESET", "earliest", str,
                            "Kafka `auto_offset_reset` of the live-transcription consumer group")


def _port_range(raw: str) -> tuple[int, int]:
    lo, sep, hi = raw.partition("-")
    try:
        first, last = int(lo), int(hi)
    except ValueError:
        raise ValueError("expected two ports, low-high") from None
    if not sep or not 0 < first <= last < 65536:
        raise ValueError("expected two ports, low-high")
    return first, last


@dataclass(frozen=True, slots=True)
class TelephonySettings:
    """The telephony gateway (services/telephony/gateway.py) and its SIP carrier."""

    lease_s: float = var("CANARY_GATEWAY_LEASE_S", "15", _float,
                         "seconds a gateway's lease on its calls lasts without renewal")
    sip_bind: str = var("CANARY_SIP_BIND", "127.0.0.1", str, "address the SIP carrier binds")
    sip_port: int = var("CANARY_SIP_PORT", "5060", _int, "SIP port of the SIP carrier")
    sip_inbound: bool = var("CANARY_SIP_INBOUND", "false", _bool,
                            "answer INVITEs from the accounts' trunks to their numbers (binds the SIP port at start)")
    sip_inbound_refresh_s: float = var("CANARY_SIP_INBOUND_REFRESH_S", "1", _float,
                                       "an INVITE the cached trunks and numbers refuse reloads them, at most this often")
    rtp_ports: tuple[int, int] = var("CANARY_RTP_PORTS", "20000-60000", _port_range,
                                     "RTP port range of the SIP carrier")
    sip_tls_ca: str = var("CANARY_SIP_TLS_CA", "", str,
                          "PEM file of the CAs a TLS trunk's certificate must chain to (empty: the system's)")
    sip_tls_cert: str = var("CANARY_SIP_TLS_CERT", "", str,
                            "PEM certificate chain of our own SIP TLS listener (SIP port + 1), for trunks that"
                            " open TLS to us (calls in); empty: no TLS listener")
    sip_tls_key: str = var("CANARY_SIP_TLS_KEY", "", str, "PEM private key of CANARY_SIP_TLS_CERT")
    sip_media_timeout_s: float = var("CANARY_SIP_MEDIA_TIMEOUT_S", "30", _float,
                                     "no RTP for this long after answer ends the call")
    media_priority: str = var("CANARY_MEDIA_PRIORITY", "realtime", _choice("realtime", "high", "normal"),
                              "CPU scheduling the gateway asks for its 20 ms media clock"
                              " (realtime: SCHED_RR, falling back to high: nice -10; docs/operations.md)")
    media_lead_ms: float = var("CANARY_MEDIA_LEAD_MS", "8", _float,
                               "the SIP media clock builds each tick's RTP this long before its deadline and a"
                               " pacer thread sends it on time (0: sent from the event loop as built)")


@dataclass(frozen=True, slots=True)
class HousekeepingSettings:
    request_grace_s: float = var("CANARY_REQUEST_GRACE_S", "600", _float,
                                 "seconds before a call request that never reached the orchestrator is removed")
    idempotency_ttl_s: float = var("CANARY_IDEMPOTENCY_TTL_S", "86400", _float,
                                   "seconds an idempotency key is kept")


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = var("CANARY_KAFKA_BOOTSTRAP", "127.0.0.1:9092", str, "Kafka bootstrap servers")
    # No TLS on loopback: Debian's cluster offers it and asyncpg would take it, for nothing.
    database_url: str = var("CANARY_DATABASE_URL", "postgresql://canary:canary@127.0.0.1:5432/canary?sslmode=disable",
                            str, "Postgres", secret=True)
    partitions: int = var("CANARY_PARTITIONS", "6", _int, "partitions of the topics `stack up` creates")
    kafka_replication: int = var("CANARY_KAFKA_REPLICATION", "1", _int,
                                 "replication factor of the topics `stack up` creates (3 on the 3-broker cluster,"
                                 " `stack up --brokers 3`)")
    kafka_min_insync: int | None = var("CANARY_KAFKA_MIN_INSYNC", None, _int,
                                       "`min.insync.replicas` of those topics (with the producers' acks=all, how many"
                                       " copies a write needs)", shown="replication - 1, at least 1 (2 of 3)")
    projection_schema: str = var("CANARY_PROJECTION_SCHEMA", "projection", _schema_name,
                                 "Postgres schema of the projections")
    public_url: str = var("CANARY_PUBLIC_URL", "http://127.0.0.1:8080", str,
                          "the API's URL as clients see it (signed recording links)")
    local_dir: Path = var("CANARY_LOCAL_DIR", ".local", lambda raw: Path(raw).resolve(),
                          "state of the embedded stack (Kafka data, logs)")
    # `production` (the default): the services refuse to start on the embedded development
    # secrets below. `canary-voice run` and the tests set `development`.
    environment: str = var("CANARY_ENV", "production", _choice_or_default("production", "production", "development"),
                           "`production` or `development` (`canary-voice run` and the tests set it): in production"
                           " the API refuses to start, and trunk passwords are not sealed, with a default secret")
    # Service-wide secrets: a comma-separated list "new,old,...", the first signs or seals,
    # any verifies or unseals (a rolling deploy accepts both). The default is for development only.
    url_signing_secret: str = var("CANARY_URL_SECRET", "dev-only-change-me", str,
                                  "HMAC keys of signed recording URLs, `new,old,...`: the first signs, any"
                                  " verifies", secret=True)
    trunk_secret: str = var("CANARY_TRUNK_SECRET", "dev-only-change-me", str,
                            "keys that seal trunk passwords in Postgres, `new,old,...`: the first seals, any"
                            " unseals", secret=True)
    # Kafka intake authentication (docs/security.md, "Commands on Kafka").
    kafka_intake_auth: str = var("CANARY_KAFKA_INTAKE_AUTH", "off", _choice_or_default("off", "off", "signed"),
                                 "`signed`: the orchestrator takes a command only with a valid `canary-signature`"
                                 " header (the API's service key or the account's intake key), others are"
                                 " dead-lettered `unauthenticated_command`; `off` (development) takes any")
    kafka_service_key: str = var("CANARY_KAFKA_SERVICE_KEY", "dev-only-change-me", str,
                                 "HMAC keys the API signs its commands with, `new,old,...`: the first signs, any"
                                 " verifies", secret=True)
    kafka_intake_tolerance: float = var("CANARY_KAFKA_INTAKE_TOLERANCE", "300", _float,
                                        "seconds a command's signature time may differ from its Kafka record's"
                                        " timestamp")
    allow_private_urls: bool = var("CANARY_ALLOW_PRIVATE_URLS", "", _bool,
                                   "`1` lets customer URLs reach loopback/private addresses (development only;"
                                   " `canary-voice run` sets it)", shown="off")
    dns_nameservers: tuple[tuple[str, int], ...] = var(
        "CANARY_DNS_NAMESERVERS", "", _nameservers,
        "DNS servers for SIP trunk server location (NAPTR, SRV, A: RFC 3263), `host[:port],...`"
        " (empty: the system's resolv.conf)", shown="system resolver")
    dns_timeout_s: float = var("CANARY_DNS_TIMEOUT_S", "3", _float,
                               "seconds one server-location lookup (all its DNS queries) may take")
    dns_cache_size: int = var("CANARY_DNS_CACHE_SIZE", "1024", _int,
                              "DNS answers kept, each for its TTL (least recently used dropped first)")
    calls_per_second: float = var("CANARY_CPS", "10", _float,
                                  "calls per second of an account without its own limit")
    health_port: int = var("CANARY_HEALTH_PORT", "0", _int,
                           "port of a service process's GET /healthz (0: none; give each process its own)")
    health_host: str = var("CANARY_HEALTH_HOST", "127.0.0.1", str,
                           "address the GET /healthz responder binds (a pod's own address or `0.0.0.0` where"
                           " a prober outside the process's host, such as the kubelet, asks)")
    health_stall_s: float = var("CANARY_HEALTH_STALL_S", "5", _float,
                                "a service whose main loop has not come round for this long reports degraded")
    sandbox_speed: float = var("CANARY_SANDBOX_SPEED", "1", _float, "sandbox carrier time acceleration (docs/sandbox.md)")
    projector_batch: int = var("CANARY_PROJECTOR_BATCH", "5000", _int,
                               "most records the projector applies in one transaction")

    log: LogSettings = section(LogSettings)
    trace: TraceSettings = section(TraceSettings)
    api: ApiSettings = section(ApiSettings)
    webhooks: WebhookSettings = section(WebhookSettings)
    media: MediaSettings = section(MediaSettings)
    tts: TtsSettings = section(TtsSettings)
    transcription: TranscriptionSettings = section(TranscriptionSettings)
    gather: GatherSettings = section(GatherSettings)
    live: LiveSettings = section(LiveSettings)
    housekeeping: HousekeepingSettings = section(HousekeepingSettings)
    telephony: TelephonySettings = section(TelephonySettings)

    # Names from before the sections.
    @property
    def api_host(self) -> str:
        return self.api.host

    @property
    def api_port(self) -> int:
        return self.api.port

    @property
    def log_level(self) -> str:
        return self.log.level


_last: tuple[dict, Settings] | None = None


def settings() -> Settings:
    """Current settings, as the environment says now (tests can change it between calls).

    Parsing every variable takes a few hundred microseconds, so the last result is reused
    while the environment is the same: a comparison with a copy of the mapping behind
    ``os.environ`` (about a microsecond), which every change through ``os.environ`` updates.
    """
    global _last
    data = getattr(os.environ, "_data", None)
    if not isinstance(data, dict):  # not CPython's os.environ: read every time
        return Settings()
    last = _last
    if last is not None and last[0] == data:
        return last[1]
    snapshot = dict(data)  # taken before reading, so a change made meanwhile is seen next call
    current = Settings()
    _last = (snapshot, current)
    return current


def projection_schema() -> str:
    """Where the projections live (CANARY_PROJECTION_SCHEMA, default `projection`)."""
    return settings().projection_schema


# --- documentation ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Var:
    """One documented setting: where it lives in Settings and its variable."""

    path: str  # e.g. "webhooks.max_attempts"
    env: str
    default: str | None
    shown: str | None
    doc: str
    secret: bool


def variables(cls: type = Settings, prefix: str = "") -> Iterator[Var]:
    """Every setting of ``cls`` (sections included), in declaration order."""
    for f in fields(cls):
        if "section" in f.metadata:
            yield from variables(f.metadata["section"], f"{prefix}{f.name}.")
        elif "env" in f.metadata:
            m = f.metadata
            yield Var(prefix + f.name, m["env"], m["default"], m["shown"], m["doc"], not f.repr)


def _shown_default(v: Var) -> str:
    if v.shown is not None:
        return v.shown
    if v.default is None:
        return "unset"
    if v.default == "":
        return "empty"
    return f"`{v.default}`"


def markdown_table() -> str:
    """The table of docs/configuration.md (one row per setting)."""
    rows = ["| Variable | Default | Setting | Meaning |", "| --- | --- | --- | --- |"]
    for v in variables():
        rows.append(f"| `{v.env}` | {_shown_default(v)} | `{v.path}` | {v.doc} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")
