"""What triage learns at run time (intent models, which version serves) is in the
database, never on a pod's own disk: no volume for it, no SQLite fallback wherever
triage may run more than one pod, prod replicated on PostgreSQL and allowed to reach it."""

from __future__ import annotations

import copy

import pytest

from tests.deploy.conftest import KUSTOMIZATIONS
from tests.deploy.manifests import Doc, Rendered, env_of, name_of, pod_spec
from tests.deploy.test_manifests import _rules

ALL = sorted(KUSTOMIZATIONS)


def _requires_database(container: Doc) -> bool:
    """DATABASE_URL from a Secret the pod cannot start without (no SQLite fallback)."""
    ref = env_of(container).get("DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef", {})
    return bool(ref) and ref.get("optional") is False


def _pods_at_most(r: Rendered, deployment: str) -> int:
    """The most pods a Deployment may run: its HPA's maximum, else its replicas."""
    for hpa in r.of_kind("HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == deployment:
            return int(hpa["spec"]["maxReplicas"])
    return int(r.get("Deployment", deployment)["spec"].get("replicas", 1))


def _learned_state_problems(deployment: Doc, pods_at_most: int) -> list[str]:
    """Where triage would keep what it learns (intent models) on a pod's own disk."""
    problems = []
    spec = pod_spec(deployment)
    (container,) = [c for c in spec["containers"] if c["name"] == "server"]
    mounts = sorted(mount["mountPath"] for mount in container.get("volumeMounts", []))
    if mounts != ["/tmp"]:
        problems.append(f"mounts {mounts}: nothing but caches (/tmp) belongs on its disk")
    if len(spec.get("volumes", [])) != 1:
        problems.append(f"volumes {[v['name'] for v in spec.get('volumes', [])]}")
    if pods_at_most > 1 and not _requires_database(container):
        problems.append(f"up to {pods_at_most} pods without a required DATABASE_URL: each would keep its own SQLite")
    return problems


@pytest.mark.parametrize("name", ALL)
def test_triage_keeps_no_learned_state_on_a_pod_disk(rendered: dict[str, Rendered], name: str) -> None:
    """Intent models live in the database: triage has no volume for them, and wherever it may
    run more than one pod the SQLite fallback (a file on the pod's emptyDir) cannot happen."""
    r = rendered[name]
    assert _learned_state_problems(r.get("Deployment", "triage"), _pods_at_most(r, "triage")) == [], name


def test_the_learned_state_check_can_fail(rendered: dict[str, Rendered]) -> None:
    deployment = copy.deepcopy(rendered["prod"].get("Deployment", "triage"))
    spec = pod_spec(deployment)
    spec["volumes"].append({"name": "models", "emptyDir": {}})
    (container,) = spec["containers"]
    container["volumeMounts"].append({"name": "models", "mountPath": "/var/lib/aftercare"})
    for variable in container["env"]:
        if variable["name"] == "DATABASE_URL":
            variable["valueFrom"]["secretKeyRef"]["optional"] = True
    assert len(_learned_state_problems(deployment, 10)) == 3
    assert len(_learned_state_problems(deployment, 1)) == 2


def test_prod_runs_triage_replicated_on_postgresql(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    (hpa,) = [h for h in prod.of_kind("HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == "triage"]
    assert hpa["spec"]["minReplicas"] >= 2
    assert _requires_database(prod.container("triage"))


def test_prod_every_database_user_may_reach_postgresql(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    for deployment in prod.of_kind("Deployment"):
        if any(_requires_database(c) for c in pod_spec(deployment)["containers"]):
            egress = _rules(prod, deployment["metadata"]["name"], "egress")
            ports = [p["port"] for rule in egress for p in rule.get("ports", [])]
            assert 5432 in ports, f"{name_of(deployment)} needs PostgreSQL but may not connect to port 5432"
