"""The job spec: one model, one dataset, one way to train it.

A spec is what ``POST /api/v1/jobs`` takes and what a job record keeps::

    {"name": "xor-tanh", "dataset": {"name": "xor", "holdout": 0.2},
     "model": {"layers": [2, 8, 1], "activation": "tanh", "output": "sigmoid", "loss": "bce"},
     "training": {"mode": "sync", "workers": 2, "batch_size": 32, "steps": 2000,
                  "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9},
                  "eval_every": 50, "seed": 0}}

``JobSpec.model_validate(obj)`` (or ``model_validate_json(text)``) checks it and raises
``pydantic.ValidationError`` whose errors carry the path of the offending field, e.g.
``("training", "steps")``. Names, output/loss pairs and optimizer options are checked with
the math core's own tables and constructors, so a spec accepted here is one every worker
and parameter server can build, and the messages read the same everywhere.
:func:`build_training` turns an accepted spec into the :class:`~chainrule.nn.MLP` and the
optimizer.

Targets, for whoever feeds the network: with one output unit (two-class datasets only)
the target is the 0/1 class label; with one unit per class it is the class index for
``cross_entropy`` and the one-hot row for ``bce`` and ``mse``. A regression set
(``linear``, or an upload with task ``regression``) has one real-valued target per row,
fitted by one ``identity`` output unit under ``mse``.

The package by concern: ``dataset``, ``model``, ``training``, ``job`` (the whole spec)
and ``checks`` (the errors they share); each part's ``build_*`` turns it into the math.
"""

from chainrule.spec.dataset import DATASETS, DEFAULT_SAMPLES, UPLOADS, DatasetSpec
from chainrule.spec.job import JobSpec, build_training, output_units, total_steps
from chainrule.spec.model import INITS, MAX_LAYERS, MAX_PARAMS, MAX_WIDTH, ModelSpec, build_mlp
from chainrule.spec.training import (
    DEFAULT_STEPS,
    MAX_SEED,
    MAX_STEPS,
    MODES,
    STALENESS_LR,
    TARGET_METRICS,
    EarlyStoppingSpec,
    OptimizerSpec,
    ScheduleSpec,
    TrainingSpec,
    build_optimizer,
)

__all__ = [
    "DATASETS",
    "DEFAULT_SAMPLES",
    "DEFAULT_STEPS",
    "INITS",
    "MAX_LAYERS",
    "MAX_PARAMS",
    "MAX_SEED",
    "MAX_STEPS",
    "MAX_WIDTH",
    "MODES",
    "STALENESS_LR",
    "TARGET_METRICS",
    "UPLOADS",
    "DatasetSpec",
    "EarlyStoppingSpec",
    "JobSpec",
    "ModelSpec",
    "OptimizerSpec",
    "ScheduleSpec",
    "TrainingSpec",
    "build_mlp",
    "build_optimizer",
    "build_training",
    "output_units",
    "total_steps",
]
