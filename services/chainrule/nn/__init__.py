"""The training math: activations and their derivatives, losses, the MLP's chain-rule
backward pass, optimizers, learning-rate schedules, gradient checks, diagnostics.

Pure numpy: no I/O, no gRPC, no Redis.
"""

from chainrule.nn.activations import ACTIVATIONS, Activation, get_activation
from chainrule.nn.diagnostics import LayerDiagnostics
from chainrule.nn.gradcheck import gradcheck, numeric_grad
from chainrule.nn.losses import LOSSES, OUTPUTS, VALID_OUTPUTS, Head
from chainrule.nn.mlp import MLP, param_count
from chainrule.nn.optim import OPTIMIZERS, SGD, Adagrad, Adam, Optimizer, OptState, make_optimizer
from chainrule.nn.schedules import SCHEDULES, Schedule
from chainrule.nn.types import Array, Params

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "MLP",
    "OPTIMIZERS",
    "OUTPUTS",
    "SCHEDULES",
    "SGD",
    "VALID_OUTPUTS",
    "Activation",
    "Adagrad",
    "Adam",
    "Array",
    "Head",
    "LayerDiagnostics",
    "OptState",
    "Optimizer",
    "Params",
    "Schedule",
    "get_activation",
    "gradcheck",
    "make_optimizer",
    "numeric_grad",
    "param_count",
]
