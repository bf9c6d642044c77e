"""The Kubernetes manifests of k8s/: every kustomization renders, every object
is valid for the Kubernetes API, and every pod is hardened, probed, sized and
wired to what it calls."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import KUSTOMIZATIONS
from tests.deploy.manifests import (
    KUBERNETES_VERSION,
    REPO,
    Doc,
    Rendered,
    containers_of,
    env_of,
    is_own_image,
    name_of,
    pod_labels,
    pod_spec,
    port_number,
    process_name,
    quantity,
)

ALL = sorted(KUSTOMIZATIONS)
OVERLAYS = sorted(name for name in KUSTOMIZATIONS if name != "base")

# aftercare's gRPC services: container name `server`, the health service name
# the readiness probe asks for.
GRPC_SERVICES = {
    "retrieval": "aftercare.retrieval.v1.RetrievalService",
    "triage": "aftercare.triage.v1.TriageService",
    "concierge": "aftercare.concierge.v1.ConciergeService",
    "escalation": "aftercare.escalation.v1.EscalationService",
    "outreach": "aftercare.outreach.v1.OutreachService",
    "actions": "aftercare.actions.v1.ActionsService",
}
STATELESS = {"gateway", "concierge", "triage", "retrieval"}

# Documented exceptions to the pod hardening, by workload name.
SECCOMP_EXEMPT = {
    # Milvus's allocator calls mbind/get_mempolicy, which RuntimeDefault refuses
    # without CAP_SYS_NICE (k8s/overlays/dev/milvus.yaml); dev only.
    "milvus": "dev Milvus standalone leaves seccomp to the node default",
}

# Documented exceptions to "no Secret in git", by overlay: the Secrets it generates
# (source name: the keys they hold). Dev's own PostgreSQL takes a dev-only password
# (k8s/overlays/dev/kustomization.yaml); everything else comes from aftercare-secrets.
GENERATED_SECRETS = {"dev": {"postgres-dev": {"POSTGRES_PASSWORD", "DATABASE_URL"}}}

# Environment variable names whose values are secrets: only ever by secretKeyRef.
SECRET_NAMES = re.compile(r"(^|_)(DATABASE_URL|API_KEY|TOKEN|PASSWORD|SECRET)($|_)", re.IGNORECASE)
SECRET_VALUES = re.compile(r"://[^/\s:@]+:[^/\s@]+@|sk-[A-Za-z0-9]{16,}|hf_[A-Za-z0-9]{16,}")


def _workloads(r: Rendered) -> list[Doc]:
    assert r.workloads(), f"{r.name} renders no workloads"
    return r.workloads()


# --- rendering and schema ----------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_kustomization_renders(rendered: dict[str, Rendered], name: str) -> None:
    r = rendered[name]
    kinds = {doc["kind"] for doc in r.docs}
    assert {"Deployment", "Service", "ServiceAccount", "ConfigMap"} <= kinds
    for doc in r.docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc


@pytest.mark.parametrize("name", ALL)
def test_objects_are_valid_for_the_kubernetes_api(rendered: dict[str, Rendered], name: str) -> None:
    errors = []
    for doc in rendered[name].docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{name_of(doc)}: {error.message} at {'.'.join(map(str, error.path))}")
    assert not errors, "\n".join(errors)


def test_schema_validation_rejects_a_broken_object() -> None:
    # The check above must be able to fail: an unknown field and a wrong type.
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "two", "selector": {}, "template": {"spec": {"containers": [], "colour": "red"}}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_overlay_runs_every_process(rendered: dict[str, Rendered], name: str) -> None:
    r = rendered[name]
    for process in [*GRPC_SERVICES, "gateway", "vllm", "otel-collector"]:
        assert r.has("Deployment", process), f"{name} has no Deployment {process}"
        assert r.has("Service", process), f"{name} has no Service {process}"
        assert r.has("ServiceAccount", process), f"{name} has no ServiceAccount {process}"


# --- probes ------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_every_long_running_container_has_liveness_and_readiness(rendered: dict[str, Rendered], name: str) -> None:
    for deployment in rendered[name].of_kind("Deployment"):
        for container in pod_spec(deployment)["containers"]:
            where = f"{name}: {name_of(deployment)}/{container['name']}"
            for kind in ("livenessProbe", "readinessProbe"):
                probe = container.get(kind)
                assert probe, f"{where} has no {kind}"
                assert {"grpc", "httpGet", "tcpSocket", "exec"} & probe.keys(), f"{where}: {kind} checks nothing"


@pytest.mark.parametrize("name", ALL)
def test_grpc_services_use_native_grpc_health_probes(rendered: dict[str, Rendered], name: str) -> None:
    r = rendered[name]
    for process, service in GRPC_SERVICES.items():
        container = r.container(process)
        port = port_number(container, "grpc")
        assert env_of(container)["PORT"]["value"] == str(port)
        readiness, liveness = container["readinessProbe"], container["livenessProbe"]
        assert readiness.get("grpc") == {"port": port, "service": service}, f"{process} readiness: {readiness}"
        # Liveness asks for the server as a whole (""): a backend being down is not a reason to restart.
        assert liveness.get("grpc", {}).get("port") == port and not liveness["grpc"].get("service"), liveness


@pytest.mark.parametrize("name", ALL)
def test_gateway_probes_healthz_and_readyz(rendered: dict[str, Rendered], name: str) -> None:
    container = rendered[name].container("gateway")
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert port_number(container, container["readinessProbe"]["httpGet"]["port"]) == 8080


@pytest.mark.parametrize("name", ALL)
def test_vllm_is_ready_when_health_answers(rendered: dict[str, Rendered], name: str) -> None:
    container = rendered[name].container("vllm")
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == "/health" and port_number(container, probe["port"]) == 8000


# --- resources and hardening -------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_every_container_has_requests_and_limits(rendered: dict[str, Rendered], name: str) -> None:
    for workload in _workloads(rendered[name]):
        for container in containers_of(workload):
            where = f"{name}: {name_of(workload)}/{container['name']}"
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                assert request and limit, f"{where} lacks a {resource} request or limit"
                assert quantity(request) <= quantity(limit), f"{where}: {resource} request {request} > limit {limit}"


@pytest.mark.parametrize("name", ALL)
def test_every_pod_is_hardened(rendered: dict[str, Rendered], name: str) -> None:
    for workload in _workloads(rendered[name]):
        spec = pod_spec(workload)
        workload_name = workload["metadata"]["name"]
        pod_security = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, f"{name_of(workload)} mounts an API token"
        assert spec.get("serviceAccountName") not in (None, "default"), f"{name_of(workload)} uses the default SA"
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        assert all("hostPath" not in volume for volume in spec.get("volumes", [])), f"{name_of(workload)}: hostPath"
        if workload_name not in SECCOMP_EXEMPT:
            assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault", name_of(workload)
        for container in containers_of(workload):
            where = f"{name}: {name_of(workload)}/{container['name']}"
            security = container.get("securityContext", {})
            assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot"
            user = security.get("runAsUser", pod_security.get("runAsUser"))
            assert isinstance(user, int) and user > 0, f"{where}: needs a numeric non-root runAsUser"
            assert security.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
            assert security.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
            assert security.get("privileged") in (None, False), f"{where}: privileged"
            assert security.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: must drop ALL capabilities"
            assert not security.get("capabilities", {}).get("add"), f"{where}: adds capabilities"


@pytest.mark.parametrize("name", ALL)
def test_service_accounts_carry_no_token(rendered: dict[str, Rendered], name: str) -> None:
    for account in rendered[name].of_kind("ServiceAccount"):
        assert account.get("automountServiceAccountToken") is False, name_of(account)


@pytest.mark.parametrize("name", ALL)
def test_own_images_run_as_the_dockerfile_user_with_writable_tmp_and_data(
    rendered: dict[str, Rendered], name: str, image_uid: int
) -> None:
    r = rendered[name]
    data_dir = r.configmap("aftercare-config")["data"]["DATA_DIR"]
    for workload in _workloads(r):
        spec = pod_spec(workload)
        for container in containers_of(workload):
            if not is_own_image(container["image"]):
                continue
            where = f"{name}: {name_of(workload)}/{container['name']}"
            user = container.get("securityContext", {}).get("runAsUser", spec["securityContext"].get("runAsUser"))
            assert user == image_uid, f"{where}: runAsUser {user}, the image's USER is {image_uid}"
            mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
            volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{where}: /tmp must be an emptyDir"
            # The processes with embedded state (Milvus Lite, SQLite) write under DATA_DIR.
            if process_name(container) in {"retrieval", "escalation", "outreach"} and workload["kind"] != "Job":
                assert data_dir in mounts, f"{where}: DATA_DIR {data_dir} is not a volume"


# --- images ------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_images_are_pinned(rendered: dict[str, Rendered], name: str) -> None:
    for workload in _workloads(rendered[name]):
        for container in containers_of(workload):
            image = container["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert (tag and tag != "latest") or "@sha256:" in image, f"{name_of(workload)}: unpinned image {image}"


@pytest.mark.parametrize("name", ALL)
def test_each_process_runs_its_own_image(rendered: dict[str, Rendered], name: str) -> None:
    r = rendered[name]
    for process in [*GRPC_SERVICES, "gateway"]:
        container = r.container(process)
        assert is_own_image(container["image"]) and process_name(container) == process, container["image"]


# --- secrets -----------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_secrets_only_by_reference(rendered: dict[str, Rendered], name: str) -> None:
    r = rendered[name]
    for secret in r.of_kind("Secret"):
        source = _generated_secret_source(name, secret["metadata"]["name"])
        assert source, f"{name} renders {name_of(secret)}: create aftercare-secrets outside git"
        assert set(secret.get("data", {})) <= GENERATED_SECRETS[name][source], f"{name_of(secret)} holds more"
    for workload in _workloads(r):
        for container in containers_of(workload):
            for item in container.get("env", []):
                where = f"{name}: {name_of(workload)}/{container['name']} env {item['name']}"
                if SECRET_NAMES.search(item["name"]):
                    ref = item.get("valueFrom", {}).get("secretKeyRef")
                    assert ref and "value" not in item, f"{where} must come from a secretKeyRef"
                assert not SECRET_VALUES.search(str(item.get("value", ""))), f"{where} holds a credential"
    for configmap in r.of_kind("ConfigMap"):
        for key, value in configmap.get("data", {}).items():
            assert not SECRET_NAMES.search(key), f"{name_of(configmap)}: {key} belongs in the Secret"
            assert not SECRET_VALUES.search(value), f"{name_of(configmap)}: {key} holds a credential"


def _generated_secret_source(overlay: str, rendered_name: str) -> str | None:
    """The GENERATED_SECRETS source name of a rendered Secret (name plus content-hash suffix)."""
    for source in GENERATED_SECRETS.get(overlay, {}):
        if re.fullmatch(re.escape(source) + r"-[a-z0-9]{10}", rendered_name):
            return source
    return None


@pytest.mark.parametrize("name", ALL)
def test_database_url_and_llm_key_come_from_aftercare_secrets(rendered: dict[str, Rendered], name: str) -> None:
    r = rendered[name]
    expected = {"escalation": "DATABASE_URL", "outreach": "DATABASE_URL", "concierge": "LLM_API_KEY"}
    for process, key in expected.items():
        ref = env_of(r.container(process))[key]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == key, ref
        source = _generated_secret_source(name, ref["name"])
        assert ref["name"] == "aftercare-secrets" or key in GENERATED_SECRETS[name].get(source or "", set()), ref


# --- wiring ------------------------------------------------------------------


def _env_names_from(r: Rendered, container: Doc) -> set[str]:
    names: set[str] = set()
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref, f"{container['name']}: only ConfigMaps are read with envFrom"
        names |= set(r.configmap(ref["name"])["data"])
    return names


@pytest.mark.parametrize("name", ALL)
def test_references_resolve(rendered: dict[str, Rendered], name: str) -> None:
    """Every $(VAR), ConfigMap key, volume source and claim a pod names exists."""
    r = rendered[name]
    for workload in _workloads(r):
        spec = pod_spec(workload)
        for container in containers_of(workload):
            where = f"{name}: {name_of(workload)}/{container['name']}"
            defined = _env_names_from(r, container)
            for item in container.get("env", []):
                for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", item.get("value", "")):
                    assert var in defined, f"{where}: {item['name']} uses $({var}) before it is defined"
                ref = item.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    assert ref["key"] in r.configmap(ref["name"])["data"], f"{where}: {ref} does not exist"
                defined.add(item["name"])
            for word in [*container.get("command", []), *container.get("args", [])]:
                for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", word):
                    assert var in defined, f"{where}: argument uses undefined $({var})"
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                r.configmap(volume["configMap"]["name"])
            if "persistentVolumeClaim" in volume:
                r.get("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
        mounts = {m["name"] for c in containers_of(workload) for m in c.get("volumeMounts", [])}
        assert mounts <= {v["name"] for v in spec.get("volumes", [])}, f"{name_of(workload)} mounts a missing volume"


@pytest.mark.parametrize("name", ALL)
def test_every_service_selects_pods_with_its_target_ports(rendered: dict[str, Rendered], name: str) -> None:
    r = rendered[name]
    for service in r.of_kind("Service"):
        pods = r.pods_selected_by(service["spec"].get("selector", {}))
        assert [p["kind"] for p in pods] == ["Deployment"], f"{name_of(service)} selects {[name_of(p) for p in pods]}"
        containers = pod_spec(pods[0])["containers"]
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert any(
                target == item.get("name") or target == item["containerPort"]
                for container in containers
                for item in container.get("ports", [])
            ), f"{name_of(service)}: targetPort {target} is no port of {name_of(pods[0])}"


def _service_port(r: Rendered, host: str, port: int) -> Doc:
    """The Service a host:port inside the namespace reaches (host may be name.ns.svc...)."""
    service = r.get("Service", host.split(".")[0])
    assert port in [p["port"] for p in service["spec"]["ports"]], f"Service {host} has no port {port}"
    return service


@pytest.mark.parametrize("name", ALL)
def test_backend_addresses_reach_the_services(rendered: dict[str, Rendered], name: str) -> None:
    r = rendered[name]
    config = r.configmap("aftercare-config")["data"]
    for process in GRPC_SERVICES:
        address = config[f"{process.upper()}_ADDR"]
        # gRPC's dns resolver, so the client balances over every pod of the headless Service.
        assert address.startswith("dns:///"), address
        host, _, port = address.removeprefix("dns:///").rpartition(":")
        service = _service_port(r, host, int(port))
        assert service["spec"].get("clusterIP") == "None", f"{process}: gRPC Services are headless"
        target = next(p for p in service["spec"]["ports"] if p["port"] == int(port))["targetPort"]
        container = r.container(process)
        assert r.pods_selected_by(service["spec"]["selector"])[0]["metadata"]["name"] == process
        assert port_number(container, target) == int(env_of(container)["PORT"]["value"])
    endpoint = urlsplit(config["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname and endpoint.port
    collector = _service_port(r, endpoint.hostname, endpoint.port)
    assert collector["metadata"]["name"] == "otel-collector"


@pytest.mark.parametrize("name", ALL)
def test_concierge_generates_on_the_vllm_service(rendered: dict[str, Rendered], name: str) -> None:
    r = rendered[name]
    concierge = env_of(r.container("concierge"))
    url = urlsplit(concierge["LLM_BASE_URL"]["value"])
    assert url.scheme == "http" and url.path == "/v1" and url.hostname and url.port
    service = _service_port(r, url.hostname, url.port)
    assert service["metadata"]["name"] == "vllm"
    vllm = r.container("vllm")
    target = next(p for p in service["spec"]["ports"] if p["port"] == url.port)["targetPort"]
    args = vllm["args"]
    assert vllm["command"] == ["vllm"] and args[:2] == ["serve", "$(MODEL)"]
    assert port_number(vllm, target) == int(args[args.index("--port") + 1])
    # The model the concierge asks for is the name vLLM serves: one ConfigMap key.
    vllm_env = env_of(vllm)
    served = args[args.index("--served-model-name") + 1]
    assert served == "$(SERVED_MODEL_NAME)"
    assert (
        concierge["LLM_MODEL"]["valueFrom"]["configMapKeyRef"]
        == vllm_env["SERVED_MODEL_NAME"]["valueFrom"]["configMapKeyRef"]
    )
    # As many GPUs as tensor-parallel ranks.
    assert args[args.index("--tensor-parallel-size") + 1] == "$(TENSOR_PARALLEL_SIZE)"
    assert "--max-model-len" in args
    tp_ref = vllm_env["TENSOR_PARALLEL_SIZE"]["valueFrom"]["configMapKeyRef"]
    tensor_parallel = int(r.configmap(tp_ref["name"])["data"][tp_ref["key"]])
    gpus = vllm["resources"]["limits"]["nvidia.com/gpu"]
    # Extended resources: the API server refuses a request that differs from the limit.
    assert vllm["resources"]["requests"].get("nvidia.com/gpu") == gpus, f"{name}: GPU request != limit"
    assert int(gpus) == tensor_parallel, f"{name}: {gpus} GPUs for tensor-parallel size {tensor_parallel}"
    assert env_of(vllm)["HF_HUB_OFFLINE"], "vLLM must read weights from its cache volume only"


def _process_environment(r: Rendered, deployment: str) -> dict[str, str]:
    """The environment a process starts with: its ConfigMaps (envFrom), then its own env
    (values and ConfigMap keys; Secrets are left out, as a cluster without them would)."""
    container = r.container(deployment)
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            environment |= {k: str(v) for k, v in r.configmap(source["configMapRef"]["name"])["data"].items()}
    for name, item in env_of(container).items():
        if "value" in item:
            environment[name] = str(item["value"])
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            environment[name] = str(r.configmap(ref["name"])["data"][ref["key"]])
    return environment


@pytest.mark.parametrize("name", ALL)
def test_the_concierge_as_deployed_has_a_confidence_fit_or_is_told_to_run_without(
    rendered: dict[str, Rendered], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The concierge refuses to start without a fit for exactly the configuration it serves
    # (answer path, phrasing, model, prompt): a rollout that changes one of them without
    # shipping its fit would crash-loop. Settings as the pod reads them, fits as the image ships them.
    from services.concierge.confidence import CalibrationError, Confidence
    from services.concierge.servicer import configuration
    from services.concierge.settings import ConciergeSettings

    for variable in list(os.environ):
        if variable in ConciergeSettings.model_fields or variable.lower() in ConciergeSettings.model_fields:
            monkeypatch.delenv(variable)
    for variable, value in _process_environment(rendered[name], "concierge").items():
        monkeypatch.setenv(variable, value)
    settings = ConciergeSettings()  # type: ignore[call-arg]
    served = configuration(settings)
    try:
        confidence = Confidence.load(settings.fits_dir, served, allow_uncalibrated=settings.allow_uncalibrated)
    except CalibrationError as error:
        pytest.fail(f"{name}: the concierge would not start: {error}")
    assert confidence.calibrated or settings.allow_uncalibrated
    assert confidence.configuration.id == served.id


@pytest.mark.parametrize("name", ALL)
def test_collector_drops_health_checks_and_exports_otlp(rendered: dict[str, Rendered], name: str) -> None:
    r = rendered[name]
    deployment = r.get("Deployment", "otel-collector")
    config_volume = next(v for v in pod_spec(deployment)["volumes"] if "configMap" in v)
    config = yaml.safe_load(r.configmap(config_volume["configMap"]["name"])["data"]["config.yaml"])
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    drops = config["processors"]["filter/health-checks"]["traces"]["span"]
    assert 'attributes["rpc.service"] == "grpc.health.v1.Health"' in drops
    traces = config["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"] and traces["exporters"] == ["otlp"]
    assert traces["processors"].index("filter/health-checks") < traces["processors"].index("batch")
    assert config["exporters"]["otlp"]["endpoint"] == "${env:TRACES_BACKEND_ENDPOINT}"
    backend = env_of(r.container("otel-collector"))["TRACES_BACKEND_ENDPOINT"]["value"]
    host, _, port = backend.rpartition(":")
    if r.has("Deployment", "jaeger"):
        assert _service_port(r, host, int(port))["metadata"]["name"] == "jaeger"
    else:
        assert host and port == "4317", backend


# --- dev ---------------------------------------------------------------------


def test_dev_runs_one_replica_of_everything(rendered: dict[str, Rendered]) -> None:
    dev = rendered["dev"]
    assert not dev.of_kind("HorizontalPodAutoscaler")
    for deployment in dev.of_kind("Deployment"):
        assert deployment["spec"].get("replicas", 1) == 1, name_of(deployment)


def test_dev_retrieval_uses_the_milvus_standalone_service(rendered: dict[str, Rendered]) -> None:
    dev = rendered["dev"]
    url = urlsplit(env_of(dev.container("retrieval"))["MILVUS_URI"]["value"])
    assert url.hostname and url.port
    service = _service_port(dev, url.hostname, url.port)
    assert dev.pods_selected_by(service["spec"]["selector"])[0]["metadata"]["name"] == "milvus"


def test_dev_ingests_the_demo_knowledge_base(rendered: dict[str, Rendered]) -> None:
    job = rendered["dev"].get("Job", "kb-ingest-demo")
    command = pod_spec(job)["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "services.retrieval.ingest"]
    assert (REPO / "kb" / "demo").is_dir() and command[-1] == "/app/kb/demo"


# --- prod --------------------------------------------------------------------


def test_prod_namespace_enforces_restricted_pod_security(rendered: dict[str, Rendered]) -> None:
    (namespace,) = rendered["prod"].of_kind("Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert all(
        doc["metadata"].get("namespace") == namespace["metadata"]["name"]
        for doc in rendered["prod"].docs
        if doc["kind"] != "Namespace"
    )


def test_prod_autoscales_the_stateless_services(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    targets = set()
    for hpa in prod.of_kind("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["apiVersion"] == "apps/v1", name_of(hpa)
        deployment = prod.get("Deployment", ref["name"])
        # A replicas field would be reset on every `kubectl apply`, fighting the HPA.
        assert "replicas" not in deployment["spec"], f"{ref['name']} has replicas and an HPA"
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Resource":
                resource = metric["resource"]["name"]
                for container in pod_spec(deployment)["containers"]:
                    assert resource in container["resources"]["requests"], f"{ref['name']}: utilisation needs requests"
        targets.add(ref["name"])
    assert targets == STATELESS


def test_prod_pdbs_select_pods_of_every_replicated_deployment(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    protected = set()
    for pdb in prod.of_kind("PodDisruptionBudget"):
        pods = prod.pods_selected_by(pdb["spec"]["selector"]["matchLabels"])
        selected = [name_of(p) for p in pods]
        assert len(pods) == 1 and pods[0]["kind"] == "Deployment", f"{name_of(pdb)} selects {selected}"
        assert "maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]
        protected.add(pods[0]["metadata"]["name"])
    scaled = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in prod.of_kind("HorizontalPodAutoscaler")}
    replicated = {d["metadata"]["name"] for d in prod.of_kind("Deployment") if d["spec"].get("replicas", 1) > 1}
    assert scaled | replicated <= protected, f"no PDB for {(scaled | replicated) - protected}"


def test_prod_spreads_pods_over_zones_and_nodes(rendered: dict[str, Rendered]) -> None:
    for deployment in rendered["prod"].of_kind("Deployment"):
        constraints = pod_spec(deployment).get("topologySpreadConstraints", [])
        keys = {c["topologyKey"] for c in constraints}
        assert {"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= keys, name_of(deployment)
        for constraint in constraints:
            selector = constraint["labelSelector"]["matchLabels"]
            assert all(pod_labels(deployment).get(k) == v for k, v in selector.items()), name_of(deployment)
            assert "app" in constraint.get("matchLabelKeys", []), name_of(deployment)


def test_prod_needs_postgresql_and_the_milvus_cluster(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    for process in ("escalation", "outreach"):
        ref = env_of(prod.container(process))["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref.get("optional") is False, f"{process} must not start without DATABASE_URL"
    values = yaml.safe_load((REPO / "k8s" / "milvus" / "values-prod.yaml").read_text())
    assert values["cluster"]["enabled"] is True and values["image"]["all"]["tag"].startswith("v")
    url = urlsplit(env_of(prod.container("retrieval"))["MILVUS_URI"]["value"])
    # Release `milvus` in namespace `milvus`: the chart names the proxy Service after the release.
    assert (url.hostname, url.port) == ("milvus.milvus.svc.cluster.local", values.get("service", {}).get("port", 19530))
    readme = (REPO / "k8s" / "README.md").read_text()
    assert "helm upgrade --install milvus" in readme and "k8s/milvus/values-prod.yaml" in readme


# --- prod network policies ---------------------------------------------------


def _policies_for(r: Rendered, labels: dict[str, str]) -> list[Doc]:
    return [
        p
        for p in r.of_kind("NetworkPolicy")
        if all(labels.get(k) == v for k, v in p["spec"]["podSelector"].get("matchLabels", {}).items())
        and not p["spec"]["podSelector"].get("matchExpressions")
    ]


def _peer_matches(peer: Doc, labels: dict[str, str]) -> bool:
    """A same-namespace peer that admits pods with these labels."""
    if "namespaceSelector" in peer or "ipBlock" in peer:
        return False
    selector = peer.get("podSelector", {})
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _allows(rules: list[Doc], peers_key: str, labels: dict[str, str] | None, port: int) -> bool:
    for rule in rules:
        ports = [p["port"] for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        peers = rule.get(peers_key)
        if not peers or labels is None or any(_peer_matches(peer, labels) for peer in peers):
            return True
    return False


def _callee_port(r: Rendered, callee: str) -> int:
    """The pod port behind the callee's Service (its first port)."""
    container = pod_spec(r.get("Deployment", callee))["containers"][0]
    return port_number(container, r.get("Service", callee)["spec"]["ports"][0]["targetPort"])


def _rules(r: Rendered, workload: str, direction: str) -> list[Doc]:
    """The ingress or egress rules of every policy that selects a workload's pods."""
    labels = pod_labels(r.get("Deployment", workload))
    return [rule for p in _policies_for(r, labels) for rule in p["spec"].get(direction, [])]


def test_prod_denies_everything_by_default(rendered: dict[str, Rendered]) -> None:
    deny = [
        p
        for p in rendered["prod"].of_kind("NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(deny) == 1


def test_prod_every_service_has_an_ingress_allow_list(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    for service in prod.of_kind("Service"):
        (workload,) = prod.pods_selected_by(service["spec"]["selector"])
        labels = pod_labels(workload)
        allow_lists = [p for p in _policies_for(prod, labels) if p["spec"]["podSelector"] and p["spec"].get("ingress")]
        assert allow_lists, f"no NetworkPolicy allow-list selects the pods of {name_of(service)}"
        container = pod_spec(workload)["containers"][0]
        for port in service["spec"]["ports"]:
            number = port_number(container, port["targetPort"])
            if port.get("name") == "metrics":
                continue  # scraped from the monitoring namespace (allowed by namespaceSelector)
            rules = [rule for p in allow_lists for rule in p["spec"]["ingress"]]
            assert any(number in [p["port"] for p in rule.get("ports", [])] for rule in rules), (
                f"{name_of(service)} port {number} is not opened by any allow-list"
            )


def _mesh_edges() -> set[tuple[str, str]]:
    """Who calls whom, read from the processes' settings: each *_addr field is a call."""
    from gateway.settings import GatewaySettings
    from services.concierge.settings import ConciergeSettings
    from services.escalation.settings import EscalationSettings
    from services.outreach.settings import OutreachSettings
    from services.retrieval.settings import RetrievalSettings
    from services.triage.settings import TriageSettings

    callers = {
        "gateway": GatewaySettings,
        "concierge": ConciergeSettings,
        "escalation": EscalationSettings,
        "outreach": OutreachSettings,
        "retrieval": RetrievalSettings,
        "triage": TriageSettings,
    }
    edges = {
        (caller, field.removesuffix("_addr"))
        for caller, settings in callers.items()
        for field in settings.model_fields
        if field.endswith("_addr")
    }
    edges |= {(caller, "vllm") for caller, settings in callers.items() if "llm_base_url" in settings.model_fields}
    return edges


def test_prod_network_policies_allow_every_call_of_the_mesh(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    edges = _mesh_edges()
    assert ("gateway", "concierge") in edges and ("concierge", "vllm") in edges
    for caller, callee in sorted(edges):
        caller_labels = pod_labels(prod.get("Deployment", caller))
        callee_labels = pod_labels(prod.get("Deployment", callee))
        port = _callee_port(prod, callee)
        ingress, egress = _rules(prod, callee, "ingress"), _rules(prod, caller, "egress")
        assert _allows(ingress, "from", caller_labels, port), f"{callee} does not admit {caller} on {port}"
        assert _allows(egress, "to", callee_labels, port), f"{caller} may not connect to {callee}:{port}"


def test_prod_network_policies_refuse_calls_outside_the_mesh(rendered: dict[str, Rendered]) -> None:
    # The allow-lists must be lists: triage never calls escalation, retrieval calls nobody.
    prod = rendered["prod"]
    for caller, callee in [("triage", "escalation"), ("retrieval", "concierge"), ("retrieval", "triage")]:
        caller_labels = pod_labels(prod.get("Deployment", caller))
        ingress = _rules(prod, callee, "ingress")
        assert not _allows(ingress, "from", caller_labels, _callee_port(prod, callee)), f"{callee} admits {caller}"


def test_prod_every_pod_may_resolve_names_and_export_telemetry(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    collector = pod_labels(prod.get("Deployment", "otel-collector"))
    for workload in prod.workloads():
        egress = [rule for p in _policies_for(prod, pod_labels(workload)) for rule in p["spec"].get("egress", [])]
        dns = [r for r in egress if 53 in [p["port"] for p in r.get("ports", [])]]
        assert dns, f"{name_of(workload)} cannot reach DNS"
        assert _allows(egress, "to", collector, 4317), f"{name_of(workload)} cannot export OTLP"
