"""Synthetic duets with planted strings: the ground truth the string models are judged against.

Each dancer is a canonical skeleton (:data:`stream.skeleton.CANONICAL`, ``J = 18``, metres,
y up) with its own fixed bone lengths (adult proportions, 1.55–1.90 m tall, ±4 % per bone).
It moves by *joint-angle oscillators*: every articulated joint has up to three angles
(flexion, abduction, twist), each the sum of a few sinusoids of random frequency (within
0.2–2 Hz; the torso and legs use the slower part, and big moves are slowed so that no angle
turns faster than 1.5–4 rad/s) mapped into that joint's anatomical range (elbows and knees
flex one way only). Forward kinematics from these local rotations keeps every bone length
exact. Both dancers stand on opposite ends of a slowly turning and breathing diameter
(0.6–1.5 m) through a drifting shared centre, facing each other give or take a sway, and
stand on the floor: each frame is lifted so the lower foot touches ``y = 0``, which also
gives a natural vertical bob. Peak speeds (30 s clips): wrists and feet ≈ 2.5 m/s at the
99th percentile, ≤ 4 m/s.

Planted strings. A string ``(i, j)`` makes dancer-0 joint ``i`` drive dancer-1 joint ``j``
with a delay of ``lag`` frames and a strength ``s`` in (0, 1]. Joint ``j`` names the bone
``parent(j) → j``; the string replaces that bone's local angle signals (its rotation
relative to the parent bone) by a blend::

    u1_j(t) = (1 - s) · u1_j_own(t) + s · u0_i(t - lag / fps)

where ``u ∈ [-1, 1]`` are the normalised angle activations (``angle = mid + half · u``). So
``j`` bends relative to its parent the way ``i`` bent ``lag`` frames before, mapped into
``j``'s own range — always anatomically valid, and mirrored for free because activations
have the same anatomical meaning on both sides (abduction is "outward" on the left and the
right). Driver angles that ``i`` does not have (a hinge has no abduction or twist) are taken
from ``i``'s flexion, so nothing in ``j`` depends on a hidden signal. Only the joints with
their own angles can drive or be driven (:data:`STRING_JOINTS`: head, elbows, wrists,
knees, ankles, feet); undriven joints keep independent oscillators.

World coupling (``coupling="world"``). The local mode's pull is invisible to a model that
forecasts *world* motion: the driven bone copies a lagged *relative* angle, so the driver's
world state does not say where the driven joint goes next (a decoder given the true strings
forecasts no better than one given none). In world mode the driven dancer-1 bone
``parent(j) → j`` instead takes the *world direction* of dancer-0's bone ``parent(i) → i``
from ``lag`` frames earlier, copied as it is (not mirrored: the same world direction, so the
map is the identity and commutes with any rotation about y), blended by strength::

    d1_j(t) = normalise((1 - s) · d1_j_own(t) + s · d0_i(t - lag / fps))

The bone keeps its own length, and the whole subtree below ``j`` turns with it (the minimal
rotation taking the own direction to ``d1_j``), so every bone length stays exact and, for
``s = 1``, the driven bone points exactly where the driver's bone pointed ``lag`` frames ago:
the driven joint's next world position is a direct function of the driver's recent world
state, as with NRI's springs. Use a short lag (``lag_s`` of 1–2 frames). The angle ranges do
not hold for a world-driven bone (an elbow may bend backwards); undriven joints are as in
local mode. Caveat (measured, see the duet NRI notes): at 30 fps the driven joint's next frame
is almost as well forecast from its own smooth past, so a decoder given the true strings gains
only ~1 % over one given none; at 10 fps (``lag_s = 0.1``) the gain on driven joints is ~10 %.

Derived motion: the children of a driven joint inherit its motion (a driven elbow carries
its wrist; a driven knee carries ankle and foot; the floor contact lifts the whole dancer
when a driven leg moves). The ground truth marks only ``(i, j)``.

Detectability (30 s clips, ``tests/stream/test_synthetic.py``): a plain lagged-correlation
score of bone directions (relative to the parent bone, and in each dancer's facing frame)
ranks the planted pairs with AUROC ≈ 0.99 over all ``J × J`` pairs. Raw world-frame joint
velocities show the strings much less (per-pair AUROC ≈ 0.7): a string acts *relative to
the parent bone*, so a model should see relative (bone) motion, e.g. by message passing
along each dancer's skeleton or by bone features.

Ground truth as saved in :class:`stream.clip.Clip`: ``edges`` ``(J, J)`` float32 with the
strength at ``[i, j]`` and 0 elsewhere, ``edge_lag`` in frames.

Everything is seeded (:class:`numpy.random.Generator`) and a function of time only, so a clip,
a batch of training clips (:func:`make_dataset`) and the endless live stream
(:class:`SyntheticStream`) share one renderer and the stream has no seam.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from stream.clip import Clip
from stream.errors import IStringsError
from stream.skeleton import CANONICAL, J


class SyntheticError(IStringsError, ValueError):
    """A synthetic-duet setting is out of range."""


D = 2
Coupling = Literal["local", "world"]
"""How a string acts: on the driven bone's local angles, or on its world direction."""
COUPLINGS: tuple[str, ...] = get_args(Coupling)
TWO_PI = 2.0 * np.pi

# Rest offsets of every joint from its parent for a 1.74 m adult, in the parent bone's frame
# (body frame at rest: facing +z, the dancer's left is +x, y up), metres.
_TEMPLATE = np.array([
    [0.0, 0.0, 0.0],      # 0 pelvis (root)
    [0.0, 0.22, 0.0],     # 1 spine
    [0.0, 0.26, 0.0],     # 2 neck
    [0.0, 0.20, 0.0],     # 3 head (centre; the crown is 0.11 higher)
    [0.19, 0.0, 0.0],     # 4 l_shoulder
    [0.0, -0.29, 0.0],    # 5 l_elbow
    [0.0, -0.26, 0.0],    # 6 l_wrist
    [-0.19, 0.0, 0.0],    # 7 r_shoulder
    [0.0, -0.29, 0.0],    # 8 r_elbow
    [0.0, -0.26, 0.0],    # 9 r_wrist
    [0.10, 0.0, 0.0],     # 10 l_hip
    [0.0, -0.43, 0.0],    # 11 l_knee
    [0.0, -0.42, 0.0],    # 12 l_ankle
    [0.0, -0.06, 0.15],   # 13 l_foot
    [-0.10, 0.0, 0.0],    # 14 r_hip
    [0.0, -0.43, 0.0],    # 15 r_knee
    [0.0, -0.42, 0.0],    # 16 r_ankle
    [0.0, -0.06, 0.15],   # 17 r_foot
])
_ANKLE_HEIGHT = 0.075  # ankle centre above the floor at rest, metres (1.74 m template)
_TOE_HEIGHT = 0.015
_TEMPLATE_HEIGHT = 1.74  # ankle height + shin + thigh + torso + neck + head + 0.11 crown

# Angle ranges (lo, hi) in radians of each joint's local rotation
# Q_j = Rz(side · abduction) · Rx(flexion) · Ry(side · twist), applied to bone parent(j) → j.
# A zero range means the joint lacks that angle (hinges; the head's invisible twist).
_RANGES = np.zeros((J, 3, 2))
_RANGES[1] = [(-0.10, 0.30), (-0.10, 0.10), (-0.2, 0.2)]     # spine: bend, side bend, twist
_RANGES[2] = [(-0.10, 0.20), (-0.10, 0.10), (-0.15, 0.15)]   # neck
_RANGES[3] = [(-0.35, 0.45), (-0.30, 0.30), (0.0, 0.0)]      # head: nod, tilt
for _j in (5, 8):                                            # upper arm (shoulder joint)
    _RANGES[_j] = [(-1.9, 0.6), (0.05, 1.3), (-0.7, 0.7)]
for _j in (6, 9):                                            # forearm: elbow flexes forward only
    _RANGES[_j, 0] = (-2.2, -0.05)
for _j in (11, 15):                                          # thigh (hip joint)
    _RANGES[_j] = [(-0.8, 0.3), (-0.1, 0.4), (-0.4, 0.4)]
for _j in (12, 16):                                          # shin: knee flexes backward only
    _RANGES[_j, 0] = (0.0, 1.2)
for _j in (13, 17):                                          # foot: dorsi/plantar flexion
    _RANGES[_j, 0] = (-0.35, 0.45)
_MID = _RANGES.mean(axis=-1)  # (J, 3)
_HALF = 0.5 * (_RANGES[..., 1] - _RANGES[..., 0])  # (J, 3)
# Fraction of the frequency range each joint's oscillators may use (torso slow, hands and feet quick).
_TEMPO = np.ones(J)
_TEMPO[[1, 2]] = 0.3      # spine, neck
_TEMPO[[3, 5, 8]] = 0.7   # head, upper arms
_TEMPO[[11, 15]] = 0.5    # thighs: the legs carry the weight
_TEMPO[[12, 16]] = 0.6    # shins
_TEMPO[[13, 17]] = 0.8    # feet
# The fastest each joint angle turns, rad/s: arms swing quicker than the weight-bearing legs.
_MAX_ANGULAR_SPEED = np.full(J, 4.0)
_MAX_ANGULAR_SPEED[[1, 2]] = 1.5
_MAX_ANGULAR_SPEED[[11, 12, 13, 15, 16, 17]] = 2.5
_SIDE = np.array([1.0 if n[:2] != "r_" else -1.0 for n in CANONICAL.joint_names])  # (J,)

ARTICULATED: tuple[int, ...] = tuple(int(j) for j in np.flatnonzero(_HALF.sum(axis=1) > 0))
"""Joints with their own angle oscillators (spine, neck, head, arms, legs below the hips)."""

STRING_JOINTS: tuple[int, ...] = (3, 5, 6, 8, 9, 11, 12, 13, 15, 16, 17)
"""Joints that may drive (dancer 0) or be driven (dancer 1): head, elbows, wrists, knees,
ankles, feet. Spine and neck are left out: they carry the whole upper body."""

# Which driver angle feeds each driven angle: the same one, or the driver's flexion when it lacks it.
_SOURCE_SLOT = np.where(_HALF > 0, np.arange(3)[None, :], 0)  # (J, 3)
_ACTIVE = np.flatnonzero(_HALF.reshape(-1) > 0)  # flat j·3 + k indices of the angles that exist
_ART = np.array(ARTICULATED)


@dataclass(frozen=True)
class SyntheticConfig:
    """Settings of one synthetic duet.

    Attributes:
        duration_s: clip length, seconds.
        fps: frames per second.
        num_strings: number of random strings (ignored when ``strings`` is given).
        strings: explicit ``(i, j)`` pairs, dancer-0 joint i drives dancer-1 joint j
            (both from :data:`STRING_JOINTS`, each j at most once).
        lag_s: delay of every string, seconds (rounded to whole frames).
        strength: blend weight of every string, in (0, 1].
        seed: seed of the random generator (bodies, oscillators, paths, strings).
        oscillators: sinusoids per joint angle.
        freq_hz: ``(lo, hi)`` range of oscillator frequencies, Hz.
        height_m: ``(lo, hi)`` range of the dancers' standing heights, metres.
        coupling: ``"local"`` (a string drives the bone's angles relative to its parent) or
            ``"world"`` (it drives the bone's world direction; see the module doc).
    """

    duration_s: float = 30.0
    fps: float = 30.0
    num_strings: int = 4
    strings: tuple[tuple[int, int], ...] | None = None
    lag_s: float = 0.2
    strength: float = 0.9
    seed: int = 0
    oscillators: int = 3
    freq_hz: tuple[float, float] = (0.2, 2.0)
    height_m: tuple[float, float] = (1.55, 1.90)
    coupling: Coupling = "local"

    def __post_init__(self) -> None:
        check_coupling(self.coupling)
        if not (self.fps > 0 and np.isfinite(self.fps)):
            raise SyntheticError(f"fps must be positive, got {self.fps}")
        if not self.duration_s * self.fps >= 1:
            raise SyntheticError(f"duration_s={self.duration_s} gives no frame at {self.fps} fps; use more")
        if not 0 < self.strength <= 1:
            raise SyntheticError(f"strength must be in (0, 1], got {self.strength}")
        if not 0 <= self.lag_s <= 5:
            raise SyntheticError(f"lag_s must be in [0, 5] seconds, got {self.lag_s}")
        if self.oscillators < 1:
            raise SyntheticError(f"oscillators must be at least 1, got {self.oscillators}")
        if not 0 < self.freq_hz[0] <= self.freq_hz[1]:
            raise SyntheticError(f"freq_hz must be an increasing positive range, got {self.freq_hz}")
        if not 1.0 <= self.height_m[0] <= self.height_m[1] <= 2.3:
            raise SyntheticError(f"height_m must be an increasing range within [1.0, 2.3] m, got {self.height_m}")
        if self.strings is None:
            if not 0 <= self.num_strings <= len(STRING_JOINTS):
                raise SyntheticError(f"num_strings must be in [0, {len(STRING_JOINTS)}], got {self.num_strings}")
        else:
            check_strings(self.strings)

    @property
    def num_frames(self) -> int:
        return max(1, round(self.duration_s * self.fps))

    @property
    def lag_frames(self) -> int:
        return round(self.lag_s * self.fps)


def check_coupling(coupling: str) -> None:
    """Raise :class:`SyntheticError` unless ``coupling`` is one of :data:`COUPLINGS`."""
    if coupling not in COUPLINGS:
        raise SyntheticError(f"coupling must be one of {', '.join(COUPLINGS)}, got {coupling!r}")


def check_strings(strings: Sequence[tuple[int, int]]) -> None:
    """Raise :class:`SyntheticError` unless every ``(i, j)`` is valid and each ``j`` is driven once."""
    allowed = ", ".join(f"{j} {CANONICAL.joint_names[j]}" for j in STRING_JOINTS)
    seen: set[int] = set()
    for pair in strings:
        if len(pair) != 2 or any(int(k) not in STRING_JOINTS for k in pair):
            raise SyntheticError(f"string {tuple(pair)} must join two of these joints: {allowed}")
        if pair[1] in seen:
            raise SyntheticError(f"dancer-1 joint {pair[1]} is driven twice; give each driven joint one driver")
        seen.add(int(pair[1]))


def sample_strings(rng: np.random.Generator, n: int) -> tuple[tuple[int, int], ...]:
    """``n`` random strings ``(i, j)``, sorted: distinct driven joints j, each with a random driver i."""
    driven = rng.choice(STRING_JOINTS, size=n, replace=False)
    drivers = rng.choice(STRING_JOINTS, size=n, replace=True)
    return tuple(sorted((int(i), int(j)) for i, j in zip(drivers, driven, strict=True)))


def strings_to_edges(
    strings: Sequence[tuple[int, int]], strengths: float | Sequence[float] | NDArray[np.floating]
) -> NDArray[np.float32]:
    """The ``(J, J)`` ground-truth matrix: ``edges[i, j]`` = strength, 0 elsewhere."""
    s = np.broadcast_to(np.asarray(strengths, dtype=np.float32), (len(strings),))
    edges = np.zeros((J, J), dtype=np.float32)
    for (i, j), w in zip(strings, s, strict=True):
        edges[i, j] = w
    return edges


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class DuetParams:
    """Everything random about a batch of ``S`` duets; rendering is a pure function of it and time.

    Shapes: ``M`` sinusoids per angle. Frequencies in Hz, angles in radians, lengths in metres.
    """

    offsets: NDArray[np.float64]      # (S, D, J, 3) rest bone offsets
    ankle_height: NDArray[np.float64]  # (S, D)
    toe_height: NDArray[np.float64]    # (S, D)
    freq: NDArray[np.float64]         # (S, D, J, 3, M)
    amp: NDArray[np.float64]          # (S, D, J, 3, M), sum over M of |amp| = 1
    phase: NDArray[np.float64]        # (S, D, J, 3, M)
    edges: NDArray[np.float32]        # (S, J, J) strength of dancer-0 i → dancer-1 j
    lag_s: float                      # delay of every string, seconds (whole frames)
    root: NDArray[np.float64]         # (S, 18) path parameters, see _root_path
    coupling: Coupling = "local"      # how the strings act (see the module doc)

    @property
    def num_duets(self) -> int:
        return int(self.offsets.shape[0])


def sample_params(
    rng: np.random.Generator,
    edges: NDArray[np.float32],
    lag_s: float,
    *,
    oscillators: int = 3,
    freq_hz: tuple[float, float] = (0.2, 2.0),
    height_m: tuple[float, float] = (1.55, 1.90),
    coupling: Coupling = "local",
) -> DuetParams:
    """Draw bodies, oscillators and paths for ``S = len(edges)`` duets with the given strings.

    Args:
        rng: the generator (its state advances).
        edges: ``(S, J, J)`` planted strings.
        lag_s: delay of the strings, seconds.
        coupling: how the strings act.
    """
    check_coupling(coupling)
    S, M = edges.shape[0], oscillators
    height = rng.uniform(*height_m, size=(S, D))
    scale = height / _TEMPLATE_HEIGHT
    # Per-bone proportions vary by ±4 %; left and right limbs stay equal, both hips and shoulders too.
    jitter = rng.uniform(0.96, 1.04, size=(S, D, J))
    jitter[..., [7, 8, 9, 14, 15, 16, 17]] = jitter[..., [4, 5, 6, 10, 11, 12, 13]]
    offsets = _TEMPLATE[None, None] * (scale[..., None] * jitter)[..., None]  # (S, D, J, 3)
    # Heavier segments move slower: the torso uses the low part of the frequency range.
    freq = freq_hz[0] + (freq_hz[1] - freq_hz[0]) * _TEMPO[:, None, None] * rng.uniform(size=(S, D, J, 3, M))
    # Quicker components are smaller (amplitude ∝ f^-1/2, as in natural motion), keeping limb speeds human.
    amp = rng.uniform(0.2, 1.0, size=(S, D, J, 3, M)) / np.sqrt(freq)
    amp /= amp.sum(axis=-1, keepdims=True)
    # Big moves are slower: stretch time where an angle's peak speed would pass _MAX_ANGULAR_SPEED.
    peak = _HALF[None, None, :, :] * (amp * TWO_PI * freq).sum(axis=-1)  # (S, D, J, 3) rad/s
    stretch = np.minimum(1.0, _MAX_ANGULAR_SPEED[:, None] / np.maximum(peak, 1e-9))  # (S, D, J, 3)
    freq = np.maximum(freq * stretch[..., None], freq_hz[0])
    phase = rng.uniform(0.0, TWO_PI, size=(S, D, J, 3, M))
    u = rng.uniform
    root = np.stack([
        u(0.1, 0.4, S), u(0.01, 0.04, S), u(0, TWO_PI, S),          # centre x: amplitude m, Hz, phase
        u(0.1, 0.4, S), u(0.01, 0.04, S), u(0, TWO_PI, S),          # centre z
        u(0.95, 1.15, S), u(0.1, 0.3, S), u(0.03, 0.15, S), u(0, TWO_PI, S),  # separation: mid, amp, Hz, phase
        u(0, TWO_PI, S), rng.choice([-1.0, 1.0], S) * u(0.02, 0.12, S),      # orbit: start angle, rad/s
        u(0.05, 0.25, S), u(0.05, 0.25, S),                         # yaw sway amplitudes (rad), per dancer
        u(0.03, 0.1, S), u(0.03, 0.1, S),                           # yaw sway Hz
        u(0, TWO_PI, S), u(0, TWO_PI, S),                           # yaw sway phases
    ], axis=1)  # (S, 18)
    return DuetParams(
        offsets=offsets, ankle_height=_ANKLE_HEIGHT * scale * jitter[..., 12],
        toe_height=_TOE_HEIGHT * scale * jitter[..., 12], freq=freq, amp=amp, phase=phase,
        edges=np.asarray(edges, dtype=np.float32), lag_s=float(lag_s), root=root, coupling=coupling,
    )


# ----------------------------------------------------------------------------- rendering


def _oscillate(p: DuetParams, t: NDArray[np.float64], d: int) -> NDArray[np.float64]:
    """Activations ``u ∈ [-1, 1]`` of dancer ``d`` at times ``t`` ``(S, T)`` s → ``(S, T, J, 3)``.

    Only the angles a joint has are evaluated; the others stay 0 (their range is 0 anyway).
    """
    S, M = p.num_duets, p.freq.shape[-1]
    freq = p.freq[:, d].reshape(S, J * 3, M)[:, _ACTIVE]  # (S, A, M)
    phase = p.phase[:, d].reshape(S, J * 3, M)[:, _ACTIVE]
    amp = p.amp[:, d].reshape(S, J * 3, M)[:, _ACTIVE]
    arg = TWO_PI * freq[:, None] * t[:, :, None, None] + phase[:, None]  # (S, T, A, M)
    u = np.zeros((S, t.shape[1], J * 3))
    u[..., _ACTIVE] = np.einsum("stam,sam->sta", np.sin(arg), amp)
    return u.reshape(S, t.shape[1], J, 3)


def _activations(p: DuetParams, t: NDArray[np.float64]) -> NDArray[np.float64]:
    """Both dancers' activations at times ``t`` ``(S, T)`` → ``(S, D, T, J, 3)``.

    Local strings are applied here; world strings act later, in :func:`render`.
    """
    u0 = _oscillate(p, t, 0)
    u1 = _oscillate(p, t, 1)
    if p.edges.any() and p.coupling == "local":
        u0_late = _oscillate(p, t - p.lag_s, 0)  # (S, T, J, 3): dancer 0, lag seconds earlier
        strength = p.edges.max(axis=1)  # (S, J): each driven j has one driver
        driver = p.edges.argmax(axis=1)  # (S, J)
        slots = _SOURCE_SLOT[driver]  # (S, J, 3) driver angle feeding each driven angle
        s_idx = np.arange(p.num_duets)[:, None, None, None]
        t_idx = np.arange(t.shape[1])[None, :, None, None]
        pulled = u0_late[s_idx, t_idx, driver[:, None, :, None], slots[:, None]]  # (S, T, J, 3)
        w = strength[:, None, :, None]
        u1 = (1.0 - w) * u1 + w * pulled
    return np.stack([u0, u1], axis=1)


def _local_rotation(
    flex: NDArray[np.float64], abd: NDArray[np.float64], tw: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``Rz(abd) · Rx(flex) · Ry(tw)`` in closed form, ``(...)`` angles → ``(..., 3, 3)``."""
    ca, sa, cf, sf, cw, sw = np.cos(abd), np.sin(abd), np.cos(flex), np.sin(flex), np.cos(tw), np.sin(tw)
    Q = np.empty((*flex.shape, 3, 3))
    Q[..., 0, 0] = ca * cw - sa * sf * sw
    Q[..., 0, 1] = -sa * cf
    Q[..., 0, 2] = ca * sw + sa * sf * cw
    Q[..., 1, 0] = sa * cw + ca * sf * sw
    Q[..., 1, 1] = ca * cf
    Q[..., 1, 2] = sa * sw - ca * sf * cw
    Q[..., 2, 0] = -cf * sw
    Q[..., 2, 1] = sf
    Q[..., 2, 2] = cf * cw
    return Q


def _yaw_rotation(yaw: NDArray[np.float64]) -> NDArray[np.float64]:
    """``Ry(yaw)``, ``(...)`` radians → ``(..., 3, 3)``."""
    zero = np.zeros_like(yaw)
    return _local_rotation(zero, zero, yaw)


def _root_path(p: DuetParams, t: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Pelvis ground positions ``(S, D, T, 3)`` (y = 0) and yaws ``(S, D, T)`` radians at ``t`` ``(S, T)``.

    The dancers sit on opposite ends of a diameter through a drifting centre; the diameter turns
    (orbit) and breathes (0.6–1.5 m); each dancer faces the partner give or take a yaw sway.
    """
    r = p.root[:, :, None]  # (S, 18, 1) broadcast against t (S, T)

    def wave(amp: int, hz: int, phase: int) -> NDArray[np.float64]:
        return r[:, amp] * np.sin(TWO_PI * r[:, hz] * t + r[:, phase])  # (S, T)

    cx, cz = wave(0, 1, 2), wave(3, 4, 5)
    sep = r[:, 6] + wave(7, 8, 9)
    theta = r[:, 10] + r[:, 11] * t
    zero = np.zeros_like(theta)
    e = np.stack([np.cos(theta), zero, np.sin(theta)], axis=-1)  # (S, T, 3) unit, dancer 1 → dancer 0
    centre = np.stack([cx, zero, cz], axis=-1)
    half = 0.5 * sep[..., None] * e
    pos = np.stack([centre + half, centre - half], axis=1)  # (S, D, T, 3)
    # Facing +z is yaw 0 (Ry(ψ)·ẑ = (sin ψ, 0, cos ψ)); dancer 0 looks along -e, dancer 1 along +e.
    face0 = np.arctan2(-e[..., 0], -e[..., 2])
    yaw = np.stack([face0 + wave(12, 14, 16), face0 + np.pi + wave(13, 15, 17)], axis=1)  # (S, D, T)
    return pos, yaw


def _align(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """The minimal rotation taking unit vectors ``a`` to ``b``, ``(..., 3)`` each → ``(..., 3, 3)``.

    Rodrigues: ``I + [v]× + [v]×² / (1 + c)`` with ``v = a × b``, ``c = a · b``; for (nearly)
    opposite vectors a half turn about an axis perpendicular to ``a``.
    """
    v = np.cross(a, b)
    c = (a * b).sum(axis=-1)
    Vx = np.zeros((*a.shape[:-1], 3, 3))
    Vx[..., 0, 1], Vx[..., 0, 2] = -v[..., 2], v[..., 1]
    Vx[..., 1, 0], Vx[..., 1, 2] = v[..., 2], -v[..., 0]
    Vx[..., 2, 0], Vx[..., 2, 1] = -v[..., 1], v[..., 0]
    eye = np.broadcast_to(np.eye(3), Vx.shape)
    opposite = 1.0 + c < 1e-9
    R = eye + Vx + (Vx @ Vx) / np.where(opposite, 1.0, 1.0 + c)[..., None, None]
    if opposite.any():
        axis = np.cross(a, np.array([1.0, 0.0, 0.0]))
        axis = np.where((np.linalg.norm(axis, axis=-1) < 1e-6)[..., None], np.cross(a, np.array([0.0, 0.0, 1.0])), axis)
        axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
        half_turn = 2.0 * axis[..., :, None] * axis[..., None, :] - eye
        R = np.where(opposite[..., None, None], half_turn, R)
    return R


def _unit(v: NDArray[np.float64]) -> NDArray[np.float64]:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def _kinematics(
    p: DuetParams, tt: NDArray[np.float64], pull: NDArray[np.float64] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Forward kinematics at times ``tt`` ``(S, T)`` before the floor lift.

    Args:
        pull: ``(S, T, J, 3)`` unit world directions that dancer 1's bones ``parent(j) → j`` are
            blended towards with weight ``w (S, J)`` = the string strengths (world coupling);
            ``None``: no world strings.

    Returns:
        Joint positions relative to each pelvis ``(S, D, T, J, 3)`` metres and the world
        directions of every bone ``parent(j) → j`` ``(S, D, T, J, 3)`` (unit; 0 for the root).
    """
    u = _activations(p, tt)[..., _ART, :]  # (S, D, T, A, 3), A articulated joints
    ang = _MID[_ART] + _HALF[_ART] * u  # radians
    side = _SIDE[_ART]
    Q = _local_rotation(ang[..., 0], side * ang[..., 1], side * ang[..., 2])  # (S, D, T, A, 3, 3)
    _, yaw = _root_path(p, tt)
    R: list[NDArray[np.float64]] = [_yaw_rotation(yaw)]  # (S, D, T, 3, 3) world rotation of each bone
    pos: list[NDArray[np.float64]] = [np.zeros((*yaw.shape, 3))]  # (S, D, T, 3) relative to the pelvis
    dirs: list[NDArray[np.float64]] = [np.zeros((*yaw.shape, 3))]
    slot = {j: a for a, j in enumerate(ARTICULATED)}
    strength = p.edges.max(axis=1) if pull is not None else None  # (S, J) of each driven joint
    for j in range(1, J):
        par = CANONICAL.parents[j]
        Rj = R[par] @ Q[..., slot[j], :, :] if j in slot else R[par]
        off = p.offsets[:, :, None, j, None, :]  # (S, D, 1, 1, 3)
        bone = (Rj * off).sum(axis=-1)  # (S, D, T, 3)
        if pull is not None and strength is not None and strength[:, j].any():
            own = _unit(bone[:, 1])  # (S, T, 3) dancer 1's own direction
            w = strength[:, j, None, None]  # (S, 1, 1)
            target = (1.0 - w) * own + w * pull[:, :, j]
            target = np.where(np.linalg.norm(target, axis=-1, keepdims=True) > 1e-9, target, pull[:, :, j])
            turn = _align(own, _unit(target))  # (S, T, 3, 3); identity where w = 0
            Rj = Rj.copy()
            Rj[:, 1] = turn @ Rj[:, 1]
            bone = (Rj * off).sum(axis=-1)
        R.append(Rj)
        pos.append(pos[par] + bone)
        dirs.append(_unit(bone))
    return np.stack(pos, axis=3), np.stack(dirs, axis=3)


def render(p: DuetParams, t: NDArray[np.floating]) -> NDArray[np.float64]:
    """Joint positions of every duet at times ``t`` → ``(S, T, D, J, 3)`` metres.

    ``t`` is ``(T,)`` seconds, shared by every duet, or ``(S, T)``, one time line per duet.

    Forward kinematics: ``R_j = R_parent(j) · Q_j`` and ``p_j = p_parent(j) + R_j · offset_j``, with
    the root rotation a yaw; bone lengths are the offsets' norms, exactly. With world coupling,
    dancer 1's driven bones are turned towards dancer 0's driver bones' world directions
    ``lag_s`` earlier (rendered first; dancer 0 does not depend on dancer 1).
    """
    tt: NDArray[np.float64] = np.asarray(t, dtype=np.float64)
    tt = np.broadcast_to(tt, (p.num_duets, tt.shape[-1])) if tt.ndim == 1 else tt  # (S, T)
    pull = None
    if p.coupling == "world" and p.edges.any():
        _, dirs_late = _kinematics(p, tt - p.lag_s)  # (S, D, T, J, 3) lag_s seconds earlier
        driver = p.edges.argmax(axis=1)  # (S, J) dancer-0 driver of each dancer-1 joint
        s_idx = np.arange(p.num_duets)[:, None, None]
        t_idx = np.arange(tt.shape[1])[None, :, None]
        pull = dirs_late[:, 0][s_idx, t_idx, driver[:, None, :]]  # (S, T, J, 3)
    body, _ = _kinematics(p, tt, pull)  # (S, D, T, J, 3)
    ground, _ = _root_path(p, tt)
    # Stand on the floor: the lowest of ankles (minus ankle height) and toes (minus toe height) at y = 0.
    lows = np.stack([
        body[..., 12, 1] - p.ankle_height[..., None], body[..., 16, 1] - p.ankle_height[..., None],
        body[..., 13, 1] - p.toe_height[..., None], body[..., 17, 1] - p.toe_height[..., None],
    ], axis=-1).min(axis=-1)  # (S, D, T)
    ground = ground.copy()
    ground[..., 1] = -lows
    out = body + ground[:, :, :, None, :]  # (S, D, T, J, 3)
    return np.ascontiguousarray(out.transpose(0, 2, 1, 3, 4))  # (S, T, D, J, 3)


# ----------------------------------------------------------------------------- public entry points


def _config_params(cfg: SyntheticConfig) -> DuetParams:
    rng = np.random.default_rng(cfg.seed)
    strings = cfg.strings if cfg.strings is not None else sample_strings(rng, cfg.num_strings)
    edges = strings_to_edges(strings, cfg.strength)[None]  # (1, J, J)
    return sample_params(
        rng, edges, cfg.lag_frames / cfg.fps, oscillators=cfg.oscillators, freq_hz=cfg.freq_hz,
        height_m=cfg.height_m, coupling=cfg.coupling,
    )


def generate_clip(cfg: SyntheticConfig) -> Clip:
    """One synthetic duet as a canonical :class:`Clip` with its planted ``edges`` and ``edge_lag``."""
    p = _config_params(cfg)
    t = np.arange(cfg.num_frames) / cfg.fps
    joints = render(p, t)[0]  # (T, D, J, 3)
    edges = p.edges[0]
    strings = [[int(i), int(j)] for i, j in zip(*np.nonzero(edges), strict=True)]
    provenance: dict[str, Any] = {
        "source": "stream.synthetic",
        "config": {
            "duration_s": cfg.duration_s, "fps": cfg.fps, "num_strings": cfg.num_strings,
            "lag_s": cfg.lag_s, "strength": cfg.strength, "seed": cfg.seed,
            "oscillators": cfg.oscillators, "freq_hz": list(cfg.freq_hz), "height_m": list(cfg.height_m),
            "coupling": cfg.coupling,
        },
        "strings": strings,
        "string_names": [f"{CANONICAL.joint_names[i]}->{CANONICAL.joint_names[j]}" for i, j in strings],
    }
    return Clip(joints=joints.astype(np.float32), fps=cfg.fps, provenance=provenance, edges=edges,
                edge_lag=cfg.lag_frames)


@dataclass(frozen=True)
class SyntheticDataset:
    """Many short independent duets for training.

    Attributes:
        joints: ``(S, T, D, J, 3)`` float32 metres.
        edges: ``(S, J, J)`` float32 planted strengths (dancer-0 i → dancer-1 j).
        lag: delay of every string, frames.
        fps: frames per second.
    """

    joints: NDArray[np.float32]
    edges: NDArray[np.float32]
    lag: int
    fps: float


def make_dataset(
    n_clips: int,
    frames_per_clip: int,
    *,
    fps: float = 30.0,
    lag_s: float = 0.2,
    num_strings: tuple[int, int] = (1, 4),
    strength: tuple[float, float] = (0.6, 1.0),
    seed: int = 0,
    oscillators: int = 3,
    chunk_frames: int = 50_000,
    coupling: Coupling = "local",
) -> SyntheticDataset:
    """Generate ``n_clips`` independent duets, each with its own bodies, motion and random strings.

    Args:
        n_clips: ``S``.
        frames_per_clip: ``T``.
        fps: frame rate; ``lag_s`` is rounded to whole frames.
        num_strings: inclusive range of the number of strings per clip.
        strength: range of each string's strength (uniform), within (0, 1].
        seed: seed of the generator.
        oscillators: sinusoids per joint angle.
        chunk_frames: clips are rendered in chunks of about this many frames (bounds memory).
        coupling: how the strings act (``"world"``: use a lag of 1–2 frames, e.g. ``lag_s=1/fps``).

    Each clip starts at a random time in its oscillators, so clips are not aligned in phase.
    """
    if n_clips < 1 or frames_per_clip < 1:
        raise SyntheticError(f"need at least one clip of one frame, got {n_clips} × {frames_per_clip}")
    lo, hi = num_strings
    if not 0 <= lo <= hi <= len(STRING_JOINTS):
        raise SyntheticError(f"num_strings must be a range within [0, {len(STRING_JOINTS)}], got {num_strings}")
    if not 0 < strength[0] <= strength[1] <= 1:
        raise SyntheticError(f"strength must be a range within (0, 1], got {strength}")
    # A config only to validate fps and lag the same way as for a single clip.
    cfg = SyntheticConfig(duration_s=frames_per_clip / fps, fps=fps, lag_s=lag_s, oscillators=oscillators,
                          coupling=coupling)
    rng = np.random.default_rng(seed)
    edges = np.zeros((n_clips, J, J), dtype=np.float32)
    counts = rng.integers(lo, hi + 1, size=n_clips)
    for s in range(n_clips):
        strings = sample_strings(rng, int(counts[s]))
        edges[s] = strings_to_edges(strings, rng.uniform(strength[0], strength[1], size=len(strings)))
    params = sample_params(rng, edges, cfg.lag_frames / fps, oscillators=oscillators, coupling=coupling)
    start = rng.uniform(0.0, 600.0, size=n_clips)  # seconds into each duet's endless motion
    out = np.empty((n_clips, frames_per_clip, D, J, 3), dtype=np.float32)
    per = max(1, chunk_frames // frames_per_clip)
    t = start[:, None] + np.arange(frames_per_clip)[None, :] / fps  # (S, T) seconds
    for a in range(0, n_clips, per):
        b = min(n_clips, a + per)
        out[a:b] = render(_slice(params, a, b), t[a:b])
    return SyntheticDataset(joints=out, edges=edges, lag=cfg.lag_frames, fps=fps)


def _slice(p: DuetParams, a: int, b: int) -> DuetParams:
    """Duets ``a:b`` of a batch."""
    return DuetParams(
        offsets=p.offsets[a:b], ankle_height=p.ankle_height[a:b], toe_height=p.toe_height[a:b],
        freq=p.freq[a:b], amp=p.amp[a:b], phase=p.phase[a:b], edges=p.edges[a:b], lag_s=p.lag_s,
        root=p.root[a:b], coupling=p.coupling,
    )


class SyntheticStream:
    """An endless synthetic duet, one canonical pose ``(D, J, 3)`` metres (float32) per step.

    Frame ``n`` is the pose at ``n / fps`` seconds and equals frame ``n`` of
    :func:`generate_clip` with the same config (``duration_s`` is ignored): the oscillators
    simply continue, with no seam. Frames are rendered ``block`` at a time.

    Attributes:
        config: the settings.
        edges: ``(J, J)`` planted strings; ``lag`` their delay in frames.
    """

    def __init__(self, config: SyntheticConfig | None = None, block: int = 32) -> None:
        self.config = config or SyntheticConfig()
        self._params = _config_params(self.config)
        self.edges: NDArray[np.float32] = self._params.edges[0].copy()
        self.lag = self.config.lag_frames
        self.fps = self.config.fps
        self._block = max(1, int(block))
        self._next = 0  # index of the next frame to hand out
        self._buf = np.zeros((0, D, J, 3), dtype=np.float32)
        self._buf_start = 0

    @property
    def frame_index(self) -> int:
        """Index of the frame the next call returns."""
        return self._next

    def __iter__(self) -> Iterator[NDArray[np.float32]]:
        return self

    def __next__(self) -> NDArray[np.float32]:
        k = self._next - self._buf_start
        if k >= len(self._buf):
            self._buf_start = self._next
            t = (self._next + np.arange(self._block)) / self.fps
            self._buf = render(self._params, t)[0].astype(np.float32)  # (block, D, J, 3)
            k = 0
        self._next += 1
        return self._buf[k].copy()
