"""The ``chainrule`` command. ``main.app`` is the entry point and wires the commands;
``lab_commands`` runs the activation lab (:mod:`chainrule.lab`) and prints its tables."""
