"""``python -m chainrule.cli``: the same as the ``chainrule`` command."""

from chainrule.cli.main import app

app()
