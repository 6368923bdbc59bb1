"""The image: it builds from the repository (`docker compose build`, in conftest.py,
before any stack), and what it holds is only what runs: no compiler, no source tree, no
pip or its cache. Its size and build time are printed (`make test-containers` shows
them)."""

from __future__ import annotations

import pytest

from tests.support.compose import docker

pytestmark = pytest.mark.timeout(600)
IMAGE = "chainrule:0.1.0"


def test_the_image_builds_and_holds_only_what_runs(build_seconds: float) -> None:
    size = int(docker("image", "inspect", IMAGE, "--format", "{{.Size}}"))
    print(
        f"\nimage {IMAGE}: {size / 1e6:.0f} MB, `docker compose build` took {build_seconds:.0f} s"
    )
    probe = (
        "import importlib.util, os, shutil\n"
        "print(shutil.which('gcc'), shutil.which('cc'), shutil.which('pip'),\n"
        "      importlib.util.find_spec('pip'), os.path.exists('/src'),\n"
        "      os.path.exists('/root/.cache/pip'))\n"
    )
    out = docker("run", "--rm", "--read-only", IMAGE, "python", "-c", probe)
    assert out.split() == ["None"] * 4 + ["False", "False"], out
    entry_points = (
        "import chainrule.gateway, chainrule.scheduler, chainrule.worker, chainrule.paramserver"
    )
    docker("run", "--rm", "--read-only", IMAGE, "python", "-c", entry_points)
