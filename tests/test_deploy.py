"""The Kubernetes manifests (deploy/k8s), offline: each overlay rendered as kustomize would (its
resources, recursively, and its ConfigMap patches), every built-in object validated against the
Kubernetes JSON schemas that kubernetes-validate bundles (strict: an unknown field fails), KEDA's
objects against the required fields and types of their CRDs, and the whole kept in step with the
code: every WARDROBE_* setting in the ConfigMap or the Secret, worker queues and KEDA's lists,
the broker's address, grace periods above the task time limit, probes on the API's routes."""
from __future__ import annotations

import ast
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from core.config import describe
from core.queue import QUEUES

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("gpu", "cpu")
K8S_VERSION = "1.30"

SECRET_SETTINGS = {"WARDROBE_DATABASE_URL", "WARDROBE_BROKER_URL", "WARDROBE_SECRET_KEY"}

# KEDA v2's CRDs (keda.sh/v1alpha1), the parts these manifests use: required fields and types
_INT = {"type": "integer"}
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                                   "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                                  "apiVersion": {"type": "string"}, "envSourceContainerName": {"type": "string"}}},
                "minReplicaCount": _INT, "maxReplicaCount": _INT, "idleReplicaCount": _INT,
                "pollingInterval": _INT, "cooldownPeriod": _INT, "initialCooldownPeriod": _INT,
                "advanced": {"type": "object"}, "fallback": {"type": "object"},
                "triggers": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["type", "metadata"], "additionalProperties": False,
                    "properties": {"type": {"type": "string"}, "name": {"type": "string"}, "useCachedMetrics": {"type": "boolean"},
                                   "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                                   "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                                   "authenticationRef": {"type": "object", "required": ["name"],
                                                         "properties": {"name": {"type": "string"}, "kind": {"type": "string"}}}}}},
            },
        },
    },
}
TRIGGER_AUTHENTICATION = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {"type": "object", "properties": {"secretTargetRef": {"type": "array", "items": {
            "type": "object", "required": ["parameter", "name", "key"], "additionalProperties": False,
            "properties": {"parameter": {"type": "string"}, "name": {"type": "string"}, "key": {"type": "string"}}}}}},
    },
}
KEDA_SCHEMAS = {"ScaledObject": SCALED_OBJECT, "TriggerAuthentication": TRIGGER_AUTHENTICATION}
# the Redis scaler's metadata (keda.sh/docs/scalers/redis-lists)
REDIS_REQUIRED = {"listName", "listLength"}
REDIS_KNOWN = REDIS_REQUIRED | {"address", "addressFromEnv", "host", "port", "hostFromEnv", "portFromEnv", "databaseIndex",
                                "activationListLength", "enableTLS", "unsafeSsl", "usernameFromEnv", "passwordFromEnv"}


def _merge(base: dict, patch: dict) -> dict:
    """A strategic-merge patch of maps (what the overlays' ConfigMap patches need)."""
    out = dict(base)
    for k, v in patch.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render(folder: Path, seen: set[Path] | None = None) -> list[dict]:
    """The objects `kubectl apply -k folder` would send, but for kustomize's own transformers
    (namespace, labels, image names), which these manifests do not depend on."""
    seen = seen if seen is not None else set()
    kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization" and kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert set(kust) <= {"apiVersion", "kind", "namespace", "labels", "resources", "patches", "images"}, set(kust)
    docs: list[dict] = []
    for res in kust.get("resources", []):
        path = (folder / res).resolve()
        seen.add(path)
        docs += render(path, seen) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in kust.get("patches", []):
        path = (folder / patch["path"]).resolve()
        seen.add(path)
        p = yaml.safe_load(path.read_text())
        targets = [i for i, d in enumerate(docs) if (d["kind"], d["metadata"]["name"]) == (p["kind"], p["metadata"]["name"])]
        assert len(targets) == 1, f"{path}: patches nothing"
        assert p["kind"] == "ConfigMap", "only ConfigMap patches are rendered here"
        docs[targets[0]] = _merge(docs[targets[0]], p)
    return docs


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {o: render(K8S / o) for o in OVERLAYS}


def by(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_manifest_is_in_an_overlay():
    seen: set[Path] = set()
    for o in OVERLAYS:
        render(K8S / o, seen)
    files = {p.resolve() for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert files and files <= seen, f"not part of any overlay: {sorted(map(str, files - seen))}"


def test_manifests_validate_against_the_kubernetes_schemas(rendered):
    import jsonschema
    import kubernetes_validate

    for overlay, docs in rendered.items():
        kinds = {d["kind"] for d in docs}
        assert {"Namespace", "ConfigMap", "Secret", "Job", "Deployment", "Service", "PodDisruptionBudget",
                "ScaledObject", "TriggerAuthentication"} <= kinds, overlay
        for d in docs:
            where = f"{overlay}: {d['kind']}/{d['metadata']['name']}"
            if d["kind"] in KEDA_SCHEMAS:
                assert d["apiVersion"] == "keda.sh/v1alpha1", where
                jsonschema.validate(d, KEDA_SCHEMAS[d["kind"]])
                continue
            try:
                kubernetes_validate.validate(d, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")


def test_the_schemas_catch_a_broken_manifest():
    """The validation above can fail: a misspelt field and a missing required one are caught."""
    import jsonschema
    import kubernetes_validate

    api = by(render(K8S / "gpu"), "Deployment")["wardrobe-api"]
    bad = _merge(api, {"spec": {"template": {"spec": {"terminationGracePeriodSecs": 5}}}})
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    so = by(render(K8S / "gpu"), "ScaledObject")["wardrobe-worker-segment"]
    bad = _merge(so, {"spec": {}})
    del bad["spec"]["scaleTargetRef"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCALED_OBJECT)
    bad = _merge(so, {"spec": {"triggers": [{"type": "redis", "metadata": {"listLength": 4}}]}})  # a number, not a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCALED_OBJECT)


def _parse(value: str, typ: str) -> None:
    if typ == "bool" or "bool" in typ:
        assert value.lower() in {"", "true", "false", "1", "0", "yes", "no", "on", "off"}, value
    elif typ == "int":
        int(value)
    elif typ == "float":
        float(value)


def test_config_and_secret_hold_every_setting(rendered):
    settings = {name: typ for name, _default, typ in describe()}
    for overlay, docs in rendered.items():
        config = by(docs, "ConfigMap")["wardrobe-config"]["data"]
        secret = by(docs, "Secret")["wardrobe-secrets"]["stringData"]
        ours = {k for k in (*config, *secret) if k.startswith("WARDROBE_")}
        assert ours == set(settings), (overlay, "missing:", set(settings) - ours, "unknown:", ours - set(settings))
        assert not set(config) & set(secret), overlay
        assert SECRET_SETTINGS <= set(secret), overlay
        for name, value in {**config, **secret}.items():
            assert isinstance(value, str), (name, value)  # ConfigMap and Secret values are strings
            if name in settings:
                _parse(value, settings[name])
        assert int(config["WARDROBE_VISIBILITY_TIMEOUT"]) > int(config["WARDROBE_TASK_TIME_LIMIT"]), overlay
        for d in docs:
            for c in _containers(d):
                for e in c.get("env", []):
                    if e["name"].startswith("WARDROBE_"):
                        assert e["name"] in settings, (d["metadata"]["name"], e["name"])
                        _parse(e["value"], settings[e["name"]])


def _same(value: str, default: str, typ: str) -> bool:
    if "bool" in typ:
        return (value.lower() in {"1", "true", "yes", "on"}) == (default == "True")
    if typ in ("int", "float"):
        return float(value) == float(default)
    return value == ("" if default == "None" else default)


def test_the_configmap_holds_the_codes_defaults_unless_a_comment_says_why():
    """Its header promises the code's defaults; a default changed in the code (alternatives_conf 0.05 ->
    0.1, for speed) stayed behind in the ConfigMap, and every cluster ran the old value."""
    defaults = {name: (default, typ) for name, default, typ in describe()}
    stale = []
    for line in (ROOT / "deploy" / "k8s" / "base" / "config.yaml").read_text().splitlines():
        m = re.fullmatch(r'\s+(WARDROBE_\w+): "([^"]*)"\s*', line)  # no comment after it
        if m and not _same(m[2], *defaults[m[1]]):
            stale.append((m[1], m[2], defaults[m[1]][0]))
    assert not stale, stale


def _containers(d: dict) -> list[dict]:
    spec = d.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def _arg(cmd: list[str], flag: str) -> str | None:
    return cmd[cmd.index(flag) + 1] if flag in cmd else None


def test_workers_queues_scaling_and_shutdown(rendered):
    cli_commands = {c for f in (ROOT / "cli").glob("*.py") for c in re.findall(r'add_parser\("([\w-]+)"', f.read_text())}
    for overlay, docs in rendered.items():
        deployments, scaled = by(docs, "Deployment"), by(docs, "ScaledObject")
        config = by(docs, "ConfigMap")["wardrobe-config"]["data"]
        secret = by(docs, "Secret")["wardrobe-secrets"]["stringData"]
        broker = urlparse(secret["WARDROBE_BROKER_URL"])
        auths = by(docs, "TriggerAuthentication")
        beats = []
        proxy = deployments.pop("wardrobe-proxy")  # nginx from its own image (test_slow_clients checks it)
        assert proxy["spec"]["template"]["spec"]["containers"][0]["image"].startswith("nginx:")
        for name, d in deployments.items():
            pod = d["spec"]["template"]["spec"]
            (c,) = pod["containers"]
            assert c["command"][0] == "wardrobe" and c["command"][1] in cli_commands, (overlay, name)
            refs = {(next(iter(r)), next(iter(r.values()))["name"]) for r in c["envFrom"]}
            assert refs == {("configMapRef", "wardrobe-config"), ("secretRef", "wardrobe-secrets")}, (overlay, name)
            assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
            if c["command"][1] != "worker":
                continue
            queues = _arg(c["command"], "--queues").split(",")
            assert set(queues) <= set(QUEUES), (overlay, name, queues)
            # SIGTERM: warm shutdown lets the held task finish within the grace period
            assert pod["terminationGracePeriodSeconds"] > int(config["WARDROBE_TASK_TIME_LIMIT"]), (overlay, name)
            ann = d["spec"]["template"]["metadata"]["annotations"]
            assert ann["prometheus.io/port"] == config["WARDROBE_WORKER_METRICS_PORT"]
            assert {p["containerPort"] for p in c["ports"]} == {int(config["WARDROBE_WORKER_METRICS_PORT"])}
            if "--beat" in c["command"]:
                beats.append(name)
                assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"]["type"] == "Recreate", name
                assert name not in scaled, "beat must stay one replica"
                continue
            # one ScaledObject per worker kind, on the Redis list of the queue it consumes
            so = scaled[name]
            assert so["spec"]["scaleTargetRef"]["name"] == name
            (trigger,) = so["spec"]["triggers"]
            meta = trigger["metadata"]
            assert trigger["type"] == "redis" and REDIS_REQUIRED <= set(meta) <= REDIS_KNOWN, meta
            assert [meta["listName"]] == queues, (name, meta["listName"], queues)
            assert int(meta["listLength"]) > 0
            assert meta["address"] == f"{broker.hostname}:{broker.port}", "KEDA reads the broker's Redis"
            assert meta["databaseIndex"] == (broker.path.strip("/") or "0")
            assert trigger["authenticationRef"]["name"] in auths
            for ref in auths[trigger["authenticationRef"]["name"]]["spec"]["secretTargetRef"]:
                assert ref["name"] == "wardrobe-secrets" and ref["key"] in secret
            lo, hi = so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]
            assert 0 <= lo < hi
            # a PodDisruptionBudget for every scaled worker
            assert any(p["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
                       for p in by(docs, "PodDisruptionBudget").values()), name
        assert len(beats) == 1, (overlay, beats)
        assert {q for d in deployments.values() for c in _containers(d) if c["command"][1] == "worker"
                for q in _arg(c["command"], "--queues").split(",")} == set(QUEUES), overlay


def test_gpu_and_cpu_segment_workers(rendered):
    gpu = by(rendered["gpu"], "Deployment")["wardrobe-worker-segment"]
    pod = gpu["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"]) and pod["nodeSelector"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["WARDROBE_DEVICE"].startswith("cuda")
    assert by(rendered["gpu"], "ScaledObject")["wardrobe-worker-segment"]["spec"]["minReplicaCount"] == 0  # scale to zero
    assert by(rendered["gpu"], "ConfigMap")["wardrobe-config"]["data"]["WARDROBE_SEGMENT_CHUNK"] == "128"

    cpu = by(rendered["cpu"], "Deployment")["wardrobe-worker-segment"]
    (c,) = cpu["spec"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in str(cpu)
    env = {e["name"]: e["value"] for e in c["env"]}
    assert (env["WARDROBE_DEVICE"], env["WARDROBE_BACKEND"]) == ("cpu", "openvino-int8")
    assert by(rendered["cpu"], "ConfigMap")["wardrobe-config"]["data"]["WARDROBE_SEGMENT_CHUNK"] == "16"


def test_api_probes_service_and_migration(rendered):
    from api.app import create_app  # noqa: F401 - the routes named below exist (test_api checks them)

    for overlay, docs in rendered.items():
        api = by(docs, "Deployment")["wardrobe-api"]
        (c,) = api["spec"]["template"]["spec"]["containers"]
        port = int(_arg(c["command"], "--port"))
        assert [p["containerPort"] for p in c["ports"]] == [port]
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert api["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
        svc = by(docs, "Service")["wardrobe-api"]
        assert svc["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
        assert svc["spec"]["ports"][0]["targetPort"] == c["ports"][0]["name"]
        job = by(docs, "Job")["wardrobe-migrate"]
        (m,) = job["spec"]["template"]["spec"]["containers"]
        assert m["command"] == ["wardrobe", "migrate"]
        assert by(docs, "ConfigMap")["wardrobe-config"]["data"]["WARDROBE_AUTO_MIGRATE"] == "false"


def test_the_product_never_imports_the_benchmarks():
    """bench/ holds the scale benchmark's stand-in segmenter: no product package may load it."""
    for pkg in ("api", "worker", "db", "training", "cli"):
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                assert not any(n == "bench" or n.startswith("bench.") for n in names), path


def test_compose_prometheus_scrapes_the_api_and_every_worker():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    prom = services["prometheus"]
    mount = next(v for v in prom["volumes"] if v.endswith(":/etc/prometheus/prometheus.yml:ro"))
    config = yaml.safe_load((ROOT / mount.split(":")[0]).read_text())
    jobs = {j["job_name"]: j["dns_sd_configs"][0] for j in config["scrape_configs"]}
    api_cmd = services["api"]["command"]
    assert jobs["wardrobe-api"]["names"] == ["api"] and jobs["wardrobe-api"]["port"] == int(_arg(api_cmd, "--port"))
    workers = {name for name, svc in services.items() if svc.get("command", [None, None])[:2] == ["wardrobe", "worker"]}
    assert set(jobs["wardrobe-workers"]["names"]) == workers
    for name in workers:
        assert int(services[name]["environment"]["WARDROBE_WORKER_METRICS_PORT"]) == jobs["wardrobe-workers"]["port"], name
    flower = services["flower"]
    assert flower["profiles"] == ["flower"]
    assert f"--broker={services['api']['environment']['WARDROBE_BROKER_URL']}" in flower["command"]
