"""Benchmark: what an upload costs the gateway's parser (chainrule.data.uploads).

1. The refusal time of a CSV whose header is too wide (10k, 100k and 1M columns, one
   data row): it must grow linearly with the header, never quadratically.
2. The peak Python memory (tracemalloc) while a valid CSV of about ``--mb`` MB is parsed,
   as a multiple of the file's size.

Prints figures; asserts nothing about time. Run: ``python tests/benchmarks/bench_uploads.py``.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from chainrule.data.uploads import DatasetError, parse_csv


def wide_csv(columns: int) -> bytes:
    names = [f"c{i}" for i in range(columns)] + ["label"]
    return (",".join(names) + "\n" + ",".join("1" * len(names)) + "\n").encode()


def valid_csv(megabytes: float, features: int = 64) -> bytes:
    rng = np.random.default_rng(0)
    header = ",".join([f"x{j}" for j in range(features)] + ["label"]) + "\n"
    row_bytes = features * 9 + 2
    rows = int(megabytes * 1e6 / row_bytes)
    X = rng.standard_normal((rows, features)).round(5)
    lines = [",".join(f"{v:.5f}" for v in r) + f",{i % 3}" for i, r in enumerate(X)]
    return (header + "\n".join(lines) + "\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=10.0, help="size of the valid CSV")
    args = parser.parse_args()
    print("refusing a header that is too wide (limit 8192 features):")
    for columns in (10_000, 100_000, 1_000_000):
        data = wide_csv(columns)
        start = time.perf_counter()
        try:
            parse_csv(data, "label", max_bytes=len(data) + 1)
        except DatasetError as e:
            message = str(e)
        seconds = time.perf_counter() - start
        print(
            f"  {columns:>9,} columns ({len(data) / 1e6:5.1f} MB): {seconds * 1e3:8.1f} ms  {message}"
        )
    data = valid_csv(args.mb)
    tracemalloc.start()
    start = time.perf_counter()
    parsed = parse_csv(data, "label", max_bytes=len(data) + 1)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"a valid CSV of {len(data) / 1e6:.1f} MB ({parsed.X.shape[0]:,} rows × "
        f"{parsed.X.shape[1]} features): parsed in {seconds:.2f} s, peak Python memory "
        f"{peak / 1e6:.0f} MB = {peak / len(data):.1f}× the file"
    )


if __name__ == "__main__":
    main()
