"""θ dropped from the parameter server mid-job (what a scheduler that dies inside its
job's end, or a stray DropJob of the leader's epoch, leaves behind): the leader restores
the job from its checkpoint and it succeeds, every step recorded."""

from __future__ import annotations

from pathlib import Path

from chainrule.paramserver.client import ParamServerClient
from tests.support.examples import example_spec as spec
from tests.support.jobs import metric_series, run_job_to_end, submit_and_wait_for_step
from tests.support.stack import running_stack


def test_a_job_whose_theta_was_dropped_resumes_from_its_checkpoint(
    redis_url: str, tmp_path: Path
) -> None:
    steps = 3000
    with running_stack(redis_url, tmp_path) as stack:
        job_spec = spec(training={"steps": steps, "checkpoint_every": 100})
        job_id = submit_and_wait_for_step(stack.gateway_url, job_spec, 300)
        leader = ParamServerClient(
            stack.paramserver_target("paramserver"), 5, stack.leader_credentials()
        )
        assert leader.drop_job(job_id)
        leader.close()
        job = run_job_to_end(stack.gateway_url, job_id, timeout=120)
        points = metric_series(stack.gateway_url, job_id)
        seen = {p["step"] for p in points}
        scheduler_log = stack.log("scheduler")
    assert job["status"] == "SUCCEEDED", (job, scheduler_log[-3000:])
    assert job["step"] == steps  # θ's version counts the job's steps
    assert job["latest_metrics"]["eval_accuracy"] == 1.0
    assert seen == set(range(1, steps + 1))
    # resumed from a checkpoint, not from step 0: rolled back to the latest one, or, when
    # θ was dropped just as a run ended at a checkpoint, resynced where it was
    assert "job rolled back" in scheduler_log or "job resynced" in scheduler_log
    rollbacks = [p["restored_from"] for p in points if p.get("restored_from") is not None]
    assert all(r > 0 and r % 100 == 0 for r in rollbacks), rollbacks
