"""``chainrule lab activations`` end to end on a reduced run: the printed tables, the
files it writes, and the options it refuses. The experiments are tested in tests/unit/lab."""

import csv
from pathlib import Path

import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from chainrule.cli.main import app

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


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--activations",
            "tanh,relu6",
            "unknown activation 'relu6'; expected one of: identity, sigmoid, tanh",
        ),
        ("--lr", "0", "lr must be a finite number > 0; got 0.0"),
    ],
)
def test_a_bad_value_is_refused_with_what_is_allowed(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    args = ["lab", "activations", option, value, "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())  # unwrap the error box
    assert not any(tmp_path.iterdir())


def test_a_non_numeric_hidden_size_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["lab", "activations", "--hidden", "16,x"])
    assert result.exit_code == 2
    assert "expected comma-separated ints" in result.output
