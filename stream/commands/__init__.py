"""Command-line modules of the ``stream`` package, one per concern, each with ``register``.

They import only typer at module level; the work is imported inside each command.
"""
