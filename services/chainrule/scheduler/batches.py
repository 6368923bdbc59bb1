"""Which rows each task of each step reads: pure functions of the job's seed.

The rule: the training rows are shuffled once and cut into ``slots`` shards (one per task
slot, ``training.workers`` of them). Step s draws, for every slot k, ``batch_size``
distinct rows of shard k (the whole shard if it is smaller). The step's minibatch is the
union of those rows, and because the parameter server averages task gradients weighted
by their row counts, one sync step equals one single-process SGD step on that union.
:func:`job_rngs` fixes every random stream from the job's seed, so a single-process run
can replay the exact minibatch sequence.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Indices = NDArray[np.int64]


def job_rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(init, batches): the generator for θ's initial values and the one for minibatches."""
    return np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])


def make_shards(n_train: int, slots: int, rng: np.random.Generator) -> list[Indices]:
    """Shuffled training row indices cut into ``slots`` near-equal shards."""
    if slots < 1:
        raise ValueError(f"slots must be >= 1; got {slots}")
    order = rng.permutation(n_train).astype(np.int64)
    return [np.asarray(s, dtype=np.int64) for s in np.array_split(order, slots)]


def step_batches(shards: list[Indices], batch_size: int, rng: np.random.Generator) -> list[Indices]:
    """One step's rows per slot: ``batch_size`` distinct rows of each shard."""
    return [draw_rows(shard, batch_size, rng) for shard in shards]


def draw_rows(shard: Indices, batch_size: int, rng: np.random.Generator) -> Indices:
    """``batch_size`` distinct rows of ``shard`` (all of it if it is smaller), in random
    order: O(batch_size), not a permutation of the whole shard."""
    return shard[rng.choice(len(shard), size=min(batch_size, len(shard)), replace=False)]
