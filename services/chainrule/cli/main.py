"""The ``chainrule`` command.

``chainrule lab activations`` trains small problems in this process, with no services;
``chainrule up`` (or ``run``) runs the whole stack as local processes; the other commands
(``submit``, ``list``, ``status``, ``watch``, ``stop``, ``metrics``, ``download``,
``predict``, ``workers``) talk to a gateway's REST API over HTTP, nothing else.
"""

from __future__ import annotations

import typer

from chainrule.cli import job_commands, lab_commands
from chainrule.cli.stack_commands import run, submit, up

app = typer.Typer(
    name="chainrule",
    help="A parameter-server trainer that is correct to the last derivative.\n\n"
    "Exit codes: 0 done (a followed job SUCCEEDED); 1 a followed job FAILED or was STOPPED; "
    "2 the command could not do what was asked (usage, invalid input, unknown job, "
    "missing or refused token, unreachable gateway).",
    no_args_is_help=True,
)
lab_app = typer.Typer(
    help="Experiments that run in this process, with no services.", no_args_is_help=True
)
app.add_typer(lab_app, name="lab")
lab_app.command()(lab_commands.activations)
app.command()(up)
app.command()(run)
app.command()(submit)
app.command("list")(job_commands.list_jobs)
app.command()(job_commands.status)
app.command("watch")(job_commands.watch_job)
app.command()(job_commands.stop)
app.command()(job_commands.metrics)
app.command()(job_commands.download)
app.command()(job_commands.predict)
app.command()(job_commands.workers)
