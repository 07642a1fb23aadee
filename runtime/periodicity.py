"""How periodic a frame of audio is, and at which period: the signal side of the pitch decoder.

A pitch student's 360 bins are 20 cents apart and its training targets come from CREPE, so its
weighted-argmax decoding lands within a note but not within the few cents a tuner needs, and a
pure low sine (which its music and speech never held) leaves it unsure. The frame it decoded,
1024 samples, holds the answer to both: its period. `PeriodicityAnalyser` measures it with the
normalized squared difference function (NSDF) of the frame,

    n(tau) = 2 sum_j x[j] x[j + tau] / sum_j (x[j]^2 + x[j + tau]^2),   j = 0 .. W - 1,

which is 1 at a lag where the frame repeats exactly, whatever its level, and near 0 for noise
(the "clarity" of a lag). ``W = L - tau_max`` is the same for every lag, so a steady tone has no
lag-dependent bias. The period comes from the NSDF maximum near a candidate lag, interpolated by
a parabola through its three samples, then measured again at the largest multiple of it that the
frame holds (k periods: the interpolation's error is divided by k), which puts steady tones
within a fraction of a cent from 32 Hz to 2 kHz.

`edgetag.runtime.pitch.reading` uses it: the student chooses the note (its octave and its
voicing), the NSDF near the student's f0 gives the cents; where the student is unsure but the
frame is clearly periodic (clarity >= `CLARITY_VOICED`), the NSDF's own period is the pitch.

How it is computed (`edgetag._core.PeriodicityAnalyser`, C++): the lag products come from real FFTs
of the frame and of its first W samples, zero-padded to a power of two >= L (no product of a lag up
to tau_max wraps around: the head is zero from W on); the product of
their spectra goes back to lags through a forward FFT (the Hartley identity). Each step keeps numpy's
float64 arithmetic (the NSDF agrees with numpy's to about 1e-15); the maxima, the key maximum and
the refinement at multiples follow the definitions below. A frame's reading takes 0.01-0.02 ms on one core of the development VM (numpy
took 0.14-0.21 ms).

The method:

- maxima: the positive local maxima of the NSDF in [2, tau_max) after its first negative value
  (before it, the lobe around lag 0); those below fmax's lag are kept, so that a tone above the
  range is seen as one;
- a maximum's position comes from the parabola through its three samples;
- refinement: at the largest multiple k of the period whose maximum keeps `MULTIPLE_KEEP` of the
  NSDF at the period, divided by k; the clarity is the highest NSDF value at any multiple (at a
  short period a steady tone's harmonics fall between samples, while some multiple lands on a
  whole lag).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgetag import _core

CLARITY_VOICED = 0.9
"""NSDF clarity at or above which a frame is periodic enough to be voiced on its own."""
KEY_MAXIMUM_RATIO = 0.9
"""The period is the first NSDF maximum reaching this share of the highest one (McLeod and Wyvill's
"key maximum": the shortest lag that repeats nearly as well as any, so not a multiple of the period)."""
MULTIPLE_KEEP = 0.9
"""A multiple k*T is used to refine T only where the NSDF there keeps this share of its value at T
(vibrato and decays make far multiples repeat less well)."""


@dataclass(frozen=True)
class Period:
    """One frame's period: ``f0_hz`` (0.0 when none was found) and its NSDF ``clarity`` (0..1)."""

    f0_hz: float
    clarity: float


NO_PERIOD = Period(0.0, 0.0)


def check_settings(sample_rate: int, frame_length: int, fmin: float, fmax: float, refine_above: float = 0.0) -> None:
    """`ValueError`, naming what is wrong, unless these make an analyser (`PeriodicityAnalyser`, and the C++
    frame reader of `edgetag.runtime.pitch.SteadyTone`, which holds one)."""
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"a periodicity analyser needs a positive whole sample rate, got {sample_rate!r}")
    if int(frame_length) != frame_length or frame_length < 8 or not 0 < fmin < fmax:
        raise ValueError(f"a periodicity analyser needs frames of >= 8 samples (a whole number) and "
                         f"0 < fmin < fmax, got {frame_length!r}, {fmin}, {fmax}")
    if not 0.0 <= refine_above <= 1.0:  # a clarity (NaN fails too)
        raise ValueError(f"refine_above is a clarity from 0 to 1, got {refine_above!r}")


class PeriodicityAnalyser:
    """NSDF periods of frames of ``frame_length`` samples at ``sample_rate``, lags for ``fmin``..``fmax`` Hz.

    The arithmetic runs in the C++ core (`edgetag._core.PeriodicityAnalyser`: FFTs and work buffers made
    once, nothing allocated there per frame); frames of any float or int dtype are read as float64 (a
    copy for any other dtype). One frame per call: ``[frame_length]`` samples. A stream reads its frames
    through its own analyser, inside its `edgetag.runtime.pitch.SteadyTone`'s C++ frame reader; other
    callers share one per frame length (`edgetag.runtime.pitch.analyser`): each call holds the GIL.
    """

    def __init__(self, sample_rate: int, frame_length: int, fmin: float, fmax: float, refine_above: float = 0.0) -> None:
        """``refine_above``: periods whose clarity is below it keep the interpolation at one period (their
        multiples are not searched: a caller that only uses clear periods saves the time)."""
        check_settings(sample_rate, frame_length, fmin, fmax, refine_above)
        self.sample_rate = int(sample_rate)
        self.frame_length = int(frame_length)
        self._core = _core.PeriodicityAnalyser(self.sample_rate, self.frame_length, float(fmin), float(fmax),
                                               float(refine_above), KEY_MAXIMUM_RATIO, MULTIPLE_KEEP)
        self.tau_min, self.tau_max = self._core.tau_min, self._core.tau_max

    def nsdf(self, frame: np.ndarray) -> np.ndarray:
        """``[frame_length]`` samples -> ``[tau_max + 1]`` NSDF at lags 0 .. tau_max (float64)."""
        return self._core.nsdf(np.asarray(frame))

    def near_period(self, frame: np.ndarray, near_hz: float | None, cents: float = 50.0) -> Period:
        """The NSDF maximum within ``cents`` of ``near_hz`` (the student's reading), refined; `NO_PERIOD`
        when there is none in range (or the frame has no maximum: silence, noise without a negative lobe)."""
        if near_hz is None:  # no guess to look near
            return NO_PERIOD
        return Period(*self._core.near_period(np.asarray(frame), float(near_hz), float(cents)))

    def own_period(self, frame: np.ndarray) -> Period:
        """The frame's own period: its key maximum (`KEY_MAXIMUM_RATIO`), refined. `NO_PERIOD` for a frame
        with no maximum, and for a key maximum at a lag shorter than ``fmax``'s: a tone above the range
        (its multiples in range are not its period)."""
        return Period(*self._core.own_period(np.asarray(frame)))

    def periods(self, frame: np.ndarray, near_hz: float, cents: float = 50.0) -> tuple[Period, Period]:
        """``(near_period, own_period)`` of ``frame`` from one NSDF (a stream asks for both on a frame)."""
        near, own = self._core.periods(np.asarray(frame), float(near_hz), float(cents))
        return Period(*near), Period(*own)

    def fundamental_share(self, frame: np.ndarray, f0_hz: float, harmonics: int = 5) -> float:
        """Power of the frame (Hann window) at ``f0_hz`` over that of its strongest of the first ``harmonics``
        harmonics: 1 for a sine or a sawtooth, near 0 where ``f0_hz`` is a period the frame repeats at
        without sounding it (two tones a fifth apart, a tone above the range read at a multiple)."""
        if int(harmonics) != harmonics or harmonics < 1:
            raise ValueError(f"harmonics must be a whole number >= 1, got {harmonics!r}")
        return self._core.fundamental_share(np.asarray(frame), float(f0_hz), int(harmonics))
