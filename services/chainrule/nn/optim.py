"""Optimizers: pure functions over the params dict with explicit state.

``state = opt.init(params)`` makes the state (a flat dict of arrays, ready to be
checkpointed as it is). ``opt.update_(params, grads, state, lr)`` changes ``params``
and ``state`` in place, as the parameter server does on its slice of θ;
``opt.update(params, grads, state, lr)`` returns new params and state and touches
nothing. Both run the same arithmetic.

Weight decay is the L2 kind: ``g ← g + weight_decay · θ`` before the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from chainrule.nn.types import Array, Params

OptState = dict[str, Array]
"""``"step"`` (0-d int64, updates done) plus per-parameter buffers such as ``"m/dense1.W"``."""


class Optimizer(Protocol):
    name: str

    def init(self, params: Params) -> OptState: ...

    def update_(self, params: Params, grads: Params, state: OptState, lr: float) -> None: ...

    def update(
        self, params: Params, grads: Params, state: OptState, lr: float
    ) -> tuple[Params, OptState]: ...


class _Base:
    name = ""
    buffers: tuple[str, ...] = ()
    weight_decay = 0.0

    def init(self, params: Params) -> OptState:
        state: OptState = {"step": np.zeros((), dtype=np.int64)}
        for buf in self.buffers:
            for key, p in params.items():
                state[f"{buf}/{key}"] = np.full_like(p, self._initial(buf))
        return state

    def _initial(self, buffer: str) -> float:
        return 0.0

    def update(
        self, params: Params, grads: Params, state: OptState, lr: float
    ) -> tuple[Params, OptState]:
        new_params = {k: v.copy() for k, v in params.items()}
        new_state = {k: v.copy() for k, v in state.items()}
        self.update_(new_params, grads, new_state, lr)
        return new_params, new_state

    def update_(self, params: Params, grads: Params, state: OptState, lr: float) -> None:
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(f"learning rate must be a finite number >= 0; got {lr!r}")
        if set(grads) != set(params):
            raise ValueError(f"grads have keys {sorted(grads)}; expected {sorted(params)}")
        state["step"] += 1
        t = int(state["step"])
        for key, p in params.items():
            g = grads[key]
            if self.weight_decay:
                g = g + self.weight_decay * p  # L2: d/dθ ½λ‖θ‖² = λθ
            self._step(key, p, g, state, lr, t)

    def _step(self, key: str, p: Array, g: Array, state: OptState, lr: float, t: int) -> None:
        raise NotImplementedError


def _check(name: str, value: float, low: float, high: float, *, high_open: bool = True) -> None:
    ok = low <= value < high if high_open else low <= value <= high
    if not (math.isfinite(value) and ok):
        bracket = ")" if high_open else "]"
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}{bracket}; got {value!r}")


@dataclass(frozen=True)
class SGD(_Base):
    """θ ← θ − lr·g, with heavy-ball or Nesterov momentum (v ← μv + g)."""

    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    name = "sgd"

    def __post_init__(self) -> None:
        _check("momentum", self.momentum, 0.0, 1.0)
        _check("weight_decay", self.weight_decay, 0.0, math.inf)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0; got momentum 0")

    @property
    def buffers(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("velocity",) if self.momentum else ()

    def _step(self, key: str, p: Array, g: Array, state: OptState, lr: float, t: int) -> None:
        if self.momentum:
            v = state[f"velocity/{key}"]
            v *= self.momentum
            v += g  # v ← μv + g
            g = g + self.momentum * v if self.nesterov else v  # look ahead along v
        p -= lr * g


@dataclass(frozen=True)
class Adam(_Base):
    """Adam with bias correction: m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ), θ ← θ − lr·m̂/(√v̂ + ε)."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    name = "adam"
    buffers = ("m", "v")

    def __post_init__(self) -> None:
        _check("beta1", self.beta1, 0.0, 1.0)
        _check("beta2", self.beta2, 0.0, 1.0)
        _check("eps", self.eps, 1e-30, math.inf)
        _check("weight_decay", self.weight_decay, 0.0, math.inf)

    def _step(self, key: str, p: Array, g: Array, state: OptState, lr: float, t: int) -> None:
        m, v = state[f"m/{key}"], state[f"v/{key}"]
        m *= self.beta1
        m += (1.0 - self.beta1) * g  # first moment
        v *= self.beta2
        v += (1.0 - self.beta2) * (g * g)  # second moment
        m_hat = m / (1.0 - self.beta1**t)
        v_hat = v / (1.0 - self.beta2**t)
        p -= lr * m_hat / (np.sqrt(v_hat) + self.eps)


@dataclass(frozen=True)
class Adagrad(_Base):
    """G ← G + g², θ ← θ − lr·g/(√G + ε)."""

    eps: float = 1e-10
    initial_accumulator: float = 0.0
    weight_decay: float = 0.0
    name = "adagrad"
    buffers = ("sum_sq",)

    def __post_init__(self) -> None:
        _check("eps", self.eps, 1e-30, math.inf)
        _check("initial_accumulator", self.initial_accumulator, 0.0, math.inf)
        _check("weight_decay", self.weight_decay, 0.0, math.inf)

    def _initial(self, buffer: str) -> float:
        return self.initial_accumulator

    def _step(self, key: str, p: Array, g: Array, state: OptState, lr: float, t: int) -> None:
        acc = state[f"sum_sq/{key}"]
        acc += g * g
        p -= lr * g / (np.sqrt(acc) + self.eps)


OPTIMIZERS: dict[str, type[_Base]] = {"sgd": SGD, "adam": Adam, "adagrad": Adagrad}


def make_optimizer(name: str, **hyper: float | bool) -> Optimizer:
    """The optimizer called ``name`` with its hyper-parameters (not the learning rate,
    which each update is given, so that a schedule can move it)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of: {', '.join(OPTIMIZERS)}")
    cls = OPTIMIZERS[name]
    allowed = [f for f in cls.__dataclass_fields__]  # type: ignore[attr-defined]
    unknown = sorted(set(hyper) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown {name} option(s) {', '.join(unknown)}; expected any of: {', '.join(allowed)}"
        )
    opt: Optimizer = cls(**hyper)
    return opt
