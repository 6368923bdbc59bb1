"""Commands that refuse bad input before sending anything: exit code 2 and a message
saying what was wrong (the gateway URL points nowhere; it is never reached)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from chainrule.cli.main import app

NOWHERE = ["--gateway", "http://gateway.invalid:9"]
runner = CliRunner()


def test_every_gateway_command_has_json_gateway_and_token_options() -> None:
    for command in ("submit", "list", "status", "watch", "stop", "metrics", "download"):
        result = runner.invoke(app, [command, "--help"], terminal_width=200)
        assert result.exit_code == 0, result.output
        for option in ("--json", "--gateway", "--token"):
            assert option in result.output, (command, option)


def test_csv_and_json_together_are_a_usage_error() -> None:
    result = runner.invoke(app, ["metrics", "j1", "--csv", "--json", *NOWHERE])
    assert result.exit_code == 2
    assert "--csv and --json" in result.output


def test_predict_refuses_a_ragged_csv_naming_the_line(tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("x1,x2\n0,1\n1\n")
    result = runner.invoke(app, ["predict", "j1", "--input", str(rows), *NOWHERE])
    assert result.exit_code == 2
    assert "line 3 has 1 values; the first row has 2" in result.output


def test_submit_refuses_a_spec_that_is_not_json(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text("{not json")
    result = runner.invoke(app, ["submit", str(spec), *NOWHERE])
    assert result.exit_code == 2
    assert "cannot read the job spec" in result.output


def test_an_unknown_status_filter_is_a_usage_error() -> None:
    result = runner.invoke(app, ["list", "--status", "DONE", *NOWHERE], terminal_width=200)
    assert result.exit_code == 2
    assert "'DONE' is not one of" in result.output and "pending" in result.output.lower()
