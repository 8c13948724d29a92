"""The live pipeline in one process: window port vs training, model wrappers on real ONNX Runtime,
direction combination, strength EMA, status, forecast scoring.

The models are tiny hand-built ONNX graphs with known outputs (written with ``onnx.helper`` and
the real istrings metadata), so every number the service sends can be predicted exactly.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import stream
from inference.metadata import ModelMetadata, write_metadata
from inference.models_live import (
    ForecastModel,
    RefinerModel,
    StringsModel,
    combine_directions,
    load_models,
)
from inference.osc import FrameOutput, decode_packet
from inference.runtime import ModelError
from inference.service import InferenceService, ServiceConfig
from inference.stats import RollingTimings
from inference.window import FrameBuffer, Normalization, WindowSpec, features, interpolate_at, model_window, normalize
from stream.protocol import PoseFrame
from stream.skeleton import CANONICAL, J, Layout

onnx = pytest.importorskip("onnx")
helper = onnx.helper
TensorProto = onnx.TensorProto

E = 2 * J * J
STRONG_FWD = (6, 9)  # l_wrist (dancer 0) → r_wrist (dancer 1): P(no string) 0.1
STRONG_REV = (3, 3)  # head ↔ head, reverse direction only: P(no string) 0.5
BASE_NONE = 0.95


def _meta(kind: str, config: dict[str, object], T: int, fps: float, horizons: tuple[float, ...] = (),
          extra: dict[str, object] | None = None, layout: str = CANONICAL.name) -> ModelMetadata:
    return ModelMetadata(kind=kind, model_name=f"test_{kind}", config=config, skeleton_layout=layout,
                         joint_names=CANONICAL.joint_names, window_frames=T, fps=fps, horizons_s=horizons,
                         data_id="hand-built", metrics={}, project_version=stream.__version__, extra=extra or {})


def _save(graph: object, meta: ModelMetadata, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    write_metadata(model, meta)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def nri_probs() -> np.ndarray:
    """``(E, 2)`` constant probabilities: forward pairs then reverse pairs, ``a·J + b``."""
    none = np.full(E, BASE_NONE, np.float32)
    none[STRONG_FWD[0] * J + STRONG_FWD[1]] = 0.1
    none[J * J + STRONG_REV[0] * J + STRONG_REV[1]] = 0.5
    return np.stack([none, 1 - none], -1)


def write_nri(folder: Path, T: int = 8, fps: float = 30.0, layout: str = CANONICAL.name, nan: bool = False) -> Path:
    """An NRI encoder ``window (B, T, 36, 6) → edge_probs (B, E, 2)`` returning :func:`nri_probs` for any input
    (with ``nan``, NaN for the strongest pair, as the exported NRI once did for a still duet)."""
    values = nri_probs()
    if nan:
        values[STRONG_FWD[0] * J + STRONG_FWD[1]] = np.nan
    probs = helper.make_tensor("probs", TensorProto.FLOAT, (1, E, 2), values.reshape(-1).tolist())
    nodes = [
        helper.make_node("ReduceSum", ["window", "axes"], ["s"], keepdims=1),  # (B, 1, 1, 1)
        helper.make_node("Mul", ["s", "zero"], ["z"]),
        helper.make_node("Squeeze", ["z", "sq"], ["z3"]),  # (B, 1, 1)
        helper.make_node("Add", ["z3", "probs"], ["edge_probs"]),  # (B, E, 2)
    ]
    graph = helper.make_graph(
        nodes, "nri_const",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["B", T, 2 * J, 6])],
        [helper.make_tensor_value_info("edge_probs", TensorProto.FLOAT, ["B", E, 2])],
        [probs, helper.make_tensor("axes", TensorProto.INT64, (3,), [1, 2, 3]),
         helper.make_tensor("zero", TensorProto.FLOAT, (), [0.0]),
         helper.make_tensor("sq", TensorProto.INT64, (1,), [3])])
    meta = _meta("nri", {"joints0": list(range(J)), "joints1": list(range(J)), "window": T, "edge_types": 2}, T, fps,
                 extra={"normalizer": {"pos_scale": 0.5, "vel_scale": 1.0}}, layout=layout)
    return _save(graph, meta, folder / "nri.onnx")


STGA_OFFSETS = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]], np.float32)  # per horizon, metres


def write_stga(folder: Path, T: int = 6, fps: float = 30.0) -> Path:
    """A forecaster ``window (B, T, 36, 3) → forecast (B, 2, 36, 3)``: the last frame + a fixed offset per horizon."""
    nodes = [
        helper.make_node("Slice", ["window", "start", "end", "ax"], ["last"]),  # (B, 1, 36, 3)
        helper.make_node("Concat", ["last", "last"], ["two"], axis=1),  # (B, 2, 36, 3)
        helper.make_node("Add", ["two", "offsets"], ["forecast"]),
    ]
    graph = helper.make_graph(
        nodes, "stga_const",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["B", T, 2 * J, 3])],
        [helper.make_tensor_value_info("forecast", TensorProto.FLOAT, ["B", 2, 2 * J, 3])],
        [helper.make_tensor("start", TensorProto.INT64, (1,), [T - 1]),
         helper.make_tensor("end", TensorProto.INT64, (1,), [T]),
         helper.make_tensor("ax", TensorProto.INT64, (1,), [1]),
         helper.make_tensor("offsets", TensorProto.FLOAT, (1, 2, 1, 3), STGA_OFFSETS.reshape(-1).tolist())])
    meta = _meta("stga", {"past_frames": T, "horizons_ms": [80.0, 160.0], "fps": fps}, T, fps, horizons=(0.08, 0.16))
    return _save(graph, meta, folder / "stga.onnx")


def write_mkff(folder: Path, T: int = 4, mode: str = "causal", shift: float = 0.0) -> Path:
    """A refiner ``window (B, T, 36, 3) → refined (B, 36, 3)``: the last frame, shifted by ``shift`` m in y."""
    nodes = [
        helper.make_node("Slice", ["window", "start", "end", "ax"], ["last"]),  # (B, 1, 36, 3)
        helper.make_node("Squeeze", ["last", "ax"], ["sq"]),  # (B, 36, 3)
        helper.make_node("Add", ["sq", "shift"], ["refined"]),
    ]
    graph = helper.make_graph(
        nodes, "mkff_last",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["B", T, 2 * J, 3])],
        [helper.make_tensor_value_info("refined", TensorProto.FLOAT, ["B", 2 * J, 3])],
        [helper.make_tensor("start", TensorProto.INT64, (1,), [T - 1]),
         helper.make_tensor("end", TensorProto.INT64, (1,), [T]),
         helper.make_tensor("ax", TensorProto.INT64, (1,), [1]),
         helper.make_tensor("shift", TensorProto.FLOAT, (1, 1, 3), [0.0, shift, 0.0])])
    return _save(graph, _meta("mkff", {"mode": mode, "window": T}, T, 30.0), folder / "mkff.onnx")


def duet_frame(seq: int, t_s: float, offset: float = 0.0, people: int = 2) -> PoseFrame:
    """A CANONICAL18 frame of two still dancers 1.2 m apart (dancer 0 left), shifted by ``offset`` m in x."""
    rng = np.random.default_rng(0)
    body = rng.normal(0, 0.25, (J, 3)).astype(np.float32) + np.array([0, 1.0, -4.0], np.float32)
    shift = np.array([[-0.6 + offset, 0, 0], [0.6 + offset, 0, 0]], np.float32)[:, None, :]  # (D, 1, 3)
    world = (body[None] + shift)[:people].astype(np.float32)
    image = np.concatenate([np.full((people, J, 2), 0.5), np.zeros((people, J, 1)), np.ones((people, J, 1))], -1)
    return PoseFrame(seq=seq, t_capture_ns=int(t_s * 1e9), layout=Layout.CANONICAL18,
                     scores=np.ones(people, np.float32), image=image.astype(np.float32), world=world)


# --------------------------------------------------------------------------- window (numpy port of training)


def test_window_features_match_the_training_code() -> None:
    torch = pytest.importorskip("torch")  # noqa: F841  (the training module imports it)
    from training.duet_data import CandidateGraph, Normalizer, centre_windows, clip_features, to_nodes

    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (8, 2, J, 3)).astype(np.float32)  # (T, D, J, 3) m
    fps = 30.0
    ours = normalize(features(x, fps), WindowSpec(8, fps, norm=Normalization(0.4, 1.7)))  # (T, N, 6)
    graph = CandidateGraph.all_pairs()
    ref = to_nodes(Normalizer(0.4, 1.7).apply(centre_windows(clip_features(x, fps)[None])), graph)[0]
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    sub = WindowSpec(8, fps, joints0=(1, 5), joints1=(2, 7, 9), norm=Normalization(0.4, 1.7))
    ref_sub = to_nodes(Normalizer(0.4, 1.7).apply(centre_windows(clip_features(x, fps)[None])),
                       CandidateGraph((1, 5), (2, 7, 9)))[0]
    np.testing.assert_allclose(normalize(features(x, fps), sub), ref_sub, atol=1e-6)


def test_buffer_resamples_at_the_model_rate() -> None:
    buf = FrameBuffer(capacity=64)
    for k in range(40):  # 100 Hz input, x = t metres
        t = k / 100
        buf.push(t, np.full((2, J, 3), t, np.float32))
    win = buf.resampled(4, 10.0)  # (4, D, J, 3) at t = 0.09, 0.19, 0.29, 0.39
    np.testing.assert_allclose(win[:, 0, 0, 0], [0.09, 0.19, 0.29, 0.39], atol=1e-6)
    assert buf.covers(0.39 - 1e-6) and not buf.covers(0.5)
    early = buf.resampled(8, 10.0)  # reaches before the oldest frame: clamped to it
    assert early[0, 0, 0, 0] == pytest.approx(0.0)
    np.testing.assert_allclose(interpolate_at(*buf.history(1.0), 0.155)[0, 0], [0.155] * 3, atol=1e-6)
    for k in range(40, 120):  # wraps around the ring: still the newest frames in order
        buf.push(k / 100, np.full((2, J, 3), k / 100, np.float32))
    np.testing.assert_allclose(buf.resampled(3, 100.0)[:, 1, 5, 2], [1.17, 1.18, 1.19], atol=1e-6)


# --------------------------------------------------------------------------- models


def test_direction_combinations_on_hand_built_probabilities() -> None:
    joints = tuple(range(J))
    p = nri_probs()
    s_max = combine_directions(p, joints, joints, "max")
    assert s_max[STRONG_FWD] == pytest.approx(0.9) and s_max[STRONG_REV] == pytest.approx(0.5)
    assert s_max[0, 0] == pytest.approx(0.05)
    s_or = combine_directions(p, joints, joints, "noisy-or")
    assert s_or[STRONG_FWD] == pytest.approx(1 - 0.1 * 0.95) and s_or[STRONG_REV] == pytest.approx(1 - 0.95 * 0.5)
    s_fwd = combine_directions(p, joints, joints, "forward")
    assert s_fwd[STRONG_REV] == pytest.approx(0.05)
    sub = combine_directions(np.tile([[0.2, 0.8]], (2 * 2 * 3, 1)), (1, 4), (0, 2, 9), "max")
    assert sub[1, 9] == pytest.approx(0.8) and sub[0, 0] == 0.0 and np.count_nonzero(sub) == 6
    with pytest.raises(ModelError, match="must be"):
        combine_directions(p[:10], joints, joints)
    with pytest.raises(ModelError, match="unknown direction"):
        combine_directions(p, joints, joints, "mean")


def test_wrappers_run_hand_built_models(tmp_path: Path) -> None:
    strings = StringsModel(write_nri(tmp_path), device="cpu")
    assert strings.spec.frames == 8 and strings.spec.norm == Normalization(0.5, 1.0)
    np.testing.assert_allclose(strings.probabilities(np.zeros((8, 36, 6), np.float32)), nri_probs(), atol=1e-6)
    fc = ForecastModel(write_stga(tmp_path), device="cpu")
    assert fc.horizons_ms == (80, 160)
    x = np.random.default_rng(1).normal(size=(6, 2, J, 3)).astype(np.float32)
    y = fc(x)  # (H, D, J, 3)
    np.testing.assert_allclose(y[0], x[-1], atol=1e-6)
    np.testing.assert_allclose(y[1, ..., 0], x[-1, ..., 0] + 0.1, atol=1e-6)
    ref = RefinerModel(write_mkff(tmp_path, shift=0.25), device="cpu")
    np.testing.assert_allclose(ref.refine(x[:4])[..., 1], x[3, ..., 1] + 0.25, atol=1e-6)
    with pytest.raises(ModelError, match="centred"):
        RefinerModel(write_mkff(tmp_path / "c", mode="centred"), device="cpu")
    with pytest.raises(ModelError, match="not 'nri'"):
        StringsModel(tmp_path / "stga.onnx", device="cpu")


def test_missing_and_refused_models_are_reported_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    empty = load_models(tmp_path / "none", device="cpu")
    assert empty.missing == ("nri", "stga") and "no nri.onnx" in empty.problems["nri"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "nri.onnx").write_bytes(b"not a model at all")
    write_nri(tmp_path / "other", layout="smpl29")
    with caplog.at_level("WARNING"):
        bad = load_models(tmp_path / "bad", device="cpu")
        other = load_models(tmp_path / "other", device="cpu")
    assert "cannot load" in bad.problems["nri"]
    assert "skeleton layout 'smpl29'" in other.problems["nri"]
    assert any("nri model not used" in r.message for r in caplog.records)


# --------------------------------------------------------------------------- the service, frame by frame


def test_strengths_follow_the_model_through_the_ema(tmp_path: Path) -> None:
    write_nri(tmp_path)
    write_stga(tmp_path)
    svc = InferenceService(ServiceConfig(models_dir=tmp_path, device="cpu", edge_tau_s=0.25, gate_tau_s=None))
    dt = 1 / 30
    outs = [svc.process(duet_frame(k, k * dt)) for k in range(40)]
    # the window (8 frames at 30 fps) covers its 7/30 s span from frame 7 on; before, strengths stay 0
    assert outs[6].strengths.max() == 0.0 and outs[6].detail == "warming up"
    alpha = 1 - math.exp(-dt / 0.25)
    # frame 7 is the first with a model output: s = alpha * 0.9, then s_k = 0.9 (1 − (1 − α)^(k−6))
    assert outs[7].strengths[STRONG_FWD] == pytest.approx(alpha * 0.9, rel=1e-4)
    assert outs[39].strengths[STRONG_FWD] == pytest.approx(0.9 * (1 - (1 - alpha) ** 33), rel=1e-4)
    assert outs[39].status == "ok" and outs[39].detail == ""
    assert set(outs[39].forecasts) == {80, 160}
    np.testing.assert_allclose(outs[39].forecasts[160][..., 0], outs[39].joints[..., 0] + 0.1, atol=1e-5)
    errors = dict((h, e) for h, e, _ in svc.forecast_errors())  # no gate: the model's own errors
    assert errors[80] == pytest.approx(0.0, abs=1e-5) and errors[160] == pytest.approx(0.1, abs=1e-5)
    # one dancer leaves: no NRI, strings fade with the same time constant, status one-dancer
    later = [svc.process(duet_frame(40 + k, (40 + k) * dt, people=1)) for k in range(30)]
    assert later[-1].status == "one-dancer"
    assert later[-1].strengths[STRONG_FWD] < outs[39].strengths[STRONG_FWD] * 0.5


def test_no_model_status_and_frames_still_flow(tmp_path: Path) -> None:
    svc = InferenceService(ServiceConfig(models_dir=tmp_path / "nothing", device="cpu"))
    out = svc.process(duet_frame(0, 0.0))
    assert out.status == "no-model" and "nri: no nri.onnx" in out.detail and "stga" in out.detail
    assert out.joints.shape == (2, J, 3) and np.abs(out.joints).sum() > 0 and out.strengths.max() == 0
    packets = svc.encode(out)
    addresses = {a for p in packets for a, _ in decode_packet(p)}
    assert "/istrings/dancer/1/joints" in addresses and "/istrings/edges/17" in addresses


def test_refiner_replaces_the_smoothing_filter(tmp_path: Path) -> None:
    write_mkff(tmp_path, shift=0.5)
    svc = InferenceService(ServiceConfig(models_dir=tmp_path, device="cpu"))
    assert svc.cleaner.refiner is svc.models.refiner
    f = duet_frame(0, 0.0)
    out = svc.process(f)
    np.testing.assert_allclose(out.joints[..., 1], f.world[..., 1] + 0.5, atol=1e-5)


def test_the_gate_replaces_a_wrong_forecast_by_the_baseline(tmp_path: Path) -> None:
    """The test forecaster is exact at 80 ms and 10 cm off at 160 ms on still dancers: with the
    gate (the default) the 160 ms output falls back to holding the pose, the 80 ms one stays."""
    write_stga(tmp_path)
    svc = InferenceService(ServiceConfig(models_dir=tmp_path, device="cpu"))
    outs = [svc.process(duet_frame(k, k / 30)) for k in range(40)]
    np.testing.assert_allclose(outs[-1].forecasts[160], outs[-1].joints, atol=1e-5)
    np.testing.assert_allclose(outs[-1].forecasts[80], outs[-1].joints + STGA_OFFSETS[0], atol=1e-5)
    gate = svc.summary()["forecast_gate"]
    assert gate["weights"] == [1.0, 0.0] and gate["model"][1] == pytest.approx(0.1, abs=1e-5)
    (_, e80, _), (_, e160, n160) = svc.forecast_errors()
    # 160 ms is 5 frames at 30 fps: the 5 forecasts made before the first one was resolved went
    # out as the model made them, every later one was the baseline (exact on still dancers)
    assert e80 == pytest.approx(0.0, abs=1e-6) and e160 == pytest.approx(0.1 * 5 / n160, rel=1e-4)


def test_rolling_timings() -> None:
    rt = RollingTimings(("a",), size=4)
    for v in (1, 2, 3, 4, 1000):  # the oldest (1 ms) falls out of the ring
        rt.add("a", v * 1_000_000)
    assert rt.count("a") == 5 and sorted(rt.samples_ms("a")) == [2, 3, 4, 1000]
    assert rt.summary()["a"]["max"] == 1000


def test_model_window_is_centred_on_the_duet(tmp_path: Path) -> None:
    buf = FrameBuffer()
    for k in range(10):
        buf.push(k / 30, duet_frame(k, k / 30, offset=5.0).world)
    w = model_window(buf, WindowSpec(8, 30.0, norm=Normalization(2.0, 1.0)))  # (T, N, 6)
    pel0, pel1 = w[-1, 0, :3], w[-1, J, :3]
    np.testing.assert_allclose((pel0 + pel1) / 2, 0.0, atol=1e-6)  # duet centre at the origin
    assert pel1[0] - pel0[0] == pytest.approx(1.2 / 2.0, rel=1e-5)  # relative position kept, scaled


def test_nri_runs_at_most_once_per_model_frame(tmp_path: Path) -> None:
    write_nri(tmp_path)
    runs: list[float] = []

    def count(cfg: ServiceConfig) -> int:
        svc = InferenceService(cfg)
        model = svc.models.strings
        assert model is not None
        real = model.strengths

        def counted(window: np.ndarray) -> np.ndarray:
            runs.append(1.0)
            return real(window)

        model.strengths = counted  # type: ignore[method-assign]
        runs.clear()
        for k in range(120):  # 1 s at 120 Hz; the model's window is at 30 Hz
            svc.process(duet_frame(k, k / 120))
        return len(runs)

    default = count(ServiceConfig(models_dir=tmp_path, device="cpu"))
    every = count(ServiceConfig(models_dir=tmp_path, device="cpu", nri_interval_s=0.0))
    warm = 120 - 28  # frames once the 7/30 s window is covered (from frame 28 on)
    assert every == warm
    assert default == pytest.approx(warm / 4, abs=1)


def test_non_finite_strengths_are_dropped_counted_and_logged_once(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """One NaN in the EMA would stay there for good: a non-finite model output is not used."""
    write_nri(tmp_path, nan=True)
    svc = InferenceService(ServiceConfig(models_dir=tmp_path, device="cpu", edge_tau_s=0.25))
    with caplog.at_level("ERROR", logger="inference.service"):
        outs = [svc.process(duet_frame(k, k / 30)) for k in range(40)]
    assert all(np.isfinite(o.strengths).all() for o in outs)
    assert outs[-1].strengths.max() == 0.0  # nothing usable came: the strings stay off
    assert svc.counters.model_errors["nri"] == 40 - 7  # every run from the first covered window on
    logged = [r for r in caplog.records if "nri model failed" in r.getMessage()]
    assert len(logged) == 1 and "non-finite strengths" in (logged[0].exc_text or "")


class CountedForecaster:
    """A forecaster that counts its runs (the service reads ``spec``, ``horizons_ms`` and calls it)."""

    def __init__(self, inner: ForecastModel) -> None:
        self.inner, self.spec, self.horizons_ms, self.calls = inner, inner.spec, inner.horizons_ms, 0

    def __call__(self, window: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.inner(window)


def test_stga_runs_at_most_once_per_model_frame_and_every_frame_gets_a_forecast(tmp_path: Path) -> None:
    """At 120 Hz input a 30 fps forecaster runs on every 4th frame; the frames between send its last forecast."""
    write_stga(tmp_path, fps=30.0)

    def run(cfg: ServiceConfig) -> tuple[int, list[FrameOutput]]:
        svc = InferenceService(cfg)
        assert svc.models.forecast is not None
        counted = CountedForecaster(svc.models.forecast)
        svc.models.forecast = counted  # type: ignore[assignment]
        outs = [svc.process(duet_frame(k, k / 120)) for k in range(120)]
        return counted.calls, outs

    every, _ = run(ServiceConfig(models_dir=tmp_path, device="cpu", stga_interval_s=0.0, gate_tau_s=None))
    default, outs = run(ServiceConfig(models_dir=tmp_path, device="cpu", gate_tau_s=None))
    assert every == 120 and default == 30
    assert all(set(o.forecasts) == {80, 160} for o in outs)  # a forecast on every frame
    np.testing.assert_allclose(outs[-1].forecasts[160][..., 0], outs[-1].joints[..., 0] + 0.1, atol=1e-5)


class FailingForecaster(CountedForecaster):
    def __call__(self, window: np.ndarray) -> np.ndarray:
        self.calls += 1
        raise RuntimeError("session failed")


def test_background_runs_keep_the_models_out_of_the_frame_and_their_results_arrive(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """At 120 Hz input (faster than the 30 fps models) the NRI and STGA-Net run on the worker
    thread: a frame never waits for them, their results go out from a later frame on, each still
    at most once per model frame; a failing run is counted and logged once, as inside a frame."""
    import time as _time

    write_nri(tmp_path)
    write_stga(tmp_path, fps=30.0)
    svc = InferenceService(ServiceConfig(models_dir=tmp_path, device="cpu", edge_tau_s=0.0, gate_tau_s=None,
                                         background_models=True))
    assert svc.models.forecast is not None
    counted = CountedForecaster(svc.models.forecast)
    svc.models.forecast = counted  # type: ignore[assignment]
    outs = []
    for k in range(240):  # 2 s at 120 Hz
        outs.append(svc.process(duet_frame(k, k / 120)))
        _time.sleep(0.001)  # the worker gets its turn, as between real frames
    assert svc._worker is not None  # the background path was taken
    assert 40 <= counted.calls <= 61  # at most 60, once per 1/30 s (fewer when a run outlasts a model frame)
    assert all(set(o.forecasts) == {80, 160} for o in outs[40:])
    np.testing.assert_allclose(outs[-1].forecasts[160][..., 0], outs[-1].joints[..., 0] + 0.1, atol=1e-5)
    assert outs[-1].strengths[STRONG_FWD] == pytest.approx(0.9, abs=1e-5)  # τ = 0: the model's last output
    svc.close()
    assert svc._worker is None
    failing = InferenceService(ServiceConfig(models_dir=tmp_path, device="cpu", gate_tau_s=None,
                                             background_models=True))
    assert failing.models.forecast is not None
    broken = FailingForecaster(failing.models.forecast)
    failing.models.forecast = broken
    with caplog.at_level("ERROR", logger="inference.service"):
        for k in range(120):
            out = failing.process(duet_frame(k, k / 120))
            _time.sleep(0.001)
    failing.close()
    assert out.forecasts == {} and out.joints.shape == (2, J, 3)  # frames keep flowing without forecasts
    assert failing.counters.model_errors["stga"] >= broken.calls - 1 >= 20
    assert len([r for r in caplog.records if "stga model failed" in r.getMessage()]) == 1
