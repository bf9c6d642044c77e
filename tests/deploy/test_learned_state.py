"""What triage learns at run time (intent models, which version serves) is in the
database, never on a pod's own disk: no volume for it, no SQLite fallback in any
overlay (every database user requires DATABASE_URL), prod replicated on PostgreSQL
and allowed to reach it, dev on a PostgreSQL of its own (k8s/overlays/dev/postgres.yaml)."""

from __future__ import annotations

import base64
import copy
import re
from urllib.parse import urlsplit

import pytest

from tests.deploy.conftest import KUSTOMIZATIONS
from tests.deploy.manifests import Doc, Rendered, env_of, name_of, pod_spec, port_number
from tests.deploy.test_manifests import _rules

ALL = sorted(KUSTOMIZATIONS)
OVERLAYS = sorted(name for name in KUSTOMIZATIONS if name != "base")
# The processes that keep state in the database (SQLite without DATABASE_URL).
DATABASE_USERS = ["triage", "escalation", "outreach", "concierge", "actions"]


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


def _secret(r: Rendered, name: str) -> Doc | None:
    """A Secret the kustomization renders, by rendered name or generator name (plus hash)."""
    for secret in r.of_kind("Secret"):
        rendered_name = secret["metadata"]["name"]
        if rendered_name == name or re.fullmatch(re.escape(name) + r"-[a-z0-9]{10}", rendered_name):
            return secret
    return None


def _secret_value(r: Rendered, container: Doc, variable: str) -> str | None:
    """The value a secretKeyRef gives a variable when the overlay renders that Secret."""
    ref = env_of(container)[variable]["valueFrom"]["secretKeyRef"]
    secret = _secret(r, ref["name"])
    if secret is None or ref["key"] not in secret.get("data", {}):
        return None
    return base64.b64decode(secret["data"][ref["key"]]).decode()


def _database_problems(r: Rendered, deployment: str) -> list[str]:
    """Why a process of this overlay could end up on SQLite, or find no database."""
    container = r.container(deployment)
    if not _requires_database(container):
        return [f"{deployment}: no required DATABASE_URL, so a per-pod SQLite file"]
    ref = env_of(container)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    # aftercare-secrets is created outside git (k8s/README.md); any other Secret must be rendered here.
    if ref["name"] != "aftercare-secrets" and _secret_value(r, container, "DATABASE_URL") is None:
        return [f"{deployment}: DATABASE_URL from {ref}, which this overlay does not render"]
    return []


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_overlay_keeps_every_database_user_off_sqlite(rendered: dict[str, Rendered], name: str) -> None:
    """Whatever the replica count: in an overlay, triage (and every other database user)
    cannot start without DATABASE_URL, so nothing learned lands on a pod's emptyDir."""
    r = rendered[name]
    assert [problem for user in DATABASE_USERS for problem in _database_problems(r, user)] == [], name


def test_the_database_check_can_fail(rendered: dict[str, Rendered]) -> None:
    dev = Rendered("dev", copy.deepcopy(rendered["dev"].docs))
    env_of(dev.container("triage"))["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["optional"] = True
    env_of(dev.container("actions"))["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] = "nowhere"
    problems = [problem for user in DATABASE_USERS for problem in _database_problems(dev, user)]
    assert [problem.split(":")[0] for problem in problems] == ["triage", "actions"]


def test_dev_runs_postgresql_for_its_database_users(rendered: dict[str, Rendered]) -> None:
    """Dev's own PostgreSQL: the official image, pinned, data on a PVC, one pod at a time,
    reached at the host and port of the DATABASE_URL every database user gets, with the
    credentials and database the server initialises."""
    dev = rendered["dev"]
    deployment = dev.get("Deployment", "postgres")
    spec = pod_spec(deployment)
    (server,) = spec["containers"]
    repository, _, tag = server["image"].partition(":")
    assert repository in ("postgres", "docker.io/library/postgres") and re.fullmatch(r"\d+\.\d+", tag), server["image"]
    assert deployment["spec"].get("replicas", 1) == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"

    server_env = env_of(server)
    mounts = {mount["mountPath"]: mount["name"] for mount in server["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    data_mount = next(path for path in mounts if server_env["PGDATA"]["value"].startswith(path + "/"))
    claim = volumes[mounts[data_mount]]["persistentVolumeClaim"]["claimName"]
    assert dev.get("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]

    for user in DATABASE_USERS:
        url = urlsplit(_secret_value(dev, dev.container(user), "DATABASE_URL") or "")
        assert url.scheme == "postgresql+psycopg" and url.hostname and url.port, f"{user}: {url.geturl()}"
        service = dev.get("Service", url.hostname)
        port = next(p for p in service["spec"]["ports"] if p["port"] == url.port)
        assert dev.pods_selected_by(service["spec"]["selector"]) == [deployment], f"{user}: {url.hostname}"
        assert port_number(server, port["targetPort"]) == 5432
        assert url.username == server_env["POSTGRES_USER"]["value"], user
        assert url.path == "/" + server_env["POSTGRES_DB"]["value"], user
        assert url.password and url.password == _secret_value(dev, server, "POSTGRES_PASSWORD"), user
