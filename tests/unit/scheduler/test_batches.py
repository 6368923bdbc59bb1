"""Which rows each task reads: shards that partition the training rows, per-slot
minibatches drawn from them, and random streams fixed by the job's seed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainrule.scheduler.batches import job_rngs, make_shards, step_batches


def batch_rng(seed: int) -> np.random.Generator:
    return job_rngs(seed)[1]


# -- shards ---------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(n_train=st.integers(1, 300), slots=st.integers(1, 16), seed=st.integers(0, 2**32))
def test_shards_cover_every_training_row_exactly_once(n_train: int, slots: int, seed: int) -> None:
    shards = make_shards(n_train, slots, batch_rng(seed))
    assert len(shards) == slots
    np.testing.assert_array_equal(np.sort(np.concatenate(shards)), np.arange(n_train))
    assert {s.dtype for s in shards} == {np.dtype(np.int64)}
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1  # near-equal: no slot gets twice the work


def test_shards_are_shuffled_and_the_same_for_the_same_seed() -> None:
    first = make_shards(100, 3, batch_rng(7))
    again = make_shards(100, 3, batch_rng(7))
    other = make_shards(100, 3, batch_rng(8))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    assert not np.array_equal(np.concatenate(first), np.arange(100))  # not in file order


def test_shards_need_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="slots must be >= 1; got 0"):
        make_shards(10, 0, batch_rng(0))


# -- per-step batches -------------------------------------------------------------------


def test_each_slot_gets_batch_size_distinct_rows_of_its_own_shard() -> None:
    rng = batch_rng(3)
    shards = make_shards(400, 4, rng)
    batches = step_batches(shards, 16, rng)
    assert len(batches) == 4
    for shard, rows in zip(shards, batches, strict=True):
        assert len(rows) == 16
        assert len(np.unique(rows)) == 16
        assert set(rows.tolist()) <= set(shard.tolist())


def test_a_shard_smaller_than_the_batch_is_read_whole() -> None:
    rng = batch_rng(3)
    shards = make_shards(10, 3, rng)  # shards of 4, 3 and 3 rows
    batches = step_batches(shards, 32, rng)
    for shard, rows in zip(shards, batches, strict=True):
        assert sorted(rows.tolist()) == sorted(shard.tolist())


def test_successive_steps_draw_different_minibatches_and_replay_from_the_seed() -> None:
    def three_steps(seed: int) -> list[list[np.ndarray]]:
        rng = batch_rng(seed)
        shards = make_shards(500, 2, rng)
        return [step_batches(shards, 8, rng) for _ in range(3)]

    run, replay = three_steps(11), three_steps(11)
    for step, replayed in zip(run, replay, strict=True):
        for rows, again in zip(step, replayed, strict=True):
            np.testing.assert_array_equal(rows, again)
    assert not np.array_equal(run[0][0], run[1][0])  # the stream advances step by step


# -- seeds ------------------------------------------------------------------------------


def test_job_rngs_are_reproducible_per_seed() -> None:
    init, batches = job_rngs(42)
    init_again, batches_again = job_rngs(42)
    np.testing.assert_array_equal(init.random(5), init_again.random(5))
    np.testing.assert_array_equal(batches.random(5), batches_again.random(5))


def test_job_rngs_differ_between_seeds_and_between_streams() -> None:
    init_0, batches_0 = job_rngs(0)
    init_1, batches_1 = job_rngs(1)
    draws = [g.random(5) for g in (init_0, batches_0, init_1, batches_1)]
    for i, a in enumerate(draws):
        for b in draws[i + 1 :]:
            assert not np.array_equal(a, b)
