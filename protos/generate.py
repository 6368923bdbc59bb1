"""Generate the Python gRPC stubs from protos/ into services/ (never committed).

Run by `make proto` and by the package build (setup.py), so `pip install .` works too.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generate_protos() -> None:
    from grpc_tools import protoc  # a build requirement (pyproject.toml)

    proto_root = ROOT / "protos"
    protos = sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    out = str(ROOT / "services")
    args = ["protoc", f"-I{proto_root}", f"-I{include}"]
    args += [f"--python_out={out}", f"--grpc_python_out={out}", f"--pyi_out={out}", *protos]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {protos}")


if __name__ == "__main__":
    generate_protos()
