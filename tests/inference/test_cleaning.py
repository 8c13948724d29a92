"""The online cleaner, the paper's offline pipeline, and `istrings clean` on a real recording file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.cleaning import (
    CleanerConfig,
    CleaningError,
    OnlineCleaner,
    bench_cleaner,
    canonical_people,
    clean_offline,
    jitter,
)
from inference.filters import dct_lowpass
from inference.tracking import TrackerConfig, mean_joint_distance
from stream.clip import Clip
from stream.protocol import PoseFrame, decode, encode
from stream.recording import RecordingWriter
from stream.skeleton import LAYOUT_SIZES, Layout, layout_map

J = 18
FPS = 30.0
RNG = np.random.default_rng(0)
BODIES = RNG.normal(0.0, 0.25, (2, J, 3))  # two body shapes, metres around their roots
ENV = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}


def at(x: float, z: float = 0.0, body: int = 0) -> np.ndarray:
    """A canonical ``(J, 3)`` body with its root at ``(x, 1, z)``."""
    return BODIES[body] + np.array([x, 1.0, z])


def canon_frame(
    seq: int, people: list[np.ndarray], scores: list[float] | None = None, vis: np.ndarray | None = None,
    t_ns: int | None = None,
) -> PoseFrame:
    """A CANONICAL18 PoseFrame (identity layout map) sent through the real wire codec."""
    P = len(people)
    world = np.stack(people).astype(np.float32) if P else np.zeros((0, J, 3), np.float32)
    image = np.zeros((P, J, 4), np.float32)
    image[..., 3] = 1.0 if vis is None else vis
    frame = PoseFrame(
        seq=seq, t_capture_ns=round(seq * 1e9 / FPS) if t_ns is None else t_ns, layout=Layout.CANONICAL18,
        scores=np.array([0.9] * P if scores is None else scores, np.float32), image=image, world=world,
        source_id="test",
    )
    return decode(encode(frame))


def crossing_frames(T: int, seed: int, noise: float = 0.01) -> tuple[np.ndarray, list[PoseFrame]]:
    """Two dancers walking through each other (0.15 m apart in depth), order shuffled every frame."""
    rng = np.random.default_rng(seed)
    xs = np.linspace(-1.0, 1.0, T)
    truth = np.stack([np.stack([at(x, 0.0, 0), at(-x, 0.15, 1)]) for x in xs])  # (T, 2, J, 3)
    frames = []
    for i in range(T):
        order = rng.permutation(2)
        frames.append(canon_frame(i, [truth[i, k] + rng.normal(0, noise, (J, 3)) for k in order]))
    return truth, frames


def test_canonical_people_matches_the_layout_maps() -> None:
    rng = np.random.default_rng(1)
    for layout in (Layout.MEDIAPIPE33, Layout.SMPL29, Layout.CANONICAL18):
        L = LAYOUT_SIZES[layout]
        image = rng.uniform(0, 1, (3, L, 4)).astype(np.float32)
        world = rng.normal(0, 1, (3, L, 3)).astype(np.float32)
        f = PoseFrame(seq=0, t_capture_ns=0, layout=layout, scores=np.array([0.1, 0.5, 0.9], np.float32),
                      image=image, world=world)
        joints, vis, scores = canonical_people(f)
        m = layout_map(layout)
        assert np.allclose(joints, m.apply(world), atol=1e-5)
        assert np.allclose(vis, m.apply_visibility(image[..., 3]), atol=1e-7)
        assert np.allclose(scores, [0.1, 0.5, 0.9])


def test_online_cleaner_keeps_identities_and_smooths() -> None:
    truth, frames = crossing_frames(T=60, seed=2)
    cleaner = OnlineCleaner()
    outs = [cleaner.step(f) for f in frames]
    joints = np.stack([o.joints for o in outs])  # (T, 2, J, 3)
    assert joints.dtype == np.float32 and joints.shape == (60, 2, J, 3)
    assert outs[-1].confidence.shape == (2, J) and outs[-1].confidence.dtype == np.float32
    assert all(o.present.tolist() == [True, True] for o in outs)
    for i in range(60):
        dist = mean_joint_distance(joints[i], truth[i])  # (2 tracks, 2 true dancers)
        assert dist[0, 0] < dist[0, 1] and dist[1, 1] < dist[1, 0]  # dancer 0 stays dancer 0
        assert dist[0, 0] < 0.05 and dist[1, 1] < 0.05
    assert outs[-1].counters["swaps_corrected"] > 10
    valid = np.ones((60, 2), bool)
    noisy = truth + np.random.default_rng(2).normal(0, 0.01, truth.shape)
    assert jitter(joints, np.arange(60) / FPS, valid) < 0.5 * jitter(noisy, np.arange(60) / FPS, valid)


@pytest.mark.parametrize("smoothing", ["one_euro", "dct", "none"])
def test_missing_dancer_held_then_absent_then_reacquired(smoothing: str) -> None:
    cleaner = OnlineCleaner(CleanerConfig(tracking=TrackerConfig(hold_s=0.5), smoothing=smoothing))  # type: ignore[arg-type]
    for i in range(10):
        out = cleaner.step(canon_frame(i, [at(-0.5), at(0.5, body=1)]))
    last = out.joints[1].copy()
    for i in range(10, 40):
        out = cleaner.step(canon_frame(i, [at(-0.5)]))
        assert np.array_equal(out.joints[1], last) and np.isfinite(out.joints).all()
        if i <= 23:
            assert out.present.tolist() == [True, True]
        if i >= 25:
            assert out.present.tolist() == [True, False] and out.confidence[1].max() == 0
    out = cleaner.step(canon_frame(40, [at(2.0, body=1), at(-0.5)]))
    assert out.present.tolist() == [True, True]
    # re-acquired: the smoothing restarts at the new place instead of gliding from the old one
    assert np.allclose(out.joints[1], at(2.0, body=1), atol=1e-5)
    assert out.counters["reacquired"] == 1 and out.counters["frames_held"] in (14, 15)
    if smoothing == "none":
        assert np.allclose(out.joints[0], at(-0.5), atol=1e-6)


def test_nothing_non_finite_reaches_the_output() -> None:
    cleaner = OnlineCleaner()
    world = np.stack([at(0.0), at(1.0)]).astype(np.float32)
    world[0, 3] = np.nan
    world[1, 5] = np.inf
    image = np.ones((2, J, 4), np.float32)
    image[0, 7, 3] = np.nan
    times = [0, 33_000_000, 33_000_000, 10_000_000, 2**62]  # repeated, backwards, huge jump
    for k, t_ns in enumerate(times):
        f = PoseFrame(seq=k, t_capture_ns=t_ns, layout=Layout.CANONICAL18,
                      scores=np.array([np.nan, 2.0], np.float32), image=image, world=world)
        out = cleaner.step(f)  # built directly: decode() would refuse it, the cleaner must not crash
        assert np.isfinite(out.joints).all() and np.isfinite(out.confidence).all() and np.isfinite(out.t_s)
        assert ((out.confidence >= 0) & (out.confidence <= 1)).all()
    assert cleaner.counters()["clock_corrections"] == 2
    cleaner = OnlineCleaner()
    for t_s in (np.nan, np.inf, 0.5, -np.inf):  # step_arrays takes any float time
        out = cleaner.step_arrays(t_s, world.astype(np.float64), image[..., 3], np.array([0.5, 0.5]))
        assert np.isfinite(out.joints).all() and np.isfinite(out.t_s)
    assert cleaner.counters()["clock_corrections"] == 3
    with pytest.raises(CleaningError, match="detections must be"):
        cleaner.step_arrays(0.0, world, image[:1, :, 3], np.ones(2))


LAYOUTS = [Layout.MEDIAPIPE33, Layout.CANONICAL18, Layout.SMPL29, Layout.CMU31, Layout.SALSA43]


@st.composite
def garbage_frames(draw: st.DrawFn) -> list[bytes]:
    """1–25 decodable messages: 0–5 people, any visibilities and scores, odd timestamps."""
    n = draw(st.integers(1, 25))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    out = []
    t = 0
    for k in range(n):
        layout = LAYOUTS[draw(st.integers(0, len(LAYOUTS) - 1))]
        L = LAYOUT_SIZES[layout]
        P = draw(st.integers(0, 5))
        t += draw(st.sampled_from([0, 1, 33_333_333, -5_000_000, 3_000_000_000]))
        scale = draw(st.sampled_from([0.0, 1.0, 1e4]))
        image = rng.uniform(0, 1, (P, L, 4)).astype(np.float32)
        if draw(st.booleans()):
            image[..., 3] = rng.choice([0.0, 0.49, 0.5, 1.0], (P, L))
        frame = PoseFrame(seq=k, t_capture_ns=t, layout=layout, scores=rng.uniform(0, 1, P).astype(np.float32),
                          image=image, world=(rng.normal(0, 1, (P, L, 3)) * scale).astype(np.float32))
        out.append(encode(frame))
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=garbage_frames(), smoothing=st.sampled_from(["one_euro", "dct", "none"]))
def test_any_decodable_frames_give_finite_output_of_the_right_shape(messages: list[bytes], smoothing: str) -> None:
    cleaner = OnlineCleaner(CleanerConfig(smoothing=smoothing))  # type: ignore[arg-type]
    for msg in messages:
        out = cleaner.step(decode(msg))
        assert out.joints.shape == (2, J, 3) and out.joints.dtype == np.float32
        assert out.present.shape == (2,) and out.present.dtype == np.bool_
        assert out.confidence.shape == (2, J)
        assert np.isfinite(out.joints).all() and np.isfinite(out.confidence).all()
        assert ((out.confidence >= 0) & (out.confidence <= 1)).all()


class WindowMean:
    """A causal refiner: the mean of the window (a real, if simple, refiner)."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def refine(self, window: np.ndarray) -> np.ndarray:
        self.shapes.append(window.shape)
        return window.mean(0)


class Broken:
    def __init__(self, result: np.ndarray | None) -> None:
        self.result = result

    def refine(self, window: np.ndarray) -> np.ndarray:
        if self.result is None:
            raise RuntimeError("session failed")
        return self.result


def test_refiner_hook_gets_the_window_and_bad_refiners_are_counted() -> None:
    refiner = WindowMean()
    cleaner = OnlineCleaner(CleanerConfig(refiner_window=4), refiner=refiner)
    xs = [0.0, 0.1, 0.2, 0.3, 0.4]
    for i, x in enumerate(xs):
        out = cleaner.step(canon_frame(i, [at(x), at(2.0, body=1)]))
    assert refiner.shapes == [(4, 2, J, 3)] * 5
    assert np.allclose(out.joints[0], at(float(np.mean(xs[-4:]))), atol=1e-5)  # the refiner's output is used
    for bad in (np.full((2, J, 3), np.nan), np.zeros((3, 3)), None):
        cleaner = OnlineCleaner(refiner=Broken(bad))
        out = cleaner.step(canon_frame(0, [at(0.0), at(2.0, body=1)]))
        assert np.allclose(out.joints[0], at(0.0), atol=1e-6)  # passes unrefined
        assert out.counters["refiner_rejected"] == 1


class WindowKeeper:
    """A refiner that keeps every window it is given and returns the newest frame."""

    def __init__(self) -> None:
        self.windows: list[np.ndarray] = []

    def refine(self, window: np.ndarray) -> np.ndarray:
        self.windows.append(window.copy())
        return window[-1]


@pytest.mark.parametrize("rate_hz", [30.0, 120.0])
def test_the_refiner_window_is_sampled_at_the_refiners_rate_whatever_the_input_rate(rate_hz: float) -> None:
    """Dancer 0 walks along x at 1 m/s: at 30 or 120 Hz input, a 30 fps refiner's window of 4 frames
    spans 0.1 s with samples 1/30 s apart (interpolated between tracked frames at 120 Hz)."""
    keeper = WindowKeeper()
    cleaner = OnlineCleaner(CleanerConfig(refiner_window=4, refiner_fps=30.0), refiner=keeper)
    n = int(rate_hz)  # one second
    for k in range(n):
        t = k / rate_hz
        cleaner.step(canon_frame(k, [at(t), at(2.0, body=1)], t_ns=round(t * 1e9)))
    root_x = keeper.windows[-1][:, 0, 0, 0] - BODIES[0][0, 0]  # (4,) dancer 0's root x, oldest first
    t_last = (n - 1) / rate_hz
    np.testing.assert_allclose(root_x, t_last - np.array([3, 2, 1, 0]) / 30.0, atol=2e-3)  # tracking lags a little
    as_they_come = WindowKeeper()
    cleaner = OnlineCleaner(CleanerConfig(refiner_window=4), refiner=as_they_come)
    for k in range(n):
        t = k / rate_hz
        cleaner.step(canon_frame(k, [at(t), at(2.0, body=1)], t_ns=round(t * 1e9)))
    spacing = np.diff(as_they_come.windows[-1][:, 0, 0, 0])
    np.testing.assert_allclose(spacing, 1.0 / rate_hz, atol=2e-3)  # without a rate: the input's spacing


# --------------------------------------------------------------------------- offline (the paper)


def dets(*people: np.ndarray, scores: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack(people) if people else np.zeros((0, J, 3))
    return x, np.array([0.9] * len(people) if scores is None else scores)


def test_offline_duplicates_missing_frames() -> None:
    A, B = at(0.0), at(1.0, body=1)
    res = clean_offline([dets(A, B), dets(), dets(A, B)], keep=1.0)
    assert np.allclose(res.raw[1], res.raw[0]) and res.valid.tolist() == [[True, True], [False, False], [True, True]]
    assert res.counters["frames_duplicated"] == 1 and res.counters["frames_held"] == 2


def test_offline_single_detection_adds_the_previous_person_farther_from_it() -> None:
    A, B = at(0.0), at(1.0, body=1)
    res = clean_offline([dets(A, B), dets(at(0.05)), dets(at(0.95, body=1))], keep=1.0)
    assert np.allclose(res.raw[1, 0], at(0.05)) and np.allclose(res.raw[1, 1], B)  # B was farther
    assert np.allclose(res.raw[2, 1], at(0.95, body=1)) and np.allclose(res.raw[2, 0], at(0.05))
    assert res.valid.tolist() == [[True, True], [True, False], [False, True]]
    assert res.counters["singles_filled"] == 2


def test_offline_keeps_the_two_highest_scores_and_corrects_swaps() -> None:
    A, B = at(0.0), at(1.0, body=1)
    res = clean_offline([
        dets(A, B),
        dets(at(0.02), at(5.0), at(1.02, body=1), scores=[0.9, 0.1, 0.8]),  # a third, unsure person
        dets(at(1.04, body=1), at(0.04)),  # order swapped
    ], keep=1.0)
    assert np.allclose(res.raw[1], [at(0.02), at(1.02, body=1)])
    assert np.allclose(res.raw[2], [at(0.04), at(1.04, body=1)])
    assert res.counters["people_dropped"] == 1 and res.counters["swaps_corrected"] == 1


def test_offline_fills_the_start_and_low_passes_the_whole_sequence() -> None:
    rng = np.random.default_rng(3)
    frames = [dets(), dets(at(0.0))] + [dets(at(0.01 * i) + rng.normal(0, 0.01, (J, 3)), at(1.0, body=1))
                                       for i in range(40)]
    res = clean_offline(frames, keep=0.25)
    assert np.allclose(res.raw[0], res.raw[2]) and np.allclose(res.raw[1], res.raw[2])
    assert not res.valid[:2].any() and res.counters["frames_duplicated"] == 2
    assert np.allclose(res.joints, dct_lowpass(res.raw, keep=0.25, axis=0), atol=1e-5)
    assert jitter(res.joints, np.arange(42) / FPS, res.valid) < 0.2 * jitter(res.raw, np.arange(42) / FPS, res.valid)
    with pytest.raises(CleaningError, match="two people"):
        clean_offline([dets(at(0.0)), dets()])


def test_jitter_is_the_mean_acceleration() -> None:
    t = np.arange(20) / FPS
    x = np.zeros((20, 2, J, 3))
    x[..., 1] = 0.5 * 9.81 * t[:, None, None] ** 2  # free fall: |a| = 9.81 m/s² everywhere
    assert jitter(x, t, np.ones((20, 2), bool)) == pytest.approx(9.81, rel=1e-9)
    assert np.isnan(jitter(x, t, np.zeros((20, 2), bool)))


def test_bench_cleaner_reports_per_frame_cost() -> None:
    r = bench_cleaner(num_people=3, frames=200)
    assert r["benchmark"] == "cleaner" and r["frames"] == 200 and r["num_people"] == 3
    assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert r["counters"]["people_dropped"] == 300  # one of three people per frame, warm-up included


# --------------------------------------------------------------------------- istrings clean


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], capture_output=True, text=True, env=ENV,
                          timeout=120)


@pytest.mark.slow
def test_istrings_clean_compares_both_pipelines_on_a_recording(tmp_path: Path) -> None:
    _, frames = crossing_frames(T=90, seed=4)
    rec = tmp_path / "duet.isrec"
    with RecordingWriter(rec, source="tcp://127.0.0.1:5555") as w:
        for f in frames:
            if f.seq in (30, 31):  # two messages lost on the way
                continue
            if f.seq == 50:  # a third, unsure person
                people = [*f.world, at(4.0)]
                f = canon_frame(50, people, scores=[0.9, 0.9, 0.2])
            w.write(encode(f), receive_ns=f.t_capture_ns + 1_000_000)
        w.write(b"not a pose frame", receive_ns=4_000_000_000)
    r = run_cli("clean", str(rec), "-o", str(tmp_path / "out.npz"), "--json")
    assert r.returncode == 0, r.stderr
    online, offline = Clip.load(tmp_path / "out.online.npz"), Clip.load(tmp_path / "out.offline.npz")
    assert online.num_frames == offline.num_frames == 90  # the two lost frames are filled
    assert online.fps == pytest.approx(30.0, rel=1e-3)
    assert offline.provenance["counters"]["frames_duplicated"] == 2
    assert offline.provenance["counters"]["people_dropped"] == 1
    assert offline.provenance["undecodable"] == 1
    assert online.valid.all()  # a 2-frame loss is within the hold
    line = next(s for s in r.stdout.splitlines() if s.startswith("online: jitter"))
    assert "swaps corrected" in line and "| offline: jitter" in line and "frames held" in line
    r = run_cli("clean", str(rec), "-o", str(tmp_path / "on.npz"), "--method", "online", "--smoothing", "dct")
    assert r.returncode == 0, r.stderr
    assert Clip.load(tmp_path / "on.npz").provenance["config"]["smoothing"] == "dct"


def test_istrings_clean_bad_input_is_one_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "clip.npz"
    bad.write_bytes(b"PK\x03\x04 not a recording")
    r = run_cli("clean", str(bad), "-o", str(tmp_path / "o.npz"))
    assert r.returncode == 2 and "not an Invisible Strings recording" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_cli("clean", str(bad), "-o", str(tmp_path / "o.npz"), "--method", "sideways")
    assert r.returncode == 2 and "--method must be one of" in r.stderr


def test_cleaning_never_imports_torch() -> None:
    code = ("import sys, inference.filters, inference.tracking, inference.cleaning, inference.commands_clean; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
