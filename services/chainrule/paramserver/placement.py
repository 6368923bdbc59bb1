"""Where each tensor of θ lives when θ is split over several parameter servers (shards).

Each tensor lives whole on one shard, chosen by :func:`assign_shards` from the tensors'
shapes alone, so the scheduler and every worker place θ the same way without talking to
each other. :func:`split` cuts a set of tensors (θ, a gradient) into each shard's part;
:func:`merge` puts the parts back together and checks they were where they belong.

Why splitting is exact: the optimizers (sgd, adam, adagrad) are elementwise, and every
shard averages the same pushes with the same sample weights and runs the same optimizer
with the same step count on its own tensors, so K shards compute bit for bit the θ one
server would. No tensor needs splitting by rows for that; whole tensors, largest first onto
the lightest shard, balance an MLP's few large weight matrices well enough.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from chainrule.nn import Params


def assign_shards(shapes: Mapping[str, tuple[int, ...]], k: int) -> dict[str, int]:
    """The shard (0 .. k-1) of every tensor: largest first (ties by name) onto the shard
    holding the fewest elements so far (ties: fewer tensors, then the lower index).

    Deterministic and pure: the same shapes give the same placement in every process. The
    heaviest shard exceeds the lightest by at most the largest tensor, and with at least
    ``k`` tensors every shard gets one.
    """
    if k < 1:
        raise ValueError(f"the number of shards must be >= 1; got {k}")
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    load, count = [0] * k, [0] * k
    placed: dict[str, int] = {}
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        shard = min(range(k), key=lambda i: (load[i], count[i], i))
        placed[name] = shard
        load[shard] += sizes[name]
        count[shard] += 1
    return {name: placed[name] for name in shapes}


def split(tensors: Params, k: int) -> list[Params]:
    """Each of the ``k`` shards' part of ``tensors`` (the arrays themselves, not copies)."""
    shard_of = assign_shards({name: a.shape for name, a in tensors.items()}, k)
    parts: list[Params] = [{} for _ in range(k)]
    for name, array in tensors.items():
        parts[shard_of[name]][name] = array
    return parts


def merge(job_id: str, parts: list[Params], targets: str) -> Params:
    """The shards' tensors as one θ, checked to be where :func:`assign_shards` puts them
    (a worker and a scheduler listing the shards, ``targets``, in different orders would
    not agree)."""
    merged: Params = {}
    source: dict[str, int] = {}
    for shard, part in enumerate(parts):
        for name, array in part.items():
            if name in merged:
                raise RuntimeError(
                    f"tensor {name!r} of job {job_id!r} is on shards {source[name]} and {shard}"
                )
            merged[name], source[name] = array, shard
    expected = assign_shards({name: a.shape for name, a in merged.items()}, len(parts))
    misplaced = sorted(name for name in merged if expected[name] != source[name])
    if misplaced:
        raise RuntimeError(
            f"tensor(s) {misplaced} of job {job_id!r} are not on the shard that "
            f"{targets!r} places them on: every process must list the same "
            "parameter servers in the same order (CHAINRULE_PARAMSERVERS)"
        )
    return merged
