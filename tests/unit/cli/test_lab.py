"""The activation lab: ``chainrule lab activations`` end to end on a reduced run, and the
experiment functions behind it."""

import csv
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from chainrule.cli import lab_report
from chainrule.cli.lab import (
    PROBE_CASES,
    Curve,
    LabConfig,
    ProbeCase,
    Run,
    fit,
    linear_map,
    make_split,
    probe_case,
    run_one,
)
from chainrule.cli.main import app
from chainrule.nn import MLP, SGD, Schedule
from chainrule.nn.train import train

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REDUCED = ["--datasets", "xor", "--activations", "identity,tanh,relu", "--steps", "300"]


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One reduced run of the real command, shared by the tests that read its output."""
    out = tmp_path_factory.mktemp("lab")
    result = CliRunner().invoke(app, ["lab", "activations", *REDUCED, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return result.stdout, out


def table_rows(stdout: str) -> dict[tuple[str, str], list[str]]:
    """The printed runs table: (activation, "on"/"off") -> the row's cells."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 8 and cells[0] == "xor":
            rows[(cells[1], cells[2])] = cells
    return rows


def test_the_table_shows_xor_solved_by_tanh_and_relu_and_never_by_identity(
    lab_run: tuple[str, Path],
) -> None:
    rows = table_rows(lab_run[0])
    assert set(rows) == {(a, d) for a in ("identity", "tanh", "relu") for d in ("on", "off")}
    # columns: dataset, hidden f, f′, train loss, train acc, holdout acc, steps to 95%, 100%
    for activation in ("tanh", "relu"):
        assert rows[(activation, "on")][4:6] == ["100.0%", "100.0%"]
        assert rows[(activation, "on")][7] != "—"
    for on_off in ("on", "off"):
        identity = rows[("identity", on_off)]
        assert float(identity[5].rstrip("%")) < 80.0
        assert identity[7] == "—"  # never reached 100%


def test_identity_rows_are_the_same_with_the_derivative_on_and_off(
    lab_run: tuple[str, Path],
) -> None:
    rows = table_rows(lab_run[0])
    assert rows[("identity", "on")][3:] == rows[("identity", "off")][3:]  # f′ = 1 already


def test_the_lab_writes_a_png_plot_and_the_tables(lab_run: tuple[str, Path]) -> None:
    stdout, out = lab_run
    png = out / "activations.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    height, width, channels = imread(png).shape
    assert width > 400 and height > 300 and channels in (3, 4)
    with (out / "results.csv").open(encoding="utf-8") as f:
        records = list(csv.DictReader(f))
    assert len(records) == 6
    tanh_on = next(
        r for r in records if r["activation"] == "tanh" and r["activation_derivative"] == "True"
    )
    assert float(tanh_on["holdout_accuracy"]) == 1.0
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "| xor | tanh | on |" in markdown
    assert "Is the derivative-off update the gradient?" in markdown
    assert "| tanh | 100% (" in markdown  # the summary: final holdout accuracy (steps)
    assert f"wrote {png}" in stdout


def test_an_unknown_activation_is_refused_with_the_choices(tmp_path: Path) -> None:
    args = ["lab", "activations", "--activations", "tanh,relu6", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    message = " ".join(result.output.replace("│", " ").split())  # unwrap the error box
    assert "unknown activation 'relu6'; expected one of: identity, sigmoid, tanh" in message
    assert not any(tmp_path.iterdir())


def test_a_non_numeric_hidden_size_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["lab", "activations", "--hidden", "16,x"])
    assert result.exit_code == 2
    assert "expected comma-separated ints" in result.output


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("datasets", ("xor", "circles"), "unknown dataset 'circles'"),
        ("hidden", (16, 0), "hidden must list one or more positive sizes"),
        ("targets", (1.5,), "targets must be accuracies in (0, 1]"),
        ("steps", 0, "steps must be >= 1"),
        ("lr", 0.0, "lr must be a finite number > 0"),
    ],
)
def test_lab_config_names_the_bad_value(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("]", r"\]")):
        LabConfig(**{field: value})  # type: ignore[arg-type]


def test_fit_trains_exactly_like_nn_train() -> None:
    cfg = LabConfig(steps=60)
    data = make_split(cfg, "moons")
    net = MLP(cfg.layers, "tanh", "sigmoid", "bce")
    params = net.init(np.random.default_rng(0))
    ours, curve = fit(net, params, data, cfg, np.random.default_rng(1))
    opt, schedule = SGD(momentum=cfg.momentum), Schedule(lr=cfg.lr)
    X, y, rng = data.X_train, data.y_train, np.random.default_rng(1)
    reference, _ = train(net, params, X, y, opt, schedule, cfg.steps, cfg.batch_size, rng)
    for key in reference:
        np.testing.assert_array_equal(ours[key], reference[key])
    assert curve.steps == [0, 10, 20, 30, 40, 50, 60]


def test_steps_to_is_the_first_measurement_at_or_above_the_target() -> None:
    curve = Curve(steps=[0, 10, 20, 30], holdout_accuracy=[0.5, 0.96, 0.9, 1.0])
    curve.train_loss, curve.train_accuracy = [0.7] * 4, [0.5] * 4
    run = Run("xor", "tanh", True, curve, params={})
    assert run.steps_to(0.95) == 10
    assert run.steps_to(1.0) == 30
    assert run.steps_to(0.99) == 30
    never = Curve(steps=[0], holdout_accuracy=[0.5])
    assert Run("xor", "tanh", True, never, params={}).steps_to(0.9) is None


def test_a_target_reached_and_lost_again_is_starred_in_the_table() -> None:
    curve = Curve(
        steps=[0, 10, 20],
        train_loss=[0.7] * 3,
        train_accuracy=[0.5] * 3,
        holdout_accuracy=[0.5, 1.0, 0.9],
    )
    run = Run("xor", "sigmoid", False, curve, params={})
    assert lab_report.steps_to(run, 0.9) == "10"  # 0.9 at the end: held
    assert lab_report.steps_to(run, 1.0) == "10*"  # 100% once, 90% at the end
    assert lab_report.steps_to(run, 0.95) == "10*"


def test_a_diverged_run_reports_no_final_numbers() -> None:
    cfg = LabConfig(datasets=("xor",), steps=30, lr=1e30)
    run = run_one(cfg, make_split(cfg, "xor"), "xor", "relu", derivative=True)
    assert run.diverged
    assert np.isnan(run.final_loss) and np.isnan(run.holdout_accuracy)


def test_identity_layers_multiply_out_to_one_linear_map() -> None:
    net = MLP([2, 5, 7, 3, 1], "identity", "sigmoid", "bce")
    params = net.init(np.random.default_rng(0), np.float64)
    params = {k: v + 0.1 for k, v in params.items()}  # non-zero biases too
    X = np.random.default_rng(1).normal(size=(20, 2))
    W, b = linear_map(params)
    assert W.shape == (2, 1) and b.shape == (1,)
    np.testing.assert_allclose(net.predict(params, X), 1 / (1 + np.exp(-(X @ W + b))), rtol=1e-12)


@pytest.mark.parametrize("case", PROBE_CASES, ids=lambda c: f"{c.hidden}-{c.output}-{c.loss}")
def test_derivative_off_is_the_gradient_exactly_where_the_math_says(case: ProbeCase) -> None:
    probe = probe_case(LabConfig(steps=300), case, "xor")
    if case.expected.startswith("yes"):  # the same direction, to rounding
        assert probe.cosine_at_init == pytest.approx(1.0, abs=1e-9)
        assert probe.cosine_trained == pytest.approx(1.0, abs=1e-9)
    else:  # once training has moved the units off their linear range, clearly not
        assert probe.cosine_trained < 0.99
