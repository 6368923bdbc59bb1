"""The activation lab's picture: one column per dataset, training loss on top (log
scale), holdout accuracy below; one colour per activation, solid with the derivative,
dashed without. Drawn on matplotlib's Agg canvas, so no display is needed. matplotlib
comes with the ``lab`` extra; without it importing this module raises
:class:`~chainrule.lab.extra.LabExtraMissingError`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from chainrule.lab.config import LabConfig
from chainrule.lab.experiments import Run
from chainrule.lab.extra import LabExtraMissingError

try:  # the lab extra: pip install 'chainrule[lab]'
    from matplotlib import colormaps
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
except ImportError as err:
    raise LabExtraMissingError from err

Colour = tuple[float, float, float, float]
LOSS_CEILING = 10.0  # cross-entropy starts near log 2 ≈ 0.69; above this a run is blowing up
SMOOTHING = 5  # holdout accuracy is averaged over this many consecutive measurements


def plot_runs(runs: Sequence[Run], cfg: LabConfig, path: Path) -> None:
    """Write the loss and accuracy curves of ``runs`` to ``path`` (PNG)."""
    n = len(cfg.datasets)
    fig = Figure(figsize=(4.4 * n + 2.4, 7.0), layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself: savefig renders with Agg, whatever the backend
    axes = fig.subplots(2, n, squeeze=False, sharex=True)
    colours = _colours(cfg.activations)
    for col, dataset in enumerate(cfg.datasets):
        loss_ax, acc_ax = axes[0, col], axes[1, col]
        for run in (r for r in runs if r.dataset == dataset):
            _plot_run(loss_ax, acc_ax, run, colours[run.activation])
        _label(loss_ax, acc_ax, dataset, cfg.targets)
    fig.legend(handles=_legend(colours), loc="outside right center", frameon=False)
    fig.suptitle("The same nets trained with f′ in backprop (solid) and with f′ := 1 (dashed)")
    fig.savefig(path, dpi=100)


def _plot_run(loss_ax: Axes, acc_ax: Axes, run: Run, colour: Colour) -> None:
    ls = "-" if run.derivative else "--"
    steps = run.curve.steps
    loss_ax.plot(steps, run.curve.train_loss, color=colour, lw=1.3, ls=ls)
    acc_ax.plot(steps, _rolling_mean(run.curve.holdout_accuracy), color=colour, lw=1.3, ls=ls)
    if run.diverged and steps:
        # the loss stopped being finite here: mark where the curve ends, on the ceiling
        y = min(run.curve.train_loss[-1], LOSS_CEILING)
        loss_ax.plot(steps[-1], y, "x", ms=9, mew=2, color=colour, clip_on=False)


def _rolling_mean(values: Sequence[float]) -> NDArray[np.float64]:
    """Mean of each value and up to SMOOTHING - 1 before it (fewer at the start)."""
    sums = np.cumsum(np.asarray(values, dtype=np.float64))
    counts = np.minimum(np.arange(1, len(sums) + 1), SMOOTHING)
    earlier = np.concatenate([np.zeros(SMOOTHING), sums])[: len(sums)]
    means: NDArray[np.float64] = (sums - earlier) / counts
    return means


def _colours(activations: Sequence[str]) -> dict[str, Colour]:
    cmap = colormaps["tab10"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(activations)}


def _label(loss_ax: Axes, acc_ax: Axes, dataset: str, targets: Sequence[float]) -> None:
    loss_ax.set_title(dataset, pad=10)
    loss_ax.set_yscale("log")
    loss_ax.set_ylim(top=LOSS_CEILING)
    loss_ax.set_ylabel("training loss (cross-entropy)")
    acc_ax.set_ylabel(f"holdout accuracy (mean of {SMOOTHING} checks)")
    acc_ax.set_xlabel("step")
    acc_ax.set_ylim(0.2, 1.02)
    for target in targets:
        acc_ax.axhline(target, color="grey", lw=0.6, ls=":")
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)


def _legend(colours: dict[str, Colour]) -> list[Line2D]:
    handles = [Line2D([], [], color=c, lw=2, label=name) for name, c in colours.items()]
    handles.append(Line2D([], [], color="black", ls="-", label="with f′ (true gradient)"))
    handles.append(Line2D([], [], color="black", ls="--", label="without f′ (f′ := 1)"))
    handles.append(Line2D([], [], color="black", ls="", marker="x", label="diverged"))
    return handles
