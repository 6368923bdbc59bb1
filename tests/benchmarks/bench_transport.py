"""Benchmark: what moving θ and gradients costs, and how fast sync steps go.

1. Push and Pull of a 1 M-parameter float32 model (4 MB) to a real parameter-server
   process, over gRPC frames (TCP) and over the same-host Unix socket (rpc/local.py), beside the
   floors: a raw loopback TCP socket and a bare grpcio call sending the same bytes one
   way, each round taking every measurement in turn (side by side, on a machine whose
   pace drifts). Pulls are of a new version each time (θ encoded anew).
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
from collections.abc import Callable
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


class RawTcp:
    """A loopback TCP connection to a sink thread: ``send()`` times ``payload`` bytes
    one way (the sink answers one byte when it has them all)."""

    def __init__(self, payload: int) -> None:
        self.data = b"\0" * payload
        server = socket.create_server(("127.0.0.1", 0))
        self._sink = threading.Thread(target=self._drain, args=(server, payload), daemon=True)
        self._sink.start()
        self.socket = socket.create_connection(server.getsockname())

    @staticmethod
    def _drain(server: socket.socket, payload: int) -> None:
        conn, _ = server.accept()
        server.close()
        with conn:
            while True:
                left = payload
                while left:
                    chunk = conn.recv(min(left, 1 << 20))
                    if not chunk:
                        return
                    left -= len(chunk)
                conn.sendall(b"k")

    def send(self) -> float:
        start = time.perf_counter()
        self.socket.sendall(self.data)
        self.socket.recv(1)
        return time.perf_counter() - start

    def close(self) -> None:
        self.socket.close()
        self._sink.join(timeout=10)


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


class BareGrpc:
    """A bare grpcio call to another process: ``send()`` times ``payload`` bytes one way."""

    def __init__(self, payload: int) -> None:
        context = mp.get_context("spawn")
        ports = context.Queue()
        self.server = context.Process(target=sink_server, args=(ports,), daemon=True)
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{ports.get(timeout=60)}", GRPC_OPTIONS)
        self.sink = self.channel.unary_unary("/bench.Sink/Sink")
        self.data = b"\0" * payload

    def send(self) -> float:
        start = time.perf_counter()
        self.sink(self.data, timeout=60)
        return time.perf_counter() - start

    def close(self) -> None:
        self.channel.close()
        self.server.terminate()
        self.server.join(timeout=10)


class PushPull:
    """A job of ``params`` on a parameter server: ``push()`` times a Push (its buffer
    then discarded, as an Apply frees it), ``pull()`` a Pull of a new version (after an
    untimed Push and Apply, so θ is encoded anew every time)."""

    def __init__(self, client: ParamServerClient, job: str, params: Params) -> None:
        self.client, self.job, self.params = client, job, params
        client.create_job(job, params, "sgd")
        self.version, _ = client.pull(job, -1)
        self._ids = iter(range(10**9))

    def push(self) -> float:
        task_id = f"t{next(self._ids)}"
        start = time.perf_counter()
        self.client.push(self.job, task_id, self.version, self.params, 1, 0.0)
        seconds = time.perf_counter() - start
        self.client.discard(self.job, [task_id])
        return seconds

    def pull(self) -> float:
        task_id = f"a{next(self._ids)}"
        self.client.push(self.job, task_id, self.version, self.params, 1, 0.0)
        self.client.apply(self.job, self.version, [task_id], 0.0)
        start = time.perf_counter()
        self.version, theta = self.client.pull(self.job, self.version)
        seconds = time.perf_counter() - start
        assert theta is not None
        return seconds

    def close(self) -> None:
        self.client.drop_job(self.job)
        self.client.close()


def interleaved(
    probes: dict[str, Callable[[], float]], rounds: int, warmup: int = 3
) -> dict[str, float]:
    """Median seconds of each probe, the probes taken in turn within every round: the
    machine is shared, and its pace drifts from second to second, so every ratio is
    between figures taken side by side, not minutes apart."""
    times: dict[str, list[float]] = {name: [] for name in probes}
    for r in range(warmup + rounds):
        for name, probe in probes.items():
            seconds = probe()
            if r >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_push_pull(stack: LocalStack) -> None:
    target = f"127.0.0.1:{stack.config.paramserver_port}"
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((1000, 1000), dtype=np.float32)}
    nbytes = params["W"].nbytes
    paths = [("TCP (gRPC frames)", target)]
    if stack.socket_dir:
        paths.append(("same-host socket", f"local:{stack.socket_path('paramserver')}"))
    tcp, bare = RawTcp(nbytes), BareGrpc(nbytes)
    jobs = [
        PushPull(ParamServerClient(t, credentials=stack.leader_credentials()), f"bench-{i}", params)
        for i, (_, t) in enumerate(paths)
    ]
    try:
        probes: dict[str, Callable[[], float]] = {"tcp": tcp.send, "bare": bare.send}
        for (label, _), job in zip(paths, jobs, strict=True):
            probes[f"Push over {label}"], probes[f"Pull over {label}"] = job.push, job.pull
        medians = interleaved(probes, ROUNDS)
    finally:
        closers: list[Callable[[], None]] = [tcp.close, bare.close, *(j.close for j in jobs)]
        for close in closers:
            close()
    floor_tcp, floor_bare = medians.pop("tcp"), medians.pop("bare")
    print(f"1 M float32 parameters ({nbytes / 1e6:.0f} MB), median of {ROUNDS}, interleaved:")
    for label, seconds in [
        ("raw loopback TCP, one way", floor_tcp),
        ("bare grpcio bytes, one way", floor_bare),
    ]:
        print(f"  {label:<34}: {seconds * 1e3:6.2f} ms  {nbytes / seconds / 1e9:5.2f} GB/s")
    for label, seconds in medians.items():
        print(
            f"  {label:<34}: {seconds * 1e3:6.2f} ms  {nbytes / seconds / 1e9:5.2f} GB/s  "
            f"= {floor_tcp / seconds:4.2f}x raw TCP, {floor_bare / seconds:4.2f}x bare grpcio"
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
