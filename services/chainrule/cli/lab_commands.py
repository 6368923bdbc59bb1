"""``chainrule lab activations``: parse the options, run :mod:`chainrule.lab` with a
progress bar, print its tables and write its files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from chainrule.data import GENERATORS
from chainrule.lab import report
from chainrule.lab.config import LabConfig
from chainrule.lab.experiments import Run, run_lab, total_runs
from chainrule.lab.extra import LabExtraMissingError, require_lab_extra
from chainrule.lab.probes import Probe, probe_gradients
from chainrule.nn import Schedule

_DEFAULTS = LabConfig()
Number = TypeVar("Number", int, float)


def _csv(values: Sequence[object]) -> str:
    return ",".join(str(v) for v in values)


def activations(
    datasets: Annotated[
        str, typer.Option(help=f"Comma-separated, from: {_csv(GENERATORS)}.")
    ] = _csv(_DEFAULTS.datasets),
    activation_names: Annotated[
        str, typer.Option("--activations", help="Comma-separated hidden-layer activations.")
    ] = _csv(_DEFAULTS.activations),
    hidden: Annotated[str, typer.Option(help="Hidden layer sizes, comma-separated.")] = _csv(
        _DEFAULTS.hidden
    ),
    steps: Annotated[int, typer.Option(min=1, help="SGD steps per run.")] = _DEFAULTS.steps,
    targets: Annotated[
        str, typer.Option(help="Holdout accuracies to time, comma-separated, in (0, 1].")
    ] = _csv(_DEFAULTS.targets),
    seed: Annotated[int, typer.Option(help="Seeds data, initialisation and minibatches.")] = (
        _DEFAULTS.seed
    ),
    lr: Annotated[float, typer.Option(help="SGD learning rate, > 0.")] = _DEFAULTS.schedule.lr,
    out: Annotated[
        Path, typer.Option(help="Directory for activations.png, results.md, results.csv.")
    ] = Path("docs/lab"),
) -> None:
    """Train XOR, two moons and spirals with each activation, with the activation
    derivative in backprop and without it; print the table, plot the loss curves.
    Needs matplotlib: pip install 'chainrule[lab]'."""
    cfg = _config(datasets, activation_names, hidden, steps, targets, seed, lr)
    _check_lab_extra()  # before minutes of training, not when the plot is due
    console = _console()
    console.print(report.describe(cfg), style="dim")
    runs = _run_with_progress(cfg)
    probes = probe_gradients(cfg)
    console.print(_rich_table("Activation lab", report.run_header(cfg), _rows(runs, cfg)))
    console.print(_probe_table(probes, cfg))
    for note in report.identity_notes(runs):
        console.print(f"• {note}")
    for path in _write_outputs(runs, probes, cfg, out):
        console.print(f"wrote {path}")


def _check_lab_extra() -> None:
    try:
        require_lab_extra()
    except LabExtraMissingError as err:
        _exit_without_lab_extra(err)


def _exit_without_lab_extra(err: LabExtraMissingError) -> NoReturn:
    """Exit 2 (the command cannot do what was asked) with how to install matplotlib.
    Plain text: rich would take ``[lab]`` for markup."""
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(2)


def _config(
    datasets: str,
    activations: str,
    hidden: str,
    steps: int,
    targets: str,
    seed: int,
    lr: float,
) -> LabConfig:
    """Parse the comma-separated options; a bad value exits 2 with LabConfig's message."""
    sizes = _numbers(hidden, int, "--hidden")
    goals = _numbers(targets, float, "--targets")
    try:
        schedule = Schedule(lr=lr)
        return LabConfig(
            _split(datasets), _split(activations), sizes, steps, goals, seed, schedule=schedule
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _numbers(text: str, kind: type[Number], option: str) -> tuple[Number, ...]:
    try:
        return tuple(kind(part) for part in _split(text))
    except ValueError:
        raise typer.BadParameter(
            f"expected comma-separated {kind.__name__}s; got {text!r}", param_hint=option
        ) from None


def _console() -> Console:
    console = Console()
    if not console.is_terminal:  # logs and pipes: do not squeeze the tables into 80 columns
        console.width = max(console.width, 120)
    return console


def _run_with_progress(cfg: LabConfig) -> list[Run]:
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("training", total=total_runs(cfg))

        def advance(run: Run) -> None:
            on_off = "on" if run.derivative else "off"
            label = f"{run.dataset} {run.activation} f′ {on_off}"
            progress.update(task, advance=1, description=label)

        return run_lab(cfg, on_run=advance)


def _rows(runs: Sequence[Run], cfg: LabConfig) -> list[list[str]]:
    return [report.run_row(run, cfg) for run in runs]


def _rich_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title)
    for i, name in enumerate(header):
        # in a narrow terminal a long cell folds onto a second line instead of losing digits
        table.add_column(name, justify="left" if i < 3 else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _probe_table(probes: Sequence[Probe], cfg: LabConfig) -> Table:
    table = _rich_table(
        "Is the derivative-off update the gradient?",
        report.probe_header(cfg),
        report.probe_rows(probes, cfg),
    )
    table.caption = report.probe_caption(cfg)
    return table


def _write_outputs(
    runs: Sequence[Run], probes: Sequence[Probe], cfg: LabConfig, out: Path
) -> list[Path]:
    try:
        from chainrule.lab.plot import plot_runs  # matplotlib is slow to import
    except LabExtraMissingError as err:
        _exit_without_lab_extra(err)

    out.mkdir(parents=True, exist_ok=True)
    png, md, csv = out / "activations.png", out / "results.md", out / "results.csv"
    plot_runs(runs, cfg, png)
    md.write_text(report.markdown_report(runs, probes, cfg), encoding="utf-8")
    csv.write_text(report.csv_report(runs, cfg), encoding="utf-8")
    return [png, md, csv]
