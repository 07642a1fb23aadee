"""The public Python API: load a model, push audio at any rate, read decisions.

    import edgetag

    tagger = edgetag.load("music-tags", threads=1)    # a built-in model's name, or an .onnx file
    for d in tagger.push(samples, sample_rate=44100):  # mono [n] or [n, channels]; float32/float64/int16
        print(d.t, d.top(3), d.active)
    tagger.flush()                                     # end of the stream: what the resampler and engine still held

    decisions = edgetag.tag_file("song.ogg", model="pitch")
    decisions[0].pitch.note                            # pitch models: f0_hz, note, cents, confidence, voiced

It is a thin layer over what ``edgetag tag`` and ``edgetag listen`` run: the
streaming `Engine` (C++ front end + ONNX Runtime) and the `DecisionPipeline`
(smoothing, the card's thresholds with hysteresis, pitch decoding), so the
decisions are the CLI's, number for number. What it adds is input handling:
the sample rate is a required argument, multi-channel audio is averaged to
mono (as files are), audio at another rate goes through a streaming soxr
resampler, and bad input (NaN, Inf, a wrong shape or dtype) is refused with a
`ValueError` that says what is wrong, before any state changes.

Needs numpy, the C++ extension, onnxruntime and (for other rates) soxr;
never torch.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from edgetag.runtime.audio import DEFAULT_RESAMPLE_QUALITY, AudioWarning, check_input_rate, loud_note
from edgetag.runtime.engine import Decision as EngineDecision
from edgetag.runtime.engine import Engine
from edgetag.runtime.model import STREAM_THREADS, load_any_model
from edgetag.runtime.models import DEFAULT_MODEL, resolve_model
from edgetag.runtime.pipeline import DecisionPipeline, min_durations
from edgetag.runtime.pipeline import level_gate as card_level_gate
from edgetag.runtime.pitch import PitchReading, gated, is_pitch_model, reader_for
from edgetag.runtime.postprocess import top_k
from edgetag.runtime.version import package_version

__all__ = ["PitchReading", "TagDecision", "Tagger", "__version__", "load", "tag_file"]

__version__ = package_version()

#: Most channels a 2-D push may have: more is almost surely a transposed [channels, n] array.
MAX_CHANNELS = 64
#: Samples per push when `tag_file` streams a file: the CLI's ``edgetag tag`` chunk (0.5 s).
FILE_CHUNK_SECONDS = 0.5
_SAMPLE_TYPES = (np.float32, np.float64, np.int16)


@dataclass(frozen=True, eq=False)
class TagDecision:
    """One decision of a stream: the scores of the last window (or frame) and what is on.

    ``scores`` are what ``edgetag tag`` writes: the model's scores after the
    tagger's smoothing (none by default), float32 in card label order.
    """

    t: float
    """Seconds of audio from the start of the stream to the end of the last frame used (what ``edgetag tag``
    writes as ``t``). Audio pushed at another rate keeps its time line: the resampler delays the decision,
    not its ``t``."""
    scores: np.ndarray
    """float32 [n_labels], card label order (read-only)."""
    active: tuple[str, ...]
    """Labels on after this decision: a tag turns on at its card threshold and off below
    threshold - margin, the margin at most half the threshold (what ``--events`` reports). Pitch models: the sounding note, e.g. ``("A4",)``,
    or ``()``."""
    labels: tuple[str, ...] = field(repr=False)
    """The model's labels, in the order of ``scores``."""
    pitch: PitchReading | None = None
    """Pitch models: the decoded frame (``f0_hz``, ``note``, ``cents``, ``confidence``, ``voiced``,
    ``midi``); None for tagging models."""
    end_sample: int = field(default=0, repr=False)
    """Index (exclusive) of the last sample used, counted at the model's sample rate."""

    def __repr__(self) -> str:  # the 50 (or 360) scores would drown the line
        best = ", ".join(f"{label} {score:.3f}" for label, score in self.top(3))
        pitch = "" if self.pitch is None else (
            f", pitch={self.pitch.f0_hz:.1f} Hz {self.pitch.note} {self.pitch.cents:+.0f} ct"
            f" conf {self.pitch.confidence:.2f}{'' if self.pitch.voiced else ' unvoiced'}")
        return f"TagDecision(t={self.t:.3f}, top=[{best}], active={self.active!r}{pitch})"

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` highest-scoring labels, best first: ``[("guitar", 0.81), ...]``."""
        return top_k(self.scores, self.labels, k)

    def score(self, label: str) -> float:
        """The score of one label."""
        try:
            return float(self.scores[self.labels.index(label)])
        except ValueError:
            raise KeyError(f"no label {label!r} in this model") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``t``, ``scores`` by label, ``active``, (pitch models) ``pitch``; rounded as the CLI rounds."""
        out: dict[str, Any] = {"t": round(self.t, 6),
                               "scores": {lb: round(float(s), 6) for lb, s in zip(self.labels, self.scores)},
                               "active": list(self.active)}
        if self.pitch is not None:
            out["pitch"] = self.pitch.to_dict()
        return out


class _Collector:
    """A `DecisionPipeline` writer that hands each decision and its smoothed scores to a callback."""

    def __init__(self, on_decision: Callable[[EngineDecision, np.ndarray], None]) -> None:
        self.on_decision = on_decision

    def decision(self, d: EngineDecision, scores: np.ndarray) -> None:
        self.on_decision(d, scores)

    def event(self, e: Any) -> None:  # events_only is off: never called
        pass

    def summary(self, summary: dict) -> None:
        pass


class Tagger:
    """A loaded model and one audio stream through it (see the module docstring).

    Use `load` to make one. One tagger is one stream: use it from one thread at
    a time, and a tagger per concurrent stream; taggers can share a loaded model
    (``edgetag.Tagger(tagger.model)``: ONNX Runtime sessions run concurrently).
    """

    def __init__(self, model: Any, *, smooth: int = 1, margin: float = 0.1, level_gate: float | None = None,
                 min_on: float | None = None, min_off: float | None = None) -> None:
        """``model``: a loaded model (`edgetag.runtime.model.load_any_model`); ``smooth``, ``margin``,
        ``level_gate`` (dBFS; None: the card's, else -60; ``-math.inf``: none), ``min_on`` and ``min_off``
        (seconds; None: the card's, else 0) as the CLI's ``--smooth``, ``--margin``, ``--level-gate``,
        ``--min-on`` and ``--min-off``."""
        self._model = model
        self._card = model.card
        self._gate = card_level_gate(self._card) if level_gate is None else float(level_gate)
        self._labels = tuple(self._card.labels)
        self._pitch = is_pitch_model(self._card)
        card_on, card_off = min_durations(self._card)
        self._smooth, self._margin = smooth, margin
        self._min_on = card_on if min_on is None else min_on
        self._min_off = card_off if min_off is None else min_off
        self._engine = Engine(model)
        self._loud_warned = False  # float samples past ±LOUD_PEAK: one warning per tagger (audio.loud_note)
        self._start_stream()  # checks smooth, margin and the minimum durations

    # ------------------------------------------------------------------ facts
    @property
    def card(self) -> Any:
        """The model card (`edgetag.runtime.model_card.ModelCard`): labels, front end, thresholds, metrics."""
        return self._card

    @property
    def model(self) -> Any:
        """The loaded model (`edgetag.runtime.model.OnnxModel`, or what a loader plug-in returns)."""
        return self._model

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's labels, in score order."""
        return self._labels

    @property
    def sample_rate(self) -> int:
        """The model's sample rate; audio at other rates is resampled on the way in."""
        return int(self._card.frontend.sample_rate)

    @property
    def is_pitch(self) -> bool:
        """True for pitch models (decisions carry ``pitch``)."""
        return self._pitch

    @property
    def decision_interval_s(self) -> float:
        """Seconds of audio between decisions."""
        return float(self._card.decision_interval_s)

    def __repr__(self) -> str:
        kind = "pitch" if self._pitch else f"{len(self._labels)} labels"
        return (f"Tagger({self._card.name!r}, {kind}, {self.sample_rate} Hz, "
                f"a decision every {1e3 * self.decision_interval_s:g} ms)")

    # ----------------------------------------------------------------- stream
    def push(self, samples: Any, *, sample_rate: int) -> list[TagDecision]:
        """Append audio; returns the decisions it completes (often none, sometimes several).

        ``samples``: mono ``[n]`` or ``[n, channels]`` (channels are averaged),
        float32/float64 in [-1, 1] or int16 (scaled by 1/32768). ``sample_rate``:
        the rate of these samples, in Hz; audio not at the model's rate goes
        through a streaming resampler, and every push of one stream must give
        the same rate (`reset` or `flush` to change it). Raises `ValueError` on
        a bad rate, shape or dtype, or NaN/Inf samples, leaving the stream as it was.
        Float samples past ±100 (integer-scale audio passed as float) are used as
        they are, with one `edgetag.runtime.audio.AudioWarning` per tagger.
        """
        return self._push(samples, sample_rate, check_loud=True)

    def _push(self, samples: Any, sample_rate: int, *, check_loud: bool) -> list[TagDecision]:
        """`push`; ``check_loud=False`` for samples whose loudness was checked where they came from (a file)."""
        rate = _check_rate(sample_rate)
        if self._input_rate is not None and rate != self._input_rate:
            raise ValueError(f"sample_rate changed from {self._input_rate} Hz to {rate} Hz within one stream; "
                             "call flush() (end of this stream) or reset() before pushing audio at another rate")
        mono = _mono(samples)
        if check_loud and not self._loud_warned and mono.dtype.kind == "f":
            note = loud_note("pushed samples", mono, self._input_samples / rate, rate)
            if note is not None:  # integer-scale floats (x.astype(np.float32) of int16 data) give garbage quietly
                self._loud_warned = True
                warnings.warn(note, AudioWarning, stacklevel=3)  # the caller of push
        if self._input_rate is None:  # the first push of a stream fixes its rate
            if rate != self.sample_rate:
                import soxr  # only when resampling: a device feeding the model's rate needs no soxr

                self._resampler = soxr.ResampleStream(rate, self.sample_rate, 1, dtype="float32",
                                                      quality=DEFAULT_RESAMPLE_QUALITY)
            self._input_rate = rate
        self._input_samples += len(mono)
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(_as_float32(mono), last=False)
        return self._run(mono)

    def flush(self) -> list[TagDecision]:
        """End of the stream: the decisions of the audio the resampler still held; then starts a new stream.

        Audio after the last complete frame cannot make a decision (frames are
        never padded: a live stream cannot see the future); complete frames still
        gathered for a model call (a card's ``frames_per_call`` > 1) are run.
        """
        out: list[TagDecision] = []
        if self._resampler is not None:
            out = self._run(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        for d in self._engine.flush():  # frames still gathered for a model call (frames_per_call > 1)
            self._pipeline(d)
        out += self._out
        self._out = []
        self.reset()
        return out

    def reset(self) -> None:
        """Forget the stream (pending samples, model state, smoothing, active tags): the next push starts at t = 0."""
        self._engine.reset()
        self._start_stream()

    # --------------------------------------------------------------- internal
    def _start_stream(self) -> None:
        self._input_rate: int | None = None
        self._input_samples = 0  # pushed at the input rate: where a warning's samples start
        self._resampler: Any = None
        self._out: list[TagDecision] = []
        self._reader = reader_for(self._card)  # one pitch decoding per decision, shared as in the CLI
        self._pipeline = DecisionPipeline(self._labels, self._card.thresholds, [_Collector(self._collect)],
                                          smooth=self._smooth, margin=self._margin, reader=self._reader,
                                          gate_dbfs=self._gate, min_on_s=self._min_on, min_off_s=self._min_off,
                                          interval_s=self._card.decision_interval_s)

    def _run(self, samples: np.ndarray) -> list[TagDecision]:
        for d in self._engine.push(samples):
            self._pipeline(d)  # -> _collect, after the event detector saw the decision
        out, self._out = self._out, []
        return out

    def _collect(self, d: EngineDecision, scores: np.ndarray) -> None:
        # the event detector's state after this decision: the same `active` the CLI's jsonl writes
        active = self._pipeline.event_detector.active_labels()
        pitch = gated(self._reader(scores), bool(d.extra.get("silent"))) if self._reader is not None else None
        scores = np.array(scores, np.float32)
        scores.setflags(write=False)
        self._out.append(TagDecision(t=float(d.t), scores=scores, active=active, labels=self._labels,
                                     pitch=pitch, end_sample=int(d.end_sample)))


def _check_rate(sample_rate: Any) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise ValueError(f"sample_rate must be a number of samples per second, got {sample_rate!r}")
    if not (math.isfinite(sample_rate) and sample_rate > 0 and float(sample_rate).is_integer()):
        raise ValueError(f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    check_input_rate(int(sample_rate), "sample_rate")
    return int(sample_rate)


def _mono(samples: Any) -> np.ndarray:
    """Checked samples as one contiguous channel in native byte order, keeping float32/float64/int16."""
    x = samples if isinstance(samples, np.ndarray) else np.asarray(samples)
    if x.dtype.type not in _SAMPLE_TYPES:
        raise ValueError(f"samples must be float32, float64 (in [-1, 1]) or int16, got {x.dtype}"
                         + ("; convert with x.astype(np.float32) / 32768 or x.astype(np.int16)"
                            if x.dtype.kind in "iu" else ""))
    if x.ndim == 2:
        if not 1 <= x.shape[1] <= MAX_CHANNELS:
            raise ValueError(f"samples of shape {x.shape}: a 2-D push must be [n, channels] with 1 to "
                             f"{MAX_CHANNELS} channels (a [channels, n] array needs .T)")
    elif x.ndim != 1:
        raise ValueError(f"samples must be mono [n] or [n, channels], got a {x.ndim}-D array of shape {x.shape}")
    if x.dtype.kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            first = np.argwhere(~finite)[0]
            where = f"sample {first[0]}" + (f", channel {first[1]}" if x.ndim == 2 else "")
            raise ValueError(f"samples hold {x.size - int(np.count_nonzero(finite))} NaN/Inf value(s), the first at "
                             f"{where}; nothing of this push was used")
    x = x.astype(x.dtype.newbyteorder("="), copy=False)
    if x.ndim == 2:
        if x.shape[1] == 1:
            x = x[:, 0]
        else:  # average, as files are downmixed (`edgetag.runtime.audio`); int16 is scaled to float32 first
            if x.dtype == np.int16:
                x = _as_float32(x)
            x = x.mean(axis=1, dtype=x.dtype)
    return np.ascontiguousarray(x)


def _as_float32(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.int16:
        return x.astype(np.float32) * np.float32(1.0 / 32768.0)
    return np.ascontiguousarray(x, dtype=np.float32)


def load(model: str | os.PathLike[str] = DEFAULT_MODEL, *, threads: int | None = STREAM_THREADS, backend: str = "cpu",
         smooth: int = 1, margin: float = 0.1, min_on: float | None = None,
         min_off: float | None = None, level_gate: float | None = None) -> Tagger:
    """Open a model and start a stream: a built-in model's name (``"music-tags"``, ``"pitch"``,
    ``"music-tags-int8"``, ...; see ``edgetag models``) or a model file.

    ``threads``: ONNX Runtime intra-op threads (default `STREAM_THREADS`, 1: a decision
    is too small a job for more; None: ONNX Runtime's choice); ``backend``:
    an execution provider name as ``edgetag tag --backend`` takes; ``smooth``,
    ``margin``, ``min_on``, ``min_off`` and ``level_gate`` (dBFS; None: the card's,
    ``-math.inf``: none) as ``--smooth``, ``--margin``, ``--min-on``, ``--min-off``
    and ``--level-gate``. Raises
    `FileNotFoundError` for an unknown name or a missing file, `ValueError`
    for a file that is not a valid edgetag model.
    """
    path = resolve_model(os.fspath(model))
    return Tagger(load_any_model(path, backend=backend, threads=threads), smooth=smooth, margin=margin,
                  min_on=min_on, min_off=min_off, level_gate=level_gate)


def tag_file(path: str | os.PathLike[str], model: str | os.PathLike[str] | Tagger = DEFAULT_MODEL, *,
             threads: int | None = STREAM_THREADS, backend: str = "cpu", smooth: int = 1, margin: float = 0.1,
             min_on: float | None = None, min_off: float | None = None,
             level_gate: float | None = None) -> list[TagDecision]:
    """Every decision of an audio file (any format libsndfile reads), as ``edgetag tag FILE`` makes them.

    The file is decoded, averaged to mono and resampled to the model's rate a
    block at a time (`edgetag.runtime.audio.stream_audio`: the samples of
    decoding it whole, in the memory of a few seconds), and streamed.
    ``model``: a name or file (loaded with the other arguments, as `load`
    takes them), or a `Tagger`, which is reset first and after.
    """
    from edgetag.runtime.audio import stream_audio

    tagger = model if isinstance(model, Tagger) else load(model, threads=threads, backend=backend, smooth=smooth,
                                                           margin=margin, min_on=min_on, min_off=min_off,
                                                           level_gate=level_gate)
    tagger.reset()
    rate = tagger.sample_rate
    chunk = int(rate * FILE_CHUNK_SECONDS)
    out: list[TagDecision] = []
    for block in stream_audio(path, rate):  # its own check warns of loud samples, naming the file
        for offset in range(0, len(block), chunk):
            out += tagger._push(block[offset : offset + chunk], rate, check_loud=False)
    out += tagger.flush()
    return out
