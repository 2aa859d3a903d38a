"""The deployment manifests (deploy/kubernetes, deploy/compose), offline: Kubernetes'
own schemas (kubernetes-validate) and what our services need from them (deploy/checks.py)."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from services.common.signing import secret_problem
from tests.unit.deploy.checks import (
    BASE, COMPOSE, K8S, KNOWN_ENV, MODULES, REQUIRED_SECRETS, ROOT, base_docs, load, of_kind, problems,
)

K8S_VERSION = "1.30"  # the oldest Kubernetes we deploy on; the fields used are all older
MANIFESTS = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_passes_the_kubernetes_schema(path):
    docs = load(path)
    assert docs
    for doc in docs:
        # strict: an unknown field (a typo such as `livenesProbe`) is an error, not ignored
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schema_check_catches_a_misspelt_field():
    dep = copy.deepcopy(of_kind(base_docs(), "Deployment")[0])
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["livenesProbe"] = c.pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


def test_kustomizations_list_every_file_and_only_existing_ones():
    for kust_path in K8S.rglob("kustomization.yaml"):
        kust = yaml.safe_load(kust_path.read_text())
        listed = set(kust.get("resources", [])) | {p["path"] for p in kust.get("patches", [])}
        here = {p.name for p in kust_path.parent.glob("*.yaml")} - {"kustomization.yaml"}
        local = {r for r in listed if "/" not in r}
        assert local == here, kust_path
        for r in listed - local:
            assert (kust_path.parent / r / "kustomization.yaml").exists(), r
    base = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert [i["name"] for i in base["images"]] == ["canary-voice"]


def test_the_shipped_manifests_have_no_problems():
    assert problems(base_docs()) == []


def test_one_deployment_per_service_running_its_module():
    deps = of_kind(base_docs(), "Deployment")
    got = {d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]:
           d["spec"]["template"]["spec"]["containers"][0]["command"][2] for d in deps}
    assert got == MODULES


def _broken(change) -> list[str]:
    docs = copy.deepcopy(base_docs())
    dep = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "canary-orchestrator")
    change(dep["spec"]["template"]["spec"]["containers"][0], docs)
    return problems(docs)


def test_a_missing_probe_is_caught():
    assert _broken(lambda c, _: c.pop("readinessProbe")) == ["canary-orchestrator/orchestrator: no readinessProbe (httpGet)"]


def test_a_probe_on_the_wrong_port_is_caught():
    def change(c, _):
        c["livenessProbe"]["httpGet"]["port"] = 9999
    assert _broken(change) == [
        "canary-orchestrator/orchestrator: livenessProbe asks /healthz on 9999, not /healthz on 8081"]


def test_an_unknown_env_var_is_caught():
    assert _broken(lambda c, _: c["env"].append({"name": "CANARY_HEALTHPORT", "value": "1"})) == [
        "canary-orchestrator/orchestrator: CANARY_HEALTHPORT is not a setting in services/common/config.py"]


def test_a_health_responder_on_loopback_is_caught():
    def change(c, _):
        c["env"] = [e for e in c["env"] if e["name"] != "CANARY_HEALTH_HOST"]
    assert _broken(change) == ["canary-orchestrator/orchestrator: CANARY_HEALTH_HOST must be the pod's address"
                               " (status.podIP) or 0.0.0.0"]


def test_missing_requests_and_a_foreign_image_are_caught():
    def change(c, _):
        c["image"] = "python:3.11"
        del c["resources"]["requests"]
    assert _broken(change) == [
        "canary-orchestrator/orchestrator: image 'python:3.11', not 'canary-voice' (deploy/Dockerfile)",
        "canary-orchestrator/orchestrator: resource requests need cpu and memory"]


def test_a_deployment_without_the_secret_is_caught():
    def change(c, _):
        c["envFrom"] = [s for s in c["envFrom"] if "secretRef" not in s]
    assert _broken(change) == [f"canary-orchestrator/orchestrator: {v} must come from the Secret"
                               for v in sorted(REQUIRED_SECRETS)]


def test_a_secret_in_the_configmap_is_caught():
    def change(_, docs):
        cm = of_kind(docs, "ConfigMap")[0]
        cm["data"]["CANARY_URL_SECRET"] = "x" * 32
        secret = of_kind(docs, "Secret")[0]
        del secret["stringData"]["CANARY_URL_SECRET"]
    found = _broken(change)
    assert "ConfigMap canary-config: CANARY_URL_SECRET is a secret, put it in the Secret" in found
    assert "canary-api/api: CANARY_URL_SECRET must come from the Secret" in found


def test_a_service_without_deployment_or_pdb_is_caught():
    docs = [d for d in base_docs() if d["metadata"]["name"] != "canary-webhooks"]
    assert problems(docs) == ["no Deployment for the webhooks service (services.webhooks)"]
    docs = [d for d in base_docs() if not (d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "canary-tts")]
    assert problems(docs) == ["canary-tts: no PodDisruptionBudget selects its pods"]


def test_the_secret_holds_placeholders_production_refuses():
    secret = of_kind(base_docs(), "Secret")[0]["stringData"]
    assert REQUIRED_SECRETS <= secret.keys()
    for env in ("CANARY_URL_SECRET", "CANARY_TRUNK_SECRET"):
        # a forgotten placeholder stops the API instead of signing links with a known key
        assert secret_problem(env, secret[env]) == f"{env} has a key shorter than 16 characters"
    assert all("CHANGE-ME" in v for v in secret.values())


def test_configmap_is_production():
    cm = of_kind(base_docs(), "ConfigMap")[0]["data"]
    assert cm["CANARY_ENV"] == "production"
    assert cm["CANARY_KAFKA_INTAKE_AUTH"] == "signed"


def test_gateway_on_the_node_network_advertising_the_node_address():
    dep = next(d for d in of_kind(base_docs(), "Deployment") if d["metadata"]["name"] == "canary-telephony")
    spec = dep["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["CANARY_SIP_BIND"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    anti = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "kubernetes.io/hostname"  # one gateway per node: one port 5060


def test_api_service_reaches_the_api_pods():
    docs = base_docs()
    svc = next(s for s in of_kind(docs, "Service") if s["metadata"]["name"] == "canary-api")
    api = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "canary-api")
    assert svc["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    ports = {p["name"] for p in api["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports


def test_migration_job_runs_the_migrate_command():
    job = of_kind(base_docs(), "Job")[0]
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["canary-voice", "migrate"] and c["image"] == "canary-voice"
    from typer.testing import CliRunner

    from services.cli import _register_commands, app

    _register_commands()
    result = CliRunner().invoke(app, ["migrate", "--help"])
    assert result.exit_code == 0 and "migrations" in result.output


def test_external_overlay_patches_only_known_settings():
    docs = load(K8S / "overlays" / "external" / "config.yaml") + load(K8S / "overlays" / "external" / "secret.yaml")
    cm = of_kind(docs, "ConfigMap")[0]["data"]
    assert cm.keys() <= KNOWN_ENV and not cm.keys() & REQUIRED_SECRETS
    assert "CANARY_KAFKA_BOOTSTRAP" in cm
    assert "CANARY_DATABASE_URL" in of_kind(docs, "Secret")[0]["stringData"]


# --- compose --------------------------------------------------------------------------

def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved by the loader


def test_compose_names_the_same_services_with_their_modules():
    services = compose()["services"]
    assert services.keys() == MODULES.keys() | {"kafka", "postgres", "migrate"}
    for name, module in MODULES.items():
        assert services[name]["command"] == ["python", "-m", module]
        assert services[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    assert services["migrate"]["command"] == ["canary-voice", "migrate"]
    assert services["api"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (ROOT / "deploy" / "Dockerfile").exists()


def test_compose_env_is_known_and_secrets_come_from_outside():
    services = compose()["services"]
    for name in MODULES.keys() | {"migrate"}:
        env = services[name]["environment"]
        assert env.keys() <= KNOWN_ENV, (name, env.keys() - KNOWN_ENV)
        for var in REQUIRED_SECRETS:
            # ${VAR:?...}: compose refuses to start unless the operator sets it
            assert ":?" in env[var], (name, var)


def test_compose_kafka_is_kraft():
    kafka = compose()["services"]["kafka"]["environment"]
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_ZOOKEEPER_CONNECT" not in kafka
