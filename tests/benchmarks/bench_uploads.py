"""Benchmark: what an upload costs the gateway's parser (chainrule.data.csv_upload).

1. The refusal time of a CSV whose header is too wide (10k, 100k and 1M columns, one
   data row): it must grow linearly with the header, never quadratically.
2. The peak Python memory (tracemalloc) while a valid CSV of about ``--mb`` MB is parsed,
   as a multiple of the file's size.
3. With ``--gateway REDIS_URL``: a real gateway (``python -m chainrule.gateway``) takes a
   valid CSV of about ``--gateway-mb`` MB (default 50) over HTTP; its peak resident memory
   above its idle level (VmHWM minus VmRSS before, from /proc) as a multiple of the file.

Prints figures; asserts nothing about time. Run: ``python tests/benchmarks/bench_uploads.py``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

import httpx
import numpy as np
import redis

from chainrule.cli.stack import free_port
from chainrule.data.csv_upload import parse_csv
from chainrule.data.uploads import DatasetError


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


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def gateway_upload(redis_url: str, megabytes: float) -> None:
    """The gateway's resident memory above idle while it takes one valid upload."""
    data = valid_csv(megabytes)
    port, prefix = free_port(), f"bench-uploads-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "CHAINRULE_REDIS_URL": redis_url,
        "CHAINRULE_KEY_PREFIX": prefix,
        "CHAINRULE_GATEWAY_PORT": str(port),
        "CHAINRULE_MAX_UPLOAD_BYTES": str(len(data) + 1),
        "CHAINRULE_API_TOKENS": "",
    }
    base = f"http://127.0.0.1:{port}"
    gateway = subprocess.Popen(
        [sys.executable, "-m", "chainrule.gateway"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or gateway.poll() is not None:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.2)
        idle = proc_kib(gateway.pid, "VmRSS")
        start = time.perf_counter()
        reply = httpx.post(
            f"{base}/api/v1/datasets",
            files={"file": ("big.csv", data)},
            data={"label": "label"},
            timeout=600,
        )
        seconds = time.perf_counter() - start
        assert reply.status_code == 201, reply.text
        peak = proc_kib(gateway.pid, "VmHWM")
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{prefix}:*", count=500):
            client.delete(key)
    above = (peak - idle) * 1024
    print(
        f"the gateway took a {len(data) / 1e6:.1f} MB CSV in {seconds:.1f} s: resident memory "
        f"{idle / 1024:.0f} MiB idle, peak {peak / 1024:.0f} MiB, {above / 1e6:.0f} MB above "
        f"idle = {above / len(data):.1f}× the file"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=10.0, help="size of the valid CSV")
    parser.add_argument("--gateway", metavar="REDIS_URL", help="also measure a real gateway")
    parser.add_argument("--gateway-mb", type=float, default=50.0, help="its upload's size")
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
    if args.gateway:
        gateway_upload(args.gateway, args.gateway_mb)


if __name__ == "__main__":
    main()
