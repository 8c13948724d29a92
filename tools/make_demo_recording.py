"""Build ``stream/data/demo_salsa.isrec``: the bundled real couple dance that ``istrings demo`` plays.

An excerpt of the CMU salsa take ``salsa_01`` (subjects 60 lead / 61 follow,
``training.corpus.load_take``), resampled to 30 fps to keep the file small, crossfaded end → start
so it loops without a visible seam, as CANONICAL18 PoseFrames (world = the stage frame in metres,
the duet centred 4 m in front of a virtual 1280×720 camera, 1.2 m high, tilted 8° down, 60° horizontal field of
view; image = the pinhole projection of the joints, visibility 1; scores 1), one record every
1/30 s.

Crossfade: with the excerpt ``seg`` of ``L + X`` frames (``X`` = ``--crossfade-s`` × fps), the
output has ``L`` frames, ``out[i] = seg[i]`` for ``i >= X`` and
``out[i] = (1 − w) · seg[L + i] + w · seg[i]``, ``w = i / X``, for ``i < X``: the last output frame
``seg[L − 1]`` is followed, on the loop, by ``out[0] = seg[L]``, its true successor.

Run from the repository root (needs the shared data and the training extra, for the BVH cache)::

    python tools/make_demo_recording.py            # writes stream/data/demo_salsa.isrec

It prints a JSON report (frames, duration, bytes, SHA-256, the largest joint jump at the seam
against the largest jump inside the excerpt).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from stream.placement import Camera
from stream.protocol import encode
from stream.recording import RecordingWriter
from stream.sources import synthetic_frame

FPS = 30.0
IMAGE = (1280, 720)
HFOV_DEG = 60.0
CAMERA_HEIGHT_M = 1.2
CAMERA_TILT_DEG = 8.0
DISTANCE_M = 4.0
PELVIS = 0


def crossfade_loop(seg: np.ndarray, length: int, fade: int) -> np.ndarray:
    """``(L + X, D, J, 3)`` → ``(L, D, J, 3)`` looping without a seam (see the module docstring)."""
    if seg.shape[0] < length + fade or fade < 1:
        raise ValueError(f"need {length + fade} frames and a fade of at least 1, got {seg.shape[0]}, {fade}")
    out = seg[:length].copy()
    w = (np.arange(fade) / fade)[:, None, None, None]  # (X, 1, 1, 1)
    out[:fade] = (1 - w) * seg[length : length + fade] + w * seg[:fade]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--take", default="salsa_01")
    parser.add_argument("--start-s", type=float, default=4.0, help="Start of the excerpt in the take, seconds.")
    parser.add_argument("--duration-s", type=float, default=25.0, help="Length of the loop, seconds.")
    parser.add_argument("--crossfade-s", type=float, default=1.0, help="Crossfade at the loop point, seconds.")
    parser.add_argument("--out", type=Path, default=Path("stream/data/demo_salsa.isrec"))
    args = parser.parse_args()

    from training.corpus import load_take, resample

    take = load_take(args.take)
    clip = resample(take.clip, FPS)
    L, X = round(args.duration_s * FPS), round(args.crossfade_s * FPS)
    s = round(args.start_s * FPS)
    seg = clip.joints[s : s + L + X].astype(np.float64)  # (L + X, D, J, 3) m
    if seg.shape[0] < L + X:
        raise SystemExit(f"{args.take} has {clip.num_frames} frames at {FPS} fps: too short for this excerpt")
    joints = crossfade_loop(seg, L, X)
    centre = joints[:, :, PELVIS, :].reshape(-1, 3).mean(axis=0)  # duet centre over the loop
    joints[..., 0] -= centre[0]
    joints[..., 2] += -centre[2] - DISTANCE_M
    camera = Camera.from_fov(*IMAGE, HFOV_DEG, height_m=CAMERA_HEIGHT_M, tilt_deg=CAMERA_TILT_DEG)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"take": args.take, "start_s": args.start_s, "duration_s": args.duration_s, "fps": FPS,
            "crossfade_s": args.crossfade_s, "layout": "canonical18",
            "acknowledgement": "The data used in this project was obtained from mocap.cs.cmu.edu. "
                               "The database was created with funding from NSF EIA-0196217."}
    period_ns = round(1e9 / FPS)
    with RecordingWriter(args.out, source=f"corpus:{args.take}", metadata=meta, overwrite=True) as w:
        for i, stage in enumerate(joints):
            f = synthetic_frame(i, i * period_ns, stage, camera)
            f.image[..., 3] = 1.0  # motion capture: every joint is seen
            w.write(encode(f, t_publish_ns=i * period_ns), i * period_ns)
    data = args.out.read_bytes()
    step = np.linalg.norm(np.diff(joints, axis=0), axis=-1).max(axis=(1, 2))  # (L-1,) m per frame
    seam = float(np.linalg.norm(joints[0] - joints[-1], axis=-1).max())
    print(json.dumps({"out": str(args.out), "frames": int(L), "fps": FPS, "duration_s": L / FPS,
                      "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                      "seam_max_jump_m": round(seam, 4), "inner_max_jump_m": round(float(step.max()), 4),
                      "inner_p99_jump_m": round(float(np.quantile(step, 0.99)), 4)}, indent=2))


if __name__ == "__main__":
    main()
