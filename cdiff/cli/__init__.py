"""The ``cdiff`` command line: one thin command per pipeline stage.

Conventions shared by every stage: ``--config`` (a packaged preset or a YAML path),
``--run`` (the run directory), ``--set a.b=value`` overrides, ``--dry-run`` (print the
resolved config and exit without writing) and ``--force`` (replace finished work).
Bad input ends with a one-line ``error: ...`` on stderr and exit code 2.

The app and what the commands share live in :mod:`cdiff.cli.common`; each stage group's
commands in their own module, imported here (in ``cdiff --help`` order) so they register.
"""

from cdiff.cli.common import app, main

# Importing a module registers its commands on ``app``; this order is the order of ``cdiff --help``.
# isort: off
from cdiff.cli import prepare, train, evaluate, generate, edit, importing, visualize, studio  # noqa: F401
# isort: on

__all__ = ["app", "main"]
