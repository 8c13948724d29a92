"""The rehearsal report (`istrings report`): see :mod:`training.reports.build` and ``docs/report.md``."""
