"""The activation lab: the same small problems trained with every activation, with the
activation derivative on and off, in one process and with no services.

Pure: every function takes its configuration and returns results; the CLI
(``chainrule lab activations``) prints them and writes the files.

- ``config``: what to train (:class:`LabConfig`) and the seeded data splits;
- ``experiments``: the runs, trained through :func:`chainrule.nn.train.train`;
- ``probes``: is the derivative-off update the gradient?
- ``report``: the results as table rows, Markdown and CSV;
- ``plot``: the loss and accuracy curves as a PNG (imports matplotlib, which the ``lab``
  extra installs: ``pip install 'chainrule[lab]'``; ``extra`` checks for it).
"""
