"""Where each tensor of θ lives when it is split over K parameter-server shards."""

from __future__ import annotations

import itertools
import math
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainrule.paramserver.client import ParamServerClient, ThetaStatus
from chainrule.paramserver.placement import assign_shards
from chainrule.paramserver.sharding import (
    ShardedParamServerClient,
    combine_statuses,
    connect_paramservers,
)

shapes = st.dictionaries(
    st.text("abcdefgh.WbX0123", min_size=1, max_size=8),
    st.lists(st.integers(0, 40), min_size=0, max_size=3).map(tuple),
    min_size=1,
    max_size=12,
)


def loads(placement: dict[str, int], sizes: dict[str, tuple[int, ...]], k: int) -> list[int]:
    load = [0] * k
    for name, shard in placement.items():
        load[shard] += math.prod(sizes[name])
    return load


def mlp_shapes(layers: list[int]) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(layers), start=1):
        out[f"dense{i}.W"], out[f"dense{i}.b"] = (fan_in, fan_out), (fan_out,)
    return out


@settings(max_examples=300, deadline=None)
@given(shapes, st.integers(1, 8))
def test_every_tensor_gets_exactly_one_shard_in_range(
    sizes: dict[str, tuple[int, ...]], k: int
) -> None:
    placement = assign_shards(sizes, k)
    assert list(placement) == list(sizes)  # every tensor, in the caller's order
    assert all(0 <= shard < k for shard in placement.values())


@settings(max_examples=300, deadline=None)
@given(shapes, st.integers(1, 8))
def test_shards_differ_by_at_most_the_largest_tensor(
    sizes: dict[str, tuple[int, ...]], k: int
) -> None:
    load = loads(assign_shards(sizes, k), sizes, k)
    assert max(load) - min(load) <= max(math.prod(s) for s in sizes.values())


@settings(max_examples=200, deadline=None)
@given(shapes, st.integers(1, 8), st.randoms(use_true_random=False))
def test_placement_depends_on_the_shapes_not_on_their_order(
    sizes: dict[str, tuple[int, ...]], k: int, random: Random
) -> None:
    names = list(sizes)
    random.shuffle(names)
    shuffled = {name: sizes[name] for name in names}
    assert assign_shards(shuffled, k) == assign_shards(sizes, k)


def test_largest_first_onto_the_lightest_shard_ties_by_name() -> None:
    sizes = {"a": (10,), "b": (10,), "c": (8,), "d": (3,), "e": (3,), "f": (1,)}
    # a->0 (10), b->1 (10), c->2 (8), d->2 (11), e->0 (13), f->1 (11)
    assert assign_shards(sizes, 3) == {"a": 0, "b": 1, "c": 2, "d": 2, "e": 0, "f": 1}


def test_an_mlp_gets_one_weight_matrix_per_shard_when_they_are_alike() -> None:
    sizes = mlp_shapes([100, 100, 100, 100])
    placement = assign_shards(sizes, 3)
    assert sorted(placement[f"dense{i}.W"] for i in (1, 2, 3)) == [0, 1, 2]
    load = loads(placement, sizes, 3)
    assert max(load) - min(load) <= 100  # a bias vector at most


def test_more_shards_than_tensors_leaves_the_last_shards_empty() -> None:
    sizes = mlp_shapes([2, 3])  # two tensors
    placement = assign_shards(sizes, 5)
    assert sorted(placement.values()) == [0, 1]  # the first shards, one tensor each


def test_with_at_least_k_tensors_every_shard_gets_one_even_when_some_are_empty() -> None:
    sizes = {"big": (100,), "none1": (0,), "none2": (0, 7), "one": ()}
    assert sorted(assign_shards(sizes, 4).values()) == [0, 1, 2, 3]


def test_one_shard_holds_everything_and_zero_shards_is_an_error() -> None:
    sizes = mlp_shapes([4, 8, 2])
    assert set(assign_shards(sizes, 1).values()) == {0}
    with pytest.raises(ValueError, match="number of shards must be >= 1; got 0"):
        assign_shards(sizes, 0)


def test_status_of_the_shards_is_the_oldest_one() -> None:
    statuses = [
        ThetaStatus(version=12, checkpoint_version=10, scheduler_state="at-10", restored=False),
        ThetaStatus(version=11, checkpoint_version=5, scheduler_state="at-5", restored=True),
        ThetaStatus(version=12, checkpoint_version=10, scheduler_state="at-10", restored=False),
    ]
    assert combine_statuses(statuses) == ThetaStatus(11, 5, "at-5", True)


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ("", "has an empty entry"),
        ("a:1,,b:2", "has an empty entry"),
        ("a:1, ", "has an empty entry"),
        ("a:1,b:2, a:1", r"names \['a:1'\] more than once"),
    ],
)
def test_a_malformed_paramserver_list_is_refused_clearly(targets: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        connect_paramservers(targets)


def test_the_sharded_client_overrides_every_public_method_of_the_single_one() -> None:
    """Both implement the ParamServer protocol; the sharded one holds a client per shard
    and no channel of its own, so it must answer every call the single one does."""
    public = {n for n, v in vars(ParamServerClient).items() if callable(v) and n[0] != "_"}
    assert public <= set(vars(ShardedParamServerClient)), public - set(
        vars(ShardedParamServerClient)
    )
