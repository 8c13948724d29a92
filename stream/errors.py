"""The root of the project's named errors.

Every package raises small named exceptions (``ProtocolError``, ``ClipError``, ``ExportError``, …)
that derive from :class:`IStringsError`; the command line turns any of them into one clear
error line and a non-zero exit, never a traceback.
"""

from __future__ import annotations


class IStringsError(Exception):
    """Base of every error the command line reports as one line (exit code 2)."""
