"""From an accepted spec to the math: the MLP and the optimizer it describes. (The spec's
own checks build them too: a spec is accepted only if the math core accepts it.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainrule.nn import MLP, Optimizer, make_optimizer

if TYPE_CHECKING:  # the specs import these builders for their own checks
    from chainrule.spec.job import JobSpec
    from chainrule.spec.model import ModelSpec
    from chainrule.spec.training import OptimizerSpec


def build_mlp(model: ModelSpec) -> MLP:
    return MLP(
        layers=model.layers,
        activation=model.activation,
        output=model.output,
        loss=model.loss,
        activation_derivative=model.activation_derivative,
        init=model.init,  # type: ignore[arg-type]  # checked against INITS in model.py
    )


def build_optimizer(optimizer: OptimizerSpec) -> Optimizer:
    """The optimizer with its options; the learning rate goes to each update, not here."""
    return make_optimizer(optimizer.name, **optimizer.options)


def build_training(spec: JobSpec) -> tuple[MLP, Optimizer]:
    """The network and the optimizer that ``spec`` describes."""
    return build_mlp(spec.model), build_optimizer(spec.training.optimizer)
