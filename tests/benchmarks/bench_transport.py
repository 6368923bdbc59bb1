"""Benchmark: what moving θ and gradients costs, and how fast sync steps go.

1. Push and Pull of a 1 M-parameter float32 model (4 MB) to a real parameter-server
   process over loopback gRPC: latency and effective GB/s, beside a raw loopback TCP
   socket's throughput for the same bytes, measured in the same run.
2. Sync steps/s of a tiny model (XOR, 2-8-1) with 2 workers on the whole local stack.

Prints figures; asserts nothing about time. Run: ``make bench``.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from chainrule.cli.stack import LocalStack, StackConfig
from chainrule.paramserver.client import ParamServerClient

PARAMS = 1_000_000
ROUNDS = 30
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def tcp_throughput(payload: int, rounds: int) -> float:
    """Seconds per ``payload`` bytes sent one way over a loopback TCP socket (median)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    data = b"\0" * payload

    def sink() -> None:
        conn, _ = server.accept()
        with conn:
            for _ in range(rounds):
                left = payload
                while left:
                    left -= len(conn.recv(min(left, 1 << 20)))
                conn.sendall(b"k")

    t = threading.Thread(target=sink, daemon=True)
    t.start()
    times = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        for _ in range(rounds):
            start = time.perf_counter()
            s.sendall(data)
            s.recv(1)
            times.append(time.perf_counter() - start)
    t.join()
    server.close()
    return statistics.median(times)


def median_seconds(fn: object, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_push_pull(stack: LocalStack) -> None:
    client = ParamServerClient(f"127.0.0.1:{stack.config.paramserver_port}")
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((1000, 1000), dtype=np.float32)}
    nbytes = params["W"].nbytes
    client.create_job("bench", params, "sgd")
    counter = iter(range(10**9))
    pull = median_seconds(lambda: client.pull("bench", -1), ROUNDS)

    def push_once() -> float:
        """One Push, timed; then its buffer is discarded, as an Apply would free it
        (buffers piling up would time fresh memory's page faults, not the transport)."""
        task_id = f"t{next(counter)}"
        start = time.perf_counter()
        client.push("bench", task_id, 0, params, 1, 0.0)
        elapsed = time.perf_counter() - start
        client.discard("bench", [task_id])
        return elapsed

    push = statistics.median(push_once() for _ in range(ROUNDS))
    no_change = median_seconds(lambda: client.pull("bench", 0), ROUNDS)
    client.drop_job("bench")
    client.close()
    tcp = tcp_throughput(nbytes, ROUNDS)
    print(f"1 M float32 parameters ({nbytes / 1e6:.0f} MB), median of {ROUNDS}:")
    print(f"  Pull (θ sent)        : {pull * 1e3:7.2f} ms  {nbytes / pull / 1e9:5.2f} GB/s")
    print(f"  Push (gradient)      : {push * 1e3:7.2f} ms  {nbytes / push / 1e9:5.2f} GB/s")
    print(f"  Pull (θ unchanged)   : {no_change * 1e3:7.2f} ms  (version only)")
    print(f"  raw loopback TCP     : {tcp * 1e3:7.2f} ms  {nbytes / tcp / 1e9:5.2f} GB/s")
    print(f"  gRPC / TCP throughput: Pull {tcp / pull:.0%}, Push {tcp / push:.0%}")


def bench_sync_steps(stack: LocalStack) -> None:
    spec = json.loads((EXAMPLES / "xor.json").read_text())
    spec["training"].update(steps=1000, eval_every=1000)
    job = httpx.post(f"{stack.gateway_url}/api/v1/jobs", json=spec, timeout=10).json()
    while True:
        detail = httpx.get(f"{stack.gateway_url}/api/v1/jobs/{job['id']}", timeout=10).json()
        if detail["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(0.2)
    points = httpx.get(f"{stack.gateway_url}/api/v1/jobs/{job['id']}/metrics", timeout=10).json()
    times = [p["time"] for p in points["points"]]
    rate = (len(times) - 1) / (times[-1] - times[0])
    print(
        f"sync steps, XOR 2-8-1, batch 32 per worker, 2 workers: {rate:.0f} steps/s "
        f"over {len(times)} steps ({detail['status']})"
    )


def main() -> None:
    config = StackConfig.on_free_ports(workers=2)  # embedded Redis
    with LocalStack(config) as stack:
        bench_push_pull(stack)
        bench_sync_steps(stack)


if __name__ == "__main__":
    main()
