"""Configuration comes only from Settings (services/common/config.py).

- no module of services/ or events/ other than config.py reads the environment, except
  the reads listed in ALLOWED (not configuration) and MOVING (on their way into Settings);
- every setting is in the table of docs/configuration.md, with its default and meaning;
- bad values name their variable; settings() follows the environment.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
from pathlib import Path

import pytest

from services.common import config
from services.common.config import ConfigError, Settings, load, settings

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "services/common/config.py"

# Environment access that is not reading configuration, with why: (module, variable or
# None for a use without a literal name) -> reason.
ALLOWED = {
    ("services/ops/supervisor.py", None): "passes its environment to the services it starts",
    ("services/cli/__init__.py", "CANARY_ALLOW_PRIVATE_URLS"): "`run` writes a development default for its services",
    ("services/cli/__init__.py", "CANARY_LOG_FORMAT"): "`run` writes a development default for its services",
    ("services/cli/__init__.py", "CANARY_ENV"): "`run` writes a development default for its services",
    ("services/cli/__init__.py", "CANARY_KAFKA_BOOTSTRAP"): "`run --brokers 3` writes the cluster's address for its services",
    ("services/cli/__init__.py", "CANARY_KAFKA_REPLICATION"): "`run --brokers 3` writes the cluster's replication for its services",
    ("services/transcription/engine.py", "HF_HUB_OFFLINE"): "set for huggingface_hub, not read",
    ("services/common/media_store_s3.py", "AWS_REGION"): "the AWS SDK's own variable, the S3 region's fallback",
    ("services/common/media_store_s3.py", "AWS_DEFAULT_REGION"): "the AWS SDK's own variable, the S3 region's fallback",
    ("events/topics.py", "CANARY_TOPIC_PREFIX"): "events sits below services.common (no Settings there): "
                                                 "the one place topic names are made",
}

# MOVING: reads on their way into Settings (delete each entry once its read is gone).
MOVING: set[tuple[str, str]] = set()

_ENV_FUNCS = {"getenv", "putenv", "unsetenv", "getenvb"}
_ENV_MAPS = {"environ", "environb"}


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def environment_uses(tree: ast.AST) -> list[tuple[int, str | None]]:
    """(line, variable name or None) of every use of the process environment in ``tree``."""
    os_names = {"os"}
    direct: dict[str, str] = {}  # `from os import environ, getenv as ge`: local name -> os name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_names |= {a.asname or a.name for a in node.names if a.name == "os"}
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            direct |= {a.asname or a.name: a.name for a in node.names if a.name in _ENV_MAPS | _ENV_FUNCS}
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}

    def is_env(node: ast.AST, names: set[str]) -> bool:
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in os_names:
            return node.attr in names
        return isinstance(node, ast.Name) and direct.get(node.id) in names

    uses = []
    for node in ast.walk(tree):
        key: str | None = None
        if is_env(node, _ENV_MAPS):
            parent = parents.get(node)
            if isinstance(parent, ast.Attribute) and isinstance(call := parents.get(parent), ast.Call) \
                    and call.func is parent and call.args:
                key = _literal(call.args[0])  # environ.get / setdefault / pop ("NAME", ...)
            elif isinstance(parent, ast.Subscript) and parent.value is node:
                key = _literal(parent.slice)  # environ["NAME"]
            elif isinstance(parent, ast.Compare) and parent.comparators == [node]:
                key = _literal(parent.left)  # "NAME" in environ
        elif is_env(node, _ENV_FUNCS):
            parent = parents.get(node)
            if not (isinstance(parent, ast.Call) and parent.func is node):
                uses.append((node.lineno, None))
                continue
            key = _literal(parent.args[0]) if parent.args else None
        else:
            continue
        uses.append((node.lineno, key))
    return sorted(uses, key=lambda u: (u[0], u[1] or ""))


def _modules():
    for top in ("services", "events"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel != CONFIG:
                yield rel, path


def test_only_config_reads_the_environment():
    found: dict[tuple[str, str | None], list[int]] = {}
    for rel, path in _modules():
        for line, key in environment_uses(ast.parse(path.read_text(), rel)):
            found.setdefault((rel, key), []).append(line)
    bad = [f"{rel}:{lines[0]} reads {key or 'the environment'}" for (rel, key), lines in sorted(
        found.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")) if (rel, key) not in ALLOWED and (rel, key) not in MOVING]
    assert not bad, ("configuration is read through services.common.config.settings() (add a field to "
                     "Settings), or listed in ALLOWED with why it is not configuration:\n  " + "\n  ".join(bad))
    stale = sorted(k for k in ALLOWED if k not in found)
    assert not stale, f"entries that match no read any more, delete them: {stale}"


def test_the_scan_sees_every_form():
    src = '\n'.join([
        "import os", "import os as o", "from os import environ, getenv as ge",
        "a = os.environ.get('CANARY_A', '1')", "b = o.environ['CANARY_B']", "c = 'CANARY_C' in os.environ",
        "d = os.getenv('CANARY_D')", "e = environ.setdefault('CANARY_E', 'x')", "f = ge('CANARY_F')",
        "g = os.environ.get(name)", "h = dict(os.environ)",
    ])
    assert environment_uses(ast.parse(src)) == [
        (4, "CANARY_A"), (5, "CANARY_B"), (6, "CANARY_C"), (7, "CANARY_D"), (8, "CANARY_E"), (9, "CANARY_F"),
        (10, None), (11, None)]


# --- the documentation ------------------------------------------------------------------

DOC = ROOT / "docs" / "configuration.md"
_ROW = re.compile(r"^\| `([A-Z0-9_]+)` \|")


def test_every_setting_is_documented():
    doc_rows = [line for line in DOC.read_text().splitlines() if _ROW.match(line)]
    documented = [_ROW.match(line).group(1) for line in doc_rows]
    assert len(documented) == len(set(documented)), "a variable is in the table twice"
    expected = config.markdown_table().splitlines()[2:]
    missing = [row for row in expected if row not in doc_rows]
    assert not missing, ("docs/configuration.md does not match Settings; regenerate its table with "
                         "`python -m services.common.config`. Rows missing or different:\n" + "\n".join(missing))
    known = {v.env for v in config.variables()} | {key for _, key in MOVING} | {"CANARY_TOPIC_PREFIX"}
    extra = sorted(set(documented) - known)
    assert not extra, f"documented but not a setting: {extra}"


def test_every_field_has_a_variable():
    names = [v.env for v in config.variables()]
    assert len(names) == len(set(names)), "two settings read the same variable"
    # Ours are CANARY_*; a standard variable of another project is read under its own name.
    standard = {"OTEL_TRACES_EXPORTER"}
    assert all(n.startswith("CANARY_") or n in standard for n in names)

    def walk(cls):
        for f in dataclasses.fields(cls):
            assert "env" in f.metadata or "section" in f.metadata, f"{cls.__name__}.{f.name}: make it with var()"
            if "section" in f.metadata:
                walk(f.metadata["section"])

    walk(Settings)


# --- values -----------------------------------------------------------------------------


def test_defaults_are_the_documented_ones():
    s = load(Settings, {})
    assert s.kafka_bootstrap == "127.0.0.1:9092" and s.partitions == 6 and s.api_port == 8080
    assert s.local_dir == Path(".local").resolve() and s.log_level == "info" and s.log.colors is None
    assert s.api.max_body == 128 * 1024 and s.api.sync_commit == "off" and s.api.workers == 1
    assert s.webhooks.max_attempts == 8 and s.webhooks.lease == 15.0 and s.webhooks.poll_interval == 0.25
    assert s.media.store == "local" and s.media.dir is None and s.media.s3.prefix == "" and s.media.s3.bucket is None
    assert s.allow_private_urls is False and s.trunk_secret == "dev-only-change-me"
    assert s.housekeeping.idempotency_ttl_s == 86400 and s.live.language is None


@pytest.mark.parametrize("env,value", [
    ("CANARY_PARTITIONS", "six"), ("CANARY_WEBHOOK_TIMEOUT", "10s"), ("CANARY_LIVE_IDLE_S", "x"),
    ("CANARY_ALLOW_PRIVATE_URLS", "maybe"), ("CANARY_MEDIA_STORE", "gcs"), ("CANARY_PROJECTION_SCHEMA", "a;b"),
    ("CANARY_LOG_FORMAT", "xml"), ("CANARY_API_PORT", ""),
])
def test_a_bad_value_names_its_variable(env, value, monkeypatch):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=f"^{env}={value!r}: ") as exc:
        settings()
    assert isinstance(exc.value, ValueError)


def test_values_parse():
    s = load(Settings, {
        "CANARY_ALLOW_PRIVATE_URLS": " Yes ", "CANARY_API_MAX_BODY": "2048.0", "CANARY_MEDIA_STORE": " S3 ",
        "CANARY_MEDIA_DIR": "", "CANARY_LOG_COLORS": "0", "CANARY_LOG_FORMAT": "console",
        "CANARY_S3_BUCKET": " b ", "CANARY_S3_ENDPOINT_URL": " ", "CANARY_LIVE_LANGUAGE": "en",
        "CANARY_WEBHOOK_SLOW_LANE": "3",
    })
    assert s.allow_private_urls is True and s.api.max_body == 2048 and s.media.store == "s3"
    assert s.media.dir is None and s.log.colors is False and s.log.format == "console"
    assert s.media.s3.bucket == "b" and s.media.s3.endpoint_url is None and s.live.language == "en"
    assert s.webhooks.slow_lane == 3


def test_settings_follow_the_environment(monkeypatch):
    first = settings()
    assert settings() is first  # unchanged environment: the same (frozen) object
    monkeypatch.setenv("CANARY_WEBHOOK_MAX_ATTEMPTS", "3")
    assert settings().webhooks.max_attempts == 3
    monkeypatch.setenv("CANARY_WEBHOOK_MAX_ATTEMPTS", "4")
    assert settings().webhooks.max_attempts == 4
    monkeypatch.delenv("CANARY_WEBHOOK_MAX_ATTEMPTS")
    assert settings().webhooks.max_attempts == 8
    assert settings() == first


def test_secrets_stay_out_of_repr(monkeypatch):
    monkeypatch.setenv("CANARY_URL_SECRET", "u-secret-1")
    monkeypatch.setenv("CANARY_TRUNK_SECRET", "t-secret-2")
    monkeypatch.setenv("CANARY_DATABASE_URL", "postgresql://u:db-secret-3@h/d")
    text = repr(settings())
    assert "secret-" not in text and "kafka_bootstrap" in text


def test_component_defaults_agree_with_settings():
    """The transcription workers' own config classes keep defaults for direct construction:
    they must be the ones Settings reads when the variable is unset."""
    from services.transcription.live import LiveConfig
    from services.transcription.speech_gather import GatherConfig

    for component, section in ((LiveConfig(), load(config.LiveSettings, {})),
                               (GatherConfig(), load(config.GatherSettings, {}))):
        shared = {f.name for f in dataclasses.fields(component)} & {f.name for f in dataclasses.fields(section)}
        assert len(shared) >= 6
        assert {n: getattr(component, n) for n in shared} == {n: getattr(section, n) for n in shared}


def test_component_configs_read_settings(monkeypatch):
    from services.transcription.live import LiveConfig
    from services.transcription.speech_gather import GatherConfig

    monkeypatch.setenv("CANARY_LIVE_QUEUE", "5")
    monkeypatch.setenv("CANARY_LIVE_CONCURRENCY", "0")
    monkeypatch.setenv("CANARY_LIVE_LANGUAGE", "de")
    monkeypatch.setenv("CANARY_GATHER_IDLE_S", "2.5")
    live, gather = LiveConfig.from_env(), GatherConfig.from_env()
    assert (live.queue_size, live.concurrency, live.language) == (5, 1, "de")
    assert gather.idle_s == 2.5 and gather.max_calls == 1000


def test_the_environment_is_not_touched_by_reading():
    before = dict(os.environ)
    settings()
    assert dict(os.environ) == before
