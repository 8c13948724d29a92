"""A video of both skeletons with their strings: what the demo (``istrings demo --preview``) writes.

Drawn from what a patch receives over OSC (joints in metres, the ``J×J`` strengths), seen from the
front (x right, y up; orthographic). The view fits the dancers' extent, followed smoothly, so a
duet that travels stays in frame. Strings are lines between dancer-0 joint ``i`` and dancer-1
joint ``j``, the strongest (at most ``max_strings``, each at least ``min_strength``), thicker and brighter the
stronger they are. Written with OpenCV's ``mp4v`` codec (this OpenCV build writes mp4v and MJPG,
not H.264).
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stream.errors import IStringsError
from stream.skeleton import CANONICAL

log = logging.getLogger(__name__)

SIZE = (960, 540)
COLOURS = ((0, 200, 255), (255, 140, 40))  # BGR: dancer 0 amber, dancer 1 blue
STRING_COLOUR = (180, 80, 255)  # BGR magenta
MAX_THICKNESS = 8


class PreviewError(IStringsError, OSError):
    """The preview video cannot be written."""


class ViewFit:
    """An orthographic front view that follows the dancers: metres → pixels, with a margin.

    Args:
        size: ``(width, height)`` pixels.
        follow: fraction of the way to the new fit taken per frame (1: no smoothing).
    """

    def __init__(self, size: tuple[int, int] = SIZE, follow: float = 0.1, margin: float = 0.15) -> None:
        self.size = size
        self.follow = follow
        self.margin = margin
        self._centre: NDArray[np.float64] | None = None
        self._scale = 0.0

    def update(self, joints: NDArray[np.floating]) -> None:
        """Fit to ``joints (D, J, 3)`` metres (x and y used)."""
        xy = np.asarray(joints, dtype=np.float64)[..., :2].reshape(-1, 2)
        lo, hi = xy.min(0), xy.max(0)
        centre = (lo + hi) / 2
        W, H = self.size
        extent = np.maximum(hi - lo, 0.5)  # m, at least half a metre
        scale = min(W / extent[0], H / extent[1]) * (1 - 2 * self.margin)  # px per m
        if self._centre is None:
            self._centre, self._scale = centre, scale
        else:
            a = self.follow
            self._centre = (1 - a) * self._centre + a * centre
            self._scale = (1 - a) * self._scale + a * scale

    def project(self, joints: NDArray[np.floating]) -> NDArray[np.int32]:
        """``(..., 3)`` metres → ``(..., 2)`` pixels (y down)."""
        if self._centre is None:
            self.update(joints)
        centre = self._centre if self._centre is not None else np.zeros(2)
        W, H = self.size
        p = np.asarray(joints, dtype=np.float64)[..., :2]
        px = (p[..., 0] - centre[0]) * self._scale + W / 2
        py = H / 2 - (p[..., 1] - centre[1]) * self._scale
        return np.round(np.stack([px, py], -1)).astype(np.int32)


def draw(canvas: NDArray[np.uint8], joints: NDArray[np.floating], strengths: NDArray[np.floating],
         view: ViewFit, present: NDArray[np.bool_] | None = None, min_strength: float = 0.2,
         max_strings: int = 12, label: str = "") -> NDArray[np.uint8]:
    """Draw both skeletons ``joints (D, J, 3)`` m and the strings ``strengths (J, J)`` onto ``canvas`` (in place).

    At most the ``max_strings`` strongest strings of at least ``min_strength`` are drawn.
    """
    import cv2

    pts = view.project(joints)  # (D, J, 2) px
    S = np.asarray(strengths, dtype=np.float64)
    flat = np.argsort(-S, axis=None)[:max_strings]  # strongest first
    for q in flat[::-1]:  # weakest drawn first, strongest on top
        i, j = divmod(int(q), S.shape[1])
        s = float(S[i, j])
        if s < min_strength:
            continue
        colour = tuple(int(c * (0.35 + 0.65 * s)) for c in STRING_COLOUR)
        cv2.line(canvas, tuple(map(int, pts[0, i])), tuple(map(int, pts[1, j])), colour,
                 max(1, round(s * MAX_THICKNESS)), cv2.LINE_AA)
    for d in range(pts.shape[0]):
        if present is not None and not present[d]:
            continue
        colour = COLOURS[d % len(COLOURS)]
        for a, b in CANONICAL.bones:
            cv2.line(canvas, tuple(map(int, pts[d, a])), tuple(map(int, pts[d, b])), colour, 3, cv2.LINE_AA)
        for q in pts[d]:
            cv2.circle(canvas, (int(q[0]), int(q[1])), 4, colour, -1, cv2.LINE_AA)
    if label:
        cv2.putText(canvas, label, (12, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (230, 230, 230), 1, cv2.LINE_AA)
    return canvas


class PreviewWriter:
    """Write frames of both skeletons and their strings to an ``.mp4`` (mp4v).

    Use as ``with PreviewWriter(path, fps) as w: w.add(joints, strengths, present, label)``.
    """

    def __init__(self, path: str | Path, fps: float = 30.0, size: tuple[int, int] = SIZE) -> None:
        self.path = Path(path)
        self.fps = fps
        self.size = size
        self.view = ViewFit(size)
        self.frames = 0
        self._writer: Any = None

    def __enter__(self) -> PreviewWriter:
        import cv2

        if self.path.suffix.lower() != ".mp4":
            raise PreviewError(f"the preview is an .mp4 file, got {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, self.size)
        if not writer.isOpened():
            raise PreviewError(f"OpenCV cannot write {self.path} with the mp4v codec; check the folder")
        self._writer = writer
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def add(self, joints: NDArray[np.floating], strengths: NDArray[np.floating],
            present: NDArray[np.bool_] | None = None, label: str = "") -> None:
        """One video frame."""
        if self._writer is None:
            raise PreviewError("the preview is not open: use `with PreviewWriter(...) as w:`")
        self.view.update(joints)
        canvas = np.zeros((self.size[1], self.size[0], 3), dtype=np.uint8)
        self._writer.write(draw(canvas, joints, strengths, self.view, present, label=label))
        self.frames += 1
