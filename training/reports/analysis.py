"""The numbers of a rehearsal report: strings over time, hubs, tension and release, forecast quality.

Everything here is numpy on canonical joints ``(T, D, J, 3)`` (metres, y up, seconds) and on a
:class:`StringsTimeline` — the strength of every (dancer-0 joint i, dancer-1 joint j) pair over
time, from the NRI model (``nri.onnx`` through :mod:`inference.models_live`) or from the echo
scores (:mod:`training.reports.echo`). The models run through ONNX Runtime; nothing imports torch.

Definitions (seconds, metres):

* a string is **strong** in a window when its strength is at least ``threshold`` (0.8, the
  seed's confidence readout);
* **time share** of a pair = the fraction of windows in which it is strong;
* **hub score** of a joint = the fraction of windows in which it carries at least one strong
  string (to any joint of the partner);
* **tension / release**: while a string is strong, the distance between its two joints grows
  (moving apart: tension, the paper's "elastic band" in opposition) or shrinks (release);
  |rate| below ``still_mps`` is "held". An **episode** is a run of consecutive strong windows
  of one class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from inference.window import interpolate
from stream.forecast_gate import ForecastGate
from stream.skeleton import CANONICAL, J

D = 2
STRONG = 0.8
"""The seed's "strong string" confidence."""


def joint_name(d: int, j: int) -> str:
    """``"A.l_wrist"`` for dancer 0 (A) or ``"B.r_knee"`` for dancer 1 (B)."""
    return f"{'AB'[d]}.{CANONICAL.joint_names[j]}"


def pair_name(i: int, j: int) -> str:
    """``"A.l_wrist–B.r_knee"``: dancer-0 joint i and dancer-1 joint j."""
    return f"{joint_name(0, i)}–{joint_name(1, j)}"


@dataclass(frozen=True)
class StringsTimeline:
    """Pair strengths over a session.

    Attributes:
        source: ``"nri"`` or ``"echo"``.
        times: ``(W,)`` seconds of each estimate.
        strength: ``(W, J, J)`` float32 in [0, 1], dancer-0 joint i vs dancer-1 joint j.
        etype: ``(W, J, J)`` int8 edge type of each pair (1 … K-1; 0 where unknown).
        type_names: type → name for the legend.
        threshold: strong-string threshold.
        note: one line on how the strengths were made (shown in the report).
        lag_s: ``(W, J, J)`` seconds (echo strings: positive when dancer 0 leads), or None.
        masked: windows whose strengths were zeroed (echo: nearly every pair moved together).
    """

    source: str
    times: NDArray[np.float64]
    strength: NDArray[np.float32]
    etype: NDArray[np.int8]
    type_names: dict[int, str]
    threshold: float
    note: str
    lag_s: NDArray[np.float32] | None = None
    masked: int = 0

    @property
    def strong(self) -> NDArray[np.bool_]:
        """``(W, J, J)`` whether each pair is strong in each window."""
        return np.asarray(self.strength >= self.threshold)


def moving_average(x: NDArray[np.floating], k: int) -> NDArray[np.float64]:
    """Centred mean over ``k`` samples along axis 0, the ends repeated: ``(T, ...)`` → ``(T, ...)``."""
    a = np.asarray(x, np.float64)
    if k <= 1:
        return a
    pad = np.pad(a, [(k // 2, k - 1 - k // 2)] + [(0, 0)] * (a.ndim - 1), mode="edge")
    c = np.cumsum(np.concatenate([np.zeros((1, *a.shape[1:])), pad]), axis=0)
    return (c[k:] - c[:-k]) / k


def model_windows(
    times: NDArray[np.floating], joints: NDArray[np.floating], ends: NDArray[np.floating], frames: int, fps: float
) -> NDArray[np.float32]:
    """Windows of ``frames`` frames at ``fps`` ending at each time of ``ends (M,)``: ``(M, frames, D, J, 3)``."""
    offsets = (np.arange(frames) - (frames - 1)) / fps  # (frames,) seconds, oldest first
    at = (np.asarray(ends)[:, None] + offsets[None, :]).reshape(-1)  # (M·frames,)
    return interpolate(times, joints, at).reshape(len(ends), frames, D, J, 3)


def nri_strings(
    times: NDArray[np.floating], joints: NDArray[np.floating], model: Any, *, hop_s: float = 0.25,
    threshold: float = STRONG, progress: Callable[[float], None] | None = None,
) -> StringsTimeline:
    """Strengths from an NRI encoder (:class:`inference.models_live.StringsModel`) every ``hop_s``.

    Each estimate uses the model's own window (its frames at its fps) ending at that time,
    normalised as on the live path (:func:`inference.window.normalize`).
    """
    from inference.window import features, normalize

    spec = model.spec
    span = (spec.frames - 1) / spec.fps
    ends = np.arange(float(times[0]) + span, float(times[-1]) + 1e-9, hop_s)
    if ends.size == 0:
        raise ValueError(f"the session ({times[-1] - times[0]:.2f} s) is shorter than the model's window "
                         f"({span:.2f} s)")
    wins = model_windows(times, joints, ends, spec.frames, spec.fps)  # (W, T, D, J, 3)
    strength = np.zeros((len(ends), J, J), np.float32)
    etype = np.zeros((len(ends), J, J), np.int8)
    from inference.models_live import combine_directions

    for w, win in enumerate(wins):
        probs = model.probabilities(normalize(features(win, spec.fps), spec))  # (E, K)
        strength[w] = combine_directions(probs, spec.joints0, spec.joints1, model.combine)
        P = len(spec.joints0) * len(spec.joints1)
        best = 1 + np.maximum(probs[:P, 1:], probs[P:, 1:]).argmax(axis=1)  # (P,) strongest non-null type
        etype[w][np.ix_(spec.joints0, spec.joints1)] = best.reshape(len(spec.joints0), len(spec.joints1))
        if progress is not None:
            progress((w + 1) / len(wins))
    K = int(model.model.metadata.config.get("edge_types", 2))
    return StringsTimeline(
        source="nri", times=ends, strength=strength, etype=etype,
        type_names={k: f"type {k}" for k in range(1, K)}, threshold=threshold,
        note=f"NRI encoder ({spec.frames} frames at {spec.fps:g} fps per estimate, every {hop_s:g} s); "
             "strength = 1 − P(no string)",
    )


def echo_timeline(
    times: NDArray[np.floating], joints: NDArray[np.floating], fps: float, *, window_s: float = 5.0,
    hop_s: float = 0.25, threshold: float = STRONG,
) -> StringsTimeline:
    """Echo strings (:func:`training.reports.echo.echo_strings`) as a timeline (times on the clip's clock)."""
    from training.reports.echo import TYPE_NAMES, echo_strings

    e = echo_strings(joints, fps, window_s=window_s, hop_s=hop_s)
    return StringsTimeline(
        source="echo", times=float(times[0]) + e.times, strength=e.strength, etype=e.etype,
        type_names=dict(TYPE_NAMES), threshold=threshold, lag_s=e.lag_s, masked=int(e.common.sum()),
        note=f"echo scores: lagged correlation of body-relative limb motion over {e.window_s:g} s windows "
             f"every {hop_s:g} s; {int(e.common.sum())} of {len(e.times)} windows "
             "zeroed because nearly every pair moved together (a cut or a jump)",
    )


@dataclass(frozen=True)
class TopString:
    i: int
    j: int
    time_share: float
    mean_strength: float
    peak_strength: float
    etype: str
    lag_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "pair": pair_name(self.i, self.j), "dancer0_joint": CANONICAL.joint_names[self.i],
            "dancer1_joint": CANONICAL.joint_names[self.j], "time_share": round(self.time_share, 4),
            "mean_strength": round(self.mean_strength, 4), "peak_strength": round(self.peak_strength, 4),
            "type": self.etype, "lag_s": None if self.lag_s is None else round(self.lag_s, 3),
        }


def top_strings(tl: StringsTimeline, k: int = 10) -> list[TopString]:
    """The ``k`` pairs with the largest time share (ties: mean strength)."""
    share = tl.strong.mean(axis=0)  # (J, J)
    mean = tl.strength.mean(axis=0)
    order = np.lexsort((-mean.ravel(), -share.ravel()))[:k]
    out = []
    for flat in order:
        i, j = divmod(int(flat), J)
        strong = tl.strong[:, i, j]
        sel = strong if strong.any() else np.ones_like(strong)
        types = tl.etype[sel, i, j]
        t = int(np.bincount(types, minlength=2).argmax()) if types.size else 0
        lag = float(np.median(tl.lag_s[sel, i, j])) if tl.lag_s is not None else None
        out.append(TopString(i, j, float(share[i, j]), float(mean[i, j]), float(tl.strength[:, i, j].max()),
                             tl.type_names.get(t, "?"), lag))
    return out


def hub_scores(tl: StringsTimeline) -> NDArray[np.float64]:
    """``(D, J)``: fraction of windows in which each joint carries at least one strong string."""
    s = tl.strong  # (W, J, J)
    return np.stack([s.any(axis=2).mean(axis=0), s.any(axis=1).mean(axis=0)]).astype(np.float64)


def pair_distance(
    times: NDArray[np.floating], joints: NDArray[np.floating], i: int, j: int, at: NDArray[np.floating]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Distance (m) between dancer-0 joint i and dancer-1 joint j at ``at`` and its rate (m/s), smoothed over 0.2 s."""
    dist = np.linalg.norm(np.asarray(joints[:, 0, i], np.float64) - np.asarray(joints[:, 1, j], np.float64), axis=-1)
    ts = np.asarray(times, np.float64)
    dt = float(np.median(np.diff(ts))) if len(ts) > 1 else 1.0
    smooth = moving_average(dist, max(1, round(0.2 / dt)))
    rate = np.gradient(smooth, ts) if len(ts) > 1 else np.zeros_like(smooth)
    return np.interp(at, ts, smooth), np.interp(at, ts, rate)


@dataclass(frozen=True)
class Episode:
    """A run of consecutive strong windows of one string."""

    i: int
    j: int
    start_s: float
    end_s: float
    mean_rate_mps: float
    kind: str  # "tension" (apart), "release" (together) or "held"
    distance_m: float

    def as_dict(self) -> dict[str, Any]:
        return {"pair": pair_name(self.i, self.j), "start_s": round(self.start_s, 2), "end_s": round(self.end_s, 2),
                "kind": self.kind, "mean_rate_mps": round(self.mean_rate_mps, 3),
                "mean_distance_m": round(self.distance_m, 3)}


def tension_episodes(
    tl: StringsTimeline, times: NDArray[np.floating], joints: NDArray[np.floating], pairs: list[tuple[int, int]],
    still_mps: float = 0.05,
) -> list[Episode]:
    """Episodes of the given strings, ranked by |mean rate| × duration (the most striking first).

    Each strong window is classed by the rate of the pair's distance at its time (tension above
    ``still_mps``, release below ``-still_mps``, else held); an episode is a run of consecutive
    strong windows of one class.
    """
    hop = float(np.median(np.diff(tl.times))) if len(tl.times) > 1 else 0.0
    out: list[Episode] = []
    for i, j in pairs:
        strong = tl.strong[:, i, j]
        if not strong.any():
            continue
        dist, rate = pair_distance(times, joints, i, j, tl.times)
        cls = np.where(rate > still_mps, 1, np.where(rate < -still_mps, 2, 3)) * strong  # 0 where not strong
        change = np.flatnonzero(np.diff(cls) != 0) + 1
        for a, b in zip(np.concatenate([[0], change]), np.concatenate([change, [len(cls)]]), strict=True):
            if cls[a] == 0:
                continue
            kind = {1: "tension", 2: "release", 3: "held"}[int(cls[a])]
            out.append(Episode(i, j, float(tl.times[a] - hop / 2), float(tl.times[b - 1] + hop / 2),
                               float(rate[a:b].mean()), kind, float(dist[a:b].mean())))
    return sorted(out, key=lambda e: -abs(e.mean_rate_mps) * (e.end_s - e.start_s))


@dataclass(frozen=True)
class ForecastQuality:
    """STGA-Net error over a session.

    Attributes:
        times: ``(F,)`` seconds of the newest observed frame of each forecast.
        horizons_ms: ``(H,)``.
        error_mm: ``(F, H)`` mean per-joint position error of both dancers (MPJPE), mm; NaN where
            the horizon runs past the end of the session.
        baseline_mm: ``(F, H)`` the same for "hold the last frame", for scale.
        constant_mm: ``(F, H)`` the same for constant velocity.
        gated_mm: ``(F, H)`` the same for the forecasts the live process would have sent: the
            model behind the online gate (:mod:`stream.forecast_gate`) run through the session.
    """

    times: NDArray[np.float64]
    horizons_ms: tuple[int, ...]
    error_mm: NDArray[np.float64]
    baseline_mm: NDArray[np.float64]
    constant_mm: NDArray[np.float64]
    gated_mm: NDArray[np.float64]
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def means(self) -> dict[str, dict[str, float | None]]:
        """Per horizon, the mean of each forecaster over the forecasts whose target lies in the session."""
        out: dict[str, dict[str, float | None]] = {}
        series = (("stga_mm", self.error_mm), ("gated_mm", self.gated_mm), ("hold_last_mm", self.baseline_mm),
                  ("constant_velocity_mm", self.constant_mm))
        for k, h in enumerate(self.horizons_ms):
            ok = np.isfinite(self.error_mm[:, k])
            out[str(h)] = {name: round(float(a[ok, k].mean()), 1) if ok.any() else None for name, a in series}
        return out


def _mpjpe_mm(pred: NDArray[np.floating], truth: NDArray[np.floating]) -> NDArray[np.float64]:
    """``(h,)`` mean per-joint error in mm of ``pred`` against ``truth`` ``(h, D, J, 3)`` m."""
    return np.asarray(1000 * np.linalg.norm(pred - truth, axis=-1).mean(axis=(1, 2)), dtype=np.float64)


def forecast_quality(
    times: NDArray[np.floating], joints: NDArray[np.floating], model: Any, *, hop_s: float = 0.1,
    progress: Callable[[float], None] | None = None,
) -> ForecastQuality:
    """Run the forecaster (:class:`inference.models_live.ForecastModel`) every ``hop_s`` and score it,
    with the baselines and with the online gate the live process puts behind it (fed every frame
    of the session in time order, as live)."""
    spec = model.spec
    span = (spec.frames - 1) / spec.fps
    ends = np.arange(float(times[0]) + span, float(times[-1]) + 1e-9, hop_s)
    if ends.size == 0:
        raise ValueError(f"the session is shorter than the forecaster's window ({span:.2f} s)")
    wins = model_windows(times, joints, ends, spec.frames, spec.fps)  # (F, T, D, J, 3)
    lead = np.asarray(model.lead_s, np.float64)  # (H,) s after the newest frame
    gate = ForecastGate(tuple(lead))
    complete = np.isfinite(joints).reshape(len(times), -1).all(axis=1)  # (T,)
    err = np.full((len(ends), len(lead)), np.nan)
    base, const, gated = np.full_like(err, np.nan), np.full_like(err, np.nan), np.full_like(err, np.nan)
    last_t = float(times[-1])
    seen = 0  # frames given to the gate so far
    for f, win in enumerate(wins):
        while seen < len(times) and times[seen] <= ends[f] + 1e-9:
            gate.observe(float(times[seen]), joints[seen], bool(complete[seen]))
            seen += 1
        pred = model(win)  # (H, D, J, 3)
        vel = (win[-1] - win[-2]) * spec.fps  # (D, J, 3) m/s
        sent = gate.forecast(float(ends[f]), pred, win[-1], vel)
        ok = ends[f] + lead <= last_t + 1e-9
        if ok.any():
            truth = interpolate(times, joints, ends[f] + lead[ok])  # (h, D, J, 3)
            err[f, ok] = _mpjpe_mm(pred[ok], truth)
            base[f, ok] = _mpjpe_mm(win[-1][None], truth)
            const[f, ok] = _mpjpe_mm(win[-1][None] + vel[None] * lead[ok, None, None, None], truth)
            gated[f, ok] = _mpjpe_mm(sent[ok], truth)
        if progress is not None:
            progress((f + 1) / len(wins))
    return ForecastQuality(times=ends, horizons_ms=tuple(int(h) for h in model.horizons_ms), error_mm=err,
                           baseline_mm=base, constant_mm=const, gated_mm=gated,
                           note=f"STGA-Net ({spec.frames} frames at {spec.fps:g} fps), every {hop_s:g} s; "
                                f"'as sent' = behind the live process's online gate")
