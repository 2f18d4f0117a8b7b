"""deploy/k8s, checked offline: no cluster, no kustomize binary, no network.

The base and the example overlay are built by tests/unit/kustomize_lite.py (compared with
`kubectl kustomize` where kubectl is installed), validated against the Kubernetes JSON schemas
(the kubernetes-validate package) and KEDA's CRD schemas (deploy/k8s/schemas), and held to the
settings the code reads, exactly as test_compose holds compose.yaml.
"""

import base64
import copy
import json
import math
import re
import shutil
import subprocess
from dataclasses import MISSING
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from services.settings import (
    LAUNCHER_VARIABLES,
    CommonSettings,
    ControlSettings,
    IngestSettings,
    WorkerSettings,
)
from tests.unit import kustomize_lite
from tests.unit.kustomize_lite import KustomizeError, build, containers, pod_spec

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/k8s"
BASE = K8S / "base"
EXAMPLE = K8S / "overlays/example"
# The oldest Kubernetes the manifests are meant for, and the newest the package knows.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.utils.latest_version()]
KEDA_SCHEMAS = json.loads((K8S / "schemas/keda.json").read_text())

# Each workload, the settings class its process reads, and its component label.
PROCESSES = {
    "sluice-ingest": IngestSettings,
    "sluice-control": ControlSettings,
    "sluice-worker": WorkerSettings,
    "sluice-beat": WorkerSettings,
    "sluice-release": CommonSettings,
}  # `sluice db upgrade` and `aws provision` read CommonSettings
KNOWN = {
    *IngestSettings.variables(),
    *ControlSettings.variables(),
    *WorkerSettings.variables(),
    *LAUNCHER_VARIABLES,
}
RELEASE_LABEL = "sluice/release-step"


def required(cls) -> set[str]:
    return {name for name, default in cls.variables().items() if default is MISSING}


@pytest.fixture(scope="module")
def overlay_copy(tmp_path_factory) -> Path:
    """deploy/k8s copied, with the example overlay's secrets.env made from its .example file."""
    copy_root = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, copy_root)
    example = copy_root / "overlays/example"
    shutil.copy(example / "secrets.env.example", example / "secrets.env")  # replaces a local one
    return copy_root


@pytest.fixture(scope="module", params=["base", "example"])
def built(request, overlay_copy) -> list[dict]:
    return build(overlay_copy / ("base" if request.param == "base" else "overlays/example"))


def find(objects, kind, name=None) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects, kind, name) -> dict:
    [obj] = find(objects, kind, name)
    return obj


def workloads(objects) -> list[dict]:
    return [o for o in objects if pod_spec(o) is not None]


def generated(objects, kind, prefix) -> dict:
    """The ConfigMap or Secret generated as `prefix` (its name carries a hash suffix)."""
    [obj] = [
        o for o in find(objects, kind) if re.fullmatch(rf"{prefix}-[a-z0-9]{{10}}", o["metadata"]["name"])
    ]
    return obj


def config(objects) -> dict[str, str]:
    return generated(objects, "ConfigMap", "sluice-config")["data"]


def secret_values(obj: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}


# the files and the build


def test_every_file_in_base_is_part_of_the_kustomization():
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    used = set(kustomization["resources"])
    for generator in kustomization["configMapGenerator"] + kustomization["secretGenerator"]:
        used |= set(generator["envs"])
    files = {p.relative_to(BASE).as_posix() for p in BASE.rglob("*") if p.is_file()}
    assert files - {"kustomization.yaml"} == used


def test_every_file_in_the_example_overlay_is_used_or_documented():
    kustomization = yaml.safe_load((EXAMPLE / "kustomization.yaml").read_text())
    used = {r for r in kustomization["resources"] if not r.startswith("..")}
    used |= {p["path"] for p in kustomization["patches"]}
    for generator in kustomization["configMapGenerator"] + kustomization["secretGenerator"]:
        used |= set(generator["envs"])
    files = {p.relative_to(EXAMPLE).as_posix() for p in EXAMPLE.rglob("*") if p.is_file()}
    # secrets.env is each operator's own (not in git); its template documents the keys.
    assert files - {"kustomization.yaml", "secrets.env", "secrets.env.example"} == used - {"secrets.env"}


def test_the_builds_hold_every_sluice_object(built):
    names = {(o["kind"], o["metadata"]["name"]) for o in built}
    deployments = ("sluice-ingest", "sluice-control", "sluice-worker", "sluice-beat")
    assert {("Deployment", n) for n in deployments} <= names
    assert ("Job", "sluice-release") in names
    services = ("sluice-ingest", "sluice-control", "sluice-worker-metrics")
    assert {("Service", n) for n in services} <= names
    assert {("ScaledObject", "sluice-worker"), ("TriggerAuthentication", "sluice-worker-sqs")} <= names
    assert {o["metadata"]["name"] for o in workloads(built)} == set(PROCESSES)


def test_the_example_overlay_does_not_build_without_real_secrets(tmp_path):
    # With no secrets.env the build fails, so placeholders are never applied by mistake.
    shutil.copytree(K8S, tmp_path / "k8s")
    (tmp_path / "k8s/overlays/example/secrets.env").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match=r"secrets\.env"):
        build(tmp_path / "k8s/overlays/example")


def test_the_overlay_puts_everything_in_its_namespace_and_sets_the_image(overlay_copy):
    objects = build(overlay_copy / "overlays/example")
    namespace = yaml.safe_load((EXAMPLE / "kustomization.yaml").read_text())["namespace"]
    assert one(objects, "Namespace", namespace)
    assert all(o["metadata"].get("namespace") == namespace for o in objects if o["kind"] != "Namespace")
    images = {c["image"] for o in workloads(objects) for c in containers(o)}
    assert images == {"registry.example.com/sluice:0.1.0"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("directory", ["base", "overlays/example"])
def test_the_renderer_builds_what_kubectl_kustomize_builds(overlay_copy, directory):
    theirs = list(
        yaml.safe_load_all(
            subprocess.run(
                ["kubectl", "kustomize", str(overlay_copy / directory)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
    )
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(build(overlay_copy / directory), key=key) == sorted(theirs, key=key)


def test_the_renderer_refuses_what_it_does_not_imitate(tmp_path):
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\n")
    (tmp_path / "kustomization.yaml").write_text("resources: [a.yaml]\ncommonLabels: {x: y}\n")
    with pytest.raises(KustomizeError, match="commonLabels"):
        build(tmp_path)
    (tmp_path / "p.yaml").write_text(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\nimagePullSecrets: [{name: b}]\n"
    )
    (tmp_path / "kustomization.yaml").write_text("resources: [a.yaml]\npatches: [{path: p.yaml}]\n")
    with pytest.raises(KustomizeError, match="lists"):
        build(tmp_path)


def test_generated_names_carry_kustomizes_content_hash():
    # kustomize's own test vectors (api/hasher/hasher_test.go) and one checked with kubectl.
    assert kustomize_lite.content_hash({"kind": "ConfigMap", "metadata": {"name": "x"}}) == "6ct58987ht"
    assert (
        kustomize_lite.content_hash({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"one": ""}})
        == "9g67k2htb6"
    )
    assert (
        kustomize_lite.content_hash({"kind": "ConfigMap", "metadata": {"name": "d"}, "data": {"A": "b"}})
        == "b9t2424hkf"
    )


# schemas


def keda_validator(kind: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(strict(copy.deepcopy(KEDA_SCHEMAS[kind]["openAPIV3Schema"])))


def strict(schema):
    """Unknown fields are errors, as with `kubectl apply --validate=strict`."""
    if isinstance(schema, dict):
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def schema_errors(obj: dict, version: str) -> list[str]:
    if obj["kind"] in KEDA_SCHEMAS:
        assert obj["apiVersion"] == KEDA_SCHEMAS[obj["kind"]]["apiVersion"]
        return [
            f"{'.'.join(map(str, e.path))}: {e.message}" for e in keda_validator(obj["kind"]).iter_errors(obj)
        ]
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_against_its_schema(built, version):
    # An object of a kind with no schema (neither Kubernetes' nor a vendored CRD's) fails here.
    problems = {f"{o['kind']}/{o['metadata']['name']}": schema_errors(o, version) for o in built}
    assert not {k: v for k, v in problems.items() if v}


def test_schema_validation_catches_mistakes(overlay_copy):
    objects = build(overlay_copy / "base")
    deployment = copy.deepcopy(one(objects, "Deployment", "sluice-worker"))
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # a typo
    assert schema_errors(deployment, KUBERNETES_VERSIONS[0])
    scaled = copy.deepcopy(one(objects, "ScaledObject", "sluice-worker"))
    scaled["spec"]["minReplicas"] = 2  # the HPA's word, not KEDA's
    assert schema_errors(scaled, KUBERNETES_VERSIONS[0])
    scaled = copy.deepcopy(one(objects, "ScaledObject", "sluice-worker"))
    scaled["spec"]["triggers"][0]["metadata"]["queueLength"] = 589  # must be a string
    assert schema_errors(scaled, KUBERNETES_VERSIONS[0])


def test_names_and_labels_are_valid_kubernetes_names(built):
    dns_label = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
    for obj in built:
        assert dns_label.fullmatch(obj["metadata"]["name"]) and len(obj["metadata"]["name"]) <= 63, obj[
            "metadata"
        ]
        for key, value in obj["metadata"].get("labels", {}).items():
            prefix, _, name = key.rpartition("/")
            assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", name), key
            assert not prefix or re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", prefix), key
            assert re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?", value), (key, value)


# settings, exactly as test_compose checks compose.yaml


def environment(objects, container) -> dict[str, str]:
    """What the process in `container` finds in its environment."""
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(one(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            env.update(secret_values(one(objects, "Secret", source["secretRef"]["name"])))
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", "<from valueFrom>")
    return env


def settings_problems(objects) -> list[str]:
    problems = []
    for workload in workloads(objects):
        cls = PROCESSES[workload["metadata"]["name"]]
        for container in containers(workload):
            env = environment(objects, container)
            where = f"{workload['metadata']['name']}/{container['name']}"
            # An empty value counts as unset (CommonSettings.from_env).
            missing = {name for name in required(cls) if not env.get(name)}
            if missing:
                problems.append(f"{where} lacks required {sorted(missing)}")
            unknown = {name for name in env if name.startswith("SLUICE_")} - KNOWN
            if unknown:
                problems.append(f"{where} sets {sorted(unknown)}, which no settings class reads")
    return problems


def test_each_process_gets_every_required_setting_and_no_unknown_ones(built):
    assert settings_problems(built) == []


def test_the_settings_check_fails_on_a_missing_or_an_unknown_setting(overlay_copy):
    objects = build(overlay_copy / "overlays/example")
    secret = generated(objects, "Secret", "sluice-secrets")
    del secret["data"]["SLUICE_DATABASE_URL"]
    assert any("lacks required ['SLUICE_DATABASE_URL']" in p for p in settings_problems(objects))
    objects = build(overlay_copy / "overlays/example")
    config(objects)["SLUICE_DRAIN_THREAD"] = "4"
    assert any("SLUICE_DRAIN_THREAD" in p for p in settings_problems(objects))


def test_settings_come_from_one_configmap_and_one_secret(built):
    assert len(find(built, "ConfigMap")) == 1 and len(find(built, "Secret")) == 1
    configmap = generated(built, "ConfigMap", "sluice-config")["metadata"]["name"]
    secret = generated(built, "Secret", "sluice-secrets")["metadata"]["name"]
    for workload in workloads(built):
        for container in containers(workload):
            assert container["envFrom"] == [
                {"configMapRef": {"name": configmap}},
                {"secretRef": {"name": secret}},
            ]
            assert not [v for v in container.get("env", []) if v["name"].startswith("SLUICE_")], (
                "a setting outside the ConfigMap and Secret"
            )


def test_secrets_in_git_are_placeholders_that_cannot_work(built):
    for name, value in secret_values(generated(built, "Secret", "sluice-secrets")).items():
        assert "REPLACE-ME" in value, name
    for name, value in kustomize_lite.read_env_file(EXAMPLE / "secrets.env.example").items():
        assert "REPLACE-ME" in value, name
        if "://" in value:
            assert re.search(r"@[^/:]+\.invalid[:/]", value), (name, "host must be under .invalid")
    assert "overlays/*/secrets.env" in (K8S / ".gitignore").read_text().splitlines()


def test_nothing_in_the_configmap_is_secret(built):
    for name in config(built):
        assert not re.search(r"PASSWORD|SECRET|TOKEN|DATABASE_URL|REDIS_URL|_KEY\b", name), name


def test_the_image_never_carries_the_development_env_file():
    # `sluice` reads deploy/dev.env when present: moto on 127.0.0.1 and fake AWS keys.
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    copies = [line for line in dockerfile.splitlines() if line.startswith(("COPY", "ADD"))]
    assert not [c for c in copies if "dev.env" in c or re.match(r"(COPY|ADD)\s+(\.|deploy/?)\s", c)], copies


# what each process runs


def container_of(objects, name) -> dict:
    [container] = one(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    return container


def test_the_apis_start_their_real_entry_points_on_their_ports(built):
    import importlib

    for name, app in (
        ("sluice-ingest", "services.ingest.app:create_app()"),
        ("sluice-control", "services.control.app:create_app()"),
    ):
        container = container_of(built, name)
        command = container["command"]
        assert command[:3] == ["gunicorn", "-c", "deploy/gunicorn.conf.py"] and command[-1] == app
        module, factory = app.removesuffix("()").split(":")
        assert callable(getattr(importlib.import_module(module), factory))
        bind = command[command.index("-b") + 1]
        [port] = [p["containerPort"] for p in container["ports"] if p["name"] == "http"]
        assert bind == f"0.0.0.0:{port}"
    assert (ROOT / "deploy/gunicorn.conf.py").is_file()


def test_the_worker_and_beat_start_celery_with_the_real_app(built):
    import importlib.util

    assert importlib.util.find_spec("services.worker.main") is not None
    worker = container_of(built, "sluice-worker")["command"]
    assert worker[:4] == ["celery", "-A", "services.worker.main", "worker"]
    # Without a fixed concurrency Celery forks one process per node CPU, whatever the limits say.
    assert any(arg.startswith("--concurrency=") for arg in worker)
    assert container_of(built, "sluice-beat")["command"][:4] == [
        "celery",
        "-A",
        "services.worker.main",
        "beat",
    ]


def test_the_release_job_upgrades_the_schema_then_provisions_aws(built):
    from services.cli import build_parser

    spec = one(built, "Job", "sluice-release")["spec"]["template"]["spec"]
    steps = [c["command"] for c in spec.get("initContainers", []) + spec["containers"]]
    assert steps == [["sluice", "db", "upgrade"], ["sluice", "aws", "provision"]]
    for step in steps:
        build_parser().parse_args(step[1:])  # both are real `sluice` commands
    assert spec["restartPolicy"] == "Never"


def test_beat_is_exactly_one_replica_that_never_overlaps(built):
    beat = one(built, "Deployment", "sluice-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    autoscalers = find(built, "HorizontalPodAutoscaler") + find(built, "ScaledObject")
    scaled = {o["spec"]["scaleTargetRef"]["name"] for o in autoscalers}
    assert "sluice-beat" not in scaled


def test_autoscalers_own_the_replica_counts_of_what_they_scale(built):
    hpas = {o["spec"]["scaleTargetRef"]["name"]: o for o in find(built, "HorizontalPodAutoscaler")}
    assert set(hpas) == {"sluice-ingest", "sluice-control"}
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
        assert 1 < hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert container_of(built, name)["resources"]["requests"]["cpu"]  # utilization is of this
    [scaled] = find(built, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "sluice-worker"
    for name in (*hpas, "sluice-worker"):
        # An applied replicas value would reset the autoscaler's count on every apply.
        assert "replicas" not in one(built, "Deployment", name)["spec"], name


# probes, resources, disruption, shutdown


def named_port(container, name) -> int:
    [port] = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return port


def test_api_probes_ask_healthz_for_liveness_and_readyz_for_readiness(built):
    for name in ("sluice-ingest", "sluice-control"):
        container = container_of(built, name)
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_the_worker_liveness_probe_asks_its_metrics_port(built):
    container = container_of(built, "sluice-worker")
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"].startswith("/metrics")
    assert named_port(container, probe["port"]) == int(config(built)["SLUICE_WORKER_METRICS_PORT"])
    assert container["startupProbe"]["httpGet"] == probe


def test_the_worker_liveness_probe_does_not_ask_sqs(built):
    """A full scrape asks SQS for the queue depth; the probe's name[] filter must avoid that."""
    from urllib.parse import urlsplit

    from prometheus_client import REGISTRY, make_wsgi_app

    from services.worker.metrics import QueueDepthCollector

    class CountingSQS:
        calls = 0

        def get_queue_url(self, QueueName):
            return {"QueueUrl": QueueName}

        def get_queue_attributes(self, **kwargs):
            CountingSQS.calls += 1
            return {
                "Attributes": {
                    "ApproximateNumberOfMessages": "0",
                    "ApproximateNumberOfMessagesNotVisible": "0",
                }
            }

    def get(path: str) -> tuple[str, bytes]:
        url, answer = urlsplit(path), {}
        body = b"".join(
            make_wsgi_app()(
                {"REQUEST_METHOD": "GET", "PATH_INFO": url.path, "QUERY_STRING": url.query},
                lambda status, headers: answer.setdefault("status", status),
            )
        )
        return answer["status"], body

    collector = QueueDepthCollector(CommonSettings(database_url="x"), sqs=CountingSQS())
    REGISTRY.register(collector)
    try:
        status, body = get(container_of(built, "sluice-worker")["livenessProbe"]["httpGet"]["path"])
        assert status.startswith("200") and b"sluice_drain_lag_seconds" in body
        assert CountingSQS.calls == 0
        get("/metrics")  # the check can fail: a full scrape does ask
        assert CountingSQS.calls > 0
    finally:
        REGISTRY.unregister(collector)


def quantity(value) -> float:
    """A Kubernetes quantity (cpu or memory) as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value)).groups()
    return float(number) * units.get(unit, 1)


def test_every_container_has_requests_within_limits(built):
    for workload in workloads(built):
        for container in containers(workload):
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                request, limit = resources["requests"][resource], resources["limits"][resource]
                assert quantity(request) <= quantity(limit), (workload["metadata"]["name"], resource)


def test_disruption_budgets_cover_every_scaled_deployment_but_beat(built):
    covered = {}
    for pdb in find(built, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        matched = [
            d["metadata"]["name"]
            for d in find(built, "Deployment")
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matched) == 1, pdb["metadata"]["name"]
        covered[matched[0]] = pdb
    assert set(covered) == {"sluice-ingest", "sluice-control", "sluice-worker"}


def test_services_reach_their_pods_on_named_ports(built):
    for service in find(built, "Service"):
        selector = service["spec"]["selector"]
        [deployment] = [
            d
            for d in find(built, "Deployment")
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        for port in service["spec"]["ports"]:
            assert named_port(container, port["targetPort"]) == port["port"]


def test_grace_periods_cover_a_clean_shutdown(built):
    from services.worker.tasks.render import RENDER_TIME_LIMIT

    worker = one(built, "Deployment", "sluice-worker")["spec"]["template"]["spec"]
    drain = int(config(built)["SLUICE_DRAIN_WAIT_SECONDS"])
    # Warm shutdown: the drain's long poll and batch, then the renders in flight.
    assert worker["terminationGracePeriodSeconds"] >= RENDER_TIME_LIMIT + drain
    graceful = int(
        re.search(r"^graceful_timeout = (\d+)$", (ROOT / "deploy/gunicorn.conf.py").read_text(), re.M).group(
            1
        )
    )
    for name in ("sluice-ingest", "sluice-control"):
        spec = one(built, "Deployment", name)["spec"]["template"]["spec"]
        [container] = spec["containers"]
        pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
        assert spec["terminationGracePeriodSeconds"] > pre_stop + graceful


def test_every_pod_meets_the_restricted_pod_security_standard(built):
    uid = int(re.search(r"^USER (\d+)", (ROOT / "deploy/Dockerfile").read_text(), re.M).group(1))
    for workload in workloads(built):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == uid  # the image's own user
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
        for volume in spec.get("volumes", []):
            assert set(volume) <= {"name", "emptyDir", "configMap", "secret", "projected"}, volume


# the release step and KEDA


def test_the_release_step_label_selects_what_the_job_needs_and_no_deployment(built):
    labelled = {
        (o["kind"], o["metadata"]["name"])
        for o in built
        if o["metadata"].get("labels", {}).get(RELEASE_LABEL) == "true"
    }
    job = one(built, "Job", "sluice-release")
    spec = pod_spec(job)
    needed = {("Job", "sluice-release"), ("ServiceAccount", spec["serviceAccountName"])}
    needed |= {("Namespace", ns["metadata"]["name"]) for ns in find(built, "Namespace")}
    for container in containers(job):
        for source in container["envFrom"]:
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if key in source:
                    needed.add((kind, source[key]["name"]))
    assert needed == labelled


def test_the_keda_trigger_reads_the_events_queue_of_the_configmap(built):
    [scaled] = find(built, "ScaledObject")
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    queue, region = config(built)["SLUICE_EVENTS_QUEUE"], config(built)["SLUICE_AWS_REGION"]
    assert trigger["metadata"]["queueURL"] in (queue,) or trigger["metadata"]["queueURL"].endswith(
        f"/{queue}"
    )
    assert trigger["metadata"]["awsRegion"] == region
    auth = one(built, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["spec"]["podIdentity"] == {"provider": "aws", "identityOwner": "workload"}
    # Workers also render and deliver pipelines, which the queue depth does not show.
    assert scaled["spec"]["minReplicaCount"] >= 1


def test_the_keda_queue_length_follows_from_the_measured_drain_rate(built):
    [scaled] = find(built, "ScaledObject")
    notes = scaled["metadata"]["annotations"]
    measured = re.search(
        r"^\s*drain\s+1 worker process\s+x \d+ threads\s+(\d+) events/s",
        (ROOT / "docs/drain.md").read_text(),
        re.M,
    )
    assert int(notes["sluice/drain-events-per-second"]) == int(measured.group(1))
    messages_per_second = int(notes["sluice/drain-events-per-second"]) / int(
        notes["sluice/events-per-message"]
    )
    expected = math.floor(messages_per_second * int(notes["sluice/target-backlog-seconds"]))
    assert scaled["spec"]["triggers"][0]["metadata"]["queueLength"] == str(expected)
