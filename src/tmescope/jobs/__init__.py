"""The jobs: one module per command, each joining the rooms for it.

A job reads from ``io``, computes with ``embed``/``fusion``/``analysis``, persists with ``store``
and draws with ``viz``; no room imports a job. :mod:`tmescope.workflows` is the public face of
these modules (the Python twins of the CLI commands); import from there.
"""
