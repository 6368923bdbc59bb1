"""The model part of a job spec: layer sizes, activation and its derivative, output and
loss, initialization; checked against the math core's own tables."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from chainrule.nn import ACTIVATIONS, LOSSES, MLP, OUTPUTS, param_count
from chainrule.nn.losses import Head
from chainrule.spec.checks import FORBID, enum_of, error, field_error, one_of

INITS = ("auto", "glorot", "he")

MAX_LAYERS = 34  # inputs, up to 32 hidden layers, outputs
MAX_WIDTH = 8192
MAX_PARAMS = 10_000_000


def _check_layers(sizes: list[int]) -> list[int]:
    if not 2 <= len(sizes) <= MAX_LAYERS:
        raise error(
            "layer_count",
            f"layers lists {len(sizes)} sizes; expected 2 to {MAX_LAYERS} "
            "(inputs, hidden layers..., outputs)",
        )
    for i, size in enumerate(sizes):
        if not 1 <= size <= MAX_WIDTH:
            raise field_error(
                "layers",
                (i,),
                "out_of_range",
                f"layers[{i}] must be between 1 and {MAX_WIDTH} units; got {size}",
                size,
            )
    n_params = param_count(sizes)
    if n_params > MAX_PARAMS:
        raise error(
            "too_many_params",
            f"layers {sizes} make {n_params} parameters; at most {MAX_PARAMS} are allowed",
        )
    return sizes


class ModelSpec(BaseModel):
    """The network: layer widths, hidden activations, output activation and loss."""

    model_config = FORBID

    layers: Annotated[
        list[Annotated[int, Field(strict=True)]],
        Field(description="[inputs, hidden..., outputs]"),
        AfterValidator(_check_layers),
    ]
    activation: Annotated[
        StrictStr | list[StrictStr],
        Field(description="one name for every hidden layer, or one per layer"),
    ] = "tanh"
    output: Annotated[str, one_of("output", "output", OUTPUTS)]
    loss: Annotated[str, Field(strict=True, json_schema_extra=enum_of(LOSSES))]
    activation_derivative: Annotated[
        bool,
        Field(strict=True, description="false replaces every f'(z) by 1 in backprop"),
    ] = True
    init: Annotated[str, one_of("init", "init", INITS)] = "auto"

    @field_validator("activation")
    @classmethod
    def _known_activations(cls, value: str | list[str], info: ValidationInfo) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        for i, name in enumerate(names):
            if name not in ACTIVATIONS:
                where = "" if isinstance(value, str) else f"activation[{i}]: "
                raise error(
                    "unknown_activation",
                    f"{where}unknown activation {name!r}; "
                    f"expected one of: {', '.join(ACTIVATIONS)}",
                )
        layers = info.data.get("layers")
        if isinstance(value, list) and layers is not None and len(value) != len(layers) - 2:
            raise error(
                "activation_count",
                f"activation lists {len(value)} names; expected {len(layers) - 2}, "
                f"one per hidden layer of layers {layers} (or a single name for all)",
            )
        return value

    @field_validator("loss")
    @classmethod
    def _loss_fits_output(cls, value: str, info: ValidationInfo) -> str:
        if value not in LOSSES:
            raise error(
                "unknown_loss", f"unknown loss {value!r}; expected one of: {', '.join(LOSSES)}"
            )
        output = info.data.get("output")
        if output is not None:
            try:
                Head(output, value)
            except ValueError as exc:
                raise error("output_loss_mismatch", str(exc)) from None
        return value

    @model_validator(mode="after")
    def _math_core_accepts(self) -> ModelSpec:
        try:
            build_mlp(self)
        except ValueError as exc:  # the field checks above should have caught it first
            raise error("invalid_model", str(exc)) from None
        return self


def build_mlp(model: ModelSpec) -> MLP:
    """The network ``model`` describes (its own check builds one too: a spec is accepted
    only if the math core accepts it)."""
    return MLP(
        layers=model.layers,
        activation=model.activation,
        output=model.output,
        loss=model.loss,
        activation_derivative=model.activation_derivative,
        init=model.init,  # type: ignore[arg-type]  # checked against INITS above
    )
