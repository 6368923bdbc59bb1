"""Where the jobs sit in Redis: the one place that names their keys.

Keys, for ``prefix="chainrule"`` and a job id such as ``3f9a2c71d04e8b15``::

    chainrule:job:{id}                hash    the record: id, name, status, phase, message,
                                              failure_reason, step, total_steps, created_at,
                                              started_at, ended_at (Unix seconds), spec (JSON),
                                              submission_id, workers_active, workers_lost,
                                              stop_requested
    chainrule:job:{id}:history        list    status transitions, JSON objects, oldest first
    chainrule:job:{id}:metrics        stream  metric points (see chainrule.store.metrics)
    chainrule:job:{id}:events         stream  status changes, metric points and the end, in
                                              order (see chainrule.store.events)
    chainrule:job:{id}:diagnostics    stream  per-layer derivative diagnostics
                                              (see chainrule.store.diagnostics)
    chainrule:job:{id}:thinned        hash    entries thinned out of each stream
                                              (see chainrule.store.thinning)
    chainrule:job:{id}:data           string  the prepared dataset (see chainrule.store.blobs)
    chainrule:job:{id}:model          string  the trained model
    chainrule:job:{id}:preprocess     string  feature mean/std and classes (an .npz)
    chainrule:job:{id}:ckpt:{shard}   string  a shard's latest checkpoint; its previous one
                                              and their versions beside it, at ``...:previous``
                                              and ``...:versions`` (see chainrule.store.checkpoints)
    chainrule:jobs                    zset    job ids scored by creation time
    chainrule:jobs:status:{S}         zset    the ids of the jobs in status S, same scores
    chainrule:jobs:ended              zset    ended job ids scored by when they ended
    chainrule:jobs:queue              stream  one {"job_id": id} entry per submitted job
    chainrule:submission:{sid}        string  the job a client's submission_id created
"""

from __future__ import annotations

from collections.abc import Callable


def index_key(prefix: str) -> str:
    return f"{prefix}:jobs"


def queue_key(prefix: str) -> str:
    """The stream the scheduler reads submitted job ids from (field ``job_id``)."""
    return f"{prefix}:jobs:queue"


def status_index_key(prefix: str, status: str) -> str:
    return f"{prefix}:jobs:status:{status}"


def ended_index_key(prefix: str) -> str:
    """Ended jobs scored by when they ended (Unix seconds): what retention expires."""
    return f"{prefix}:jobs:ended"


def submission_key(prefix: str, submission_id: str) -> str:
    return f"{prefix}:submission:{submission_id}"


JobKey = Callable[[str, str], str]
"""(prefix, job id) -> one of the job's keys."""


def _of_job(suffix: str) -> JobKey:
    def key(prefix: str, job_id: str) -> str:
        return f"{prefix}:job:{job_id}{suffix}"

    return key


job_key = _of_job("")
history_key = _of_job(":history")
metrics_key = _of_job(":metrics")
events_key = _of_job(":events")
diagnostics_key = _of_job(":diagnostics")
thinned_key = _of_job(":thinned")
dataset_key = _of_job(":data")
model_key = _of_job(":model")
# an .npz with feature_mean/feature_std and classes, when the job has them
preprocess_key = _of_job(":preprocess")


def checkpoint_key(prefix: str, job_id: str, shard: str) -> str:
    """The shard's latest checkpoint (``shard`` "*": a pattern matching all their keys)."""
    return f"{prefix}:job:{job_id}:ckpt:{shard}"


def previous_key(latest: str) -> str:
    return f"{latest}:previous"


def versions_key(latest: str) -> str:
    return f"{latest}:versions"


def owned_keys(prefix: str, job_id: str) -> list[str]:
    """Every key a job owns but its checkpoints (a SCAN of ``checkpoint_key(prefix,
    job_id, "*")`` finds those), the record first."""
    return [
        job_key(prefix, job_id),
        history_key(prefix, job_id),
        metrics_key(prefix, job_id),
        events_key(prefix, job_id),
        diagnostics_key(prefix, job_id),
        model_key(prefix, job_id),
        dataset_key(prefix, job_id),
        preprocess_key(prefix, job_id),
        thinned_key(prefix, job_id),
    ]
