"""Pose estimation: the bundled model on the real photographs, scores, duplicates, errors."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stream.pose import (
    DEFAULT_MODEL,
    L,
    PoseConfig,
    PoseEstimator,
    PoseModelError,
    detections_from_arrays,
    landmark_arrays,
    mediapipe_world_to_frame,
    pose_score,
    suppress_duplicates,
)
from stream.skeleton import MEDIAPIPE33_NAMES
from tests.shared_paths import FIXTURE_IMAGES

IMAGES = FIXTURE_IMAGES
NOSE, L_HIP, R_HIP = 0, MEDIAPIPE33_NAMES.index("left_hip"), MEDIAPIPE33_NAMES.index("right_hip")


def _image(name: str) -> np.ndarray:
    import cv2

    path = IMAGES / name
    if not path.is_file():
        pytest.skip(f"test photograph {path} is missing (shared/fixtures/images)")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None
    return img


@pytest.fixture(scope="module")
def estimator() -> Iterator[PoseEstimator]:
    with PoseEstimator(PoseConfig()) as est:
        yield est


def test_bundle_is_a_pose_landmarker_bundle() -> None:
    with zipfile.ZipFile(DEFAULT_MODEL) as z:
        names = {i.filename: i for i in z.infolist()}
    assert set(names) == {"pose_detector.tflite", "pose_landmarks_detector.tflite"}
    assert all(i.compress_type == zipfile.ZIP_STORED for i in names.values())
    assert (DEFAULT_MODEL.parent / "LICENSE-mediapipe.md").is_file()


@pytest.mark.parametrize(("confidence", "expected"), [(0.2, 2), (0.5, 1)])
def test_second_person_needs_low_detection_confidence(confidence: float, expected: int) -> None:
    img = _image("basketball1.png")
    with PoseEstimator(PoseConfig(num_poses=2, min_detection_confidence=confidence)) as est:
        det = est(img, time.monotonic_ns())
    assert det.num_people == expected


@pytest.mark.parametrize(("name", "people"), [("basketball1.png", 2), ("basketball2.png", 2), ("messi5.jpg", 1)])
def test_real_photographs(name: str, people: int) -> None:
    img = _image(name)
    with PoseEstimator(PoseConfig()) as est:  # fresh: tracking state from another photo can add a ghost
        det = est(img, time.monotonic_ns())
    assert det.num_people == people
    assert det.image.shape == (people, L, 4) and det.world.shape == (people, L, 3)
    assert det.image_size == (img.shape[1], img.shape[0])
    for arr in (det.scores, det.image, det.world, det.presence):
        assert np.isfinite(arr).all()
    assert ((det.scores >= 0) & (det.scores <= 1)).all()
    assert (np.diff(det.scores) <= 0).all(), "best score first"
    vis = det.image[..., 3]
    assert ((vis >= 0) & (vis <= 1)).all()
    # The visible landmarks lie inside (or just at the edge of) the image.
    xy = det.image[..., :2][vis > 0.5]
    assert ((xy > -0.05) & (xy < 1.05)).all()
    # World landmarks: hip-centred metres, y up (the nose is 0.4-0.9 m above the hips' midpoint).
    hips = 0.5 * (det.world[:, L_HIP] + det.world[:, R_HIP])
    np.testing.assert_allclose(hips, 0.0, atol=0.05)
    head_up = det.world[:, NOSE, 1] - hips[:, 1]
    assert ((head_up > 0.4) & (head_up < 0.9)).all(), head_up


def test_duplicate_candidate_is_removed() -> None:
    """basketball2.png, IMAGE mode, num_poses=3: MediaPipe returns one player twice; two people remain."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    img = _image("basketball2.png")
    options = vision.PoseLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(DEFAULT_MODEL)), running_mode=vision.RunningMode.IMAGE,
        num_poses=3, min_pose_detection_confidence=0.2,
    )
    with vision.PoseLandmarker.create_from_options(options) as lm:
        result = lm.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(img[..., ::-1])))
    raw, world = landmark_arrays(result)
    assert raw.shape[0] == 3  # the raw candidates hold a duplicate
    assert detections_from_arrays(raw, world, (640, 480), 0.0).num_people == 3
    det = detections_from_arrays(raw, world, (640, 480), 0.1)
    assert det.num_people == 2
    centres = det.image[..., :2].mean(axis=1)  # (P, 2)
    assert abs(centres[0, 0] - centres[1, 0]) > 0.3  # one on the left, one on the right


def test_live_stream_mode_matches_video_mode() -> None:
    img = _image("messi5.jpg")
    out = []
    for mode in ("video", "live_stream"):
        with PoseEstimator(PoseConfig(running_mode=mode)) as est:  # type: ignore[arg-type]
            out.append(est(img, time.monotonic_ns()))
    np.testing.assert_allclose(out[0].image, out[1].image, atol=1e-5)
    np.testing.assert_allclose(out[0].world, out[1].world, atol=1e-5)


def test_grey_and_rgb_frames_are_accepted(estimator: PoseEstimator) -> None:
    import cv2

    img = _image("messi5.jpg")
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    assert estimator(grey, time.monotonic_ns()).num_people == 1
    with pytest.raises(PoseModelError, match="uint8"):
        estimator(img.astype(np.float32), time.monotonic_ns())


def test_pose_score_is_mean_visibility_times_presence() -> None:
    vis = np.array([[1.0, 0.5, 0.0, 1.2]])
    pres = np.array([[1.0, 1.0, 1.0, 0.5]])
    np.testing.assert_allclose(pose_score(vis, pres), [(1.0 + 0.5 + 0.0 + 0.5) / 4], rtol=1e-6)


def test_suppress_duplicates_keeps_best_of_overlapping_poses() -> None:
    base = np.random.default_rng(0).uniform(0.2, 0.4, (L, 2))
    xy = np.stack([base, base + 0.003, base + 0.4])  # 0 and 1 overlap, 2 is elsewhere
    keep = suppress_duplicates(xy, np.array([0.6, 0.9, 0.7]), (640, 480), 0.1)
    assert keep.tolist() == [1, 2]
    assert suppress_duplicates(xy, np.array([0.6, 0.9, 0.7]), (640, 480), 0.0).tolist() == [1, 2, 0]


def test_world_axes_are_flipped_to_y_up_minus_z_ahead() -> None:
    np.testing.assert_array_equal(mediapipe_world_to_frame(np.array([[1.0, 2.0, 3.0]])), [[1.0, -2.0, -3.0]])


def test_non_finite_landmarks_become_zero() -> None:
    img = np.full((1, L, 5), 0.5, np.float32)
    img[0, 3, :] = np.nan
    det = detections_from_arrays(img, np.zeros((1, L, 3)), (640, 480), 0.1)
    assert np.isfinite(det.image).all() and det.image[0, 3, 3] == 0.0


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PoseModelError, match="does not exist; pass --pose-model"):
        PoseEstimator(PoseConfig(model=tmp_path / "none.task")).__enter__()
    bad = tmp_path / "bad.task"
    bad.write_text("not a model")
    with pytest.raises(PoseModelError, match="cannot load"):
        PoseEstimator(PoseConfig(model=bad)).__enter__()


def test_config_is_checked() -> None:
    with pytest.raises(PoseModelError, match="num_poses"):
        PoseConfig(num_poses=0)
    with pytest.raises(PoseModelError, match="min_detection_confidence"):
        PoseConfig(min_detection_confidence=1.5)
    with pytest.raises(PoseModelError, match="running mode"):
        PoseConfig(running_mode="image")  # type: ignore[arg-type]
