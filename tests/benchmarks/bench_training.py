"""Benchmark: training throughput of chainrule beside an in-process numpy loop and Ray's
parameter-server example, on the same MLPs and the same rows per step, in one run.

Two models, both relu with softmax + cross-entropy, float32, on random features with
10 random classes (nothing is learnt; only the arithmetic and the traffic count):

- ``tiny``: 64-64-10, batch 64 per worker;
- ``big``: 784-512-512-10, batch 256 per worker.

Every framework trains with 2 workers, SGD (momentum 0.9) and the gradient of
2 × batch rows per synchronous step:

(a) in-process: one ``MLP.loss_and_grad`` on 2 × batch rows and one optimizer update
    per step, numpy's default BLAS threads;
(b) Ray's documented "Parameter Server" example: a ``ParameterServer`` actor
    (``apply_gradients(*grads)``, ``get_weights``) and 2 ``DataWorker`` actors, the
    model computed by the same ``chainrule.nn`` MLP. Two drivers: the docs' loop (the
    gradient refs go straight to ``apply_gradients`` and its weights ref to the next
    step's workers) and one that ``ray.get``\\s both gradients in the driver every step;
(c) chainrule: the whole local stack (paramserver, scheduler, 2 workers, gateway,
    embedded Redis), jobs submitted through REST on an uploaded NPZ dataset, rates read
    from the job's metric points (one per step, the first 10% and the last skipped).
    ``eval_every`` and ``checkpoint_every`` are the step count, so neither evaluation nor
    checkpoints are timed. Async mode too (there a step is one worker's gradient).

Besides, a floor: a bare grpcio echo (generic handler, raw bytes, server in another
process), tiny round trip and 4 MB echo, with raw loopback TCP to the same process for
scale; chainrule's tiny sync step as a multiple of the bare gRPC round trip. And the
share of the cores other work took during each phase (the machines are shared).

Prints figures and ratios; asserts nothing about time (machines here are shared).
Run: ``make bench`` or ``python tests/benchmarks/bench_training.py [--quick]``; Ray comes
with ``pip install -e '.[bench]'`` and is skipped when missing.
"""

from __future__ import annotations

import argparse
import importlib
import io
import multiprocessing as mp
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from queue import Empty
from typing import Any

import grpc
import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from threadpoolctl import threadpool_info

from chainrule.cli.stack import HOST, LocalStack, StackConfig
from chainrule.data import targets
from chainrule.nn import MLP, Params
from chainrule.nn.optim import Optimizer, OptState
from chainrule.spec import ModelSpec, OptimizerSpec, build_mlp, build_optimizer

WORKERS = 2
CLASSES = 10
LR, MOMENTUM = 0.01, 0.9
HOLDOUT = 0.1
MAX_MESSAGE = 64 * 1024 * 1024
ECHO_METHOD = "/bench.Echo/Echo"


@dataclass(frozen=True)
class Model:
    name: str
    layers: list[int]
    batch: int  # per worker
    rows: int  # of the random dataset
    steps: int  # measured steps (sync); --quick divides
    warmup: int  # in-process and Ray: untimed steps first

    @property
    def rows_per_step(self) -> int:
        return WORKERS * self.batch

    @property
    def described(self) -> str:
        return (
            f"MLP {'-'.join(map(str, self.layers))} relu, softmax + cross_entropy, "
            f"{WORKERS} workers × batch {self.batch} = {self.rows_per_step} rows/step"
        )


MODELS = (
    Model("tiny", [64, 64, CLASSES], batch=64, rows=20_000, steps=2000, warmup=200),
    Model("big", [784, 512, 512, CLASSES], batch=256, rows=8192, steps=300, warmup=20),
)


@dataclass
class Rate:
    steps_per_s: float
    samples_per_s: float
    steps: int  # measured

    @property
    def step_ms(self) -> float:
        return 1e3 / self.steps_per_s


@dataclass
class Results:
    rtt_s: float = float("nan")
    echo_s: float = float("nan")
    tcp_rtt_s: float = float("nan")
    tcp_echo_s: float = float("nan")
    echo_bytes: int = 4_000_000
    inproc: dict[str, Rate] = field(default_factory=dict)
    inproc_diag: dict[str, Rate] = field(default_factory=dict)
    ray: dict[str, Rate] = field(default_factory=dict)
    ray_get: dict[str, Rate] = field(default_factory=dict)
    ray_note: str = ""
    sync: dict[str, Rate] = field(default_factory=dict)
    async_: dict[str, Rate] = field(default_factory=dict)
    breakdown: dict[str, list[str]] = field(default_factory=dict)
    threads: dict[str, str] = field(default_factory=dict)
    transport: str = ""  # how the stack moved θ and gradients


def say(message: str) -> None:
    """Progress, on stderr (the figures go to stdout at the end)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class _Sample:
    busy: int  # ticks of all cores not idle
    total: int
    mine: dict[int, int]  # pid -> utime + stime, this process and its descendants
    others: dict[int, int]  # the same for every other process


class OtherLoad:
    """The share of the host's cores kept busy by work other than this benchmark's
    (itself and all its descendants: the stack, Ray, the echo server), by phase: other
    processes, and time the hypervisor steals. Read from /proc every second. Machines
    here are shared; this says when a figure is low because of someone else, and who.
    Linux only (elsewhere it reports nothing)."""

    def __init__(self, interval: float = 1.0) -> None:
        self.phase = "start"
        self.busy: dict[str, list[int]] = {}  # phase -> [others' ticks, all ticks]
        self.by_command: dict[str, int] = {}  # another process's command line -> ticks
        self._commands: dict[int, str] = {}
        # processes of ours that are not our descendants (a daemonized Redis), by a
        # piece of their command line
        self.adopted: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def __enter__(self) -> OtherLoad:
        if os.path.exists("/proc/stat"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def shares(self) -> dict[str, float]:
        return {phase: others / max(total, 1) for phase, (others, total) in self.busy.items()}

    def busiest(self, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` other command lines that used the most CPU, in CPU seconds."""
        ranked = sorted(self.by_command.items(), key=lambda kv: -kv[1])[:n]
        hz = os.sysconf("SC_CLK_TCK")
        return [(command[:80], ticks / hz) for command, ticks in ranked if ticks]

    def _run(self, interval: float) -> None:
        last = self._sample()
        while not self._stop.wait(interval):
            now = self._sample()
            if now is None or last is None:
                return
            # per process: one born meanwhile counts all its ticks, one that ended
            # meanwhile loses its last second (children's ticks are not used: reaping
            # one would count its whole life again)
            mine = sum(max(0, t - last.mine.get(pid, 0)) for pid, t in now.mine.items())
            for pid, ticks in now.others.items():
                used = ticks - last.others.get(pid, 0)
                if used <= 0:
                    continue
                command = self._command(pid)
                if any(text in command for text in self.adopted):
                    mine += used
                else:
                    self.by_command[command] = self.by_command.get(command, 0) + used
            entry = self.busy.setdefault(self.phase, [0, 0])
            entry[0] += max(0, now.busy - last.busy - mine)
            entry[1] += now.total - last.total
            last = now

    def _command(self, pid: int) -> str:
        if pid not in self._commands:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    words = f.read().split(b"\0")
                text = " ".join(w.decode(errors="replace") for w in words if w)
                if not text:  # a kernel thread
                    with open(f"/proc/{pid}/comm") as f:
                        text = f"[{f.read().strip()}]"
            except OSError:
                text = f"pid {pid}"
            self._commands[pid] = text
        return self._commands[pid]

    @staticmethod
    def _sample() -> _Sample | None:
        try:
            with open("/proc/stat") as f:
                cpu = [int(v) for v in f.readline().split()[1:9]]
            parents: dict[int, int] = {}
            used: dict[int, int] = {}
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:  # it ended meanwhile
                    continue
                pid = int(entry.name)
                parents[pid] = int(fields[1])
                used[pid] = int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            return None
        children: dict[int, list[int]] = {}
        for pid, parent in parents.items():
            children.setdefault(parent, []).append(pid)
        mine: dict[int, int] = {}
        todo = [os.getpid()]
        while todo:
            pid = todo.pop()
            mine[pid] = used.pop(pid, 0)
            todo.extend(children.get(pid, []))
        idle = cpu[3] + cpu[4]  # idle, iowait
        return _Sample(sum(cpu) - idle, sum(cpu), mine, used)


def dataset(model: Model) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((model.rows, model.layers[0]), dtype=np.float32)
    y = rng.integers(0, CLASSES, size=model.rows, dtype=np.int64)
    return X, y


def model_json(model: Model) -> dict[str, Any]:
    return {
        "layers": model.layers,
        "activation": "relu",
        "output": "softmax",
        "loss": "cross_entropy",
    }


def optimizer_json() -> dict[str, Any]:
    return {"name": "sgd", "lr": LR, "momentum": MOMENTUM}


def build(model: Model) -> tuple[MLP, Optimizer]:
    """The network and optimizer a chainrule job on ``model`` builds."""
    net = build_mlp(ModelSpec.model_validate(model_json(model)))
    return net, build_optimizer(OptimizerSpec.model_validate(optimizer_json()))


def blas_threads() -> str:
    counts = sorted({str(pool["num_threads"]) for pool in threadpool_info()})
    return "/".join(counts) or "?"


def steady_rate(steps: list[int], times: list[float], rows_per_step: int) -> Rate:
    """Steps/s between the point at 10% and the last but one (start-up and the final
    evaluation left out)."""
    first, last = len(steps) // 10, len(steps) - 2
    done = steps[last] - steps[first]
    rate = done / (times[last] - times[first])
    return Rate(rate, rate * rows_per_step, done)


# -- the floor: bare grpcio ----------------------------------------------------------------


def _echo(request: bytes, context: object) -> bytes:
    return request


def echo_server(ports: Any) -> None:
    """A grpcio server echoing raw bytes (no protobuf): run in its own process."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=4),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                _echo, request_deserializer=None, response_serializer=None
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"{HOST}:0")
    server.start()
    tcp = socket.create_server((HOST, 0))
    threading.Thread(target=_tcp_echo, args=(tcp,), daemon=True).start()
    ports.put((port, tcp.getsockname()[1]))
    server.wait_for_termination()


def _tcp_echo(listener: socket.socket) -> None:
    """Raw TCP beside it: an 8-byte length, then that many bytes, sent back (into and
    out of one buffer: fresh 4 MB buffers would time page faults, not the transport)."""
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    header, buffer = memoryview(bytearray(8)), memoryview(bytearray(MAX_MESSAGE))
    with conn:
        while _recv_into(conn, header):
            n = int.from_bytes(header, "little")
            _recv_into(conn, buffer[:n])
            conn.sendall(buffer[:n])


def _recv_into(conn: socket.socket, view: memoryview) -> bool:
    """Fill ``view`` from ``conn``; False if the peer closed first."""
    got = 0
    while got < len(view):
        k = conn.recv_into(view[got:])
        if not k:
            return False
        got += k
    return True


def median_call(call: Callable[[bytes], object], payload: bytes, rounds: int) -> float:
    for _ in range(max(5, rounds // 10)):
        call(payload)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call(payload)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _first_from(queue: Any, child: Any, timeout: float) -> Any:
    """The first item ``child`` puts on ``queue``; an error as soon as it has died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return queue.get(timeout=0.5)
        except Empty:
            if not child.is_alive():
                raise RuntimeError(f"the echo server exited ({child.exitcode})") from None
    raise TimeoutError(f"the echo server did not start within {timeout:.0f} s")


def bench_floor(results: Results, quick: bool) -> None:
    say("floor: bare grpcio and raw TCP echo")
    context = mp.get_context("spawn")
    ports = context.Queue()
    server = context.Process(target=echo_server, args=(ports,), daemon=True)
    server.start()
    try:
        port, tcp_port = _first_from(ports, server, timeout=60)
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ]
        with grpc.insecure_channel(f"{HOST}:{port}", options=options) as ch:
            grpc.channel_ready_future(ch).result(timeout=30)
            echo = ch.unary_unary(ECHO_METHOD)  # no serializers: bytes in, bytes out
            results.rtt_s = median_call(echo, b"x" * 16, 200 if quick else 500)
            payload = os.urandom(results.echo_bytes)
            results.echo_s = median_call(echo, payload, 10 if quick else 30)
        with socket.create_connection((HOST, tcp_port)) as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            echoed = memoryview(bytearray(len(payload)))

            def tcp_echo(data: bytes) -> object:
                conn.sendall(len(data).to_bytes(8, "little"))
                conn.sendall(data)
                return _recv_into(conn, echoed[: len(data)])

            results.tcp_rtt_s = median_call(tcp_echo, b"x" * 16, 200 if quick else 500)
            results.tcp_echo_s = median_call(tcp_echo, payload, 10 if quick else 30)
    finally:
        server.terminate()
        server.join(timeout=10)
        if server.is_alive():
            server.kill()
            server.join()


# -- (a) in-process numpy ------------------------------------------------------------------


def bench_in_process(model: Model, steps: int, diagnostics: bool = False) -> Rate:
    X, labels = dataset(model)
    net, opt = build(model)
    rng = np.random.default_rng(1)
    params = net.init(rng)
    state = opt.init(params)
    n = model.rows_per_step

    def step() -> None:
        rows = rng.integers(0, len(X), size=n)
        y = targets(labels[rows], net.layers[-1], net.head.loss)
        if diagnostics:  # with the per-layer diagnostics chainrule's workers report
            _, grads, _ = net.loss_and_grad(params, X[rows], y, diagnostics=True)
        else:
            _, grads = net.loss_and_grad(params, X[rows], y)
        opt.update_(params, grads, state, LR)

    for _ in range(model.warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    rate = steps / (time.perf_counter() - start)
    return Rate(rate, rate * n, steps)


# -- (b) Ray's parameter-server example ----------------------------------------------------


class ParameterServer:
    """The docs' ParameterServer: holds θ, applies the workers' gradients (averaged, as a
    chainrule sync step does), hands out θ."""

    def __init__(self, model: Model) -> None:
        self.net, self.opt = build(model)
        self.params: Params = self.net.init(np.random.default_rng(1))
        self.state: OptState = self.opt.init(self.params)

    def apply_gradients(self, *gradients: Params) -> Params:
        mean = {k: np.mean([g[k] for g in gradients], axis=0) for k in self.params}
        self.opt.update_(self.params, mean, self.state, LR)
        return self.params

    def get_weights(self) -> Params:
        return self.params

    def blas_threads(self) -> str:
        return blas_threads()


class DataWorker:
    """The docs' DataWorker: the gradient of one minibatch of its data at the θ given."""

    def __init__(self, model: Model, X: np.ndarray, labels: np.ndarray, seed: int) -> None:
        self.net, _ = build(model)
        self.X, self.labels, self.batch = X, labels, model.batch
        self.rng = np.random.default_rng(seed)

    def compute_gradients(self, weights: Params) -> Params:
        rows = self.rng.integers(0, len(self.X), size=self.batch)
        y = targets(self.labels[rows], self.net.layers[-1], self.net.head.loss)
        _, grads = self.net.loss_and_grad(weights, self.X[rows], y)
        return grads

    def blas_threads(self) -> str:
        return blas_threads()


def import_ray() -> Any:
    """The ray module, or None (typed Any: ray ships no stubs mypy can follow here)."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        return None


def bench_ray(ray: Any, models: list[tuple[Model, int]], results: Results) -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    say("ray: starting")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:
        if __name__ != "__main__":  # imported: ship the actor classes by value, not by name
            ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        server_class = ray.remote(ParameterServer)
        worker_class = ray.remote(DataWorker)
        for model, steps in models:
            say(f"ray: {model.name}")
            X, labels = dataset(model)
            X_ref, y_ref = ray.put(X), ray.put(labels)
            ps = server_class.remote(model)
            workers = [worker_class.remote(model, X_ref, y_ref, seed) for seed in range(WORKERS)]
            threads = ray.get([ps.blas_threads.remote(), workers[0].blas_threads.remote()])
            results.threads["Ray actors"] = f"ps {threads[0]}, worker {threads[1]}"

            def chained(n: int, weights: Any, ps: Any = ps, workers: Any = workers) -> Any:
                """The docs' synchronous loop: refs in, refs out, no driver round trip."""
                for _ in range(n):
                    grads = [w.compute_gradients.remote(weights) for w in workers]
                    weights = ps.apply_gradients.remote(*grads)
                ray.get(weights)
                return weights

            def fetched(n: int, weights: Any, ps: Any = ps, workers: Any = workers) -> Any:
                """Both gradients ray.get'ed by the driver every step, then applied."""
                for _ in range(n):
                    grads = ray.get([w.compute_gradients.remote(weights) for w in workers])
                    weights = ps.apply_gradients.remote(*grads)
                ray.get(weights)
                return weights

            weights = ps.get_weights.remote()
            for loop, into in ((chained, results.ray), (fetched, results.ray_get)):
                weights = loop(model.warmup, weights)
                start = time.perf_counter()
                weights = loop(steps, weights)
                rate = steps / (time.perf_counter() - start)
                into[model.name] = Rate(rate, rate * model.rows_per_step, steps)
            for actor in (ps, *workers):
                ray.kill(actor)
            del X_ref, y_ref, weights
    finally:
        ray.shutdown()
        say("ray: shut down")


# -- (c) chainrule -------------------------------------------------------------------------


def job_spec(model: Model, dataset_id: str, mode: str, steps: int) -> dict[str, Any]:
    return {
        "name": f"bench-{model.name}-{mode}",
        "dataset": {"id": dataset_id, "holdout": HOLDOUT},
        "model": model_json(model),
        "training": {
            "mode": mode,
            "workers": WORKERS,
            "batch_size": model.batch,
            "steps": steps,
            "optimizer": optimizer_json(),
            "eval_every": steps,
            "checkpoint_every": steps,
            "seed": 0,
        },
    }


def upload(api: httpx.Client, model: Model) -> str:
    X, y = dataset(model)
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    files = {"file": (f"random-{model.name}.npz", buffer.getvalue(), "application/octet-stream")}
    reply = api.post("/api/v1/datasets", files=files, data={"name": f"random {model.name}"})
    if reply.status_code != 201:
        raise RuntimeError(f"upload refused: {reply.status_code} {reply.text}")
    return str(reply.json()["id"])


def run_job(api: httpx.Client, spec: dict[str, Any], timeout: float = 300) -> list[dict[str, Any]]:
    """Submit ``spec``, wait for its end, return its metric points (every page)."""
    reply = api.post("/api/v1/jobs", json=spec)
    if reply.status_code != 201:
        raise RuntimeError(f"job refused: {reply.status_code} {reply.text}")
    job_id = reply.json()["id"]
    deadline = time.monotonic() + timeout
    while True:
        detail = api.get(f"/api/v1/jobs/{job_id}").json()
        if detail["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {detail['status']} after {timeout:.0f} s")
        time.sleep(0.25)
    if detail["status"] != "SUCCEEDED":
        raise RuntimeError(f"job {job_id} ended {detail['status']}: {detail}")
    points: list[dict[str, Any]] = []
    start: int | None = 0
    while start is not None:
        page = api.get(f"/api/v1/jobs/{job_id}/metrics", params={"start_step": start}).json()
        points.extend(page["points"])
        start = page["next_start_step"]
    return points


Scrape = dict[tuple[str, str], list[float]]
"""(histogram, its label values) -> [sum, count], added over every service process."""


def scrape(stack: LocalStack) -> Scrape:
    out: Scrape = {}
    for port in stack.metrics_ports.values():
        text = httpx.get(f"http://{HOST}:{port}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                for suffix, at in (("_sum", 0), ("_count", 1)):
                    if sample.name.endswith(suffix) and sample.name.endswith("_seconds" + suffix):
                        label = ",".join(v for k, v in sorted(sample.labels.items()))
                        key = (sample.name.removesuffix(suffix), label)
                        out.setdefault(key, [0.0, 0.0])[at] += sample.value
    return out


def breakdown(before: Scrape, after: Scrape, steps: int) -> list[str]:
    """Where a job's time went, by the services' own latency histograms: mean ms per
    call and calls per step of everything that was called during the job. Generic on
    purpose: the data plane changes (which RPCs a step makes) and this keeps up."""
    rows: dict[str, list[str]] = {}
    prefix = "chainrule_"
    for (name, label), (total, count) in sorted(after.items()):
        old_total, old_count = before.get((name, label), [0.0, 0.0])
        calls = count - old_count
        if calls <= 0:
            continue
        service, _, what = name.removeprefix(prefix).removesuffix("_seconds").partition("_")
        what = what.removesuffix("_duration")
        shown = f"{label or what} {1e3 * (total - old_total) / calls:.2f} ms"
        if calls != steps:
            shown += f" ×{calls / steps:.2g}"
        rows.setdefault(f"{service} {what if label else ''}".strip(), []).append(shown)
    return [f"{group}: {', '.join(items)}" for group, items in rows.items()]


def bench_chainrule(models: list[tuple[Model, int]], results: Results, others: OtherLoad) -> None:
    say("chainrule: starting the local stack")
    config = StackConfig.on_free_ports(workers=WORKERS, metrics_ports=True)
    with (
        LocalStack(config) as stack,
        httpx.Client(base_url=stack.gateway_url, timeout=60) as api,
    ):
        if stack.redis_url.startswith("unix://"):  # the embedded Redis daemonizes itself
            others.adopted.add(stack.redis_url.removeprefix("unix://"))
        results.threads["chainrule workers"] = "1 (CHAINRULE_BLAS_THREADS default)"
        sockets = stack.socket_dir  # chainrule up: same-host Unix sockets (rpc/local.py)
        results.transport = f"Unix sockets ({sockets})" if sockets else "gRPC over loopback TCP"
        for model, steps in models:
            say(f"chainrule: uploading the {model.name} dataset")
            dataset_id = upload(api, model)
            for mode, into in (("sync", results.sync), ("async", results.async_)):
                say(f"chainrule: {model.name} {mode}, {steps} steps")
                before = scrape(stack)
                points = run_job(api, job_spec(model, dataset_id, mode, steps))
                after = scrape(stack)
                per_step = model.rows_per_step if mode == "sync" else model.batch
                into[model.name] = steady_rate(
                    [p["step"] for p in points], [p["time"] for p in points], per_step
                )
                results.breakdown[f"{model.name} {mode}"] = breakdown(before, after, len(points))
    say("chainrule: stack stopped")


# -- the report ----------------------------------------------------------------------------


def report(
    results: Results,
    models: list[tuple[Model, int]],
    others: OtherLoad,
    elapsed: float,
) -> None:
    def line(label: str, rate: Rate | None, extra: str = "") -> None:
        if rate is None:
            print(f"  {label:<36}: skipped")
            return
        print(
            f"  {label:<36}: {rate.steps_per_s:8.1f} steps/s {rate.samples_per_s:10.0f} "
            f"samples/s  ({rate.step_ms:6.2f} ms/step){extra}"
        )

    def ratio(a: Rate | None, b: Rate | None) -> str:
        return "n/a" if a is None or b is None else f"{a.samples_per_s / b.samples_per_s:.2f}"

    rtt_us = results.rtt_s * 1e6
    mb = results.echo_bytes / 1e6
    print(f"floor: echo servers in another process, median round trips ({mb:.0f} MB goes")
    print(f"each way; GB/s = {mb:.0f} MB / round trip)")
    for label, rtt, echo in (
        ("bare grpcio, generic handler, bytes", results.rtt_s, results.echo_s),
        ("raw loopback TCP, same payloads", results.tcp_rtt_s, results.tcp_echo_s),
    ):
        print(
            f"  {label:<36}: 16 B {rtt * 1e6:7.1f} µs   4 MB {echo * 1e3:6.2f} ms "
            f"{results.echo_bytes / echo / 1e9:5.2f} GB/s"
        )
    print(f"BLAS threads: {', '.join(f'{k} {v}' for k, v in results.threads.items())}")
    if results.transport:
        print(f"chainrule's θ and gradients went through {results.transport}")
    for model, steps in models:
        name = model.name
        print()
        print(f"{name}: {model.described}, {steps} measured steps")
        line("in-process numpy", results.inproc.get(name))
        line("in-process, + layer diagnostics", results.inproc_diag.get(name))
        if results.ray_note:
            print(f"  {'Ray PS example':<36}: {results.ray_note}")
        else:
            line("Ray PS example (docs: refs chained)", results.ray.get(name))
            line("Ray PS, driver ray.get per step", results.ray_get.get(name))
        sync, async_ = results.sync.get(name), results.async_.get(name)
        line("chainrule sync", sync)
        line("chainrule async", async_, "  (a step = 1 worker's gradient)")
        inproc = results.inproc.get(name)
        print(f"  {'chainrule sync / in-process':<36}: {ratio(sync, inproc)}")
        print(
            f"  {'chainrule sync / Ray':<36}: {ratio(sync, results.ray.get(name))} (chained), "
            f"{ratio(sync, results.ray_get.get(name))} (ray.get)"
        )
        print(f"  {'chainrule async / in-process':<36}: {ratio(async_, inproc)}")
        if sync is not None and name == "tiny":
            multiple = sync.step_ms * 1e3 / rtt_us
            print(f"  {'chainrule sync step / bare RTT':<36}: {multiple:.1f}×")
        for mode in ("sync", "async"):
            rows = results.breakdown.get(f"{name} {mode}", [])
            if rows:
                print(f"  chainrule {mode}, services' histograms, whole job (ms/call ×calls/step):")
            for row in rows:
                print(f"    {row}")
    print()
    shares = ", ".join(f"{phase} {share:.0%}" for phase, share in others.shares().items())
    print(f"other work's share of the {os.cpu_count()} cores, by phase: {shares or 'n/a'}")
    if any(share > 0.1 for share in others.shares().values()):
        print("  well above 0%: something else shared the cores, so those figures are low;")
        print("  busiest other processes (CPU seconds during the run):")
        for command, seconds in others.busiest():
            print(f"    {seconds:6.1f} s  {command}")
    print(f"total {elapsed:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a quarter of the steps")
    args = parser.parse_args()
    started = time.perf_counter()
    divide = 4 if args.quick else 1
    models = [(m, m.steps // divide) for m in MODELS]
    results = Results()
    results.threads["in-process"] = blas_threads()
    with OtherLoad() as others:
        others.phase = "floor"
        bench_floor(results, args.quick)
        others.phase = "in-process"
        for model, steps in models:
            say(f"in-process: {model.name}")
            results.inproc[model.name] = bench_in_process(model, steps)
            results.inproc_diag[model.name] = bench_in_process(model, steps, diagnostics=True)
        others.phase = "Ray"
        ray = import_ray()
        if ray is None:
            results.ray_note = "ray not installed (pip install -e '.[bench]'); skipped"
            print(results.ray_note, flush=True)
        else:
            bench_ray(ray, models, results)
        others.phase = "chainrule"
        bench_chainrule(models, results, others)
    report(results, models, others, time.perf_counter() - started)


if __name__ == "__main__":
    main()
