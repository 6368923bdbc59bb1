"""A job's trained θ, as a download and as predictions.

θ comes from the final model the scheduler stores when a job ends
(``{prefix}:job:{id}:model``, an ``.npz`` of the parameters), or, while a job runs, from
the parameter servers' latest checkpoints (``{prefix}:job:{id}:ckpt:{shard}``) merged
over the shards, which must all be at the same version. The preprocess blob
(``{prefix}:job:{id}:preprocess``) holds what turns a raw row into the network's input
(``feature_mean``/``feature_std`` of a standardized dataset) and the class names.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import redis
from numpy.typing import NDArray

from chainrule.nn import Params
from chainrule.npz import npz_bytes
from chainrule.spec import DATASETS, JobSpec, build_mlp
from chainrule.store.blobs import model_key, preprocess_key
from chainrule.store.checkpoints import Checkpoint, checkpoint_key, held_versions

PREPROCESS_ARRAYS = ("feature_mean", "feature_std", "classes")


class ModelUnavailableError(Exception):
    """There is no θ to serve yet, or not a consistent one; ``retry`` says whether that
    may change within seconds (checkpoints being written)."""

    def __init__(self, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.message, self.retry = message, retry


FLOAT32_MAX = float(np.finfo(np.float32).max)


class RowValueError(ValueError):
    """A value the network cannot take: ``row`` and ``column`` say where."""

    def __init__(self, message: str, row: int, column: int) -> None:
        super().__init__(message)
        self.row, self.column = row, column


class DivergedModelError(ValueError):
    """θ gives NaN or infinite outputs: there is nothing sensible to predict."""


@dataclass(frozen=True)
class Model:
    params: Params
    version: int | None  # the checkpoint's θ version; None for the final model
    preprocess: dict[str, NDArray[np.generic]]

    @property
    def classes(self) -> list[str] | None:
        names = self.preprocess.get("classes")
        return None if names is None else [str(n) for n in names.tolist()]


@dataclass(frozen=True)
class Prediction:
    predictions: list[int] | list[float]
    probabilities: list[list[float]] | None


class ModelSource:
    """Reads θ and the preprocess blob of jobs under ``prefix``; ``client`` returns bytes."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    def load(self, job_id: str, spec: JobSpec) -> Model:
        """The job's θ (final, else from checkpoints) with its preprocessing;
        ModelUnavailableError when there is none yet."""
        final = self._get(model_key(self.prefix, job_id))
        if final is not None:
            params, version = _load_npz(final), None
        else:
            params, version = self._from_checkpoints(job_id)
        expected = build_mlp(spec.model).shapes()
        shapes = {name: tuple(array.shape) for name, array in params.items()}
        if shapes != expected:
            raise ModelUnavailableError(
                f"the stored θ of job {job_id} has arrays {sorted(shapes)} that do not match "
                f"the spec's model ({sorted(expected)}); try again shortly",
                retry=True,
            )
        raw = self._get(preprocess_key(self.prefix, job_id))
        preprocess = {} if raw is None else _load_npz(raw, PREPROCESS_ARRAYS)
        return Model(params, version, preprocess)

    def _from_checkpoints(self, job_id: str) -> tuple[Params, int]:
        """θ of the newest checkpoint version every shard holds (each keeps two)."""
        pattern = checkpoint_key(self.prefix, job_id, "*")
        names = (
            k.decode() if isinstance(k, bytes) else str(k)
            for k in self.client.scan_iter(match=pattern, count=500)
        )
        latest = sorted(k for k in names if not k.endswith((":previous", ":versions")))
        held = [held_versions(self.client, key) for key in latest]
        if not held or not all(held):
            raise ModelUnavailableError(
                f"job {job_id} has no model yet: no final θ and no checkpoint of θ (the first "
                "is written when training starts)"
            )
        common = set.intersection(*(set(h) for h in held))
        if not common:
            raise ModelUnavailableError(
                f"the checkpoints of job {job_id}'s θ shards share no version "
                f"({[sorted(h) for h in held]}; being written); try again shortly",
                retry=True,
            )
        version = max(common)
        params: Params = {}
        for shard in held:
            blob = self._get(shard[version])
            if blob is None:
                raise ModelUnavailableError(
                    f"a checkpoint of job {job_id} went away while it was read; try again",
                    retry=True,
                )
            checkpoint = Checkpoint.from_bytes(blob)
            params.update(checkpoint.params)
            version = checkpoint.version if version == -1 else version
        return params, version

    def _get(self, key: str | bytes) -> bytes | None:
        value = self.client.get(key)
        return None if value is None else bytes(value)  # type: ignore[arg-type]


def model_npz(model: Model, spec: JobSpec) -> bytes:
    """θ arrays by name, ``spec`` (the spec JSON, a 0-d unicode array) and the
    preprocessing arrays the job has, as one ``.npz``."""
    arrays: dict[str, NDArray[np.generic]] = dict(model.params)
    arrays["spec"] = np.array(spec.model_dump_json())
    arrays.update(model.preprocess)
    return npz_bytes(arrays)


def network_inputs(model: Model, rows: NDArray[np.float64]) -> NDArray[np.float64]:
    """Raw ``rows`` standardized as the job's data was; RowValueError for a value that
    lies beyond float32, the precision θ computes in."""
    x = rows
    mean, std = model.preprocess.get("feature_mean"), model.preprocess.get("feature_std")
    if mean is not None and std is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            x = (x - mean.astype(np.float64)) / np.where(std == 0, 1.0, std).astype(np.float64)
    too_large = ~(np.abs(x) <= FLOAT32_MAX)
    if too_large.any():
        row, column = (int(i) for i in np.argwhere(too_large)[0])
        raise RowValueError(
            f"row {row}, column {column}: {rows[row, column]!r} is beyond the range of "
            f"float32 (±{FLOAT32_MAX:.4g}) once standardized, which the model computes in",
            row,
            column,
        )
    return x


def predict(model: Model, spec: JobSpec, rows: NDArray[np.float64]) -> Prediction:
    """Predictions for raw ``rows: (N, layers[0])``: standardized as the job's data was,
    then a forward pass; class indices and probabilities for a classifier."""
    x = network_inputs(model, rows)
    net = build_mlp(spec.model)
    with np.errstate(over="ignore", invalid="ignore"):
        y_hat = net.predict(model.params, x).astype(np.float64)
    if not np.isfinite(y_hat).all():
        row = int(np.argwhere(~np.isfinite(y_hat))[0][0])
        raise DivergedModelError(
            f"the model's output for row {row} is NaN or infinite: θ has diverged "
            "(or the row is far outside the data it was trained on)"
        )
    if regression(spec, model):
        return Prediction([float(v) for v in y_hat[:, 0]], None)
    if y_hat.shape[1] == 1:  # one unit: ŷ is P(class 1)
        labels = (y_hat[:, 0] > 0.5).astype(np.int64)
        both = np.column_stack([1.0 - y_hat[:, 0], y_hat[:, 0]])
        probabilities = both if spec.model.output == "sigmoid" else None
    else:
        labels = y_hat.argmax(axis=1)
        probabilities = y_hat if spec.model.output in ("sigmoid", "softmax") else None
    rows_out = None if probabilities is None else probabilities.tolist()
    return Prediction([int(v) for v in labels], rows_out)


def regression(spec: JobSpec, model: Model) -> bool:
    """Whether the job predicts a real value rather than a class."""
    if spec.dataset.name is not None:
        return DATASETS[spec.dataset.name].classes is None
    if "classes" in model.preprocess:
        return False
    m = spec.model  # an upload without class names: regression has this model only
    return m.output == "identity" and m.loss == "mse" and m.layers[-1] == 1


def _load_npz(data: bytes, names: tuple[str, ...] | None = None) -> dict[str, NDArray[np.generic]]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files if names is None or k in names}
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"a stored model blob does not read as .npz: {exc}") from exc
