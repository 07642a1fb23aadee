"""The numpy NSDF period analysis that edgetag ran before its C++ port (2026-12-06), kept as the oracle
of `tests/test_periodicity.py`: `edgetag.runtime.periodicity.PeriodicityAnalyser` (C++ core) must give
its periods, clarities, fundamental shares and NSDF on any frame. Not imported by the package."""

from __future__ import annotations

import math

import numpy as np

from edgetag.runtime.periodicity import KEY_MAXIMUM_RATIO, MULTIPLE_KEEP, NO_PERIOD, Period


class ReferenceAnalyser:
    """NSDF periods of frames of ``frame_length`` samples at ``sample_rate``, lags for ``fmin``..``fmax`` Hz."""

    def __init__(self, sample_rate: int, frame_length: int, fmin: float, fmax: float, refine_above: float = 0.0) -> None:
        """``refine_above``: periods whose clarity is below it keep the interpolation at one period (their
        multiples are not searched: a caller that only uses clear periods saves the time)."""
        if frame_length < 8 or not 0 < fmin < fmax:
            raise ValueError(f"a periodicity analyser needs frames of >= 8 samples and 0 < fmin < fmax, got "
                             f"{frame_length}, {fmin}, {fmax}")
        self.sample_rate = int(sample_rate)
        self.refine_above = float(refine_above)
        self.tau_min = max(2, int(math.ceil(sample_rate / fmax)))
        self.tau_max = int(math.ceil(sample_rate / fmin))
        if self.tau_max * 2 > frame_length:
            # fewer than two periods of the lowest pitch in the frame: lower pitches are not measured
            self.tau_max = frame_length // 2
        self.frame_length = int(frame_length)
        self.width = self.frame_length - self.tau_max  # W: samples summed at every lag
        self.n_fft = 1 << int(math.ceil(math.log2(self.frame_length + self.width)))
        self._hann = np.hanning(self.frame_length)
        self._spectrum_fft = 4 * (1 << int(math.ceil(math.log2(self.frame_length))))

    def nsdf(self, frames: np.ndarray) -> np.ndarray:
        """``[..., frame_length]`` samples -> ``[..., tau_max + 1]`` NSDF at lags 0 .. tau_max (float64)."""
        x = np.asarray(frames, dtype=np.float64)
        if x.shape[-1] != self.frame_length:
            raise ValueError(f"frames must have {self.frame_length} samples, got shape {x.shape}")
        x = x - x.mean(axis=-1, keepdims=True)
        whole = np.fft.rfft(x, self.n_fft)
        head = np.fft.rfft(x[..., : self.width], self.n_fft)
        r = np.fft.irfft(whole * np.conj(head), self.n_fft)[..., : self.tau_max + 1]
        energy = np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(x * x, axis=-1)], axis=-1)
        lags = np.arange(self.tau_max + 1)
        e_shifted = energy[..., self.width + lags] - energy[..., lags]
        denominator = energy[..., self.width : self.width + 1] + e_shifted
        with np.errstate(invalid="ignore", divide="ignore"):
            n = np.where(denominator > 1e-12, 2.0 * r / denominator, 0.0)
        return np.clip(n, -1.0, 1.0)

    def near_period(self, frame: np.ndarray, near_hz: float, cents: float = 50.0) -> Period:
        """The NSDF maximum within ``cents`` of ``near_hz`` (the student's reading), refined; `NO_PERIOD`
        when there is none in range (or the frame has no maximum: silence, noise without a negative lobe)."""
        return self._near(*self._nsdf_maxima(frame), near_hz, cents)

    def own_period(self, frame: np.ndarray) -> Period:
        """The frame's own period: its key maximum (`KEY_MAXIMUM_RATIO`), refined. `NO_PERIOD` for a frame
        with no maximum, and for a key maximum at a lag shorter than ``fmax``'s: a tone above the range
        (its multiples in range are not its period)."""
        return self._own(*self._nsdf_maxima(frame))

    def _nsdf_maxima(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = self.nsdf(frame)
        return n, self._maxima(n)

    def _own(self, n: np.ndarray, maxima: np.ndarray) -> Period:
        if len(maxima) == 0:
            return NO_PERIOD
        values = n[maxima]
        k = int(maxima[np.argmax(values >= KEY_MAXIMUM_RATIO * values.max())])
        return self._multiple_refined(n, k) if k >= self.tau_min else NO_PERIOD

    def _near(self, n: np.ndarray, maxima: np.ndarray, near_hz: float | None, cents: float) -> Period:
        if len(maxima) == 0 or near_hz is None or not (near_hz > 0 and math.isfinite(near_hz)):
            return NO_PERIOD
        lag = self.sample_rate / near_hz
        spread = 2.0 ** (cents / 1200.0)
        inside = maxima[(maxima >= max(lag / spread - 1, self.tau_min)) & (maxima <= lag * spread + 1)]
        if len(inside) == 0:
            return NO_PERIOD
        candidate = self._multiple_refined(n, int(inside[np.argmax(n[inside])]))
        return candidate if abs(1200.0 * math.log2(candidate.f0_hz / near_hz)) <= cents else NO_PERIOD

    def fundamental_share(self, frame: np.ndarray, f0_hz: float, harmonics: int = 5) -> float:
        """Power of the frame (Hann window) at ``f0_hz`` over that of its strongest of the first ``harmonics``
        harmonics: 1 for a sine or a sawtooth, near 0 where ``f0_hz`` is a period the frame repeats at
        without sounding it (two tones a fifth apart, a tone above the range read at a multiple)."""
        x = np.asarray(frame, dtype=np.float64)
        spectrum = np.abs(np.fft.rfft((x - x.mean()) * self._hann, self._spectrum_fft)) ** 2
        step = self.sample_rate / self._spectrum_fft
        powers = []
        for h in range(1, harmonics + 1):
            centre = h * f0_hz / step
            lo, hi = int(math.floor(centre - 1.5)), int(math.ceil(centre + 1.5)) + 1
            if lo < 0 or hi > len(spectrum):
                break
            powers.append(float(spectrum[lo:hi].max()))
        return powers[0] / max(powers) if powers and max(powers) > 0 else 0.0

    def _maxima(self, n: np.ndarray) -> np.ndarray:
        """Lags of the positive local maxima of ``n`` in [2, tau_max) after its first negative value
        (before it, the lobe around lag 0); those below ``tau_min`` are kept so that a tone above the
        range is seen as one."""
        negative = np.flatnonzero(n < 0)
        if len(negative) == 0:
            return np.zeros(0, np.int64)
        lo = max(int(negative[0]), 2)
        mid = n[lo : self.tau_max]
        left = n[lo - 1 : self.tau_max - 1]
        right = n[lo + 1 : self.tau_max + 1]
        return lo + np.flatnonzero((mid > left) & (mid >= right) & (mid > 0))

    def _multiple_refined(self, n: np.ndarray, i: int) -> Period:
        """The period at maximum ``i``: interpolated there, then at the largest multiple k*i within the lags
        whose maximum keeps `MULTIPLE_KEEP` of n[i], divided by k. Its clarity is the highest NSDF value
        at any multiple: at a short period the harmonics of a steady tone fall between samples and lower
        n[i], while some multiple lands on a whole lag."""
        tau = _parabola(n, i)
        multiples = np.rint(tau * np.arange(1, int(self.tau_max // tau) + 1)).astype(np.int64)
        clarity = float(max(n[i], n[np.clip(multiples, 0, self.tau_max)].max()))
        if clarity < self.refine_above:
            return Period(self.sample_rate / tau, clarity)
        for k in range(len(multiples), 1, -1):
            centre = int(multiples[k - 1])
            lo, hi = max(centre - 2, 1), min(centre + 3, self.tau_max)
            if hi <= lo:
                continue
            j = lo + int(np.argmax(n[lo:hi]))
            if 1 <= j < self.tau_max and n[j] >= n[j - 1] and n[j] >= n[j + 1] and n[j] >= MULTIPLE_KEEP * n[i]:
                return Period(self.sample_rate * k / _parabola(n, j), clarity)
        return Period(self.sample_rate / tau, clarity)


def _parabola(y: np.ndarray, i: int) -> float:
    """Sub-sample position of the maximum at ``i``, from the parabola through y[i-1], y[i], y[i+1]."""
    a, b = float(y[i - 1]), float(y[i])
    c = float(y[i + 1]) if i + 1 < len(y) else b
    curvature = a - 2.0 * b + c
    if curvature >= 0:
        return float(i)
    return i + 0.5 * (a - c) / curvature


def reference_steady_reading(scores: np.ndarray, frames: np.ndarray, threshold: float = 0.5,
                             sample_rate: int = 16000, hold_frames: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stream's reading of ``[n, 360]`` scores and their ``[n, L]`` frames as `SteadyTone` computed it in
    Python before its rules moved to the C++ core (`edgetag._core.PitchFrameReader`): numpy `decode`, then per
    frame the period near confident bins (the frame's own where that is a whole multiple of it, as steady),
    else the frame's own period if it is steady and sounds its fundamental, with the hysteresis between frames.
    The oracle of that port; and of the rules that came after it, written here in Python as a second reading of
    each: the own period of a steady tone the bins read at a whole fraction of, and (``hold_frames`` > 0) the
    hold of the last sure f0."""
    from edgetag.runtime import pitch as P

    f = P.bin_frequencies()
    measure = ReferenceAnalyser(sample_rate, frames.shape[-1], float(f[0]), float(f[-1]), refine_above=P.STEADY_CLARITY)
    f0, confidence = P.decode(np.asarray(scores, np.float64))
    clarity = np.zeros(len(f0))
    steady = False
    for i, frame in enumerate(np.asarray(frames, np.float64)):
        need = P.STEADY_HOLD if steady else P.STEADY_CLARITY
        if confidence[i] >= threshold:
            period, own = measure.near_period(frame, float(f0[i])), measure.own_period(frame)
            use = period.clarity >= need
            if use and own.clarity >= P.STEADY_CLARITY and own.f0_hz > 0 and period.f0_hz > 0:  # a multiple of own
                k = round(own.f0_hz / period.f0_hz)
                if (k >= 2 and abs(1200 * np.log2(own.f0_hz / period.f0_hz / k)) <= P.NEAR_CENTS
                        and measure.fundamental_share(frame, own.f0_hz) >= P.FUNDAMENTAL_SHARE):
                    period = own
        else:
            period = own = measure.own_period(frame)
            use = False
        if not use and own.clarity >= need and measure.fundamental_share(frame, own.f0_hz) >= P.FUNDAMENTAL_SHARE:
            period, use = own, True
        steady = use
        if use:
            f0[i], confidence[i] = period.f0_hz, max(confidence[i], period.clarity)
        clarity[i] = period.clarity
    held, since, quietest = 0.0, 0, 0.0
    rise = 10.0 ** (P.HOLD_RISE_DB / 10.0)
    for i, frame in enumerate(np.asarray(frames, np.float64)):
        energy = float(np.sum(np.square(frame - frame.mean())))  # the NSDF's energy: mean removed
        if confidence[i] >= threshold:
            held, since, quietest = (f0[i] if np.isfinite(f0[i]) and f0[i] > 0 else 0.0), 0, energy
        elif held > 0 and since < hold_frames and energy <= quietest * rise:
            since, quietest = since + 1, min(quietest, energy)
            if confidence[i] < P.HOLD_BELOW:
                f0[i] = held
        else:
            held = 0.0
    return f0, confidence, clarity
