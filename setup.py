"""Build hook: generate the gRPC stubs from protos/ (protos/generate.py) before build_py,
so that `pip install .` and `pip install -e .` both ship them."""

from __future__ import annotations

import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        runpy.run_path(str(Path(__file__).parent / "protos" / "generate.py"))["generate_protos"]()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
