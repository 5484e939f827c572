"""Evaluation: ``morse evaluate`` (coarse vs refined outputs on a dataset split) and Table-1-style result tables.

- :mod:`morse.evaluation.evaluate_command` — :func:`~morse.evaluation.evaluate_command.evaluate` (returns a report),
  :func:`~morse.evaluation.evaluate_command.write_report` (``evaluation.md``/``.csv``/``.json``) and the CLI ``run``.
- :mod:`morse.evaluation.tables` — markdown and CSV tables (rows = method or output; mean DSC, mean HD95, DSC per
  organ) from :func:`morse.metrics.summarize` results.

The metrics themselves are in :mod:`morse.metrics`.
"""
