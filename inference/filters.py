"""Causal smoothing filters for pose streams: a vectorised One Euro filter and a sliding DCT low-pass.

Both filters smooth an array of shape ``(G, ...)`` — in the cleaner ``(D, J, 3)``: ``G = D``
dancers, ``J`` joints, 3 coordinates in metres — one sample per call, all elements at once.
Both share one interface:

* ``step(x (G, ...), t_s, update (G,) bool | None) -> (G, ...)``: feed the sample taken at
  ``t_s`` seconds; groups with ``update=False`` are left untouched and return their last output.
* ``reset(groups (G,) bool)``: forget the history of some groups (a dancer that re-appears
  must not glide from where it was lost); their next sample passes through unchanged.

One Euro (Casiez, Roussel & Vogel, CHI 2012) is an adaptive low-pass: its cutoff grows with
speed, so still poses are smoothed hard and fast moves lag little::

    dt      = t - t_prev                              (s; from the frame timestamps)
    a(fc)   = 1 / (1 + 1 / (2π fc dt))                (smoothing factor of a first-order low-pass)
    dx      = (x - x̂_prev) / dt                        (units/s)
    dx̂      = dx̂_prev + a(d_cutoff) (dx - dx̂_prev)
    fc      = min_cutoff + beta · |dx̂|                  (Hz)
    x̂       = x̂_prev + a(fc) (x - x̂_prev)

Here ``|dx̂|`` is the speed of a whole point (the norm over the last axis, m/s for 3-D joints),
so all three coordinates of a joint share one cutoff and the filter is rotation invariant.
A non-positive or non-finite ``dt`` (a repeated or out-of-order timestamp) falls back to
``fallback_dt``, so irregular timing never produces NaN.

The DCT low-pass is the seed's offline smoother made causal: keep the last ``W`` samples,
project them onto the lowest ``keep`` fraction of their DCT-II basis and output the last
projected sample. The projection is linear, so that output is a fixed FIR filter
(:func:`dct_lowpass_weights`) — one dot product per step. :func:`dct_lowpass` is the offline
version over a whole sequence.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from stream.errors import IStringsError


class FilterError(IStringsError, ValueError):
    """A filter parameter is out of range or a sample has the wrong shape."""


DEFAULT_FALLBACK_DT = 1.0 / 30.0
"""Seconds assumed between samples when a timestamp does not advance (one frame at 30 fps)."""


def _check_update(update: NDArray[np.bool_] | None, G: int) -> NDArray[np.bool_]:
    if update is None:
        return np.ones(G, dtype=bool)
    upd = np.asarray(update, dtype=bool)
    if upd.shape != (G,):
        raise FilterError(f"update mask must have shape ({G},), got {upd.shape}")
    return upd


class OneEuroFilter:
    """Vectorised One Euro filter over an array ``(G, ...)`` (see the module docstring).

    Args:
        shape: the sample shape ``(G, ...)``, e.g. ``(D, J, 3)``.
        min_cutoff: cutoff at rest, Hz. Lower = smoother still poses, more lag on slow moves.
        beta: cutoff increase per unit of speed, Hz per (unit/s) — for metres, Hz per m/s.
            Higher = less lag on fast moves, more jitter while moving.
        d_cutoff: cutoff of the speed estimate, Hz.
        fallback_dt: seconds used when a timestamp does not advance.
        speed_axis: axis whose norm is the speed (``-1``: one speed per point); ``None`` for
            one speed per element (the original scalar filter).

    Shapes:
        step: ``x (G, ...)`` → ``(G, ...)`` float64.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        min_cutoff: float = 1.0,
        beta: float = 4.0,
        d_cutoff: float = 1.0,
        fallback_dt: float = DEFAULT_FALLBACK_DT,
        speed_axis: int | None = -1,
    ) -> None:
        if not (min_cutoff > 0 and d_cutoff > 0 and beta >= 0 and fallback_dt > 0):
            raise FilterError(
                f"One Euro needs min_cutoff > 0 Hz, d_cutoff > 0 Hz, beta >= 0, fallback_dt > 0 s; "
                f"got {min_cutoff}, {d_cutoff}, {beta}, {fallback_dt}"
            )
        if len(shape) < 1:
            raise FilterError("the sample shape needs a leading group axis (G, ...)")
        self.shape = tuple(int(s) for s in shape)
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.fallback_dt = float(fallback_dt)
        self.speed_axis = speed_axis
        G = self.shape[0]
        self._x = np.zeros(self.shape)  # (G, ...) last output
        self._dx = np.zeros(self.shape)  # (G, ...) smoothed derivative, units/s
        self._t = np.zeros(G)  # (G,) time of the last update, s
        self._started = np.zeros(G, dtype=bool)  # (G,)
        self._t_all: float | None = None  # time of the last step that updated every group
        self._tail = (1,) * (len(self.shape) - 1)  # to broadcast (G,) over (G, ...)

    def reset(self, groups: NDArray[np.bool_] | None = None) -> None:
        """Forget the history of ``groups`` (``(G,)`` bool; all when None)."""
        if groups is None:
            self._started[:] = False
        else:
            self._started &= ~_check_update(groups, self.shape[0])

    def step(self, x: NDArray[np.floating], t_s: float, update: NDArray[np.bool_] | None = None) -> NDArray[np.float64]:
        """Filter one sample ``x (G, ...)`` taken at ``t_s`` seconds; returns ``(G, ...)``."""
        xs = np.asarray(x, dtype=np.float64)
        if xs.shape != self.shape:
            raise FilterError(f"One Euro filter built for {self.shape}, got a sample of shape {xs.shape}")
        upd = _check_update(update, self.shape[0])
        if self._t_all is not None and upd.all() and self._started.all():
            return self._step_all(xs, t_s, t_s - self._t_all)
        fresh = upd & ~self._started  # (G,) first sample after a reset: pass through
        dt = t_s - self._t  # (G,) s
        dt = np.where((dt > 0) & np.isfinite(dt), dt, self.fallback_dt)
        dt = dt.reshape(-1, *self._tail)  # (G, 1, ...)
        a_d = 1.0 / (1.0 + 1.0 / (2.0 * math.pi * self.d_cutoff * dt))
        dx = (xs - self._x) / dt
        dx_hat = self._dx + a_d * (dx - self._dx)  # (G, ...) units/s
        if self.speed_axis is None:
            speed = np.abs(dx_hat)
        else:
            speed = np.sqrt(np.square(dx_hat).sum(axis=self.speed_axis, keepdims=True))
        cutoff = self.min_cutoff + self.beta * speed  # Hz
        a = 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff * dt))
        x_hat = self._x + a * (xs - self._x)
        keep = (~upd).reshape(-1, *self._tail)
        new = fresh.reshape(-1, *self._tail)
        x_hat = np.where(keep, self._x, np.where(new, xs, x_hat))
        dx_hat = np.where(keep, self._dx, np.where(new, 0.0, dx_hat))
        self._x, self._dx = x_hat, dx_hat
        self._t = np.where(upd, t_s, self._t)
        self._started |= upd
        self._t_all = float(t_s) if upd.all() else None
        return x_hat.copy()

    def _step_all(self, xs: NDArray[np.float64], t_s: float, dt: float) -> NDArray[np.float64]:
        """The common case — every group updated, all last updated together: scalar ``dt``."""
        if not (dt > 0 and math.isfinite(dt)):
            dt = self.fallback_dt
        r_d = 2.0 * math.pi * self.d_cutoff * dt
        dx_hat = self._dx + (r_d / (1.0 + r_d)) * ((xs - self._x) * (1.0 / dt) - self._dx)  # units/s
        if self.speed_axis is None:
            speed = np.abs(dx_hat)
        else:
            speed = np.sqrt(np.square(dx_hat).sum(axis=self.speed_axis, keepdims=True))
        r = (2.0 * math.pi * dt) * (self.min_cutoff + self.beta * speed)  # 2π fc dt
        x_hat = self._x + (r / (1.0 + r)) * (xs - self._x)
        self._x, self._dx = x_hat, dx_hat
        self._t[:] = t_s
        self._t_all = float(t_s)
        return x_hat.copy()


@lru_cache(maxsize=256)
def dct_lowpass_weights(n: int, keep: float) -> NDArray[np.float64]:
    """FIR weights ``(n,)`` giving the last sample of the DCT low-pass of ``n`` samples.

    With ``C`` the orthonormal DCT-II matrix ``(n, n)`` and ``K = max(1, round(keep · n))``,
    the low-pass is the projection ``P = C[:K]ᵀ C[:K]``; its last row applied to the window
    (oldest sample first) is the causal output. Cached per ``(n, keep)``; read-only.
    """
    if n < 1 or not 0 < keep <= 1:
        raise FilterError(f"DCT low-pass needs n >= 1 samples and 0 < keep <= 1, got n={n}, keep={keep}")
    C = scipy.fft.dct(np.eye(n), type=2, norm="ortho", axis=0)  # (n, n): dct(x) = C @ x
    K = max(1, round(keep * n))
    w = C[:K, -1] @ C[:K]  # (n,) last row of C[:K]ᵀ C[:K]
    w.setflags(write=False)
    return w


def dct_lowpass(x: NDArray[np.floating], keep: float = 0.25, axis: int = 0) -> NDArray[np.float64]:
    """Offline DCT low-pass of a whole sequence: keep the lowest ``keep`` fraction of frequencies.

    Orthonormal DCT-II along ``axis``, zero every coefficient from ``K = max(1, round(keep · T))``
    on, inverse DCT — independently for every other index (each joint and coordinate).

    Shapes:
        ``x (..., T, ...)`` → same shape, float64.
    """
    if not 0 < keep <= 1:
        raise FilterError(f"keep must be in (0, 1], got {keep}")
    xs = np.asarray(x, dtype=np.float64)
    T = xs.shape[axis]
    if T == 0:
        return xs.copy()
    K = max(1, round(keep * T))
    coeffs = scipy.fft.dct(xs, type=2, norm="ortho", axis=axis)
    index: list[slice] = [slice(None)] * xs.ndim
    index[axis] = slice(K, None)
    coeffs[tuple(index)] = 0.0
    return np.asarray(scipy.fft.idct(coeffs, type=2, norm="ortho", axis=axis))


class CausalDCTFilter:
    """Sliding-window DCT low-pass over an array ``(G, ...)`` (see the module docstring).

    Args:
        shape: the sample shape ``(G, ...)``.
        window: ``W``, samples kept per group (at 30 fps, 16 frames ≈ 0.53 s).
        keep: fraction of the window's DCT frequencies kept (the seed keeps 0.25).

    Until a group has ``W`` samples (after the start or a reset), the weights for the samples
    it has are used, so the first sample passes through unchanged. The timestamps are not
    used: the window is in samples, as in the seed.

    Shapes:
        step: ``x (G, ...)`` → ``(G, ...)`` float64.
    """

    def __init__(self, shape: tuple[int, ...], window: int = 16, keep: float = 0.25) -> None:
        if window < 1 or not 0 < keep <= 1:
            raise FilterError(f"DCT low-pass needs window >= 1 and 0 < keep <= 1, got {window}, {keep}")
        if len(shape) < 1:
            raise FilterError("the sample shape needs a leading group axis (G, ...)")
        self.shape = tuple(int(s) for s in shape)
        self.window = int(window)
        self.keep = float(keep)
        G = self.shape[0]
        self._buf = np.zeros((G, self.window, *self.shape[1:]))  # (G, W, ...) oldest first
        self._count = np.zeros(G, dtype=np.int64)  # (G,) samples in the window
        self._out = np.zeros(self.shape)  # (G, ...) last output
        self._full = False  # every group has W samples

    def reset(self, groups: NDArray[np.bool_] | None = None) -> None:
        """Forget the window of ``groups`` (``(G,)`` bool; all when None)."""
        if groups is None:
            self._count[:] = 0
        else:
            self._count[_check_update(groups, self.shape[0])] = 0
        self._full = bool((self._count == self.window).all())

    def step(self, x: NDArray[np.floating], t_s: float, update: NDArray[np.bool_] | None = None) -> NDArray[np.float64]:
        """Push one sample ``x (G, ...)`` (``t_s`` is unused); returns the filtered ``(G, ...)``."""
        xs = np.asarray(x, dtype=np.float64)
        if xs.shape != self.shape:
            raise FilterError(f"DCT filter built for {self.shape}, got a sample of shape {xs.shape}")
        upd = _check_update(update, self.shape[0])
        W = self.window
        if upd.all() and self._full:  # the common case: one shift and one product for all groups
            buf = self._buf  # (G, W, ...)
            buf[:, :-1] = buf[:, 1:]
            buf[:, -1] = xs
            w = dct_lowpass_weights(W, self.keep)  # (W,)
            self._out = (w @ buf.reshape(buf.shape[0], W, -1)).reshape(self.shape)  # (G, W·) -> (G, ...)
            return self._out.copy()
        for g in np.flatnonzero(upd):
            buf = self._buf[g]  # (W, ...)
            buf[:-1] = buf[1:]
            buf[-1] = xs[g]
            n = min(int(self._count[g]) + 1, W)
            self._count[g] = n
            w = dct_lowpass_weights(n, self.keep)  # (n,)
            self._out[g] = np.tensordot(w, buf[W - n :], axes=1)
        self._full = bool((self._count == W).all())
        return self._out.copy()


SmoothingFilter = OneEuroFilter | CausalDCTFilter
"""Either causal filter (same ``step``/``reset`` interface)."""
