"""The actions service in k8s/: its Deployment and Service like every gRPC service's,
and, in prod, the only workload the NetworkPolicies let reach the companies' systems
(public HTTPS; never private ranges or the cloud metadata address)."""

from __future__ import annotations

import ipaddress

import pytest

from services.actions.settings import ActionsSettings
from tests.deploy.conftest import KUSTOMIZATIONS
from tests.deploy.manifests import Doc, Rendered, env_of, pod_labels, pod_spec
from tests.deploy.test_manifests import GENERATED_SECRETS, _generated_secret_source

ALL = sorted(KUSTOMIZATIONS)
SERVICE = "aftercare.actions.v1.ActionsService"
PORT = int(ActionsSettings.model_fields["port"].default)
# Addresses a company connector must never reach by the network policy alone.
FORBIDDEN = ["10.0.0.5", "172.20.0.1", "192.168.1.1", "127.0.0.1", "169.254.169.254", "100.64.0.1", "fd00::1",
             "fe80::1"]


@pytest.mark.parametrize("name", ALL)
def test_actions_runs_its_image_on_its_port_with_grpc_probes(rendered: dict[str, Rendered], name: str) -> None:
    r = rendered[name]
    container = r.container("actions")
    assert container["image"].rsplit("/", 1)[-1].startswith("actions:")
    assert [p["containerPort"] for p in container["ports"]] == [PORT]
    assert env_of(container)["PORT"]["value"] == str(PORT)
    assert container["readinessProbe"]["grpc"] == {"port": PORT, "service": SERVICE}
    assert container["livenessProbe"]["grpc"]["port"] == PORT
    database = env_of(container)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert database["key"] == "DATABASE_URL"
    # aftercare-secrets, or (dev) the overlay's generated PostgreSQL Secret.
    source = _generated_secret_source(name, database["name"])
    assert database["name"] == "aftercare-secrets" or "DATABASE_URL" in GENERATED_SECRETS[name].get(source or "", set())
    # Connector secrets by reference only (a catalog's auth.secret_env).
    token = env_of(container)["DEMOSHOP_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token["name"] == "aftercare-connectors" and "value" not in env_of(container)["DEMOSHOP_TOKEN"]
    service = r.get("Service", "actions")
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["ports"][0]["port"] == PORT
    address = r.configmap("aftercare-config")["data"]["ACTIONS_ADDR"]
    assert address == f"dns:///actions:{PORT}"


def _policies_for(r: Rendered, labels: dict[str, str]) -> list[Doc]:
    return [
        p for p in r.of_kind("NetworkPolicy")
        if all(labels.get(k) == v for k, v in p["spec"]["podSelector"].get("matchLabels", {}).items())
    ]


def _egress(r: Rendered, workload: Doc) -> list[Doc]:
    return [rule for p in _policies_for(r, pod_labels(workload)) for rule in p["spec"].get("egress", [])]


def _reaches(rules: list[Doc], address: str, port: int) -> bool:
    """Whether an egress rule lets a pod connect to an address outside the namespace's pods."""
    ip = ipaddress.ip_address(address)
    for rule in rules:
        ports = [p["port"] for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        peers = rule.get("to")
        if not peers:
            return True  # any destination on these ports
        for peer in peers:
            block = peer.get("ipBlock")
            if block is None:
                continue
            network = ipaddress.ip_network(block["cidr"])
            if ip.version == network.version and ip in network and not any(
                ip in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
                if ipaddress.ip_network(cidr).version == ip.version
            ):
                return True
    return False


def test_prod_only_actions_reaches_the_companies_systems(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    public = ["93.184.215.14", "2606:2800:220:1::1"]
    for workload in prod.workloads():
        name = workload["metadata"]["name"]
        rules = _egress(prod, workload)
        if name == "actions":
            assert all(_reaches(rules, address, 443) for address in public)
            for address in FORBIDDEN:
                assert not _reaches(rules, address, 443), f"actions may reach {address}"
        elif name == "vllm-model-download":
            continue  # the model hub, once, by its own documented rule
        else:
            assert not any(_reaches(rules, address, 443) for address in public), f"{name} may reach the internet"


def test_prod_actions_is_called_only_by_the_gateway_concierge_and_escalation(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    actions = pod_labels(prod.get("Deployment", "actions"))
    ingress = [rule for p in _policies_for(prod, actions) for rule in p["spec"].get("ingress", [])]
    callers = {
        peer["podSelector"]["matchLabels"]["app"]
        for rule in ingress if PORT in [p["port"] for p in rule.get("ports", [])]
        for peer in rule.get("from", [])
    }
    assert callers == {"gateway", "concierge", "escalation"}
    for caller in sorted(callers):
        rules = _egress(prod, prod.get("Deployment", caller))
        assert any(
            PORT in [p["port"] for p in rule.get("ports", [])]
            and any(peer.get("podSelector", {}).get("matchLabels") == {"app": "actions"} for peer in rule.get("to", []))
            for rule in rules
        ), f"{caller} may not connect to actions"


def test_actions_pods_are_hardened(rendered: dict[str, Rendered]) -> None:
    spec = pod_spec(rendered["base"].get("Deployment", "actions"))
    assert spec["automountServiceAccountToken"] is False and spec["securityContext"]["runAsNonRoot"] is True
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
