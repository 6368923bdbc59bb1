"""What the CLI shows: progress, ETA and ages, how a followed job's end sets the exit
code, and the token file `chainrule up` leaves for the other commands."""

from __future__ import annotations

import io
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from chainrule.cli import jobs
from chainrule.cli.client import GatewayClient
from chainrule.cli.output import ago_text, eta_text, headline_metrics, merge_metrics, progress_of
from chainrule.cli.stack_commands import remove_token_file, write_token_file


def test_progress_comes_from_the_progress_object_or_the_summary_fields() -> None:
    detail = {"progress": {"step": 30, "total_steps": 120, "percent": 25.0, "eta_seconds": 9.6}}
    assert progress_of(detail) == (30, 120, 25.0, 9.6)
    assert progress_of({"step": 5, "total_steps": 20}) == (5, 20, 25.0, None)
    assert progress_of({}) == (0, None, None, None)


def test_eta_reads_as_a_clock_and_unknown_as_dashes() -> None:
    assert eta_text(9.6) == "0:00:10"
    assert eta_text(3725) == "1:02:05"
    assert eta_text(None) == "--:--"


def test_heartbeat_ages_from_iso_or_unix_seconds() -> None:
    now = datetime(2025, 1, 1, 12, 0, 10, tzinfo=UTC).timestamp()
    assert ago_text("2025-01-01T12:00:08Z", now) == "2.0 s ago"
    assert ago_text(now - 300, now) == "5 min ago"
    assert ago_text(None, now) == "never"


def test_headline_metrics_name_loss_and_holdout_accuracy() -> None:
    latest = {"loss": 0.123456, "eval_accuracy": 0.95, "eval_r2": None, "lr": 0.5}
    assert headline_metrics(latest) == "loss 0.1235  holdout acc 0.950"
    assert headline_metrics({"loss": None}) == "loss —"  # diverged: NaN travels as null
    assert headline_metrics(None) == ""


def test_holdout_metrics_outlive_the_points_between_evaluations() -> None:
    known = merge_metrics({}, {"step": 50, "loss": 0.4, "eval_accuracy": 0.9})
    known = merge_metrics(known, {"step": 53, "loss": 0.3, "eval_accuracy": None})
    assert known == {"step": 53, "loss": 0.3, "eval_accuracy": 0.9}
    assert merge_metrics(known, {"loss": None})["loss"] is None  # a diverged loss is news


def job_states(*states: tuple[str, int]) -> list[dict[str, Any]]:
    return [
        {
            "id": "j1",
            "name": "xor",
            "status": status,
            "phase": "",
            "failure_reason": "diverged: loss is nan at step 7" if status == "FAILED" else None,
            "progress": {"step": step, "total_steps": 100, "percent": step, "eta_seconds": 1.0},
            "latest_metrics": {"step": step, "loss": 0.5, "eval_accuracy": None},
        }
        for status, step in states
    ]


def follow(states: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """Watch a job whose successive records are ``states``; the exit code and the output."""
    monkeypatch.setattr(jobs, "POLL_S", 0.0)
    replies = iter(states)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/metrics"):  # the points since the last look
            start = int(request.url.params["start_step"])
            points = [{"step": s, "loss": 0.5, "eval_accuracy": 0.75} for s in (start, start + 1)]
            return httpx.Response(200, json={"points": points, "next_start_step": None})
        return httpx.Response(200, json=next(replies))

    out = io.StringIO()
    console = Console(file=out, width=200)
    client = GatewayClient("http://gw.test", transport=httpx.MockTransport(handler))
    code = jobs.report(jobs.watch(client, "j1", console), console)
    return code, out.getvalue()


def test_a_succeeded_job_exits_0_with_progress_lines_on_the_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    states = job_states(("PENDING", 0), ("RUNNING", 3), ("RUNNING", 55), ("SUCCEEDED", 100))
    code, out = follow(states, monkeypatch)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("step 0/100") and "PENDING" in lines[0]
    # the holdout accuracy comes from the points between polls, not the latest point
    assert "step 55/100  loss 0.5  holdout acc 0.750  ETA 0:00:01  RUNNING" in out
    assert lines[-1] == "job j1 SUCCEEDED after 100 steps"


def test_a_failed_job_exits_1_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = follow(job_states(("RUNNING", 3), ("FAILED", 7)), monkeypatch)
    assert code == 1
    assert out.splitlines()[-1] == "job j1 FAILED at step 7: diverged: loss is nan at step 7"


def test_the_token_file_is_private_and_only_its_own_token_is_removed(tmp_path: Path) -> None:
    path = tmp_path / ".chainrule" / "token"
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)
    write_token_file(path, "t1")
    assert path.read_text() == "t1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_token_file(path, "t2")  # another `up` in the same directory took over
    remove_token_file(path, "t1")
    assert path.read_text() == "t2\n"
    remove_token_file(path, "t2")
    assert not path.exists()
    remove_token_file(path, "t2")  # already gone: nothing to do
