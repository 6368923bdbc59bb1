"""The `chainrule` command as users run it: a subprocess (`python -m chainrule.cli`)
against a real local stack (the same launcher as `chainrule up`) and a real Redis, with
the gateway guarding its API with a token.

Each command runs in a fresh directory, so no `.chainrule/token` of a stack someone has
running on this machine is picked up, and with its token passed as the test says.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from chainrule.cli.stack import LocalStack, free_port
from tests.support.examples import example_spec as spec
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(300)
TOKEN = secrets.token_urlsafe(16)
XOR_STEPS = 300
# the CLI's own configuration, which the test sets per command
CLI_ENV = ("CHAINRULE_GATEWAY_URL", "CHAINRULE_API_TOKEN", "CHAINRULE_API_TOKENS")


def diverging_spec() -> dict[str, Any]:
    return spec(
        model={"layers": [2, 8, 1], "activation": "relu", "output": "identity", "loss": "mse"},
        training={"steps": 100, "optimizer": {"name": "sgd", "lr": 50.0}},
    )


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    env = {"CHAINRULE_API_TOKENS": TOKEN}
    with running_stack(redis_url, tmp_path_factory.mktemp("stack"), extra_env=env) as running:
        yield running


class Cli:
    """Runs `python -m chainrule.cli ...` in its own directory against one gateway."""

    def __init__(self, gateway: str, cwd: Path) -> None:
        self.gateway = gateway
        self.cwd = cwd

    def __call__(
        self, *args: str, token: str | None = TOKEN, timeout: float = 150
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
        env["CHAINRULE_GATEWAY_URL"] = self.gateway
        if token is not None:
            env["CHAINRULE_API_TOKEN"] = token
        return subprocess.run(
            [sys.executable, "-m", "chainrule.cli", *args],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def json(self, *args: str, expect: int = 0, token: str | None = TOKEN) -> Any:
        """The command's stdout, which must be JSON and nothing else."""
        done = self(*args, "--json", token=token)
        assert done.returncode == expect, done.stdout + done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def cli(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(stack.gateway_url, tmp_path_factory.mktemp("cli"))


def write_spec(directory: Path, name: str, job_spec: dict[str, Any]) -> str:
    path = directory / name
    path.write_text(json.dumps(job_spec))
    return str(path)


@pytest.fixture(scope="module")
def trained(cli: Cli) -> dict[str, Any]:
    """An XOR job trained to the end through `submit --watch --json`."""
    path = write_spec(cli.cwd, "xor.json", spec(training={"steps": XOR_STEPS}))
    job: dict[str, Any] = cli.json("submit", path, "--watch")
    assert job["status"] == "SUCCEEDED", job
    return job


# -- submit and watch -----------------------------------------------------------------------


def test_submit_watch_shows_progress_and_exits_0_on_success(cli: Cli) -> None:
    path = write_spec(cli.cwd, "ok.json", spec(training={"steps": 100}))
    done = cli("submit", path, "--watch")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted job" in done.stdout
    assert "step 100/100" in done.stdout  # the progress, one line per 10 % in a pipe
    assert "loss " in done.stdout and "holdout acc " in done.stdout
    assert "SUCCEEDED" in done.stdout.splitlines()[-1]


def test_a_diverging_job_exits_1_with_the_reason(cli: Cli) -> None:
    done = cli("submit", write_spec(cli.cwd, "diverges.json", diverging_spec()), "--watch")
    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stdout.splitlines()[-1]
    assert "FAILED" in last and "diverged" in last


def test_an_invalid_spec_exits_2_naming_the_field(cli: Cli) -> None:
    done = cli("submit", write_spec(cli.cwd, "bad.json", spec(training={"steps": 0})))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the job spec was rejected" in done.stderr
    assert "training.steps:" in done.stderr
    assert done.stdout == ""


def test_submission_id_makes_submit_idempotent(cli: Cli) -> None:
    key = f"cli-{secrets.token_hex(4)}"
    first_spec = spec(training={"steps": 50})
    path = write_spec(cli.cwd, "idem.json", first_spec)
    first = cli.json("submit", path, "--submission-id", key)
    again = cli.json("submit", path, "--submission-id", key)
    assert again["id"] == first["id"]
    other = write_spec(cli.cwd, "other.json", spec(training={"steps": 60}))
    refused = cli("submit", other, "--submission-id", key)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "HTTP 409" in refused.stderr


# -- reading a trained job ------------------------------------------------------------------


def test_list_shows_the_job_and_filters_by_status(cli: Cli, trained: dict[str, Any]) -> None:
    listed = cli.json("list", "--limit", "500")
    assert trained["id"] in [job["id"] for job in listed["data"]]
    succeeded = cli.json("list", "--status", "succeeded", "--limit", "500")
    assert trained["id"] in [job["id"] for job in succeeded["data"]]
    assert {job["status"] for job in succeeded["data"]} == {"SUCCEEDED"}
    one = cli.json("list", "--limit", "1")
    assert len(one["data"]) == 1
    table = cli("list")
    assert table.returncode == 0 and trained["id"] in table.stdout


def test_status_has_progress_metrics_and_transitions(cli: Cli, trained: dict[str, Any]) -> None:
    job = cli.json("status", trained["id"])
    assert job["id"] == trained["id"] and job["status"] == "SUCCEEDED"
    assert job["progress"]["step"] == job["progress"]["total_steps"] == XOR_STEPS
    assert job["latest_metrics"]["eval_accuracy"] == 1.0
    assert [t["status"] for t in job["status_transitions"]][-1] == "SUCCEEDED"
    panel = cli("status", trained["id"])
    assert panel.returncode == 0, panel.stderr
    for words in ("SUCCEEDED", f"{XOR_STEPS}/{XOR_STEPS} steps", "Status transitions"):
        assert words in panel.stdout


def test_metrics_names_latest_and_the_whole_series_as_csv(
    cli: Cli, trained: dict[str, Any]
) -> None:
    latest = cli.json("metrics", trained["id"])
    assert {"loss", "eval_accuracy"} <= set(latest["names"])
    assert latest["latest"]["eval_accuracy"] == 1.0
    done = cli("metrics", trained["id"], "--csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [int(r["step"]) for r in rows] == list(range(1, XOR_STEPS + 1))
    assert all(float(r["loss"]) >= 0 for r in rows)


def test_one_metric_series_downsampled_by_the_server(cli: Cli, trained: dict[str, Any]) -> None:
    whole = cli.json("metrics", trained["id"], "--name", "loss", "--max-points", "1000")
    assert [p["step"] for p in whole["points"]] == list(range(1, XOR_STEPS + 1))
    assert whole["downsampled"] is False
    few = cli.json("metrics", trained["id"], "--name", "loss", "--max-points", "20")
    assert few["downsampled"] is True and len(few["points"]) < XOR_STEPS
    done = cli("metrics", trained["id"], "--name", "loss", "--max-points", "20", "--csv")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "step,value" and len(lines) == len(few["points"]) + 1
    assert "downsampled" in done.stderr  # said, not silent


def test_download_writes_the_models_npz(cli: Cli, trained: dict[str, Any]) -> None:
    out = cli.cwd / "model.npz"
    saved = cli.json("download", trained["id"], "-o", str(out))
    assert saved["path"] == str(out) and saved["bytes"] == out.stat().st_size > 0
    with np.load(out, allow_pickle=False) as model:
        assert any(model[name].ndim == 2 for name in model.files)  # a weight matrix


def test_predict_classifies_the_xor_corners(cli: Cli, trained: dict[str, Any]) -> None:
    rows = cli.cwd / "rows.csv"
    rows.write_text("x1,x2\n1,1\n-1,1\n1,-1\n-1,-1\n")
    reply = cli.json("predict", trained["id"], "--input", str(rows))
    assert [int(p) for p in reply["predictions"]] == [0, 1, 1, 0]
    for probabilities in reply["probabilities"]:
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    table = cli("predict", trained["id"], "--input", str(rows))
    assert table.returncode == 0 and "prediction" in table.stdout


def test_workers_lists_the_stacks_workers(cli: Cli, trained: dict[str, Any]) -> None:
    listed = cli.json("workers")
    assert len(listed["data"]) >= 2
    assert sum(w["tasks_done"] for w in listed["data"]) > 0
    assert all(w["state"] and w["last_heartbeat"] for w in listed["data"])
    assert cli("workers").returncode == 0


# -- stopping -------------------------------------------------------------------------------


def test_stop_ends_a_running_job_and_watch_exits_1(cli: Cli) -> None:
    path = write_spec(cli.cwd, "long.json", spec(training={"steps": 200_000}))
    job = cli.json("submit", path)
    deadline = time.monotonic() + 60
    while cli.json("status", job["id"])["status"] != "RUNNING":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    stopped = cli.json("stop", job["id"])
    assert stopped["id"] == job["id"]
    watched = cli("watch", job["id"], "--json")
    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert json.loads(watched.stdout)["status"] == "STOPPED"


# -- errors ---------------------------------------------------------------------------------


def test_an_unknown_job_exits_2_with_the_servers_message(cli: Cli) -> None:
    done = cli("status", "no-such-job", "--json")
    assert done.returncode == 2
    assert "no-such-job" in done.stderr and "404" in done.stderr
    assert done.stdout == ""


def test_an_unreachable_gateway_exits_2_naming_it(cli: Cli) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    done = cli("list", "--gateway", nowhere)
    assert done.returncode == 2
    assert f"cannot reach the gateway at {nowhere}" in done.stderr


# -- the token ------------------------------------------------------------------------------


def test_without_a_token_a_mutation_is_refused_saying_how_to_pass_one(cli: Cli) -> None:
    path = write_spec(cli.cwd, "anon.json", spec(training={"steps": 10}))
    done = cli("submit", path, token=None)
    assert done.returncode == 2
    assert "requires an API token" in done.stderr and "--token" in done.stderr
    wrong = cli("submit", path, token="not-the-token")
    assert wrong.returncode == 2
    assert "refused the API token" in wrong.stderr


def test_the_flag_beats_the_environment_and_the_file_is_the_fallback(
    cli: Cli, tmp_path: Path
) -> None:
    path = write_spec(tmp_path, "tok.json", spec(training={"steps": 10}))
    flagged = cli("submit", path, "--token", TOKEN, token="not-the-token")
    assert flagged.returncode == 0, flagged.stderr
    (tmp_path / ".chainrule").mkdir()
    (tmp_path / ".chainrule" / "token").write_text(TOKEN + "\n")
    from_file = Cli(cli.gateway, tmp_path)("submit", path, token=None)
    assert from_file.returncode == 0, from_file.stderr


# -- chainrule up / run ---------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    """No external Redis (an embedded one, so no shared keys), no tokens given."""
    drop = (*CLI_ENV, "CHAINRULE_REDIS_URL")
    return {k: v for k, v in os.environ.items() if k not in drop}


@contextmanager
def chainrule_up(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """`chainrule up ARGS --json` in ``tmp_path``: the process and its ready line; it gets
    SIGTERM (then SIGKILL) on exit."""
    up = subprocess.Popen(
        [sys.executable, "-m", "chainrule.cli", "up", *args, "--json"],
        cwd=tmp_path,
        env={**clean_env(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert up.stdout is not None
        yield up, json.loads(up.stdout.readline())  # one line, once the gateway answers
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait(timeout=10)


def test_up_writes_a_private_token_the_cli_picks_up_and_removes_it(tmp_path: Path) -> None:
    port = free_port()
    token_file = tmp_path / ".chainrule" / "token"
    args = ("--workers", "2", "--free-ports", "--port", str(port))
    with chainrule_up(tmp_path, *args) as (up, ready):
        assert ready["gateway_url"] == f"http://127.0.0.1:{port}"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert len(token_file.read_text().strip()) >= 32
        cli = Cli(ready["gateway_url"], tmp_path)
        path = write_spec(tmp_path, "xor.json", spec(training={"steps": 100}))
        elsewhere = Cli(ready["gateway_url"], tmp_path / "elsewhere")
        elsewhere.cwd.mkdir()
        refused = elsewhere("submit", path, token=None)  # no token file there
        assert refused.returncode == 2 and "requires an API token" in refused.stderr
        job = cli.json("submit", path, "--watch", token=None)  # from .chainrule/token
        assert job["status"] == "SUCCEEDED", job
    assert up.returncode == 0, up.stderr.read() if up.stderr else ""
    assert not token_file.exists()


def test_run_trains_a_spec_on_a_fresh_stack_and_exits_0(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "xor.json", spec(training={"steps": 100}))
    command = ["run", path, "--workers", "2", "--free-ports", "--port", str(free_port()), "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "chainrule.cli", *command],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "SUCCEEDED"
    assert not (tmp_path / ".chainrule" / "token").exists()


def test_up_with_two_schedulers_keeps_training_when_the_leader_is_killed(tmp_path: Path) -> None:
    """`chainrule up --schedulers 2`: a standby beside the leader takes over its jobs."""
    args = ("--schedulers", "2", "--free-ports", "--port", str(free_port()))
    fast = {"CHAINRULE_LEADER_TTL_S": "3", "CHAINRULE_WORKER_LEASE_S": "3"}
    with chainrule_up(tmp_path, *args, env=fast) as (up, ready):
        assert ready["schedulers"] == 2
        schedulers = [
            p
            for p in psutil.Process(up.pid).children(recursive=True)
            if "chainrule.scheduler" in " ".join(p.cmdline())
        ]
        assert len(schedulers) == 2
        cli = Cli(ready["gateway_url"], tmp_path)
        path = write_spec(tmp_path, "xor.json", spec(training={"steps": 4000}))
        submitted = cli.json("submit", path, token=None)
        deadline = time.monotonic() + 60
        while (status := cli.json("status", submitted["id"], token=None))["step"] < 100:
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status["status"] == "RUNNING" and status["step"] < 4000
        leader = min(schedulers, key=lambda p: p.create_time())  # started first, leads
        leader.kill()
        job = cli.json("watch", submitted["id"], token=None)
        assert job["status"] == "SUCCEEDED", job
        assert job["step"] == 4000
