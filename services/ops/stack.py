"""The local stack without Docker: Kafka from Maven Central jars, PostgreSQL from Debian.

`canary-voice stack up` is idempotent and returns at once when everything is already
healthy. Data lives under .local/ (gitignored). Health is always checked with a real
request (a Kafka metadata request, a SQL query), never by sleeping.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.common.config import projection_schema, settings

ROOT = Path(__file__).resolve().parents[2]
KAFKA_DEPLOY = ROOT / "deploy" / "local" / "kafka"
JVM_FLAGS = [
    "-Xms256m", "-Xmx512m", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
]
DB_NAME = "canary"
DB_USER = "canary"
DB_PASSWORD = "canary"


def _say(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


# --- Kafka -----------------------------------------------------------------------------

def kafka_dir() -> Path:
    return settings().local_dir / "kafka"


def _kafka_lib() -> Path:
    lib = kafka_dir() / "lib"
    if not glob.glob(str(lib / "kafka_2.13-*.jar")):
        _say("fetching the Kafka broker jars from Maven Central (once)")
        lib.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mvn", "-B", "-q", "dependency:copy-dependencies", "-DincludeScope=runtime",
             f"-DoutputDirectory={lib}"], cwd=KAFKA_DEPLOY, check=True)
    return lib


def _java(cls: str, *args: str, log_dir: Path, **popen) -> list[str]:
    cp = str(_kafka_lib() / "*")
    return ["java", *JVM_FLAGS, f"-Dkafka.logs.dir={log_dir}",
            f"-Dlog4j2.configurationFile={KAFKA_DEPLOY / 'log4j2.properties'}", "-cp", cp, cls, *args]


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _kafka_ready(timeout: float = 3.0) -> bool:
    import logging

    from services.common.kafka import broker_ready

    # A refused connection is the expected answer while the broker boots; don't print it.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    return asyncio.run(broker_ready(timeout=timeout))


def kafka_up(wait_s: float = 120.0) -> None:
    """Format storage once, start the broker in its own session, wait for metadata."""
    kd = kafka_dir()
    data, logs, conf = kd / "data", kd / "logs", kd / "server.properties"
    if _kafka_ready(timeout=2.0):
        _say("kafka already up on 127.0.0.1:9092")
        return
    for d in (data, logs):
        d.mkdir(parents=True, exist_ok=True)
    conf.write_text((KAFKA_DEPLOY / "server.properties").read_text().replace("${DATA_DIR}", str(data)))
    if not (data / "meta.properties").exists():
        cluster_id = subprocess.run(_java("kafka.tools.StorageTool", "random-uuid", log_dir=logs),
                                    capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        subprocess.run(_java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(conf),
                             "--standalone", "-g", log_dir=logs), check=True, stdout=subprocess.DEVNULL)
        _say(f"formatted KRaft storage (cluster {cluster_id})")
    if not _pid_alive(kd / "kafka.pid"):
        out = open(logs / "console.log", "ab")
        proc = subprocess.Popen(_java("kafka.Kafka", str(conf), log_dir=logs), stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        (kd / "kafka.pid").write_text(str(proc.pid))
        _say(f"kafka starting (pid {proc.pid}, logs in {logs.relative_to(settings().local_dir.parent)})")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if _kafka_ready(timeout=2.0):
            _say("kafka up on 127.0.0.1:9092")
            return
        if not _pid_alive(kd / "kafka.pid"):
            tail = (logs / "console.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"kafka exited during start-up:\n{tail}")
        time.sleep(0.5)
    raise RuntimeError("kafka did not answer a metadata request in time")


def kafka_down() -> None:
    pid = _pid_alive(kafka_dir() / "kafka.pid")
    if not pid:
        _say("kafka not running")
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(120):
        if not _pid_alive(kafka_dir() / "kafka.pid"):
            break
        time.sleep(0.25)
    else:
        os.kill(pid, signal.SIGKILL)
    _say("kafka stopped")


# --- the 3-broker cluster -----------------------------------------------------------------
#
# Beside the single broker, never instead of it: ports and data of its own.

CLUSTER_PORT = 9192        # node n (1-based) serves clients on CLUSTER_PORT + n - 1
CLUSTER_CONTROLLER_PORT = 9292
CLUSTER_JVM_HEAP = ["-Xms128m", "-Xmx384m"]


def cluster_dir() -> Path:
    return settings().local_dir / "kafka-cluster"


def cluster_bootstrap(brokers: int = 3) -> str:
    return ",".join(f"127.0.0.1:{CLUSTER_PORT + i}" for i in range(brokers))


def _node_pid_file(n: int) -> Path:
    return cluster_dir() / str(n) / "kafka.pid"


# Nodes this process started: an exited child stays a zombie (and looks alive to kill(pid, 0))
# until it is reaped, so those are polled.
_CHILDREN: dict[int, subprocess.Popen] = {}


def _node_alive(n: int) -> int | None:
    pid = _pid_alive(_node_pid_file(n))
    child = _CHILDREN.get(pid) if pid else None
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
        return None
    return pid


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _cluster_ready(brokers: int, timeout: float = 3.0) -> bool:
    """Every broker answers a metadata request by itself and the cluster lists all of them."""
    import logging

    from services.common.kafka import broker_ready

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    async def check() -> bool:
        for i in range(brokers):
            if not await broker_ready(f"127.0.0.1:{CLUSTER_PORT + i}", timeout=timeout):
                return False
        return await broker_ready(cluster_bootstrap(brokers), timeout=timeout, brokers=brokers)

    return asyncio.run(check())


def _console_tail(n: int) -> str:
    log = cluster_dir() / str(n) / "logs" / "console.log"
    return log.read_text(errors="replace")[-2000:] if log.exists() else "(no console log)"


def cluster_up(brokers: int = 3, wait_s: float = 150.0) -> str:
    """Start a `brokers`-node KRaft cluster (combined roles, static quorum) on loopback;
    idempotent. Returns its bootstrap servers. Fails at once, naming the port, when a port
    it needs is held by something else."""
    if brokers < 1:
        raise ValueError(f"--brokers must be at least 1, not {brokers}")
    if shutil.which("java") is None:
        raise RuntimeError("java (17+) is required for the Kafka brokers")
    root = cluster_dir()
    bootstrap = cluster_bootstrap(brokers)
    if _cluster_ready(brokers, timeout=2.0):
        _say(f"kafka cluster already up on {bootstrap}")
        return bootstrap
    template = (KAFKA_DEPLOY / "cluster.properties").read_text()
    voters = ",".join(f"{i + 1}@127.0.0.1:{CLUSTER_CONTROLLER_PORT + i}" for i in range(brokers))
    id_file = root / "cluster.id"
    root.mkdir(parents=True, exist_ok=True)
    if not id_file.exists():
        id_file.write_text(subprocess.run(
            _java("kafka.tools.StorageTool", "random-uuid", log_dir=root), capture_output=True, text=True,
            check=True).stdout.strip().splitlines()[-1])
    cluster_id = id_file.read_text().strip()
    for i in range(brokers):
        n = i + 1
        nd = root / str(n)
        data, logs, conf = nd / "data", nd / "logs", nd / "server.properties"
        for d in (data, logs):
            d.mkdir(parents=True, exist_ok=True)
        if _node_alive(n):
            continue
        for port in (CLUSTER_PORT + i, CLUSTER_CONTROLLER_PORT + i):
            if not _port_free(port):
                raise RuntimeError(f"kafka cluster node {n}: port 127.0.0.1:{port} is taken by another process")
        conf.write_text(template.replace("${NODE_ID}", str(n)).replace("${VOTERS}", voters)
                        .replace("${PORT}", str(CLUSTER_PORT + i))
                        .replace("${CONTROLLER_PORT}", str(CLUSTER_CONTROLLER_PORT + i))
                        .replace("${DATA_DIR}", str(data)))
        if not (data / "meta.properties").exists():
            subprocess.run(_java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(conf),
                                 "-g", log_dir=logs), check=True, stdout=subprocess.DEVNULL)
        cmd = _java("kafka.Kafka", str(conf), log_dir=logs)
        cmd = [c for c in cmd if not c.startswith(("-Xms", "-Xmx"))]
        cmd[1:1] = CLUSTER_JVM_HEAP
        out = open(logs / "console.log", "ab")
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        _node_pid_file(n).write_text(str(proc.pid))
        _CHILDREN[proc.pid] = proc
        _say(f"kafka cluster node {n} starting (pid {proc.pid}, 127.0.0.1:{CLUSTER_PORT + i})")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if _cluster_ready(brokers, timeout=2.0):
            _say(f"kafka cluster up on {bootstrap}")
            return bootstrap
        for n in range(1, brokers + 1):
            if not _node_alive(n):
                raise RuntimeError(f"kafka cluster node {n} exited during start-up:\n{_console_tail(n)}")
        time.sleep(1.0)
    raise RuntimeError(f"kafka cluster did not answer on {bootstrap} within {wait_s:.0f}s")


def cluster_node_down(n: int, kill: bool = False) -> bool:
    """Stop node `n` (1-based) of the cluster with SIGTERM (a controlled shutdown), or with
    SIGKILL (``kill``: a crash, no shutdown at all); False when it was not running."""
    pid = _node_alive(n)
    if not pid:
        return False
    os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    for _ in range(240):
        if not _node_alive(n):
            break
        time.sleep(0.25)
    else:
        os.kill(pid, signal.SIGKILL)
    return True


def cluster_down() -> None:
    """Stop every node of the cluster (the single broker is not touched)."""
    root = cluster_dir()
    nodes = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.exists() else []
    running = [n for n in nodes if _node_alive(n)]
    # SIGTERM to all first: the controlled shutdowns then overlap.
    for n in running:
        pid = _node_alive(n)
        if pid:
            os.kill(pid, signal.SIGTERM)
    for n in running:
        cluster_node_down(n)
    _say(f"kafka cluster stopped (nodes {', '.join(map(str, running))})" if running else "kafka cluster not running")


# --- PostgreSQL ------------------------------------------------------------------------

def _pg_version() -> str:
    versions = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: int(v)) if os.path.isdir(
        "/usr/lib/postgresql") else []
    if not versions:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    return versions[-1]


def _as_postgres(*cmd: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    prefix = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
    return subprocess.run([*prefix, *cmd], check=check, capture_output=True, text=True, input=input)


def _cluster_status(version: str) -> str | None:
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == version and parts[1] == "main":
            return parts[3]
    return None


def pg_up() -> None:
    """Start the Debian `main` cluster on 5432 and make sure role and database exist."""
    version = _pg_version()
    status = _cluster_status(version)
    if status is None:
        subprocess.run(["pg_createcluster", version, "main", "--port", "5432"], check=True,
                       stdout=subprocess.DEVNULL)
        status = "down"
    if status != "online":
        subprocess.run(["pg_ctlcluster", version, "main", "start"], check=True)
        _say(f"postgresql {version} started on 127.0.0.1:5432")
    else:
        _say("postgresql already up on 127.0.0.1:5432")
    sql = (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{DB_USER}') THEN "
        f"CREATE ROLE {DB_USER} LOGIN CREATEDB PASSWORD '{DB_PASSWORD}'; END IF; END $$;"
    )
    _as_postgres("psql", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql)
    exists = _as_postgres("psql", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'").stdout.strip()
    if exists != "1":
        _as_postgres("createdb", "-O", DB_USER, DB_NAME)
        _say(f"created database {DB_NAME}")


def pg_down() -> None:
    version = _pg_version()
    if _cluster_status(version) == "online":
        subprocess.run(["pg_ctlcluster", version, "main", "stop"], check=True)
        _say("postgresql stopped")
    else:
        _say("postgresql not running")


# --- the whole stack ---------------------------------------------------------------------

def up(brokers: int = 1) -> None:
    """Bring Postgres and Kafka up, apply migrations, create the projection tables and the
    topics. Idempotent. `brokers` > 1: the local cluster instead of the single broker, its
    topics replicated `brokers` times (at most 3)."""
    if shutil.which("java") is None:
        raise RuntimeError("java (17+) is required for the Kafka broker")
    pg_up()
    bootstrap, replication = None, None
    if brokers > 1:
        bootstrap, replication = cluster_up(brokers), min(brokers, 3)
    else:
        kafka_up()
    from services.common import db
    from services.common.kafka import ensure_topics

    applied = asyncio.run(db.migrate())
    _say(f"migrations: {len(applied)} applied" if applied else "migrations: up to date")
    _say(f"projections: {asyncio.run(ensure_projections())}")
    created = asyncio.run(ensure_topics(bootstrap, replication=replication))
    _say(f"topics created: {', '.join(created)}" if created else "topics: present")


async def ensure_projections(schema: str | None = None) -> str:
    """Create the projector's tables in `schema` (default: the live one) if missing; the
    projector does the same when it starts, so the API can read them before it has run."""
    from services.common import db
    from services.projector.store import ensure_schema

    schema = schema or projection_schema()
    conn = await db.connect()
    try:
        await ensure_schema(conn, schema)
    finally:
        await conn.close()
    return schema


def down() -> None:
    kafka_down()
    pg_down()


def status() -> dict[str, bool]:
    """Health of each part, by real requests."""
    import asyncpg

    async def pg_ok() -> bool:
        try:
            conn = await asyncpg.connect(settings().database_url, timeout=3)
            await conn.fetchval("SELECT 1")
            await conn.close()
            return True
        except Exception:
            return False

    return {"kafka": _kafka_ready(), "postgres": asyncio.run(pg_ok())}
