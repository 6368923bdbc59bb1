"""Benchmark: ``loss_and_grad`` of an MLP 784-512-512-10 (tanh, softmax + cross-entropy,
batch 256, float32) against this machine's numpy float32 matmul rate, measured in the
same run. Prints figures; asserts nothing about time (machines here are shared).

Run: ``make bench`` (or ``python tests/benchmarks/bench_mlp.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise

import numpy as np

from chainrule.nn import MLP

LAYERS = [784, 512, 512, 10]
BATCH = 256


def best_seconds(fn: Callable[[], object], repeats: int = 7, inner: int = 5) -> float:
    """The fastest of ``repeats`` timings of ``inner`` calls, per call (the least noisy)."""
    fn()  # warm up caches and BLAS threads
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - start) / inner)
    return float(best)


def mlp_matmuls(layers: list[int], n: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of every matmul one forward + backward pass does: a·W forward, aᵀ·dz for
    every dW, dz·Wᵀ for every layer but the first (nobody needs dJ/dX)."""
    shapes = []
    for i, (fan_in, fan_out) in enumerate(pairwise(layers)):
        shapes.append((n, fan_in, fan_out))  # forward
        shapes.append((fan_in, n, fan_out))  # dW
        if i > 0:
            shapes.append((n, fan_out, fan_in))  # da
    return shapes


def main() -> None:
    rng = np.random.default_rng(0)
    net = MLP(layers=LAYERS, activation="tanh", output="softmax", loss="cross_entropy")
    params = net.init(rng)
    X = rng.normal(size=(BATCH, LAYERS[0])).astype(np.float32)
    y = rng.integers(0, LAYERS[-1], size=BATCH)

    shapes = mlp_matmuls(LAYERS, BATCH)
    flops = sum(2 * m * k * n for m, k, n in shapes)
    operands = [
        (rng.normal(size=(m, k)).astype(np.float32), rng.normal(size=(k, n)).astype(np.float32))
        for m, k, n in shapes
    ]

    def matmuls_only() -> None:
        for a, b in operands:
            a @ b

    big = rng.normal(size=(1024, 1024)).astype(np.float32)

    # Interleave the measurements so that both see the same machine load.
    t_mlp, t_mm, t_big = [], [], []
    for _ in range(3):
        t_mlp.append(best_seconds(lambda: net.loss_and_grad(params, X, y)))
        t_mm.append(best_seconds(matmuls_only))
        t_big.append(best_seconds(lambda: big @ big, repeats=3, inner=3))
    mlp_s, mm_s, big_s = min(t_mlp), min(t_mm), min(t_big)
    mlp_gflops = flops / mlp_s / 1e9
    mm_gflops = flops / mm_s / 1e9
    peak_gflops = 2 * 1024**3 / big_s / 1e9

    print(
        f"MLP {'-'.join(map(str, LAYERS))}, tanh, softmax + cross-entropy, batch {BATCH}, float32"
    )
    print(f"  matmul FLOPs per loss_and_grad : {flops / 1e6:.1f} M")
    print(f"  loss_and_grad                  : {mlp_s * 1e3:.2f} ms/call, {mlp_gflops:.1f} GFLOP/s")
    print(f"  the same matmuls alone         : {mm_s * 1e3:.2f} ms, {mm_gflops:.1f} GFLOP/s")
    print(f"  numpy 1024x1024 float32 matmul : {peak_gflops:.1f} GFLOP/s")
    print(f"  ratio to the same matmuls      : {mlp_gflops / mm_gflops:.1%}")
    print(f"  ratio to the 1024^3 matmul     : {mlp_gflops / peak_gflops:.1%}")


if __name__ == "__main__":
    main()
