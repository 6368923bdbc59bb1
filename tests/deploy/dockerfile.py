"""A small Dockerfile linter for the usual mistakes, and .dockerignore matching.

``lint(text, context)`` returns one message per problem: unpinned base images, a root
final stage, no HEALTHCHECK, ``apt-get install`` without ``--no-install-recommends`` or
without removing the package lists, ADD of a URL, secrets in ENV/ARG, build tools in the
final stage, shell-form CMD/ENTRYPOINT (signals would go to a shell), COPY sources that are
missing from the build context or excluded from it by .dockerignore.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)
_BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|clang|make|build-essential|libc6-dev|python3-dev|git|grpcio-tools)\b"
)
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}?")


@dataclass
class Instruction:
    line: int
    keyword: str
    arguments: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults and the stages of a Dockerfile (comments and line
    continuations handled; heredocs are not used here and not supported)."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append(Instruction(start, keyword.upper(), arguments.strip()))
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(substitute(words[0], global_args), name))
        elif not stages and instruction.keyword == "ARG":
            key, _, default = instruction.arguments.partition("=")
            global_args[key.strip()] = default.strip().strip('"')
        elif stages:
            stages[-1].instructions.append(instruction)
    return global_args, stages


def substitute(text: str, variables: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: variables.get(m[1], m[2] or ""), text)


def lint(text: str, context: Path, ignore: DockerIgnore | None = None) -> list[str]:
    """Every problem found in the Dockerfile ``text`` built from ``context``."""
    _, stages = parse(text)
    if not stages:
        return ["no FROM: not a Dockerfile"]
    problems: list[str] = []
    stage_names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.base in stage_names:
            continue
        image, _, tag = stage.base.partition("@")[0].rpartition(":")
        if "@sha256:" not in stage.base and (
            not image or tag == "latest" or not re.search(r"\d+\.\d+", tag)
        ):
            problems.append(f"FROM {stage.base}: pin the base image to a version tag (or digest)")
        for instruction in stage.instructions:
            problems += _check(instruction, context, ignore)
    final = stages[-1]
    users = [i.arguments.split(":")[0] for i in final.instructions if i.keyword == "USER"]
    if not users or users[-1] in ("root", "0"):
        problems.append("the final stage runs as root: add a non-root USER")
    if len(stages) < 2:
        problems.append("a single stage: build in one stage, copy the result into a clean one")
    if not any(i.keyword == "HEALTHCHECK" for i in final.instructions):
        problems.append("no HEALTHCHECK in the final stage")
    for instruction in final.instructions:
        if instruction.keyword == "RUN" and _BUILD_TOOLS.search(instruction.arguments):
            problems.append(f"line {instruction.line}: build tools in the final stage")
    return problems


def _check(instruction: Instruction, context: Path, ignore: DockerIgnore | None) -> list[str]:
    where, args = f"line {instruction.line}", instruction.arguments
    problems = []
    if instruction.keyword == "RUN" and re.search(r"apt-get\s+(-\S+\s+)*install", args):
        if "--no-install-recommends" not in args:
            problems.append(f"{where}: apt-get install without --no-install-recommends")
        if "rm -rf /var/lib/apt/lists" not in args:
            problems.append(f"{where}: apt-get install without rm -rf /var/lib/apt/lists/*")
    if instruction.keyword == "RUN" and re.search(r"apt-get\s+update\s*$", args):
        problems.append(f"{where}: apt-get update alone caches a stale package list")
    if instruction.keyword == "ADD" and re.search(r"\b(https?|git)://", args):
        problems.append(f"{where}: ADD of a URL; download in a RUN and check a checksum")
    if instruction.keyword in ("ENV", "ARG"):
        for name in _declared_names(instruction):
            if _SECRET_NAME.search(name):
                problems.append(
                    f"{where}: {instruction.keyword} {name} bakes a secret into the image"
                )
    if instruction.keyword in ("CMD", "ENTRYPOINT") and not args.startswith("["):
        problems.append(f"{where}: {instruction.keyword} in shell form; use the exec form [...]")
    if instruction.keyword == "COPY" or instruction.keyword == "ADD":
        problems += _check_sources(instruction, context, ignore)
    return problems


def _declared_names(instruction: Instruction) -> list[str]:
    """The variables an ENV (``K=v K2=v2`` or ``K v``) or ARG (``K[=v]``) declares."""
    args = instruction.arguments
    if instruction.keyword == "ENV" and "=" in args.split(" ", 1)[0]:
        return re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", args)
    return [re.split(r"[=\s]", args, maxsplit=1)[0]]


def copy_sources(instruction: Instruction) -> list[str] | None:
    """The context paths a COPY/ADD reads (None for COPY --from, which reads a stage)."""
    args = instruction.arguments
    words = [str(w) for w in json.loads(args)] if args.startswith("[") else shlex.split(args)
    flags = [w for w in words if w.startswith("--")]
    if any(f.startswith("--from") for f in flags):
        return None
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1]


def _check_sources(
    instruction: Instruction, context: Path, ignore: DockerIgnore | None
) -> list[str]:
    sources = copy_sources(instruction)
    problems = []
    for source in sources or []:
        matches = sorted(context.glob(source.rstrip("/"))) if not source.startswith("/") else []
        if not matches:
            problems.append(f"line {instruction.line}: COPY source {source} is not in the context")
            continue
        for path in matches:
            relative = path.relative_to(context).as_posix()
            if ignore is not None and (
                ignore.excludes(relative) or not ignore.included_files(context, relative)
            ):
                problems.append(f"line {instruction.line}: {relative} is excluded by .dockerignore")
    return problems


class DockerIgnore:
    """The patterns of a .dockerignore, matched the way Docker matches them: paths relative
    to the context, ``*`` within a path segment, ``**`` across segments, ``!`` re-includes,
    the last matching pattern wins, and an excluded directory excludes what it holds."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = line[1:].strip() if include else line
            self.rules.append((include, re.compile(_translate(pattern.strip("/")))))

    def excludes(self, path: str) -> bool:
        """Whether ``path`` (relative, with /) is left out of the build context: the last
        pattern that matches it or one of its parent directories decides."""
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
        excluded = False
        for include, regex in self.rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                excluded = not include
        return excluded

    def included_files(self, context: Path, relative: str) -> list[str]:
        """The files under ``relative`` (a file or a directory) that reach the context."""
        root = context / relative
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        names = [p.relative_to(context).as_posix() for p in files]
        return [n for n in names if not self.excludes(n)]


def _translate(pattern: str) -> str:
    """A .dockerignore pattern as a regular expression over a relative path."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out
