"""`docker compose down`, then `up` again: the named volume stays, and with it everything a
user made: jobs, their metrics, datasets and models."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.support.compose import DOWN, UP, Stack, compose_stack

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def stack() -> Iterator[Stack]:
    with compose_stack(UP) as stack:
        yield stack


def two_moons_csv(rows: int = 300) -> bytes:
    rng = np.random.default_rng(0)
    t = rng.uniform(0, np.pi, rows)
    label = rng.integers(0, 2, rows)
    x = np.where(label == 0, np.cos(t), 1 - np.cos(t)) + rng.normal(0, 0.1, rows)
    y = np.where(label == 0, np.sin(t), 0.5 - np.sin(t)) + rng.normal(0, 0.1, rows)
    lines = ["x,y,side"] + [
        f"{a:.5f},{b:.5f},{'left' if c == 0 else 'right'}"
        for a, b, c in zip(x, y, label, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


def test_down_then_up_keeps_jobs_metrics_datasets_and_models(stack: Stack) -> None:
    upload = stack.api.post(
        "/api/v1/datasets",
        files={"file": ("moons.csv", two_moons_csv(), "text/csv")},
        data={"label": "side"},
    )
    assert upload.status_code == 201, upload.text
    dataset = upload.json()
    spec = {
        "name": "moons",
        "dataset": {"id": dataset["id"], "holdout": 0.2, "standardize": True},
        "model": {"layers": [2, 16, 1], "activation": "tanh", "output": "sigmoid", "loss": "bce"},
        "training": {"mode": "sync", "workers": 2, "batch_size": 32, "steps": 400,
                     "optimizer": {"name": "sgd", "lr": 0.3, "momentum": 0.9}, "seed": 1},
    }  # fmt: skip
    job = stack.run_to_end(stack.submit(spec))
    assert job["status"] == "SUCCEEDED", job
    before = {
        "job": stack.job(job["id"]),
        "metrics": stack.api.get(f"/api/v1/jobs/{job['id']}/metrics").json(),
        "dataset": stack.api.get(f"/api/v1/datasets/{dataset['id']}").json(),
        "model": stack.api.get(f"/api/v1/jobs/{job['id']}/model").content,
    }
    volumes = stack.sh("docker volume ls -q").split()

    stack.sh(DOWN)
    assert not stack.all_containers()
    assert set(volumes) <= set(stack.sh("docker volume ls -q").split())  # the volume stays
    stack.sh(UP)

    after = {
        "job": stack.job(job["id"]),
        "metrics": stack.api.get(f"/api/v1/jobs/{job['id']}/metrics").json(),
        "dataset": stack.api.get(f"/api/v1/datasets/{dataset['id']}").json(),
        "model": stack.api.get(f"/api/v1/jobs/{job['id']}/model").content,
    }
    assert after == before
    assert len(after["metrics"]["points"]) == 400
    listed = stack.api.get("/api/v1/datasets").json()
    assert dataset["id"] in str(listed)
    # and the stack trains again, on the dataset that was kept
    again = stack.run_to_end(stack.submit({**spec, "name": "moons-again"}))
    assert again["status"] == "SUCCEEDED", again
