"""What the lab needs beyond the services: matplotlib, for :mod:`chainrule.lab.plot`.

It comes with the ``lab`` extra (``pip install 'chainrule[lab]'``; the ``dev`` extra has
it too); the service image installs only the runtime dependencies and goes without it.
Nothing here imports matplotlib.
"""

from __future__ import annotations

from importlib.util import find_spec

INSTALL_HINT = "pip install 'chainrule[lab]'"
MISSING = f"the lab draws its plots with matplotlib, which is not installed: {INSTALL_HINT}"


class LabExtraMissingError(ImportError):
    """matplotlib is not installed; the message says how to install it."""

    def __init__(self) -> None:
        super().__init__(MISSING, name="matplotlib")


def require_lab_extra() -> None:
    """Raise :class:`LabExtraMissingError` unless matplotlib can be imported; cheap: it
    looks for the package without importing it."""
    try:
        found = find_spec("matplotlib") is not None
    except (ImportError, ValueError):  # a broken install, or one blocked in sys.modules
        found = False
    if not found:
        raise LabExtraMissingError
