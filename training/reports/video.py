"""The report's video: both skeletons from a chosen viewpoint with the strings drawn frame by frame.

OpenCV, mp4v. Strings: colour by edge type, thickness and opacity by strength, strong strings
(at or above the threshold) drawn thick with a white core. Optionally side by side with the
source video (frame ``k`` of the session = frame ``k`` of the video).

Camera: orthographic, turned ``azimuth_deg`` about y (0 = looking along −z, from the front of
the stage) and tilted down by ``elevation_deg``; by default it follows the duet from its side
(:func:`side_view_azimuth`). One scale for the whole session, fitted to every frame, so
distances on screen stay comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from stream.skeleton import CANONICAL
from training.reports.analysis import StringsTimeline, moving_average

DANCER_BGR = ((58, 131, 232), (143, 157, 42))
TYPE_BGR = {1: (0, 200, 255), 2: (200, 60, 230), 3: (80, 220, 80), 4: (255, 160, 40)}
MIN_DRAWN = 0.5
"""Strings weaker than this are not drawn."""
WEAK_DRAWN = 6
"""Besides the strong strings, at most this many of the next strongest are drawn (thin)."""


class ViewError(ValueError):
    """The viewpoint is out of range."""


def project(
    points: NDArray[np.floating], azimuth_deg: float | NDArray[np.floating], elevation_deg: float
) -> NDArray[np.float64]:
    """World points ``(..., 3)`` metres → screen-plane ``(..., 2)`` metres (x right, y up), depth dropped.

    ``azimuth_deg`` is a number or an array broadcasting against ``points[..., 0]``."""
    if not -90.0 <= elevation_deg <= 90.0:
        raise ViewError(f"elevation must be within [-90, 90] degrees, got {elevation_deg}")
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    p = np.asarray(points, np.float64)
    x = np.cos(a) * p[..., 0] - np.sin(a) * p[..., 2]
    z = np.sin(a) * p[..., 0] + np.cos(a) * p[..., 2]
    y = np.cos(e) * p[..., 1] + np.sin(e) * z
    return np.stack([x, y], axis=-1)


def side_view_azimuth(
    joints: NDArray[np.floating], times: NDArray[np.floating], smooth_s: float = 2.0
) -> NDArray[np.float64]:
    """Per-frame azimuth ``(T,)`` degrees that looks at the duet from its side: perpendicular to the
    line from dancer A's pelvis to dancer B's (smoothed over ``smooth_s``), A on the left.

    The camera follows the duet as it turns, so the two bodies never hide each other.
    """
    X = np.asarray(joints, np.float64)
    d = X[:, 1, 0, [0, 2]] - X[:, 0, 0, [0, 2]]  # (T, 2) x, z
    ts = np.asarray(times, np.float64)
    dt = float(np.median(np.diff(ts))) if len(ts) > 1 else 1.0
    d = moving_average(d, max(1, round(smooth_s / dt)))
    return np.degrees(np.arctan2(-d[:, 1], d[:, 0]))


def render_video(
    path: Path, joints: NDArray[np.floating], times: NDArray[np.floating], tl: StringsTimeline, *,
    fps: float, azimuth_deg: float | None = None, elevation_deg: float = 15.0, size: tuple[int, int] = (960, 540),
    source_video: Path | None = None, progress: Callable[[float], None] | None = None,
    stills: tuple[float, ...] = (),
) -> list[NDArray[np.uint8]]:
    """Write the video; returns the rendered frames nearest to the ``stills`` fractions of the session (BGR).

    Args:
        joints: ``(T, D, J, 3)`` metres; ``times (T,)`` seconds.
        fps: output frame rate; session frames are sampled at it (nearest frame).
        azimuth_deg: the viewpoint about y; None: from the side of the duet (:func:`side_view_azimuth`).
        source_video: drawn on the left, same height, when given and readable.
    """
    W, H = size
    azimuth = side_view_azimuth(joints, times)[:, None, None] if azimuth_deg is None else azimuth_deg
    ts = np.asarray(times, np.float64)
    out_t = np.arange(ts[0], ts[-1] + 1e-9, 1.0 / fps)
    idx = np.clip(np.searchsorted(ts, out_t), 0, len(ts) - 1)
    flat = project(joints, azimuth, elevation_deg)  # (T, D, J, 2)
    lo, hi = flat.reshape(-1, 2).min(axis=0), flat.reshape(-1, 2).max(axis=0)
    scale = 0.85 * min(W / max(hi[0] - lo[0], 1e-6), H / max(hi[1] - lo[1], 1e-6))
    centre = 0.5 * (lo + hi)

    def px(p: NDArray[np.float64]) -> NDArray[np.int32]:
        q = (p - centre) * scale
        return np.stack([W / 2 + q[..., 0], H / 2 - q[..., 1]], axis=-1).round().astype(np.int32)

    cap = cv2.VideoCapture(str(source_video)) if source_video is not None else None
    if cap is not None and not cap.isOpened():
        cap = None
    src_w = 0
    if cap is not None:
        vw, vh = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
        src_w = round(vw * H / vh) if vw > 0 and vh > 0 else 0
        if src_w == 0:
            cap.release()
            cap = None
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (W + src_w, H))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path} (mp4v)")
    want = {round(f * (len(out_t) - 1)) for f in stills}
    kept: list[NDArray[np.uint8]] = []
    last_src = 0
    src_frame: NDArray[np.uint8] | None = None
    try:
        for n, (t, k) in enumerate(zip(out_t, idx, strict=True)):
            img = np.full((H, W, 3), 24, np.uint8)
            pts = px(flat[k])  # (D, J, 2)
            w = int(np.clip(np.searchsorted(tl.times, t), 0, len(tl.times) - 1))
            inside = tl.times[0] - 0.5 <= t <= tl.times[-1] + 0.5
            s, ty = tl.strength[w], tl.etype[w]
            order = np.argsort(s.ravel())  # weak first, strong on top
            n_strong_now = int((s >= tl.threshold).sum())
            order = order[-(n_strong_now + WEAK_DRAWN):]
            overlay = img.copy()
            n_strong = 0
            if inside:
                for flat_k in order:
                    i, j = divmod(int(flat_k), s.shape[1])
                    v = float(s[i, j])
                    if v < MIN_DRAWN:
                        continue
                    colour = TYPE_BGR.get(int(ty[i, j]), (200, 200, 200))
                    a, b = tuple(int(c) for c in pts[0, i]), tuple(int(c) for c in pts[1, j])
                    if v >= tl.threshold:
                        n_strong += 1
                        cv2.line(overlay, a, b, colour, 2 + round(6 * v), cv2.LINE_AA)
                        cv2.line(overlay, a, b, (255, 255, 255), 1, cv2.LINE_AA)
                    else:
                        cv2.line(overlay, a, b, colour, 1, cv2.LINE_AA)
            img = np.asarray(cv2.addWeighted(overlay, 0.85, img, 0.15, 0), np.uint8)
            for d in range(2):
                for p, c in CANONICAL.bones:
                    cv2.line(img, tuple(int(v) for v in pts[d, p]), tuple(int(v) for v in pts[d, c]), DANCER_BGR[d],
                             3, cv2.LINE_AA)
                for q in pts[d]:
                    cv2.circle(img, (int(q[0]), int(q[1])), 4, DANCER_BGR[d], -1, cv2.LINE_AA)
            label = f"{t:6.2f} s   strings: {tl.source}   strong: {n_strong}" if inside else f"{t:6.2f} s"
            cv2.putText(img, label, (12, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (230, 230, 230), 1, cv2.LINE_AA)
            cv2.putText(img, "A", tuple(int(v) for v in pts[0, 3] + np.array([0, -14])), cv2.FONT_HERSHEY_SIMPLEX,
                        0.7, DANCER_BGR[0], 2, cv2.LINE_AA)
            cv2.putText(img, "B", tuple(int(v) for v in pts[1, 3] + np.array([0, -14])), cv2.FONT_HERSHEY_SIMPLEX,
                        0.7, DANCER_BGR[1], 2, cv2.LINE_AA)
            if cap is not None:
                while last_src <= k:
                    ok, f = cap.read()
                    if not ok:
                        break
                    src_frame = np.asarray(f, np.uint8)
                    last_src += 1
                side = np.zeros((H, src_w, 3), np.uint8) if src_frame is None else cv2.resize(src_frame, (src_w, H))
                img = np.hstack([side, img])
            writer.write(img)
            if n in want:
                kept.append(img)
            if progress is not None:
                progress((n + 1) / len(out_t))
    finally:
        writer.release()
        if cap is not None:
            cap.release()
    return kept
