"""Generate the Python stubs (messages, .pyi and gRPC) from protos/ into gen/.

    python protos/generate.py           # regenerate gen/
    python protos/generate.py --check   # exit 1 if gen/ differs from protos/

Every service imports its stubs from this one generated package; nothing is
copied per service.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
GEN_ROOT = ROOT / "gen"


def generate(out_dir: Path) -> None:
    proto_files = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *proto_files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Namespace packages would work, but explicit packages keep tools (mypy,
    # setuptools) and readers unambiguous.
    for directory in [out_dir / "aftercare", *(p for p in (out_dir / "aftercare").rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()


def differences(left: Path, right: Path) -> list[str]:
    found: list[str] = []
    left_files = {p.relative_to(left) for p in left.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    right_files = {p.relative_to(right) for p in right.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    for rel in sorted(left_files ^ right_files):
        found.append(f"only in one tree: {rel}")
    for rel in sorted(left_files & right_files):
        if not filecmp.cmp(left / rel, right / rel, shallow=False):
            found.append(f"differs: {rel}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if gen/ is out of date")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "gen"
            generate(fresh)
            drift = differences(fresh / "aftercare", GEN_ROOT / "aftercare")
        if drift:
            print("generated stubs drifted from protos/ (run `make protos`):", *drift, sep="\n  ")
            return 1
        print("generated stubs match protos/")
        return 0
    shutil.rmtree(GEN_ROOT / "aftercare", ignore_errors=True)
    generate(GEN_ROOT)
    print(f"generated stubs into {GEN_ROOT.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
