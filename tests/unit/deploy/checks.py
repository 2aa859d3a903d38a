"""What a deployment manifest must hold for our services, as a list of problems.

Shared by the tests of the shipped manifests and of deliberately broken copies, so a
check that can never fail shows up as a failing "broken manifest" test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from services.common.config import variables
from services.common.signing import SERVICE_SECRETS
from services.ops.run import ALL_SERVICES

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "kubernetes"
BASE = K8S / "base"
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"

IMAGE = "canary-voice"
KNOWN_ENV = {v.env for v in variables()}
# Outside development the API refuses to start without the first two (signing.SERVICE_SECRETS);
# the service key signs the API's commands (CANARY_KAFKA_INTAKE_AUTH=signed) and the
# database URL holds Postgres's password: all four come from the Secret, never a ConfigMap.
REQUIRED_SECRETS = {env for env, _ in SERVICE_SECRETS} | {"CANARY_KAFKA_SERVICE_KEY", "CANARY_DATABASE_URL"}
MODULES = {svc.name: svc.module for svc in ALL_SERVICES}


def load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def base_docs() -> list[dict[str, Any]]:
    kust = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [d for r in kust["resources"] for d in load(BASE / r)]


def of_kind(docs, kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def _named(docs, kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in of_kind(docs, kind)}


def container_env(c: dict, docs) -> dict[str, dict]:
    """Every variable a container gets: name -> where from ({"value": ...}, {"secret": name}, ...)."""
    configmaps, secrets = _named(docs, "ConfigMap"), _named(docs, "Secret")
    env: dict[str, dict] = {}
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            for k, v in configmaps.get(src["configMapRef"]["name"], {}).get("data", {}).items():
                env[k] = {"value": v, "from": "configmap"}
        if "secretRef" in src:
            s = secrets.get(src["secretRef"]["name"], {})
            for k in {**s.get("data", {}), **s.get("stringData", {})}:
                env[k] = {"from": "secret", "secret": src["secretRef"]["name"]}
    for e in c.get("env", []):
        ref = e.get("valueFrom", {})
        if "secretKeyRef" in ref:
            env[e["name"]] = {"from": "secret", "secret": ref["secretKeyRef"]["name"]}
        elif ref:
            env[e["name"]] = {"from": "field"}
        else:
            env[e["name"]] = {"value": e.get("value", ""), "from": "literal"}
    return env


def _port(c: dict, port) -> int | None:
    if isinstance(port, int):
        return port
    return next((p["containerPort"] for p in c.get("ports", []) if p.get("name") == port), None)


def deployment_problems(dep: dict, docs) -> list[str]:
    name = dep["metadata"]["name"]
    spec = dep["spec"]["template"]["spec"]
    out = []
    if dep["spec"]["selector"]["matchLabels"].items() - dep["spec"]["template"]["metadata"]["labels"].items():
        out.append(f"{name}: selector does not match the pod's labels")
    for c in spec["containers"]:
        where = f"{name}/{c['name']}"
        if c.get("image") != IMAGE:
            out.append(f"{where}: image {c.get('image')!r}, not {IMAGE!r} (deploy/Dockerfile)")
        req = c.get("resources", {}).get("requests", {})
        if not {"cpu", "memory"} <= req.keys():
            out.append(f"{where}: resource requests need cpu and memory")
        if "memory" not in c.get("resources", {}).get("limits", {}):
            out.append(f"{where}: no memory limit")
        env = container_env(c, docs)
        for var in sorted(env.keys() - KNOWN_ENV):
            out.append(f"{where}: {var} is not a setting in services/common/config.py")
        for var in sorted(REQUIRED_SECRETS):
            if env.get(var, {}).get("from") != "secret":
                out.append(f"{where}: {var} must come from the Secret")
        cmd = c.get("command", [])
        module = cmd[2] if cmd[:2] == ["python", "-m"] and len(cmd) > 2 else None
        if module not in MODULES.values():
            out.append(f"{where}: command {cmd} is not `python -m` of a service in services/ops/run.py")
        # Where the probes must go: the API's own port; a worker's CANARY_HEALTH_PORT,
        # bound to an address the kubelet reaches (the default 127.0.0.1 is not one).
        if module == MODULES["api"]:
            want_port = int(env.get("CANARY_API_PORT", {}).get("value", "8080"))
            want = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
            if env.get("CANARY_API_HOST", {}).get("value") != "0.0.0.0":
                out.append(f"{where}: CANARY_API_HOST must be 0.0.0.0 (the default listens on loopback only)")
        else:
            raw = env.get("CANARY_HEALTH_PORT", {}).get("value", "0")
            want_port = int(raw) if raw.isdigit() else 0
            want = {"livenessProbe": "/healthz", "readinessProbe": "/healthz"}
            if not want_port:
                out.append(f"{where}: CANARY_HEALTH_PORT is not set, so there is no /healthz to probe")
            host = env.get("CANARY_HEALTH_HOST")
            if host is None or host.get("value") in ("127.0.0.1", "localhost"):
                out.append(f"{where}: CANARY_HEALTH_HOST must be the pod's address (status.podIP) or 0.0.0.0")
        for probe, path in want.items():
            get = c.get(probe, {}).get("httpGet")
            if get is None:
                out.append(f"{where}: no {probe} (httpGet)")
            elif get.get("path") != path or _port(c, get.get("port")) != want_port:
                out.append(f"{where}: {probe} asks {get.get('path')} on {get.get('port')}, not {path} on {want_port}")
    return out


def problems(docs) -> list[str]:
    """Everything wrong with a set of manifests (empty: fine)."""
    out = []
    deps = of_kind(docs, "Deployment")
    for dep in deps:
        out += deployment_problems(dep, docs)
    components = {d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") for d in deps}
    for missing in sorted(MODULES.keys() - components):
        out.append(f"no Deployment for the {missing} service ({MODULES[missing]})")
    pdb_selectors = [p["spec"]["selector"]["matchLabels"] for p in of_kind(docs, "PodDisruptionBudget")]
    for dep in deps:
        labels = dep["spec"]["template"]["metadata"]["labels"]
        if not any(sel.items() <= labels.items() for sel in pdb_selectors):
            out.append(f"{dep['metadata']['name']}: no PodDisruptionBudget selects its pods")
    for cm in of_kind(docs, "ConfigMap"):
        for var in sorted(cm.get("data", {}).keys() & REQUIRED_SECRETS):
            out.append(f"ConfigMap {cm['metadata']['name']}: {var} is a secret, put it in the Secret")
    return out
