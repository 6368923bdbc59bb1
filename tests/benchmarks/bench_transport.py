"""Benchmark: what moving θ and gradients costs, and how fast sync steps go.

1. Push and Pull of a 1 M-parameter float32 model (4 MB) to a real parameter-server
   process, over gRPC frames (TCP) and over the same-host Unix socket (rpc/local.py), beside the
   floors measured in the same run: a raw loopback TCP socket and a bare grpcio call
   sending the same bytes one way. Pulls are of a new version each time (θ encoded anew).
2. Sync steps/s of a tiny model (XOR, 2-8-1) with 2 workers on the whole local stack.

Prints figures; asserts nothing about time. Run: ``make bench``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np

from chainrule.cli.stack import LocalStack, StackConfig
from chainrule.nn import Params
from chainrule.paramserver.client import ParamServerClient
from chainrule.rpc.codec import GRPC_OPTIONS

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


def _sink(request: bytes, context: object) -> bytes:
    return b"k"


def sink_server(ports: Any) -> None:
    """A bare grpcio server taking raw bytes (no protobuf), in its own process."""
    server = grpc.server(ThreadPoolExecutor(max_workers=4), options=GRPC_OPTIONS)
    handler = grpc.unary_unary_rpc_method_handler(_sink)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Sink", {"Sink": handler}),)
    )
    ports.put(server.add_insecure_port("127.0.0.1:0"))
    server.start()
    server.wait_for_termination()


def bare_grpc_floor(nbytes: int) -> float:
    """Seconds to send ``nbytes`` one way through bare grpcio to another process (median)."""
    context = mp.get_context("spawn")
    ports = context.Queue()
    server = context.Process(target=sink_server, args=(ports,), daemon=True)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{ports.get(timeout=60)}", GRPC_OPTIONS) as ch:
            sink = ch.unary_unary("/bench.Sink/Sink")
            data = b"\0" * nbytes
            for _ in range(5):
                sink(data)
            return median_seconds(lambda: sink(data), ROUNDS)
    finally:
        server.terminate()
        server.join(timeout=10)


def push_pull_seconds(client: ParamServerClient, job: str, params: Params) -> tuple[float, float]:
    """Median seconds of a Push (its buffer then discarded, as an Apply frees it) and of
    a Pull of a new version (each one after an Apply, so θ is encoded anew every time)."""
    client.create_job(job, params, "sgd")
    counter = iter(range(10**9))
    pushes, pulls = [], []
    version, _ = client.pull(job, -1)
    for _ in range(ROUNDS):
        task_id = f"t{next(counter)}"
        start = time.perf_counter()
        client.push(job, task_id, version, params, 1, 0.0)
        pushes.append(time.perf_counter() - start)
        client.discard(job, [task_id])
        task_id = f"a{next(counter)}"
        client.push(job, task_id, version, params, 1, 0.0)
        client.apply(job, version, [task_id], 0.0)
        start = time.perf_counter()
        version, theta = client.pull(job, version)
        pulls.append(time.perf_counter() - start)
        assert theta is not None
    client.drop_job(job)
    return statistics.median(pushes), statistics.median(pulls)


def bench_push_pull(stack: LocalStack) -> None:
    target = f"127.0.0.1:{stack.config.paramserver_port}"
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((1000, 1000), dtype=np.float32)}
    nbytes = params["W"].nbytes
    tcp = tcp_throughput(nbytes, ROUNDS)
    bare = bare_grpc_floor(nbytes)
    paths = [("TCP (gRPC frames)", target)]
    if stack.socket_dir:
        paths.append(("same-host socket", f"local:{stack.socket_path('paramserver')}"))
    print(f"1 M float32 parameters ({nbytes / 1e6:.0f} MB), median of {ROUNDS}:")
    print(f"  raw loopback TCP, one way   : {tcp * 1e3:6.2f} ms  {nbytes / tcp / 1e9:5.2f} GB/s")
    print(f"  bare grpcio bytes, one way  : {bare * 1e3:6.2f} ms  {nbytes / bare / 1e9:5.2f} GB/s")
    for label, path_target in paths:
        client = ParamServerClient(path_target, credentials=stack.leader_credentials())
        push, pull = push_pull_seconds(client, f"bench-{len(label)}", params)
        client.close()
        for what, seconds in (("Push", push), ("Pull", pull)):
            print(
                f"  {what} over {label:<26}: {seconds * 1e3:6.2f} ms  "
                f"{nbytes / seconds / 1e9:5.2f} GB/s  = {tcp / seconds:4.2f}x raw TCP, "
                f"{bare / seconds:4.2f}x bare grpcio"
            )


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
