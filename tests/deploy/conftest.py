"""Fixtures of the deployment tests: kubectl and helm come out of a PyPI wheel
(devtools/kubectl.py), every kustomization is rendered once per session, and
nothing here needs a cluster, Docker or the network."""

from __future__ import annotations

import pytest

from devtools import kubectl
from tests.deploy.manifests import K8S, Rendered, kustomize

# Every kustomization that builds on its own (components only build inside one).
KUSTOMIZATIONS = {"base": K8S / "base"} | {
    path.parent.name: path.parent for path in sorted((K8S / "overlays").glob("*/kustomization.yaml"))
}


@pytest.fixture(scope="session")
def kubectl_binary() -> str:
    try:
        return str(kubectl.tool("kubectl"))
    except kubectl.ToolUnavailable as error:
        pytest.fail(f"kubectl is not available: {error}")


@pytest.fixture(scope="session")
def rendered(kubectl_binary: str) -> dict[str, Rendered]:
    return {name: Rendered(name, kustomize(path)) for name, path in KUSTOMIZATIONS.items()}


@pytest.fixture(scope="session")
def image_uid() -> int:
    """The numeric user the images run as: the last USER of docker/base.Dockerfile."""
    from tests.deploy.manifests import REPO, dockerfile

    users = [i.value for i in dockerfile(REPO / "docker" / "base.Dockerfile") if i.keyword == "USER"]
    assert users, "docker/base.Dockerfile sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, f"USER {users[-1]} must be numeric and not root"
    return int(uid)
