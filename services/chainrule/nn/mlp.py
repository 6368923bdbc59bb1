"""The multilayer perceptron: forward pass, chain-rule backward pass, initialisation.

Layer i (from 1) computes ``z_i = a_{i-1} @ W_i + b_i`` and ``a_i = f_i(z_i)``; the last
layer's f is the output activation of the :class:`~chainrule.nn.losses.Head`. Backprop
applies the chain rule layer by layer, from dJ/dz_L down::

    dJ/dW_i = a_{i-1}ᵀ · dJ/dz_i          dJ/db_i = Σₙ dJ/dz_i
    dJ/da_{i-1} = dJ/dz_i · W_iᵀ          dJ/dz_{i-1} = dJ/da_{i-1} ⊙ f'_{i-1}(z_{i-1})

**The seed question.** ``MLP(..., activation_derivative=False)`` replaces every f'(z)
by 1, the way ``w += lr·(y − ŷ)·x`` does. That direction *is* the true gradient when
there are no hidden layers and the output/loss pair cancels f' (identity + ½-squared
error, sigmoid + cross-entropy, softmax + cross-entropy): dJ/dz = (ŷ − y)/N there
anyway. It is *not* the gradient once there is a hidden layer with a non-linear f
(the error is fed back as if every unit were linear, including saturated and dead
ones) or when the output's f' does not cancel (sigmoid + mse drops σ(1 − σ)).
With identity activations f' = 1 already, so nothing changes, and that is the other
half of the lesson: a stack of identity layers is one linear map W₁W₂⋯ and no amount
of training makes it separate XOR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal, overload

import numpy as np

from chainrule.nn.activations import Activation, get_activation
from chainrule.nn.diagnostics import LayerDiagnostics, layer_diagnostics
from chainrule.nn.losses import Head
from chainrule.nn.types import Array, Params

InitName = Literal["auto", "glorot", "he"]
_FLOATS = (np.float32, np.float64)
# gradient checks evaluate the loss in extended precision where the platform has it
_CHECK_FLOATS = (*_FLOATS, np.longdouble)


def param_count(layers: Sequence[int]) -> int:
    """The weights and biases of an MLP of these layer sizes."""
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in pairwise(layers))


@dataclass
class _Cache:
    """What the forward pass keeps for the backward pass: layer inputs and pre-activations."""

    inputs: list[Array] = field(default_factory=list)  # a_0 = X, a_1, ..., a_{L-1}
    pre: list[Array] = field(default_factory=list)  # z_1, ..., z_L


class MLP:
    """A fully connected network with one activation per hidden layer.

    ``layers=[4, 16, 3]`` is 4 inputs, one hidden layer of 16 units, 3 outputs.
    ``activation`` is one name for every hidden layer or a list, one per hidden layer.
    """

    def __init__(
        self,
        layers: Sequence[int],
        activation: str | Sequence[str] = "tanh",
        output: str = "identity",
        loss: str = "mse",
        activation_derivative: bool = True,
        init: InitName = "auto",
    ) -> None:
        sizes = list(layers)
        if len(sizes) < 2 or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in sizes
        ):
            raise ValueError(
                "layers must list at least 2 positive integers (inputs, ..., outputs); "
                f"got {layers!r}"
            )
        n_hidden = len(sizes) - 2
        if isinstance(activation, str):
            names = [activation] * n_hidden
        elif isinstance(activation, (list, tuple)):
            names = list(activation)
        else:
            raise ValueError(f"activation must be a name or a list of names; got {activation!r}")
        if len(names) != n_hidden:
            raise ValueError(
                f"activation list has {len(names)} entries; "
                f"expected {n_hidden}, one per hidden layer"
            )
        if init not in ("auto", "glorot", "he"):
            raise ValueError(f"unknown init {init!r}; expected one of: auto, glorot, he")
        self.layers = [int(s) for s in sizes]
        self.hidden: list[Activation] = [get_activation(n) for n in names]
        self.head = Head(output, loss)
        self.activation_derivative = bool(activation_derivative)
        self.init_scheme: InitName = init

    @property
    def n_dense(self) -> int:
        return len(self.layers) - 1

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter names and shapes, in layer order."""
        out: dict[str, tuple[int, ...]] = {}
        for i, (fan_in, fan_out) in enumerate(pairwise(self.layers), start=1):
            out[f"dense{i}.W"] = (fan_in, fan_out)
            out[f"dense{i}.b"] = (fan_out,)
        return out

    def n_params(self) -> int:
        return param_count(self.layers)

    def init(self, rng: np.random.Generator, dtype: type[np.floating] = np.float32) -> Params:
        """Fresh parameters: Glorot-uniform before sigmoid/tanh-like f, He-normal before
        the ReLU family (or the scheme given to the constructor), zero biases."""
        try:
            dtype = np.dtype(dtype).type
        except TypeError:
            raise ValueError(f"dtype must be float32 or float64; got {dtype!r}") from None
        if dtype not in _FLOATS:
            raise ValueError(f"dtype must be float32 or float64; got {np.dtype(dtype).name}")
        params: Params = {}
        for i, (fan_in, fan_out) in enumerate(pairwise(self.layers), start=1):
            scheme = self.init_scheme if self.init_scheme != "auto" else self._auto_init(i)
            if scheme == "he":
                w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
            else:
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                w = rng.uniform(-limit, limit, size=(fan_in, fan_out))
            params[f"dense{i}.W"] = w.astype(dtype)
            params[f"dense{i}.b"] = np.zeros(fan_out, dtype=dtype)
        return params

    def _auto_init(self, i: int) -> str:
        if i <= len(self.hidden):
            return self.hidden[i - 1].init
        out = self.head.output
        return "glorot" if out == "softmax" else get_activation(out).init

    # -- forward / backward -------------------------------------------------------------

    def predict(self, params: Params, X: object) -> Array:
        """ŷ for ``X: (N, layers[0])``: class probabilities for the classifiers."""
        dtype = self._check_params(params)
        z, _ = self._forward(params, self._check_inputs(X, dtype), keep=False)
        return self.head.predict(z)

    def pre_activations(self, params: Params, X: object) -> list[Array]:
        """z_1 … z_L for ``X``, in the precision of ``params`` (the gradient check reads
        how close they come to an activation's kink)."""
        dtype = self._check_params(params)
        z_out, cache = self._forward(params, self._check_inputs(X, dtype), keep=True)
        return [*cache.pre, z_out]

    def objective(self, params: Params, X: object, y: object) -> np.floating:
        """J alone, forward pass only, in the precision of ``params`` (the gradient check
        evaluates it in extended precision)."""
        x, targets = self.validate(params, X, y)
        z, _ = self._forward(params, x, keep=False)
        return self.head.objective(z, targets)

    @overload
    def loss_and_grad(
        self, params: Params, X: object, y: object, diagnostics: Literal[False] = False
    ) -> tuple[float, Params]: ...

    @overload
    def loss_and_grad(
        self, params: Params, X: object, y: object, diagnostics: Literal[True]
    ) -> tuple[float, Params, list[LayerDiagnostics]]: ...

    def loss_and_grad(
        self, params: Params, X: object, y: object, diagnostics: bool = False
    ) -> tuple[float, Params] | tuple[float, Params, list[LayerDiagnostics]]:
        """The batch-mean loss J and ∂J/∂θ for every parameter; nothing is mutated.

        ``X: (N, layers[0])``; ``y`` as :meth:`Head.targets` describes. With
        ``diagnostics=True`` a third value lists per-layer derivative statistics.
        """
        x, targets = self.validate(params, X, y)
        return self.backprop(params, x, targets, diagnostics)

    def validate(self, params: Params, X: object, y: object) -> tuple[Array, Array]:
        """Check θ, the inputs and the targets as :meth:`loss_and_grad` does; returns the
        inputs in θ's dtype and the targets as the head takes them, ready for
        :meth:`backprop` (any rows of them: a worker checks its training rows once)."""
        dtype = self._check_params(params)
        x = self._check_inputs(X, dtype)
        return x, self.head.targets(y, x.shape[0], self.layers[-1], dtype)

    @overload
    def backprop(
        self, params: Params, x: Array, targets: Array, diagnostics: Literal[False] = False
    ) -> tuple[float, Params]: ...

    @overload
    def backprop(
        self, params: Params, x: Array, targets: Array, diagnostics: Literal[True]
    ) -> tuple[float, Params, list[LayerDiagnostics]]: ...

    @overload
    def backprop(
        self, params: Params, x: Array, targets: Array, diagnostics: bool
    ) -> tuple[float, Params] | tuple[float, Params, list[LayerDiagnostics]]: ...

    def backprop(
        self, params: Params, x: Array, targets: Array, diagnostics: bool = False
    ) -> tuple[float, Params] | tuple[float, Params, list[LayerDiagnostics]]:
        """:meth:`loss_and_grad` without its checks: ``params`` as :meth:`validate`
        accepted them, ``x`` and ``targets`` (rows of) what it returned."""
        z_out, cache = self._forward(params, x, keep=True)
        loss, dz, y_hat = self.head.loss_and_dlogits(z_out, targets, self.activation_derivative)
        grads: Params = {}
        derivs: list[Array] = []
        for i in range(self.n_dense, 0, -1):
            a_prev = cache.inputs[i - 1]
            grads[f"dense{i}.W"] = a_prev.T @ dz  # dJ/dW_i = a_{i-1}ᵀ dJ/dz_i
            grads[f"dense{i}.b"] = dz.sum(axis=0)  # dJ/db_i = Σₙ dJ/dz_i
            if i == 1:
                break
            da = dz @ params[f"dense{i}.W"].T  # dJ/da_{i-1} = dJ/dz_i W_iᵀ
            f = self.hidden[i - 2]
            if self.activation_derivative or diagnostics:
                d = f.derivative(cache.pre[i - 2], a_prev)
                derivs.append(d)
            # backprop through f_{i-1}: multiply by f'(z), or by 1 when the derivative is dropped
            if self.activation_derivative:
                da *= d
            dz = da
        grads = {name: grads[name] for name in self.shapes()}  # layer order, not backprop order
        if not diagnostics:
            return loss, grads
        derivs.reverse()
        hidden_out = cache.inputs[1:]  # a_1 … a_{L-1}
        diag = layer_diagnostics(
            self.hidden, self.head.output, grads, hidden_out, derivs, z_out, y_hat
        )
        return loss, grads, diag

    def _forward(self, params: Params, x: Array, keep: bool) -> tuple[Array, _Cache]:
        cache = _Cache()
        a = x
        for i in range(1, self.n_dense + 1):
            z = a @ params[f"dense{i}.W"]
            z += params[f"dense{i}.b"]
            if keep:
                cache.inputs.append(a)
            if i == self.n_dense:
                return z, cache
            if keep:
                cache.pre.append(z)
            a = self.hidden[i - 1].value(z)
        raise AssertionError("unreachable: an MLP has at least one dense layer")

    # -- validation at the edge ---------------------------------------------------------

    def _check_params(self, params: Params) -> np.dtype:
        expected = self.shapes()
        if not isinstance(params, dict) or set(params) != set(expected):
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(f"params must have exactly the keys {list(expected)}; got {got}")
        dtypes = {np.asarray(p).dtype for p in params.values()}
        if len(dtypes) != 1 or next(iter(dtypes)) not in _CHECK_FLOATS:
            raise ValueError(
                f"params must all be float32 or all float64; got {sorted(d.name for d in dtypes)}"
            )
        for name, shape in expected.items():
            if not isinstance(params[name], np.ndarray):
                kind = type(params[name]).__name__
                raise ValueError(f"param {name!r} must be a numpy array; got {kind}")
            if params[name].shape != shape:
                raise ValueError(f"param {name!r} has shape {params[name].shape}; expected {shape}")
        return next(iter(dtypes))

    def _check_inputs(self, X: object, dtype: np.dtype) -> Array:
        x = np.asarray(X)
        if x.ndim != 2 or x.shape[1] != self.layers[0]:
            raise ValueError(f"X has shape {x.shape}; expected (N, {self.layers[0]})")
        if x.shape[0] == 0:
            raise ValueError("X is empty; expected at least one row")
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise ValueError(f"X must be numeric; got dtype {x.dtype}")
        x = x.astype(dtype, copy=False)
        if not np.isfinite(x).all():
            row = int(np.argwhere(~np.isfinite(x))[0][0])
            raise ValueError(
                f"X contains NaN or infinity (first in row {row}); all values must be finite"
            )
        return x
