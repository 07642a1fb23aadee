"""Pitch models in the runtime: 360 CREPE bins -> f0, confidence, note name and cents.

A stream's frame (its bins and its audio) is read in one call to the C++ core (`SteadyTone`); bins
without audio are decoded in numpy (`decode`).

A pitch model is a frame-level model whose labels are the 360 pitch bins of CREPE,
named ``pitch_bin_000`` .. ``pitch_bin_359`` in this order (`PITCH_LABELS`; the
pitch recipe, ``training/recipes/pitch``, trains and exports them). Bin ``k`` is
centred at ``1997.3794084376191 + 20 k`` cents relative to 10 Hz, i.e. 31.70 Hz
(bin 0) to 2005.50 Hz (bin 359) in steps of 20 cents: CREPE's own mapping, so a
student's scores and CREPE's activations decode the same way.
`is_pitch_model` recognises such a card by its labels.

Decoding (`decode`) is CREPE's "local weighted average": the argmax bin and its
four neighbours on each side (clipped at the ends), weighted by their scores,
averaged in cents, converted to Hz. Confidence is the maximum score. A frame is
voiced when confidence >= ``threshold`` (default `VOICING_THRESHOLD`). It is per
frame, hence causal, and matches ``edgetag.training.teachers.crepe.decode_weighted_argmax``
(the torch decoder used for evaluation).

A stream decodes with the frame's audio too (`SteadyTone`, through `decode_with_audio` or a
stream's `PitchReader`): the bins choose the note, and where the frame is a steady tone (NSDF
clarity >= `STEADY_CLARITY`, `edgetag.runtime.periodicity`) its measured period gives the f0. The
bins alone lean towards the equal-tempered grid they were trained on (renders detuned by +23 cents
read -7.5 cents low, by -37 cents +3.6 high; with the period, -2.0 and +0.5) and leave pure low
sines unvoiced; a tuner needs neither. Where the student is unsure but the frame is a steady tone
that sounds its fundamental, the tone's own period is the pitch and the frame is voiced (the
confidence is then the clarity). Frames that are not steady tones (most of polyphonic music, noisy
speech) keep the bins' reading (`training/recipes/pitch/README.md` measures both on held-out audio).

Note names use equal temperament with A4 = 440 Hz and sharps (``C#4``); MIDI note
69 is A4, octaves change at C. ``cents`` is the offset from the nearest note, in
[-50, +50).

Over a stream, `NoteTracker` turns decisions into note onset/offset events
(``--events``) and `PitchSummary` sums a clip up (voiced share, median f0, most
frequent notes) for ``edgetag tag``.

This module must not import torch: edge devices do not carry it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgetag import _core
from edgetag.runtime.periodicity import KEY_MAXIMUM_RATIO, MULTIPLE_KEEP, PeriodicityAnalyser, check_settings
from edgetag.runtime.postprocess import Event

N_BINS = 360
"""Pitch bins (CREPE)."""
CENTS_PER_BIN = 20.0
CENTS_BIN0 = 1997.3794084376191
"""Cents relative to 10 Hz of bin 0 (31.70 Hz)."""
PITCH_LABELS: tuple[str, ...] = tuple(f"pitch_bin_{k:03d}" for k in range(N_BINS))
"""The label names a pitch model's card carries, in bin order."""
VOICING_THRESHOLD = 0.5
"""Default confidence at or above which a frame counts as voiced."""
STEADY_CLARITY = 0.99
"""NSDF clarity of a frame's period at or above which the frame is a steady tone: its period gives the f0."""
STEADY_HOLD = 0.97
"""The clarity that keeps a stream steady once it is (`SteadyTone`'s hysteresis)."""
FUNDAMENTAL_SHARE = 0.1
"""An unsure frame is voiced by its period only if the period's fundamental has at least this share of the
power of its strongest harmonic (-10 dB): a steady tone that sounds its pitch."""
HARMONICS = 5
"""Harmonics of a period the fundamental share compares (`PeriodicityAnalyser.fundamental_share`)."""
NEAR_CENTS = 50.0
"""A period within this of confident bins' f0 is the one near them (`PeriodicityAnalyser.periods`)."""
HOLD_BELOW = 0.1
"""A frame whose reading is less confident than this, soon after a sure one (>= the voicing threshold), takes
the sure frame's f0 (`SteadyTone`'s hold); its confidence stays its own, so it stays unvoiced."""
HOLD_FRAMES = 100
"""How many frames after a sure one the hold lasts at most (1 s of 10 ms decisions)."""
HOLD_RISE_DB = 1.0
"""The hold ends at a frame this much louder than the quietest frame since the sure one: a new sound."""
READ_BLOCK = 256
"""Frames `SteadyTone.read_frames` copies and reads at a time (a clip's overlapping frames are a strided view)."""
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
A4_HZ = 440.0
NOTE_CENTS_MARGIN = 25.0
"""`NoteTracker`: a sounding note goes on while the pitch stays within 50 + this many cents of it: vibrato of up
to about ±75 cents, or a tone on the boundary between two notes, is one note, not a flicker between two."""
REATTACK_DB = 6.0
"""`NoteTracker`: the sounding note struck again (a repeated note: C C G G) when the level of the newest whole
periods of its audio (at least `REATTACK_SPAN_S`) rises this many dB above the quietest within
`REATTACK_WINDOW_S` before: an offset and a new onset of the same note, where the rise began. A stroke rises
within a hop or two; a sinusoidal tremolo of ±A dB at f Hz rises at most 2A·sin(π·f·20 ms) in 20 ms: 3.7 dB
for ±5 dB at 6 Hz, 4.4 for ±6 dB, 5.9 for ±8 dB (which then splits now and then); vibrato not at all."""
REATTACK_SPAN_S = 0.01
REATTACK_WINDOW_S = 0.02
REATTACK_MIN_S = 0.1
"""`NoteTracker`: no new stroke of a note sooner than this after its onset (or its last stroke)."""
REATTACK_CONFIRM_S = 0.06
"""`NoteTracker`: a stroke counts once the frames read this long after it still sound the note (a 64 ms frame
reads the note that was sounding until most of it has passed: a new note's stroke would read as the old one)."""


def bin_cents() -> np.ndarray:
    """[360] float64: centre of each bin in cents relative to 10 Hz."""
    return CENTS_BIN0 + CENTS_PER_BIN * np.arange(N_BINS, dtype=np.float64)


def bin_frequencies() -> np.ndarray:
    """[360] float64: centre of each bin in Hz (31.70 .. 2005.50)."""
    return 10.0 * np.power(2.0, bin_cents() / 1200.0)


def crepe_bin_names() -> tuple[str, ...]:
    """The CREPE teacher's names of the same 360 bins, ``"31.70Hz"`` .. ``"2005.50Hz"``."""
    return tuple(f"{hz:.2f}Hz" for hz in bin_frequencies().tolist())


def is_pitch_model(card_or_labels: Any) -> bool:
    """The one rule for "this is a pitch model": its labels are CREPE's 360 bins in order.

    Named as `PITCH_LABELS` (exported students) or as the CREPE teacher names
    them (`crepe_bin_names`, students trained on its cache); a card must also
    give frame-level output. The runtime, `edgetag evaluate` and the recipes all ask here.
    """
    labels = getattr(card_or_labels, "labels", card_or_labels)
    try:
        labels = tuple(labels)
    except TypeError:
        return False
    if labels != PITCH_LABELS and labels != crepe_bin_names():
        return False
    level = getattr(card_or_labels, "output_level", "frame")
    return level == "frame"


_CENTS = bin_cents()
_CENTS.flags.writeable = False
_WINDOW = np.arange(-4, 5)  # the bins averaged around the argmax


def decode(scores: np.ndarray, fmin: float | None = None, fmax: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``[..., 360]`` scores -> ``(f0_hz, confidence)``, each ``[...]`` float64.

    Weighted average of bin cents over argmax +- 4 bins; bins whose centre lies
    outside ``[fmin, fmax]`` Hz are ignored when given. A window whose scores sum
    to zero gives the argmax bin's centre.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.shape[-1:] != (N_BINS,):
        raise ValueError(f"pitch scores must end in {N_BINS} bins, got shape {s.shape}")
    if fmin is not None or fmax is not None:
        f = bin_frequencies()
        keep = np.ones(N_BINS, bool)
        if fmin is not None:
            keep &= f >= fmin
        if fmax is not None:
            keep &= f <= fmax
        if not keep.any():
            raise ValueError(f"no pitch bin lies in [{fmin}, {fmax}] Hz")
        s = s * keep
    if s.ndim == 1:
        # one frame, a stream's decision: slices instead of the batched gathers (a tenth of the time);
        # the same nine products summed in the same order, so the result is the batched path's to the bit
        i = int(s.argmax())
        if 4 <= i < N_BINS - 4:
            w = s[i - 4 : i + 5]
            total = w.sum()
            local = (w * _CENTS[i - 4 : i + 5]).sum() / total if total > 0 else _CENTS[i]
            return 10.0 * np.power(2.0, local / 1200.0), s[i]
    index = s.argmax(axis=-1)
    confidence = np.take_along_axis(s, index[..., None], axis=-1)[..., 0]
    window = index[..., None] + _WINDOW
    inside = (window >= 0) & (window < N_BINS)  # bins past either end weigh nothing
    window = np.clip(window, 0, N_BINS - 1)
    w = np.take_along_axis(s, window, axis=-1) * inside
    total = w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        local = (w * _CENTS[window]).sum(axis=-1) / total
    local = np.where(total > 0, local, _CENTS[index])
    return 10.0 * np.power(2.0, local / 1200.0), confidence


_ANALYSERS: dict[int, PeriodicityAnalyser] = {}
_FMIN_HZ, _FMAX_HZ = float(bin_frequencies()[0]), float(bin_frequencies()[-1])  # the periods measured: the bins' range


def analyser(frame_length: int, sample_rate: int = 16000) -> PeriodicityAnalyser:
    """The `PeriodicityAnalyser` of frames of ``frame_length`` samples over the bins' range (31.7 Hz to 2 kHz), shared."""
    key = frame_length * 1_000_000 + sample_rate
    if key not in _ANALYSERS:
        _ANALYSERS[key] = PeriodicityAnalyser(sample_rate, frame_length, _FMIN_HZ, _FMAX_HZ, refine_above=STEADY_CLARITY)
    return _ANALYSERS[key]


class SteadyTone:
    """The period side of a stream's pitch decoding, frame after frame (`decode_with_audio`, `PitchReader`).

    Per frame, from the bins' reading (`decode`) and the NSDF of its audio (`edgetag.runtime.periodicity`):

    - bins confident (>= the voicing threshold): the NSDF maximum within 50 cents of their f0 gives the
      f0 when it is a steady tone's (clarity >= `STEADY_CLARITY`); where the frame's own period (its key
      maximum) is as steady, sounds its fundamental and is a whole fraction of that one (within 50 cents),
      the own period gives it: the bins read the tone an octave or a twelfth low (`pitch` read a 2 kHz sine,
      at the top of its range, as 667 Hz: the 24-sample lag of three of its periods is as clear as 8);
    - otherwise (bins unsure, or confident with no steady period near them): the frame's own period
      (its key maximum) gives the f0 and voices the frame when it is that steady and sounds its
      fundamental (at least `FUNDAMENTAL_SHARE` of the power of its strongest harmonic): a steady tone
      the student never learnt, such as a pure low sine it reads a tone or two off (`pitch-small` read
      a 55 Hz sine as 63.7 Hz, confident). The period near unsure bins' guess is never used: it is
      often a multiple of the true one.

    Where the period is used, the confidence is raised to its clarity. Once a frame is steady, the next
    needs only `STEADY_HOLD` (hysteresis: a tone in noise near the threshold does not flicker between
    the two readings).

    Then the hold: after a sure frame (confidence >= the threshold), the frames that follow read its f0
    where their reading is under `HOLD_BELOW`, until one is `HOLD_RISE_DB` louder than the quietest
    frame since the sure one (a new sound) or `HOLD_FRAMES` have passed. A note fading into noise,
    where the bins have lost it, still has the pitch it had; its frames' confidence stays their own, so
    voicing is unchanged. A new sound no louder than the fading one (a quieter note, plain noise) keeps
    the held f0 until the bins are sure of it or the hold runs out; a stream's silent decision (below the
    level gate, `PitchReader`) ends it, while `decode_with_audio` and `decode_clip`, which know no gate,
    hold through silence as through any quiet frame. ``hold_frames=0`` turns it off. The pitch recipe's
    ``choose_hold.py`` chose the three settings on its valid split.

    A frame is read in one call to the C++ core (`edgetag._core.PitchFrameReader`: the decoding, the
    periods and these rules), a stream's per-decision cost; ``steady`` carries the hysteresis from frame
    to frame, `end_tone` ends both it and the hold.
    """

    def __init__(self, sample_rate: int = 16000, hold_frames: int = HOLD_FRAMES, hold_below: float = HOLD_BELOW,
                 hold_rise_db: float = HOLD_RISE_DB) -> None:
        if not (0 <= hold_frames < 2**31 and 0 <= hold_below <= 1 and 0 <= hold_rise_db < math.inf):
            raise ValueError(f"the hold needs 0 <= hold_frames < 2**31, hold_below in [0, 1] and a finite hold_rise_db "
                             f">= 0, got {hold_frames}, {hold_below}, {hold_rise_db}")
        self.sample_rate = int(sample_rate)
        self._hold = (int(hold_frames), float(hold_below), float(hold_rise_db))
        self._reader: _core.PitchFrameReader | None = None  # made for the first frame's length
        self._frame_length = 0
        self._steady = False  # until the reader exists

    @property
    def steady(self) -> bool:
        return self._reader.steady if self._reader is not None else self._steady

    @steady.setter
    def steady(self, value: bool) -> None:
        self._steady = bool(value)
        if self._reader is not None:
            self._reader.steady = self._steady

    def end_tone(self) -> None:
        """The stream's tone has ended (a silent decision): no hysteresis, no f0 held for the next frames."""
        self._steady = False
        if self._reader is not None:
            self._reader.end_tone()

    def _for(self, frame_length: int) -> _core.PitchFrameReader:
        reader = self._reader
        if reader is None or self._frame_length != frame_length:
            check_settings(self.sample_rate, frame_length, _FMIN_HZ, _FMAX_HZ, STEADY_CLARITY)
            reader = _core.PitchFrameReader(self.sample_rate, frame_length, _FMIN_HZ, _FMAX_HZ, STEADY_CLARITY,
                                            KEY_MAXIMUM_RATIO, MULTIPLE_KEEP, _CENTS, STEADY_CLARITY, STEADY_HOLD,
                                            FUNDAMENTAL_SHARE, HARMONICS, NEAR_CENTS, hold_frames=self._hold[0],
                                            hold_below=self._hold[1], hold_rise_db=self._hold[2])
            reader.steady = self.steady
            self._reader, self._frame_length = reader, frame_length
        return reader

    def read(self, scores: np.ndarray, frame: np.ndarray, threshold: float = VOICING_THRESHOLD) -> tuple[float, float, float]:
        """One frame's ``[360]`` scores and its audio (the samples they came from) -> ``(f0, confidence,
        clarity)``: the clarity of the period that was considered (0.0: none)."""
        scores, frame = np.asarray(scores), np.asarray(frame)
        if frame.ndim != 1:
            raise ValueError(f"a frame is one 1-D run of samples, got shape {frame.shape} (many frames: read_frames)")
        return self._for(len(frame)).read(scores, frame, float(threshold))

    def read_frames(self, scores: np.ndarray, frames: np.ndarray,
                    threshold: float = VOICING_THRESHOLD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`read` of ``[n, 360]`` scores and their ``[n, L]`` frames, consecutive frames of one stream -> three [n].
        ``frames`` may be a strided view (a clip's overlapping frames): it is copied a block at a time. The shapes
        are checked before any frame is read (a refused call leaves the stream's hysteresis as it was)."""
        scores, frames = np.asarray(scores), np.asarray(frames)
        if scores.ndim != 2 or frames.ndim != 2 or scores.shape[1] != N_BINS or len(scores) != len(frames):
            raise ValueError(f"read_frames takes scores [n, {N_BINS}] and their n frames [n, samples], "
                             f"got shapes {scores.shape} and {frames.shape}")
        reader = self._for(frames.shape[-1])
        out = [np.empty(len(scores)) for _ in range(3)]
        for start in range(0, len(scores), READ_BLOCK):
            block = slice(start, start + READ_BLOCK)
            got = reader.read_frames(np.ascontiguousarray(scores[block]), np.ascontiguousarray(frames[block]),
                                     float(threshold))
            for column, values in zip(out, got):
                column[block] = values
        return out[0], out[1], out[2]


def decode_with_audio(scores: np.ndarray, frames: np.ndarray, threshold: float = VOICING_THRESHOLD,
                      sample_rate: int = 16000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[n, 360]`` scores and the ``[n, L]`` audio frames they came from, consecutive frames of one
    stream -> ``(f0_hz, confidence, clarity)``, each [n]: `decode`, then `SteadyTone` frame by frame."""
    s, x = np.atleast_2d(scores), np.atleast_2d(frames)
    if len(s) != len(x):
        raise ValueError(f"{len(s)} frames of scores but {len(x)} frames of audio")
    if s.shape[-1] != N_BINS:
        raise ValueError(f"pitch scores must end in {N_BINS} bins, got shape {s.shape}")
    return SteadyTone(sample_rate).read_frames(s, x, threshold)


def decode_clip(scores: np.ndarray, samples: np.ndarray, frontend: Any,
                threshold: float = VOICING_THRESHOLD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A whole clip's frame scores ``[n, 360]`` decoded as a stream reads them: frame ``i`` is the
    samples ``[i * hop, i * hop + win)`` of ``samples`` (the front end's frames, `frontend`).
    ``(f0_hz, confidence, clarity)`` for the frames that both have (all of them for features of these
    samples)."""
    x = np.asarray(samples, dtype=np.float32)
    if len(x) < frontend.win_length:
        empty = np.zeros(0)
        return empty, empty, empty
    frames = np.lib.stride_tricks.sliding_window_view(x, frontend.win_length)[:: frontend.hop_length]
    n = min(len(scores), len(frames))
    return decode_with_audio(np.asarray(scores)[:n], frames[:n], threshold, frontend.sample_rate)


@functools.lru_cache(maxsize=256)  # a stream asks for the same few notes every decision
def note_frequency(name: str) -> float:
    """The equal-tempered frequency of a note name as `note_of` writes it (``"A4"``: 440.0, ``"C#-1"``)."""
    pitch, octave = (name[:2], name[2:]) if name[1:2] == "#" else (name[:1], name[1:])
    if pitch not in NOTE_NAMES or not octave.lstrip("-").isdigit():
        raise ValueError(f"not a note name: {name!r} (C, C#, D ... B and an octave, e.g. A4)")
    midi = 12 * (int(octave) + 1) + NOTE_NAMES.index(pitch)
    return A4_HZ * 2.0 ** ((midi - 69) / 12)


def cents_from(f0_hz: float, note: str) -> float:
    """How many cents ``f0_hz`` lies above the note ``note`` (below: negative)."""
    if not (f0_hz > 0 and math.isfinite(f0_hz)):
        raise ValueError(f"f0 must be a positive finite frequency, got {f0_hz!r}")
    return 1200.0 * math.log2(f0_hz / note_frequency(note))


def within_note(f0_hz: float, note: str, cents_margin: float = NOTE_CENTS_MARGIN) -> bool:
    """Whether ``f0_hz`` still reads as ``note``: within 50 + ``cents_margin`` cents of it (`NoteTracker`)."""
    return abs(cents_from(f0_hz, note)) <= 50.0 + cents_margin


def note_of(f0_hz: float) -> tuple[str, float, int]:
    """``(name, cents, midi)`` of the nearest equal-tempered note (A4 = 440 Hz): ``("A4", -3.2, 69)``."""
    if not (f0_hz > 0 and math.isfinite(f0_hz)):
        raise ValueError(f"f0 must be a positive finite frequency, got {f0_hz!r}")
    midi_float = 69.0 + 12.0 * math.log2(f0_hz / A4_HZ)
    midi = int(math.floor(midi_float + 0.5))
    cents = 100.0 * (midi_float - midi)
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}", cents, midi


@dataclass(frozen=True)
class PitchReading:
    """One frame, decoded."""

    f0_hz: float
    confidence: float
    voiced: bool
    note: str
    cents: float
    midi: int
    clarity: float | None = None
    """How periodic the frame's audio was (NSDF, 0..1; `SteadyTone`); None when decoded without it (a silent
    decision: no period is measured below the level gate)."""

    def to_dict(self) -> dict[str, Any]:
        return {"f0_hz": round(self.f0_hz, 3), "confidence": round(self.confidence, 4), "voiced": self.voiced,
                "note": self.note, "cents": round(self.cents, 1), "midi": self.midi,
                "clarity": None if self.clarity is None else round(self.clarity, 4)}


def reading(scores: Sequence[float] | np.ndarray, threshold: float = VOICING_THRESHOLD,
            audio: np.ndarray | None = None, tone: SteadyTone | None = None) -> PitchReading:
    """Decode one frame's 360 scores into a `PitchReading` (the note is that of the best f0, voiced or not);
    with the frame's ``audio`` (the samples the scores came from), through ``tone`` (a stream's
    `SteadyTone`; a fresh one when None)."""
    if audio is None:
        f0, conf = decode(np.asarray(scores))
        f, c, clarity = float(f0), float(conf), None
    else:
        f, c, clarity = (tone or SteadyTone()).read(np.asarray(scores), np.asarray(audio), threshold)
    name, cents, midi = note_of(f)
    return PitchReading(f0_hz=f, confidence=c, voiced=c >= threshold, note=name, cents=cents, midi=midi,
                        clarity=clarity)


def gated(r: PitchReading, silent: bool) -> PitchReading:
    """``r`` as a stream reports it: unvoiced when its decision was silence (below the level gate,
    `edgetag.runtime.pipeline`), whatever the bins say; the f0 and note are kept for reference."""
    return dataclasses.replace(r, voiced=False) if silent and r.voiced else r


class PitchReader:
    """`reading` of a stream's decisions, decoded once however many consumers read one.

    The writers, the clip summary, the note events and the tuner view of one stream
    share a reader. The decision pipeline reads each decision first, with its audio
    (`edgetag.runtime.engine.Decision.audio`); the others then ask with the same scores
    array and get the same reading back. It keeps the last two arrays it decoded (a
    silent decision's zeros are read beside its scores). Each decision's scores are a new
    array (the smoother returns one), so identity is a safe key; the references it keeps
    stop the arrays' ids from being reused.
    """

    def __init__(self, threshold: float = VOICING_THRESHOLD, sample_rate: int = 16000) -> None:
        self.threshold = float(threshold)
        self.tone = SteadyTone(sample_rate)  # the stream's: its hysteresis runs from decision to decision
        self._recent: list[tuple[object, PitchReading]] = []

    def __call__(self, scores: Sequence[float] | np.ndarray, audio: np.ndarray | None = None) -> PitchReading:
        for seen, r in self._recent:
            if seen is scores:
                return r
        if audio is None:
            self.tone.end_tone()  # a decision without audio (silence) ends a steady tone and the hold
        r = reading(scores, self.threshold, audio, self.tone)
        self._recent = [self._recent[-1], (scores, r)] if self._recent else [(scores, r)]
        return r


def reader_for(card: Any) -> PitchReader | None:
    """One `PitchReader` per stream for a pitch model (its consumers share each decoding), else None."""
    if not is_pitch_model(card):
        return None
    return PitchReader(sample_rate=card.frontend.sample_rate) if hasattr(card, "frontend") else PitchReader()


#: `PitchSummary`'s 1-cent bins of f0 from 10 Hz: 10,000 reach 3.2 kHz, above any f0 the decoder reads.
_SUMMARY_CENTS = 10_000


class PitchSummary:
    """A clip through a pitch model: how much of it was voiced, its median f0, its most frequent notes.

    The pitch counterpart of `edgetag.runtime.postprocess.ClipSummary` (whose per-label
    means say nothing for 360 bins); ``add`` takes one decision's scores.
    """

    def __init__(self, reader: PitchReader | None = None) -> None:
        self.read = reader or PitchReader()
        self.count = 0
        self._voiced = 0
        # voiced f0 counted in 1-cent bins, with each bin's sum of f0: the median of a day-long file in
        # the same memory as a song's
        self._counts = np.zeros(_SUMMARY_CENTS, np.int64)
        self._sums_hz = np.zeros(_SUMMARY_CENTS)
        self._notes: dict[str, int] = {}

    def add(self, scores: Sequence[float] | np.ndarray) -> None:
        r = self.read(scores)
        self.count += 1
        if r.voiced:  # (a reading's f0 is finite and positive: `note_of` refuses any other)
            self._voiced += 1
            bin_ = min(max(round(1200.0 * math.log2(r.f0_hz / 10.0)), 0), _SUMMARY_CENTS - 1)
            self._counts[bin_] += 1
            self._sums_hz[bin_] += r.f0_hz
            self._notes[r.note] = self._notes.get(r.note, 0) + 1

    def median_f0(self) -> float | None:
        """The lower median of the voiced f0, to within a cent: the mean of the readings in the 1-cent bin
        that holds it, so a pitch that was read, never the mean of two far apart (A3 and E4 give A3, not
        the C#4 between them; a steady 440 Hz gives 440). With two notes held equally long the middle
        reading can be a frame between them (a glide's). None when nothing was voiced."""
        if not self._voiced:
            return None
        bin_ = int(np.searchsorted(np.cumsum(self._counts), (self._voiced + 1) // 2))
        return float(self._sums_hz[bin_] / self._counts[bin_])

    def to_dict(self, k: int = 5) -> dict[str, Any]:
        """``decisions``, ``voiced_fraction``, ``median_f0_hz`` and its ``median_note`` (None when
        nothing was voiced), and ``notes``: the ``k`` most frequent notes with their share of the
        voiced decisions."""
        voiced, median = self._voiced, self.median_f0()
        top = sorted(self._notes.items(), key=lambda item: (-item[1], item[0]))[:k]
        return {
            "decisions": self.count,
            "voiced_fraction": round(voiced / self.count, 4) if self.count else 0.0,
            "median_f0_hz": None if median is None else round(median, 3),
            "median_note": None if median is None else note_of(median)[0],
            "notes": {name: round(n / voiced, 4) for name, n in top},
        }


class NoteTracker:
    """Note events for pitch models: ``onset`` when a voiced note starts, ``offset`` when it ends.

    The pitch counterpart of `edgetag.runtime.postprocess.Hysteresis` (same ``update`` /
    ``finish`` interface and `Event` objects, the label being the note name). A frame
    is voiced at ``confidence >= threshold`` and stays so down to ``threshold - margin``;
    the sounding note goes on while the pitch stays within 50 + ``cents_margin`` cents of
    it (`NOTE_CENTS_MARGIN`: vibrato, or a tone on a note boundary, is one note), and a new
    note (or silence) must last ``min_decisions`` decisions in a row before it replaces the
    sounding one, so one stray frame does not split a note. The onset is stamped at the first
    decision of the new note, the offset at the decision where the next note (or silence) began.

    Given each decision's audio (``update(..., audio=)``, its frame's samples, what the stream's pipeline
    passes), a sounding note struck again is two notes: when the level of the frame's newest whole periods
    of the note rises `REATTACK_DB` above the quietest of the decisions in the `REATTACK_WINDOW_S` before
    (no sooner than `REATTACK_MIN_S` after the note began), and the frames still read the note
    `REATTACK_CONFIRM_S` later, the note ends and starts again at the first decision of the rise (its
    events come that much later than its time). Without audio, repeated notes with no silence between
    them stay one note.
    """

    def __init__(self, threshold: float = VOICING_THRESHOLD, margin: float = 0.1, min_decisions: int = 3,
                 reader: PitchReader | None = None, cents_margin: float = NOTE_CENTS_MARGIN) -> None:
        if margin < 0:
            raise ValueError(f"hysteresis margin must be >= 0, got {margin}")
        if min_decisions < 1:
            raise ValueError(f"min_decisions must be >= 1, got {min_decisions}")
        if not 0 <= cents_margin < 50:
            raise ValueError(f"cents_margin must be in [0, 50) cents (a semitone away is the next note), "
                             f"got {cents_margin}")
        self.on_at, self.off_below, self.min_decisions = float(threshold), float(threshold) - margin, min_decisions
        self.cents_margin = float(cents_margin)
        self.read = reader or PitchReader(threshold)  # only its note and confidence are used here
        self.note: str | None = None  # the sounding note
        self._candidate: str | None = None  # what the last decisions read, and since when
        self._since, self._run, self._peak = 0.0, 0, 0.0
        self._struck = 0.0  # when the sounding note began, or was last struck again
        self._levels: list[tuple[float, float]] = []  # (t, level dB) of the sounding note's recent decisions
        self._stroke: float | None = None  # when a rise began that may be the note struck again

    def update(self, t: float, scores: Sequence[float] | np.ndarray, audio: np.ndarray | None = None) -> list[Event]:
        r = self.read(scores)
        events = self._struck_again(t, r, audio)
        if events:
            return events
        note = self.note
        events = self._follow(t, r)
        if self.note != note:
            self._stroke = None  # another note (or silence) came instead
        return events

    def _struck_again(self, t: float, r: PitchReading, audio: np.ndarray | None) -> list[Event]:
        """The sounding note's offset and onset where it was struck again (a repeated note), else []: a rise of
        `REATTACK_DB` in its newest periods' level, confirmed once the frames that read the pitch are past it
        (`REATTACK_CONFIRM_S`: a new note's stroke would by then read as that note)."""
        sounds = self.note is not None and r.note is not None and r.confidence >= self.off_below \
            and within_note(r.f0_hz, self.note, self.cents_margin)
        if self._stroke is not None and t >= self._stroke + REATTACK_CONFIRM_S:
            stroke, self._stroke = self._stroke, None
            if sounds:
                self._struck, self._levels = stroke, []
                self._candidate, self._run = None, 0
                return [Event(stroke, self.note, "offset", r.confidence), Event(stroke, self.note, "onset", r.confidence)]
        level = None if self.note is None or audio is None else self._stroke_level(audio, note_frequency(self.note))
        if level is None:
            self._levels.clear()
            return []
        # every decision while the note sounds (a short gap's unvoiced ones too: the dip before the stroke)
        before = [(u, v) for u, v in self._levels if u >= t - REATTACK_WINDOW_S - 1e-9]
        self._levels = [*before, (t, level)]
        if not before or self._stroke is not None:
            return []
        quietest = min(v for _, v in before)
        if not level - quietest >= REATTACK_DB:  # (silence after silence: nan, no rise)
            return []
        low = max(i for i, (_, v) in enumerate(before) if v == quietest)  # the last of the quietest
        rise = self._levels[low + 1][0]  # the first decision louder than the quietest
        if rise - self._struck >= REATTACK_MIN_S:
            self._stroke = rise
        return []

    def _stroke_level(self, audio: np.ndarray, f0_hz: float) -> float | None:
        """dB of the mean square of the frame's newest whole periods of ``f0_hz`` covering `REATTACK_SPAN_S`
        (whole periods: a low note's level does not swing with its phase); None if the frame is shorter."""
        period = self.read.tone.sample_rate / f0_hz
        n = int(round(period * math.ceil(REATTACK_SPAN_S * self.read.tone.sample_rate / period)))
        if not 0 < n <= len(audio):
            return None
        tail = audio[-n:]  # float32 products summed by BLAS: plenty for a level in dB, no copy per decision
        power = float(np.dot(tail, tail)) / n
        return 10.0 * math.log10(power) if power > 0 else -math.inf

    def _follow(self, t: float, r: PitchReading) -> list[Event]:
        """The note (or silence) that the reading confirms, with its events."""
        voiced = r.confidence >= (self.off_below if self.note is not None else self.on_at)
        heard = r.note if voiced else None
        for held in (self.note, self._candidate):  # within the sounding (or coming) note's reach: still that note
            if heard is not None and held is not None and within_note(r.f0_hz, held, self.cents_margin):
                heard = held
                break
        if heard == self.note:  # the sounding note (or silence) goes on
            self._candidate, self._run = None, 0
            return []
        if self._run == 0 or heard != self._candidate:  # a new candidate (silence is one too: None)
            self._candidate, self._since, self._run, self._peak = heard, t, 0, 0.0
        self._run += 1
        self._peak = max(self._peak, r.confidence)
        if self._run < self.min_decisions:
            return []
        events = []
        if self.note is not None:
            events.append(Event(self._since, self.note, "offset", r.confidence))
        if heard is not None:
            events.append(Event(self._since, heard, "onset", self._peak))
        self.note, self._candidate, self._run = heard, None, 0
        self._struck, self._levels = self._since, []
        return events

    def active_labels(self) -> tuple[str, ...]:
        """The sounding note as a decision's ``active`` names it: ``("A4",)``, or ``()`` (the `Hysteresis` method's
        pitch counterpart; a note is active once confirmed, ``min_decisions`` decisions after its onset's time)."""
        return (self.note,) if self.note is not None else ()

    def finish(self, t: float, cause: str = "end") -> list[Event]:
        """End the sounding note at ``t`` (``cause``: the ``"end"`` of the stream, or ``"silence"``)."""
        events = [Event(t, self.note, "offset", float("nan"), cause)] if self.note is not None else []
        self.note, self._candidate, self._run = None, None, 0
        self._levels, self._stroke = [], None
        return events
