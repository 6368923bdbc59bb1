"""The ``chainrule`` command. ``main.app`` is the entry point; ``lab`` holds the activation
lab's experiments as plain functions, ``lab_report`` and ``lab_plot`` turn their results
into tables and a picture."""
