"""Where the tests find ``../shared`` (data and fixtures beside the repository), in one place.

``$ISTRINGS_SHARED`` overrides it, as it does for ``training.corpus``.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(os.environ.get("ISTRINGS_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
CMU_DATA = SHARED / "data" / "cmu-mocap"
FIXTURE_IMAGES = SHARED / "fixtures" / "images"
