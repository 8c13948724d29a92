"""Placement in one metric frame: exact on projected synthetic duets, bounded error with noise."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from stream.placement import (
    Camera,
    PlacementError,
    Placer,
    Scenario,
    body_layout,
    camera_to_stage,
    measure_error,
    solve_translation,
    stage_to_camera,
)
from stream.skeleton import Layout
from stream.synthetic import SyntheticConfig, SyntheticStream

W, H = 1280, 720
BINS = ("2-3 m", "3-4 m", "4-5 m", "5-6 m")


def _duet_frame(camera: Camera, distance: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic duet at ``distance`` m: stage joints (D, J, 3), image (D, J, 4), root-centred world (D, J, 3)."""
    stage = next(SyntheticStream(SyntheticConfig(seed=seed))).astype(np.float64) + np.array([0.0, 0.0, -distance])
    assert camera.height_m is not None
    cam_pts = stage_to_camera(stage, camera, camera.height_m)
    uv = camera.project(cam_pts)
    image = np.concatenate([uv / np.array([camera.width, camera.height]), np.zeros((2, 18, 1)),
                            np.ones((2, 18, 1))], axis=-1)
    rel = cam_pts - cam_pts[:, :1]  # pelvis-centred, camera axes (as MediaPipe's world landmarks)
    return stage, image, rel


@pytest.fixture(scope="module")
def report() -> dict:
    return measure_error(
        (Scenario("exact"), Scenario("2px", noise_px=2.0), Scenario("5px", noise_px=5.0),
         Scenario("2px+2cm", noise_px=2.0, world_noise_m=0.02),
         Scenario("bones", noise_px=2.0, world_noise_m=0.02, method="bones")),
        clips=60, frames=3,
    )


def test_exact_projections_are_placed_exactly(report: dict) -> None:
    exact = report["scenarios"]["exact"]
    assert set(exact["bins"]) == set(BINS)
    assert exact["all"]["p95_cm"] <= 0.1  # ≤ 1 mm
    assert exact["all"]["n"] >= 300


@pytest.mark.parametrize(("name", "median_cm", "p95_cm"), [("2px", 2.0, 6.0), ("5px", 4.5, 15.0),
                                                           ("2px+2cm", 7.0, 16.0)])
def test_error_with_noise_is_bounded(report: dict, name: str, median_cm: float, p95_cm: float) -> None:
    """Measured (150 duets): 2 px 1.0/3.8 cm, 5 px 2.7/10.1 cm, 2 px + 2 cm world 4.7/11.2 cm."""
    s = report["scenarios"][name]
    assert s["all"]["median_cm"] < median_cm and s["all"]["p95_cm"] < p95_cm, s["all"]
    for b in BINS:
        assert s["bins"][b]["median_cm"] < 2 * median_cm, (b, s["bins"][b])


def test_pixel_noise_error_grows_with_distance(report: dict) -> None:
    bins = report["scenarios"]["5px"]["bins"]
    assert bins["5-6 m"]["median_cm"] > bins["2-3 m"]["median_cm"]


def test_least_squares_beats_bone_ratios(report: dict) -> None:
    lsq, bones = report["scenarios"]["2px+2cm"]["all"], report["scenarios"]["bones"]["all"]
    assert lsq["median_cm"] < bones["median_cm"] and lsq["p95_cm"] < bones["p95_cm"]


def test_report_is_json() -> None:
    json.dumps(measure_error((Scenario("exact"),), clips=2, frames=1))


def test_solve_translation_recovers_a_known_offset() -> None:
    cam = Camera.from_fov(W, H, 60.0, height_m=1.5)
    _, image, rel = _duet_frame(cam, 4.0)
    uv = image[0, :, :2] * np.array([W, H])
    t = solve_translation(uv, np.ones(18), rel[0], cam)
    assert t is not None
    cam_root = stage_to_camera(_duet_frame(cam, 4.0)[0], cam, 1.5)[0, 0]
    np.testing.assert_allclose(t, cam_root, atol=1e-6)
    assert solve_translation(uv, np.zeros(18), rel[0], cam) is None  # nothing visible


def test_tilted_camera_and_both_dancers_in_front() -> None:
    cam = Camera.from_fov(W, H, 60.0, height_m=2.2, tilt_deg=12.0)
    stage, image, rel = _duet_frame(cam, 5.0, seed=3)
    placed, ok = Placer(cam, layout=Layout.CANONICAL18)(image, rel, (W, H))
    assert ok.all()
    np.testing.assert_allclose(placed, stage, atol=1e-4)
    assert (placed[:, 0, 2] < 0).all()
    gap = np.linalg.norm(placed[0, 0] - placed[1, 0])
    assert gap == pytest.approx(np.linalg.norm(stage[0, 0] - stage[1, 0]), abs=1e-4)


def test_floor_is_estimated_from_the_feet() -> None:
    cam = Camera.from_fov(W, H, 75.0, height_m=1.7)  # wide enough to see the feet at 4 m
    placer = Placer(Camera.from_fov(W, H, 75.0), layout=Layout.CANONICAL18)
    stream = SyntheticStream(SyntheticConfig(seed=1))
    for _ in range(20):
        stage = next(stream).astype(np.float64) + np.array([0.0, 0.0, -4.0])
        cam_pts = stage_to_camera(stage, cam, 1.7)
        uv = cam.project(cam_pts)
        image = np.concatenate([uv / np.array([W, H]), np.zeros((2, 18, 1)), np.ones((2, 18, 1))], -1)
        placed, ok = placer(image, cam_pts - cam_pts[:, :1], (W, H))
    assert ok.all()
    np.testing.assert_allclose(placed[:, 0], stage[:, 0], atol=0.03)  # the floor within 3 cm


def test_unplaceable_person_is_dropped() -> None:
    cam = Camera.from_fov(W, H, 60.0, height_m=1.5)
    _, image, rel = _duet_frame(cam, 3.0)
    image[1, :, 3] = 0.0  # dancer 1 entirely invisible
    placer = Placer(cam, layout=Layout.CANONICAL18)
    placed, ok = placer(image, rel, (W, H))
    assert ok.tolist() == [True, False]
    assert (placed[1] == 0).all() and placer.unplaced == 1


def test_landmarks_outside_the_image_are_not_used() -> None:
    cam = Camera.from_fov(W, H, 60.0, height_m=1.5)
    stage, image, rel = _duet_frame(cam, 3.0)
    image[0, 10:, :2] += 5.0  # absurd positions, but outside the image: ignored
    placed, ok = Placer(cam, layout=Layout.CANONICAL18)(image, rel, (W, H))
    assert ok[0]
    np.testing.assert_allclose(placed[0, 0], stage[0, 0], atol=1e-4)


def test_camera_from_fov_and_scaling() -> None:
    cam = Camera.from_fov(640, 480, 90.0)
    assert cam.fx == pytest.approx(320.0) and (cam.cx, cam.cy) == (320.0, 240.0)
    big = cam.scaled_to(1280, 960)
    assert big.fx == pytest.approx(640.0) and big.cy == pytest.approx(480.0)
    p = np.array([[0.5, 0.2, -3.0]])
    np.testing.assert_allclose(big.project(p), 2 * cam.project(p))
    np.testing.assert_allclose(stage_to_camera(camera_to_stage(p, Camera.from_fov(640, 480, tilt_deg=20.0), 1.4),
                                               Camera.from_fov(640, 480, tilt_deg=20.0), 1.4), p)
    with pytest.raises(PlacementError, match="field of view"):
        Camera.from_fov(640, 480, 200.0)


def test_tilt_turns_the_view_down() -> None:
    cam = Camera.from_fov(640, 480, tilt_deg=30.0)
    ahead = camera_to_stage(np.array([0.0, 0.0, -1.0]), cam, 0.0)  # the optical axis
    np.testing.assert_allclose(ahead, [0.0, -0.5, -math.sqrt(3) / 2], atol=1e-12)


def test_calibration_file(tmp_path: Path) -> None:
    toml = tmp_path / "cam.toml"
    toml.write_text("fx = 900.0\nfy = 905.0\ncx = 640.0\ncy = 360.0\nwidth = 1280\nheight = 720\n"
                    "camera_height_m = 1.6\ntilt_deg = 5.0\n")
    cam = Camera.load(toml)
    assert (cam.fx, cam.fy, cam.height_m, cam.tilt_deg) == (900.0, 905.0, 1.6, 5.0)
    js = tmp_path / "cam.json"
    js.write_text(json.dumps({"fx": 900, "fy": 900, "cx": 320, "cy": 240, "width": 640, "height": 480}))
    assert Camera.load(js).height_m is None
    bad = tmp_path / "bad.toml"
    bad.write_text("fx = 900.0\n")
    with pytest.raises(PlacementError, match="lacks fy, cx, cy, width, height"):
        Camera.load(bad)
    with pytest.raises(PlacementError, match="cannot read"):
        Camera.load(tmp_path / "missing.toml")


def test_body_layouts() -> None:
    mp = body_layout(Layout.MEDIAPIPE33)
    assert mp.root.sum() == pytest.approx(1.0) and len(mp.feet) == 4
    assert body_layout(Layout.CANONICAL18).root[0] == 1.0
    with pytest.raises(PlacementError, match="MEDIAPIPE33 and CANONICAL18"):
        body_layout(Layout.SMPL29)
