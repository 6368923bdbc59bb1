"""The activation lab's results as rows of text: one source for the printed (rich) table,
the Markdown file the README quotes, and the CSV with the unrounded numbers."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from chainrule.lab.config import LabConfig
from chainrule.lab.experiments import Run, linear_map
from chainrule.lab.probes import Probe

NEVER = "—"  # a target not reached within the run, or no accuracy after a divergence
LOST = "*"  # reached the target once, below it again (or diverged) by the end


def describe(cfg: LabConfig) -> str:
    """One sentence saying what was trained and where accuracy was measured."""
    n_holdout = round(cfg.samples * cfg.holdout)
    arch = "→".join(str(n) for n in cfg.layers)
    return (
        f"{cfg.samples} samples per dataset ({cfg.samples - n_holdout} train, {n_holdout} "
        f"holdout), net {arch} with a sigmoid output and cross-entropy, SGD lr "
        f"{cfg.schedule.lr:g} momentum {cfg.optimizer.momentum:g}, batch {cfg.batch_size}, "
        f'{cfg.steps} steps, seed {cfg.seed}. Loss is on the whole training set; "steps to" '
        "counts updates until holdout accuracy first reaches the target (checked every "
        f"{cfg.eval_every} steps); "
        f"{LOST} marks a target reached and lost again by the end, {NEVER} one never reached."
    )


def run_header(cfg: LabConfig) -> list[str]:
    steps_to = [f"steps to {t:.0%}" for t in cfg.targets]
    return ["dataset", "hidden f", "f′", "train loss", "train acc", "holdout acc", *steps_to]


def run_row(run: Run, cfg: LabConfig) -> list[str]:
    if run.diverged:
        loss, train_acc, holdout_acc = f"diverged @ {run.curve.diverged_after}", NEVER, NEVER
    else:
        loss = f"{run.final_loss:.3g}"
        train_acc, holdout_acc = f"{run.train_accuracy:.1%}", f"{run.holdout_accuracy:.1%}"
    reached = [steps_to(run, t) for t in cfg.targets]
    on_off = "on" if run.derivative else "off"
    return [run.dataset, run.activation, on_off, loss, train_acc, holdout_acc, *reached]


def steps_to(run: Run, target: float) -> str:
    """Steps until the holdout first reached ``target``; starred if it did not stay there."""
    step = run.steps_to(target)
    if step is None:
        return NEVER
    held = not run.diverged and run.holdout_accuracy >= target
    return str(step) if held else f"{step}{LOST}"


def summary_header(cfg: LabConfig) -> list[str]:
    return ["hidden f", *(f"{d} f′ {on_off}" for d in cfg.datasets for on_off in ("on", "off"))]


def summary_rows(runs: Sequence[Run], cfg: LabConfig) -> list[list[str]]:
    """One row per activation: final holdout accuracy (steps to the highest target)."""
    by_key = {(r.dataset, r.activation, r.derivative): r for r in runs}
    rows = []
    for activation in cfg.activations:
        keys = [(d, activation, on) for d in cfg.datasets for on in (True, False)]
        rows.append([activation, *(_summary_cell(by_key[k], max(cfg.targets)) for k in keys)])
    return rows


def _summary_cell(run: Run, target: float) -> str:
    accuracy = "diverged" if run.diverged else f"{run.holdout_accuracy:.0%}"
    return f"{accuracy} ({steps_to(run, target)})"


def summary_caption(cfg: LabConfig) -> str:
    return (
        f"Final holdout accuracy (steps until it first reached {max(cfg.targets):.0%}; "
        f"{LOST}: reached, then lost again; {NEVER}: never)."
    )


def probe_header(cfg: LabConfig) -> list[str]:
    return ["hidden f", "output + loss", "f′ := 1 is the gradient?", *cfg.datasets]


def probe_caption(cfg: LabConfig) -> str:
    return (
        "cos∠(update with f′ := 1, true gradient) for the first layer, whose gradient "
        "passes through every activation, on the training rows: at initialisation → after "
        f"{cfg.steps} steps of true-gradient training. 1.000: the same direction; "
        "below 0: that layer's update points uphill."
    )


def probe_rows(probes: Sequence[Probe], cfg: LabConfig) -> list[list[str]]:
    """One row per case, one cosine column per dataset."""
    rows: list[list[str]] = []
    for case in dict.fromkeys(p.case for p in probes):
        cells = {
            p.dataset: f"{p.cosine_at_init:.3f} → {p.cosine_trained:.3f}"
            for p in probes
            if p.case == case
        }
        hidden = case.hidden or "none"
        rows.append([hidden, case.head, case.expected, *(cells[d] for d in cfg.datasets)])
    return rows


def identity_notes(runs: Sequence[Run]) -> list[str]:
    """For each identity run with the derivative on: the one linear map it collapses to."""
    notes = []
    for run in runs:
        if run.activation != "identity" or not run.derivative or run.diverged:
            continue
        W, b = linear_map(run.params)
        n_layers = len(run.params) // 2
        notes.append(
            f"identity on {run.dataset}: all {n_layers} layers multiply out to "
            f"ŷ = σ({W[0, 0]:+.3f}·x₁ {W[1, 0]:+.3f}·x₂ {b[0]:+.3f}), one straight line "
            f"(holdout {run.holdout_accuracy:.1%})"
        )
    return notes


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [_md_line(header), _md_line(["---"] * len(header))]
    lines += [_md_line(row) for row in rows]
    return "\n".join(lines) + "\n"


def _md_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_report(runs: Sequence[Run], probes: Sequence[Probe], cfg: LabConfig) -> str:
    """results.md: both tables and the identity notes, ready to paste into the README."""
    rows = [run_row(run, cfg) for run in runs]
    parts = [
        "# Activation lab results\n",
        describe(cfg) + "\n",
        "## Summary\n",
        summary_caption(cfg) + "\n",
        markdown_table(summary_header(cfg), summary_rows(runs, cfg)),
        "## Every run\n",
        markdown_table(run_header(cfg), rows),
        "## Is the derivative-off update the gradient?\n",
        probe_caption(cfg) + "\n",
        markdown_table(probe_header(cfg), probe_rows(probes, cfg)),
    ]
    notes = identity_notes(runs)
    if notes:
        parts.append("\n".join(f"- {note}" for note in notes) + "\n")
    return "\n".join(parts)


def csv_report(runs: Sequence[Run], cfg: LabConfig) -> str:
    """results.csv: one line per run with the unrounded numbers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    targets = [f"steps_to_{t:g}" for t in cfg.targets]
    writer.writerow(
        [
            "dataset",
            "activation",
            "activation_derivative",
            "train_loss",
            "train_accuracy",
            "holdout_accuracy",
            *targets,
            "diverged_after",
        ]
    )
    for run in runs:
        reached = [run.steps_to(t) for t in cfg.targets]
        writer.writerow(
            [
                run.dataset,
                run.activation,
                run.derivative,
                run.final_loss,
                run.train_accuracy,
                run.holdout_accuracy,
                *_blank(reached),
                *_blank([run.curve.diverged_after]),
            ]
        )
    return out.getvalue()


def _blank(values: Sequence[int | None]) -> list[str]:
    return ["" if v is None else str(v) for v in values]
