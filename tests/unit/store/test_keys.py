"""The Redis key layout of the jobs, to the byte: a store that named a key differently
would not find the jobs an older one wrote."""

from __future__ import annotations

import redis

from chainrule.store import keys
from chainrule.store.blobs import dataset_key, model_key, preprocess_key
from chainrule.store.checkpoints import checkpoint_key, previous_key, versions_key
from chainrule.store.diagnostics import diagnostics_key
from chainrule.store.jobs import JobStatus, JobStore
from chainrule.store.thinning import thinned_key

JOB = "3f9a2c71d04e8b15"


def test_the_keys_of_a_job() -> None:
    assert keys.job_key("chainrule", JOB) == "chainrule:job:3f9a2c71d04e8b15"
    named = {
        keys.history_key: "history",
        keys.metrics_key: "metrics",
        keys.events_key: "events",
        diagnostics_key: "diagnostics",
        thinned_key: "thinned",
        dataset_key: "data",
        model_key: "model",
        preprocess_key: "preprocess",
    }
    for key, suffix in named.items():
        assert key("chainrule", JOB) == f"chainrule:job:{JOB}:{suffix}"
    latest = checkpoint_key("chainrule", JOB, "0")
    assert latest == f"chainrule:job:{JOB}:ckpt:0"
    assert previous_key(latest) == f"chainrule:job:{JOB}:ckpt:0:previous"
    assert versions_key(latest) == f"chainrule:job:{JOB}:ckpt:0:versions"


def test_the_keys_a_job_owns_start_with_its_record() -> None:
    suffixes = ["history", "metrics", "events", "diagnostics", "model", "data"]
    suffixes += ["preprocess", "thinned"]
    expected = [f"p:job:{JOB}", *(f"p:job:{JOB}:{suffix}" for suffix in suffixes)]
    assert keys.owned_keys("p", JOB) == expected


def test_the_job_store_names_the_same_keys() -> None:
    client = redis.Redis()  # connects on a first command, and none is sent here
    store = JobStore(client, prefix="p")
    assert store.index_key == "p:jobs"
    assert store.queue_key == "p:jobs:queue"
    assert store.status_index_key(JobStatus.RUNNING) == "p:jobs:status:RUNNING"
    assert store.ended_index_key == "p:jobs:ended"
    assert store.submission_key("s-1") == "p:submission:s-1"
    assert store.job_key(JOB) == f"p:job:{JOB}"
    assert store.history_key(JOB) == f"p:job:{JOB}:history"
    assert store.metrics_key(JOB) == f"p:job:{JOB}:metrics"
    assert store.events_key(JOB) == f"p:job:{JOB}:events"
    assert keys.queue_key("p") == store.queue_key
