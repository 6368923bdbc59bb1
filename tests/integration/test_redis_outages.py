"""Redis goes away mid-job and comes back: a private redis-server with an append-only
file, restarted or paused (SIGSTOP: connections that hang) while a sync job trains.
Each job SUCCEEDS with every step recorded once. Real processes, a real redis-server."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainrule.cli.stack import LocalStack, StackConfig, free_port
from tests.support.examples import example_spec as spec
from tests.support.jobs import metric_series, run_job_to_end, submit_and_wait_for_step

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]
STEPS = 1500


class PrivateRedis:
    """redis-server on a free port, AOF fsynced at every write, in ``data``."""

    def __init__(self, data: Path) -> None:
        self.data, self.port = data, free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.data), "--appendonly", "yes", "--appendfsync", "always"),
                *("--save", ""),
            ],
            stdout=open(self.data / "redis.log", "ab"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while "Ready to accept connections" not in (self.data / "redis.log").read_text():
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # in case it was paused
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def train_through(
    private_redis: PrivateRedis, tmp_path: Path, outage: str, seconds: float, standby: bool
) -> None:
    config = StackConfig.on_free_ports(
        workers=2, redis_url=private_redis.url, log_dir=tmp_path / "logs"
    )
    if standby:
        config.standby_scheduler_port = free_port()
    with LocalStack(config) as stack:
        job_spec = spec("digits", training={"steps": STEPS, "checkpoint_every": 200})
        job_id = submit_and_wait_for_step(stack.gateway_url, job_spec, 300)
        assert private_redis.process is not None
        if outage == "restart":
            private_redis.stop()
            time.sleep(seconds)
            private_redis.start()
        else:
            private_redis.process.send_signal(signal.SIGSTOP)
            time.sleep(seconds)
            private_redis.process.send_signal(signal.SIGCONT)
        job = run_job_to_end(stack.gateway_url, job_id, timeout=200)
        assert job["status"] == "SUCCEEDED", (job, stack.log("scheduler")[-3000:])
        assert job["step"] == STEPS  # θ's version counts the job's steps
        seen = Counter(p["step"] for p in metric_series(stack.gateway_url, job_id))
        assert set(seen) == set(range(1, STEPS + 1))
        assert max(seen.values()) <= 2  # at most a recompute after a rollback


def test_a_redis_restart_is_ridden_out(private_redis: PrivateRedis, tmp_path: Path) -> None:
    """Down for 3 s (the clients' retries, with backoff, cover it): no process fails."""
    train_through(private_redis, tmp_path, "restart", 3, standby=False)


def test_a_redis_that_hangs_is_ridden_out(private_redis: PrivateRedis, tmp_path: Path) -> None:
    """SIGSTOPped for 5 s: every command in flight hangs, then completes."""
    train_through(private_redis, tmp_path, "pause", 5, standby=False)


def test_an_outage_longer_than_the_lease_moves_the_job_to_the_standby(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """Down for 20 s, past the 10 s leader lease: the leader steps down (it cannot know
    whether another leads now), the standby takes the lease once Redis is back, and
    resumes the job from its checkpoint."""
    train_through(private_redis, tmp_path, "restart", 20, standby=True)
