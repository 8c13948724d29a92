"""Preview of the capture: skeletons and track ids drawn on the frames, to an MP4 file and/or a window.

The file is written with OpenCV's ``mp4v`` codec (this OpenCV writes mp4v and MJPG, not H.264).
A window opens only when a display exists (``$DISPLAY`` or ``$WAYLAND_DISPLAY``); it is
switched off with a warning if OpenCV has no GUI backend. Pose sources without an image (replay,
synthetic) are drawn on a black canvas of the frame's image size.

The id drawn is the detection index (best score first): identity tracking lives on the inference
side, so until it feeds back, ids can swap between frames.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stream.errors import IStringsError
from stream.protocol import PoseFrame
from stream.skeleton import CANONICAL, layout_map

log = logging.getLogger(__name__)

COLOURS = ((0, 200, 255), (255, 120, 0), (120, 255, 120), (200, 80, 255))  # BGR, one per id
WINDOW = "istrings capture"


class PreviewError(IStringsError, OSError):
    """The preview file cannot be written."""


def draw_frame(canvas: NDArray[np.uint8], frame: PoseFrame, min_visibility: float = 0.3) -> NDArray[np.uint8]:
    """Draw every person of ``frame`` (canonical bones, joints, ``id N`` at the head) onto ``canvas``.

    ``canvas`` ``(H, W, 3)`` uint8 BGR is drawn on in place and returned; bones with an end less
    visible than ``min_visibility`` are left out.
    """
    import cv2

    H, W = canvas.shape[:2]
    m = layout_map(frame.layout)
    xy = m.apply(frame.image[..., :2]) * np.array([W, H], np.float32)  # (P, J, 2) pixels
    vis = m.apply_visibility(frame.image[..., 3])  # (P, J)
    thick = max(1, round(min(W, H) / 240))
    for p in range(frame.num_people):
        colour = COLOURS[p % len(COLOURS)]
        pts = np.round(xy[p]).astype(np.int32)
        for a, b in CANONICAL.bones:
            if vis[p, a] >= min_visibility and vis[p, b] >= min_visibility:
                cv2.line(canvas, tuple(map(int, pts[a])), tuple(map(int, pts[b])), colour, thick, cv2.LINE_AA)
        for j in range(len(pts)):
            if vis[p, j] >= min_visibility:
                cv2.circle(canvas, tuple(map(int, pts[j])), thick + 1, colour, -1, cv2.LINE_AA)
        head = pts[CANONICAL.index("head")]
        cv2.putText(canvas, f"id {p} ({frame.scores[p]:.2f})", (int(head[0]) - 20, int(head[1]) - 12),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, colour, thick, cv2.LINE_AA)
    return canvas


def display_available() -> bool:
    """True when a display exists (``$DISPLAY`` or ``$WAYLAND_DISPLAY``)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Preview:
    """Write drawn frames to ``path`` (mp4v) and/or show them in a window.

    Args:
        path: the ``.mp4`` file, or None.
        fps: frame rate written into the file.
        window: show a window (only when :func:`display_available`).
    """

    def __init__(self, path: Path | None, fps: float = 30.0, window: bool = False) -> None:
        self.path = path
        self.fps = fps if fps > 0 else 30.0
        self.window = window and display_available()
        if window and not self.window:
            log.info("no display: the preview window is off")
        self._writer: Any = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def __enter__(self) -> Preview:
        if self.path is not None and not Path(self.path).parent.is_dir():
            raise PreviewError(f"cannot write preview {self.path}: its directory does not exist")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.window:
            import cv2

            try:
                cv2.destroyAllWindows()
            except cv2.error as exc:  # no GUI backend: nothing was shown
                log.debug("no window to close: %s", exc)

    def _open_writer(self, size: tuple[int, int]) -> None:
        import cv2

        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, size)
        if not writer.isOpened():
            raise PreviewError(f"OpenCV cannot write {self.path} with the mp4v codec")
        self._writer, self._size = writer, size

    def __call__(self, image: Any, frame: PoseFrame) -> None:
        """Draw ``frame`` on ``image`` (an :class:`~stream.sources.ImageFrame`, or None: a black canvas)."""
        import cv2

        if self.path is None and not self.window:
            return
        if image is not None:
            canvas = np.array(image.image, copy=True)
        else:
            w, h = frame.image_size if frame.image_size != (0, 0) else (640, 480)
            canvas = np.zeros((h, w, 3), np.uint8)
        if canvas.ndim == 2:
            canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
        draw_frame(canvas, frame)
        if self.path is not None:
            size = (canvas.shape[1], canvas.shape[0])
            if self._writer is None:
                self._open_writer(size)
            elif size != self._size:
                canvas = cv2.resize(canvas, self._size)
            self._writer.write(canvas)
        if self.window:
            try:
                cv2.imshow(WINDOW, canvas)
                cv2.waitKey(1)
            except cv2.error as exc:  # an OpenCV built without a GUI backend
                log.warning("cannot show the preview window (%s); writing the file only", exc)
                self.window = False
        self.frames += 1
