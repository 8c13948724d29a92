"""Build ``stream/models/pose_landmarker_full.task`` from the models inside the mediapipe 0.10.21 wheel.

Why: since mediapipe 0.10.30 no model ships inside the wheel, and the usual ``.task`` download
needs the internet. The mediapipe 0.10.21 wheel still carries the legacy Pose solution's two
TFLite models (``modules/pose_detection/pose_detection.tflite`` and
``modules/pose_landmark/pose_landmark_full.tflite``). A MediaPipe Tasks ``PoseLandmarker``
bundle is exactly those two models with TFLite metadata (input normalisation, one entry per
output tensor) zipped together, uncompressed and aligned, under fixed names. mediapipe's own
``metadata_writers`` writes both — but they import only under mediapipe 0.10.21 (later wheels
lack ``mediapipe.tasks.cc``), so this script runs ONCE, in a throwaway virtual environment::

    python3 -m venv /tmp/mp21
    /tmp/mp21/bin/pip install mediapipe==0.10.21 'numpy<2' 'protobuf<5'
    /tmp/mp21/bin/python tools/build_pose_bundle.py --check /work/shared/fixtures/images/basketball1.png

The run-time environment (mediapipe 1.2.2) only reads the resulting ``.task`` file.

Inputs and normalisation (from the legacy graphs ``pose_detection_cpu.pbtxt`` and
``pose_landmark_by_roi_cpu.pbtxt``): the detector takes RGB in [-1, 1] (mean 127.5, std 127.5),
the landmark model RGB in [0, 1] (mean 0, std 255).

The bundle is written exactly as mediapipe's ``create_model_asset_bundle`` writes it (uncompressed,
4-byte aligned members, by its ``AlignZipFile``), but with a fixed member timestamp, so the build
is reproducible: two runs give the same SHA-256.

``--check IMAGE`` runs the fresh bundle through the Tasks API (``num_poses=2``, detection
confidence 0.2) and the legacy ``mp.solutions.pose`` graph on the same image, prints how many
people the bundle found and the largest difference between the bundle's first person and the
legacy single-person result, in normalised image units.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from pathlib import Path

DETECTOR = "modules/pose_detection/pose_detection.tflite"
LANDMARKS = "modules/pose_landmark/pose_landmark_full.tflite"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "stream" / "models" / "pose_landmarker_full.task"


def _with_metadata(model: bytes, name: str, mean: float, std: float) -> bytes:
    """``model`` with Tasks metadata: one RGB image input, one feature entry per output tensor."""
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, writer_utils

    n_out = len(writer_utils.get_output_tensor_names(bytearray(model)))
    writer = metadata_writer.MetadataWriter.create(bytearray(model))
    writer.add_general_info(name, f"{name} from the mediapipe 0.10.21 wheel (Pose solution)")
    writer.add_image_input(norm_mean=[mean], norm_std=[std])
    for _ in range(n_out):
        writer.add_feature_output()
    content, _json = writer.populate()
    return bytes(content)


def build(out: Path) -> dict[str, object]:
    """Write the bundle to ``out``; return its provenance (sizes, SHA-256 digests, versions)."""
    import mediapipe as mp
    from mediapipe.tasks.python.metadata.metadata_writers import model_asset_bundle_utils

    root = Path(mp.__file__).parent
    det = (root / DETECTOR).read_bytes()
    lmk = (root / LANDMARKS).read_bytes()
    models = {
        "pose_detector.tflite": _with_metadata(det, "pose_detector", 127.5, 127.5),
        "pose_landmarks_detector.tflite": _with_metadata(lmk, "pose_landmarks_detector", 0.0, 255.0),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    # What model_asset_bundle_utils.create_model_asset_bundle does (its AlignZipFile: stored, 4-byte
    # aligned), with a fixed timestamp per member so that two builds give the same bytes.
    with model_asset_bundle_utils.AlignZipFile(out, mode="w", alignment=4) as zf:
        for name, content in models.items():
            info = zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            zf.writestr(info, content)
    return {
        "mediapipe": mp.__version__,
        "sources": {DETECTOR: hashlib.sha256(det).hexdigest(), LANDMARKS: hashlib.sha256(lmk).hexdigest()},
        "bundle": str(out),
        "bundle_bytes": out.stat().st_size,
        "bundle_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
    }


def check(bundle: Path, image_path: Path) -> dict[str, object]:
    """Run the bundle (Tasks, 2 poses, detection confidence 0.2) and the legacy graph on one image."""
    import cv2
    import mediapipe as mp
    import numpy as np
    from mediapipe.tasks.python import BaseOptions, vision

    bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read image {image_path}")
    rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    options = vision.PoseLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(bundle)),
        running_mode=vision.RunningMode.IMAGE,
        num_poses=2,
        min_pose_detection_confidence=0.2,
    )
    with vision.PoseLandmarker.create_from_options(options) as landmarker:
        result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
    people = [np.array([[p.x, p.y] for p in pose]) for pose in result.pose_landmarks]
    report: dict[str, object] = {"image": str(image_path), "people": len(people)}
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1) as legacy:
        res = legacy.process(rgb)
    if res.pose_landmarks is not None and people:
        ref = np.array([[p.x, p.y] for p in res.pose_landmarks.landmark])
        report["max_abs_diff_vs_legacy"] = float(min(np.abs(p - ref).max() for p in people))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="bundle to write")
    parser.add_argument("--check", type=Path, action="append", default=[], help="image to test the bundle on")
    args = parser.parse_args(argv)
    try:
        import mediapipe.tasks.python.metadata.metadata_writers.metadata_writer  # noqa: F401
    except ImportError as exc:
        sys.stderr.write(
            f"build_pose_bundle: mediapipe's metadata writers do not import here ({exc}); run this script "
            "with the python of a venv holding mediapipe==0.10.21 (see the module docstring)\n"
        )
        return 2
    info = build(args.out)
    info["checks"] = [check(args.out, image) for image in args.check]
    sys.stdout.write(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
