"""The streaming engine: audio in, one decision per hop out.

Built from a loaded model (`edgetag.runtime.model.OnnxModel`): the C++
front end from the card's ``frontend``, then

- window mode: the last ``window_frames`` frames are kept and the model is
  re-run every ``hop_frames`` new frames (the first decision comes when the
  first full window exists);
- stateful mode: new frames go to the model ``frames_per_call`` at a time with
  the state tensors carried from call to call; a decision is taken every
  ``hop_frames`` frames, from the model's output for the last of them; at the
  end of a file, `Engine.flush` runs the frames still gathered.

Every decision carries ``t``: seconds since the start of the stream at the
end of the last frame that produced it (frame ``i`` ends at sample
``i*hop_length + win_length``: the time convention of `edgetag.runtime.clip`),
and ``end_sample``, that sample index, so a source can tell when the last
sample used was captured. Needs numpy,
onnxruntime and the C++ extension; never torch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from edgetag.runtime.clip import frame_end_sample, run_clip
from edgetag.runtime.frontend import StreamingFrontend
from edgetag.runtime.pitch import is_pitch_model
from edgetag.runtime.sources import level_dbfs


@dataclass
class Decision:
    """One output of the engine."""

    t: float
    """Seconds since the start at the end of the frames that produced it."""
    end_sample: int
    """Index (exclusive) of the last sample used, in the engine's sample stream."""
    scores: np.ndarray
    """float32 [n_labels], card label order."""
    compute_s: float = 0.0
    """Front end + model time spent on the push that produced it (shared by its decisions)."""
    latency_s: float | None = None
    """Output time minus capture time of the last sample used (set by the runner)."""
    level_dbfs: float | None = None
    """RMS level of the audio the decision used, dB re full scale (None: fed frames, not samples)."""
    audio: np.ndarray | None = None
    """Pitch models: the samples of the decision's frame, float32 (the pitch decoder measures their period,
    `edgetag.runtime.pitch.decode_with_audio`); None for other models and for fed frames."""
    extra: dict = field(default_factory=dict)

    def scores_dict(self, labels) -> dict[str, float]:
        return {label: round(float(s), 6) for label, s in zip(labels, self.scores)}


#: Rows of front-end frames an engine keeps between pushes (a longer push gets a buffer of its own size).
KEPT_FRAMES_BUFFER = 256
#: Samples per dot product in `_sum_of_squares`: OpenBLAS runs longer float32 dots on several threads.
_DOT_PIECE = 8192


def _sum_of_squares(x: np.ndarray) -> float:
    """Sum of squares of float32 samples: BLAS dot products (float32 products, partial sums; 0.5 us for a
    1024-sample frame against 2 in float64, 1e-7 relative: a level in dB needs far less), one thread."""
    total = 0.0
    for start in range(0, len(x), _DOT_PIECE):
        piece = x[start : start + _DOT_PIECE]
        total += float(np.dot(piece, piece))
    return total


def _share_compute_time(decisions: list[Decision], start: float) -> None:
    """Each decision's `Decision.compute_s`: the time since ``start`` (`time.perf_counter`), shared by all."""
    if decisions:
        share = (time.perf_counter() - start) / len(decisions)
        for d in decisions:
            d.compute_s = share


def _as_float32(samples: np.ndarray, out: np.ndarray) -> None:
    """``samples`` (float32, or int16 scaled by 1/32768 as the front end reads them) written into ``out``."""
    if samples.dtype == np.int16:
        np.multiply(samples, np.float32(1 / 32768), out=out)
    else:
        out[...] = samples


class Engine:
    """Streams audio (float32 / int16 at the card's sample rate) through front end and model."""

    def __init__(self, model, *, bound_calls: bool = True) -> None:
        """``bound_calls``: a stateful model's calls of its frames per call through buffers bound once
        (`edgetag.runtime.model.BoundCalls`, ONNX Runtime on the CPU) where the model offers them; False: every
        call through ``model.run`` (the same results, bit for bit)."""
        self.model = model
        self.card = card = model.card
        self.config = card.frontend
        self.labels = card.labels
        self.frontend = StreamingFrontend(card.frontend)
        self.mode = card.streaming_mode
        self.window = card.window_frames  # window mode: frames per window
        self.frames_per_call = card.frames_per_call  # stateful mode: new frames per model call
        self.hop = card.hop_frames
        n_bins = card.frontend.n_bins
        # window mode: a ring of the last `window` frames, laid out twice so a
        # contiguous window is always a slice (no copy per frame).
        self._ring = np.zeros((2 * self.window, n_bins), np.float32)
        # stateful: the frames gathered for the next call (the first _n_pending rows)
        self._chunk = np.zeros((1, self.frames_per_call if self.mode == "stateful" else 0, n_bins), np.float32)
        self._n_pending = 0
        self._frames_buf = np.zeros((64, n_bins), np.float32)  # grows for longer pushes, up to KEPT_FRAMES_BUFFER
        self.frames = 0  # frames produced by the front end
        self._frames_fed = 0  # stateful: frames given to the model
        self.samples = 0  # samples pushed
        # stateful calls of frames_per_call frames with buffers bound once (ONNX Runtime on the CPU); the
        # state then lives in them (`states`), and a shorter call (`flush`) goes through `model.run`
        bound = getattr(model, "bound_calls", None) if bound_calls and self.mode == "stateful" else None
        self._bound = bound(self.frames_per_call) if bound is not None else None
        self._states = model.initial_state(1)  # the state of calls that are not bound
        # the samples one decision uses (a window model's whole window, a stateful model's last
        # frame), kept so each decision carries the level of its own audio (the level gate)
        self.decision_span = frame_end_sample(self.config, self.window - 1 if self.mode == "window" else 0)
        self.keeps_audio = is_pitch_model(card) and self.mode == "stateful"  # one frame per decision
        # audio kept from earlier pushes: a decision's span, plus the frames a stateful call gathers
        # (the first frame of a chunk ends up to frames_per_call hops before the push that completes it)
        gathered = self.frames_per_call * self.config.hop_length if self.mode == "stateful" else 0
        self._tail_keep = self.decision_span + gathered
        # the recent audio, float32, in one buffer that pushes append to (moved back to its start when
        # full, so a push costs a copy of itself, not of the tail); _audio[:_audio_len] ends at `samples`
        self._audio = np.zeros(4 * self._tail_keep + 4096, np.float32)
        self._audio_len = 0

    def reset(self) -> None:
        self.frontend.reset()
        self.frames = self._frames_fed = self.samples = 0
        self._n_pending = self._audio_len = 0
        self._states = self.model.initial_state(1)
        if self._bound is not None:
            self._bound.reset()

    @property
    def states(self) -> list[np.ndarray]:
        """The stateful model's state for its next call."""
        return self._bound.states if self._bound is not None else self._states

    def frame_end_sample(self, frame: int) -> int:
        return frame_end_sample(self.config, frame)

    def _decision(self, frame: int, scores: np.ndarray) -> Decision:
        end = self.frame_end_sample(frame)
        return Decision(t=end / self.config.sample_rate, end_sample=end, scores=np.asarray(scores, np.float32))

    def push(self, samples: np.ndarray) -> list[Decision]:
        """Append samples; returns the decisions they complete (possibly none)."""
        start = time.perf_counter()
        samples = np.ascontiguousarray(samples)
        n_new = self.frontend.num_frames_for_push(len(samples))
        if n_new > len(self._frames_buf):
            self._frames_buf = np.zeros((max(n_new, 2 * len(self._frames_buf)), self.config.n_bins), np.float32)
        got = self.frontend.push_into(samples, self._frames_buf)
        frames = self._frames_buf[:got]  # float32, C-contiguous, n_bins wide: push_frames' checks hold
        decisions = self._push_window(frames) if self.mode == "window" else self._push_stateful(frames)
        self._keep_audio(samples, decisions)
        self.samples += len(samples)
        if len(self._frames_buf) > KEPT_FRAMES_BUFFER:  # a long push's frames are not kept after it
            self._frames_buf = np.zeros((KEPT_FRAMES_BUFFER, self.config.n_bins), np.float32)
        _share_compute_time(decisions, start)
        return decisions

    def _keep_audio(self, samples: np.ndarray, decisions: list[Decision]) -> None:
        """Appends ``samples`` to the recent audio; sets each decision's `Decision.level_dbfs` (and, pitch
        models, `Decision.audio`) from the samples it used."""
        n, keep = len(samples), min(self._audio_len, self._tail_keep)
        if keep + n > len(self._audio):  # a push longer than the buffer: read in a buffer of its own
            audio = np.empty(keep + n, np.float32)
            audio[:keep] = self._audio[self._audio_len - keep : self._audio_len]
            _as_float32(samples, audio[keep:])
            self._set_levels(audio, self.samples + n, decisions, copy_audio=False)  # audio is theirs alone
            self._audio_len = min(len(audio), self._tail_keep)  # then only the tail stays (memory stays flat)
            self._audio[: self._audio_len] = audio[len(audio) - self._audio_len :]
            return
        if self._audio_len + n > len(self._audio):  # full: the tail later decisions need, back to the start
            self._audio[:keep] = self._audio[self._audio_len - keep : self._audio_len]
            self._audio_len = keep
        _as_float32(samples, self._audio[self._audio_len : self._audio_len + n])
        self._audio_len += n
        self._set_levels(self._audio[: self._audio_len], self.samples + n, decisions)

    def _set_levels(self, audio: np.ndarray, end: int, decisions: list[Decision], copy_audio: bool = True) -> None:
        """Each decision's `Decision.level_dbfs` (and pitch audio) from ``audio``: the stream's samples up to
        index ``end`` (exclusive). ``copy_audio``: a pitch decision's samples are copied (False: views of
        ``audio``, a buffer no later push writes)."""
        first = end - len(audio)  # stream index of audio[0]
        for d in decisions:
            hi = min(max(d.end_sample - first, 0), len(audio))
            lo = max(hi - self.decision_span, 0)
            span = audio[lo:hi]
            mean = _sum_of_squares(span) / max(hi - lo, 1)
            d.level_dbfs = 10.0 * math.log10(mean) if mean > 0 else -math.inf
            if self.keeps_audio and hi - lo == self.decision_span:
                d.audio = span.copy() if copy_audio else span

    def push_frames(self, frames: np.ndarray) -> list[Decision]:
        """Append front-end frames float32 [n, n_bins] directly (what `push` does after the front end).

        For features computed elsewhere, such as a model card's test vector
        (`edgetag.runtime.verify`); don't mix with `push` in one stream.
        """
        if frames.ndim != 2 or frames.shape[1] != self.config.n_bins:
            raise ValueError(f"frames must be [n, {self.config.n_bins}], got {list(frames.shape)}")
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        if self.mode == "window":
            return self._push_window(frames)
        return self._push_stateful(frames)

    def _push_window(self, frames: np.ndarray) -> list[Decision]:
        decisions = []
        w = self.window
        for frame in frames:
            i = self.frames
            self._ring[i % w] = frame
            self._ring[i % w + w] = frame
            self.frames += 1
            if i + 1 >= w and (i + 1 - w) % self.hop == 0:
                first = (i + 1) % w  # slot of the oldest frame of the window
                window = self._ring[first : first + w][None]
                logits, _ = self.model.run(window)
                decisions.append(self._decision(i, self.model.scores(logits)[0]))
        return decisions

    def _push_stateful(self, frames: np.ndarray) -> list[Decision]:
        decisions = []
        self.frames += len(frames)
        step, i = self.frames_per_call, 0
        while i < len(frames):
            if self._n_pending == 0 and len(frames) - i >= step:  # a whole call's frames: no copy
                chunk = frames[None, i : i + step]
                i += step
            else:  # gather the call's frames across pushes
                take = min(step - self._n_pending, len(frames) - i)
                self._chunk[0, self._n_pending : self._n_pending + take] = frames[i : i + take]
                self._n_pending += take
                i += take
                if self._n_pending < step:
                    break
                chunk, self._n_pending = self._chunk, 0
            decisions += self._call(chunk)
        return decisions

    def _call(self, chunk: np.ndarray) -> list[Decision]:
        """One model call on ``chunk`` [1, n, n_bins], the next frames of the stream: its decisions."""
        n = chunk.shape[1]
        if self._bound is None:
            logits, self._states = self.model.run(chunk, self._states)
        elif n == self._bound.frames:
            logits = self._bound.run(chunk)  # a buffer the next call reuses: scored below, before it
        else:
            logits, states = self.model.run(chunk, self._bound.states)
            self._bound.set_states(states)
        decisions = []
        # the call's frames that are decisions: every hop-th, the first where frames fed + 1 reaches a hop
        first = (self.hop - 1 - self._frames_fed % self.hop) % self.hop
        if first < n:
            scores = self.model.scores(logits[0, first : n : self.hop])  # one call for the chunk's decisions
            for j, row in zip(range(first, n, self.hop), scores):
                decisions.append(self._decision(self._frames_fed + j, row))
        self._frames_fed += n
        return decisions

    def flush(self) -> list[Decision]:
        """End of the stream: a stateful model's frames still gathered for a call of ``frames_per_call``
        (a file whose frame count is not a multiple of it) go to the model in a shorter call, so its
        last decisions are not lost (the graph takes any number of frames). Pushes may follow."""
        if self.mode != "stateful" or self._n_pending == 0:
            return []
        start = time.perf_counter()
        pending, self._n_pending = self._n_pending, 0
        decisions = self._call(np.ascontiguousarray(self._chunk[:, :pending]))
        if self._audio_len:  # fed samples (not frames, `push_frames`): each decision's level and audio
            self._set_levels(self._audio[: self._audio_len], self.samples, decisions)
        _share_compute_time(decisions, start)
        return decisions


def offline_decisions(model, samples: np.ndarray) -> list[Decision]:
    """Decisions of a whole signal, computed as a batch (features first, then `run_clip`).

    The reference the streaming engine must match: window mode runs the model
    on every window at once; stateful mode runs the whole frame sequence in
    one call from the initial state.
    """
    from edgetag.runtime.frontend import compute_features

    config = model.card.frontend
    run = run_clip(model, compute_features(np.ascontiguousarray(samples, np.float32), config))
    return [Decision(t=float(t), end_sample=int(e), scores=s) for t, e, s in zip(run.times, run.end_samples, run.scores)]


# ---------------------------------------------------------------- live runs
_END = object()
#: Decisions that may wait for the output thread: 4096 is 41 s of 10 ms decisions, 7 min of 100 ms ones.
MAX_PENDING_DECISIONS = 4096
#: A live source's audio older than this when the worker reaches it is skipped (counted) until the
#: worker is back within it: a tuner that answers late is worse than one that misses a moment.
MAX_LAG_S = 1.0


class StreamRunner:
    """Runs a source through an engine on a worker thread; the caller's thread does the output.

    The worker iterates ``source.chunks()``, skips chunks with NaN/Inf
    samples (counted in ``source.stats``, warned at most once a second),
    pushes the rest through the engine and queues the decisions. `run`
    (caller's thread) takes them from the queue with a timeout, stamps each
    with its latency (now minus the capture time of the last sample it
    used) and hands it to ``on_decision``. `request_stop` (safe from a signal
    handler: it only sets a flag), Ctrl-C, the duration, the end of the source
    or a source error end the run; the error is re-raised.
    """

    def __init__(self, engine: Engine, source, *, duration: float | None = None, warn=None,
                 max_lag_s: float = MAX_LAG_S) -> None:
        import queue
        import sys
        import threading
        from collections import deque

        self.engine = engine
        self.source = source
        self.stats = source.stats
        self.rate = engine.config.sample_rate
        self.max_samples = None if duration is None else int(round(duration * self.rate))
        self.warn = warn or (lambda msg: print(msg, file=sys.stderr, flush=True))
        # bounded: a consumer that stops reading (a stdout nobody reads) costs dropped, counted
        # decisions (live sources) or makes the source wait (files, stdin), never memory that grows
        self.queue: queue.Queue = queue.Queue(maxsize=MAX_PENDING_DECISIONS)
        self.error: BaseException | None = None
        self.latencies = DurationStats()
        self.compute_times = DurationStats()
        self.decisions = 0
        self.reached_duration = False
        self.max_lag_s = max_lag_s
        self._behind = False  # in a catch-up: skipping a live source's old audio
        self._skipped_since_decision = 0  # samples skipped before the next decision (it says so)
        self._last_lag_warn = 0.0
        self._records: deque = deque()  # (engine end sample, capture time of it)
        self._last_warn = 0.0
        self._last_drop_warn = 0.0
        self._consumer_gone = threading.Event()
        self._thread = None
        self._stop_requested = threading.Event()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested.is_set()

    def request_stop(self) -> None:
        """Ask `run` to end at its next wake-up (within ``idle_every``); decisions not yet delivered are dropped."""
        self._stop_requested.set()

    def _capture_time(self, end_sample: int) -> float | None:
        records = self._records
        while len(records) > 1 and records[0][0] < end_sample:
            records.popleft()
        if not records or records[0][1] is None:
            return None
        chunk_end, capture = records[0]
        return capture - (chunk_end - end_sample) / self.rate

    def _work(self) -> None:
        engine, stats = self.engine, self.stats
        try:
            for chunk in self.source.chunks():
                samples = chunk.samples
                if not len(samples):
                    continue
                finite = np.isfinite(samples)
                if not finite.all():
                    bad = int(len(samples) - np.count_nonzero(finite))
                    stats.nonfinite_samples += bad
                    stats.skipped_samples += len(samples)
                    now = time.monotonic()
                    if now - self._last_warn > 1.0:
                        self._last_warn = now
                        self.warn(
                            f"warning: {bad} NaN/Inf sample(s) from the input; skipped that block "
                            f"({stats.nonfinite_samples} non-finite, {stats.skipped_samples} samples skipped so far)"
                        )
                    continue
                if self._too_late(chunk, len(samples)):
                    continue
                if self.max_samples is not None:
                    samples = samples[: max(0, self.max_samples - engine.samples)]
                stats.level_dbfs = level_dbfs(samples)
                self._records.append((engine.samples + len(samples), chunk.capture_end))
                for d in engine.push(samples):
                    self._stamp_and_deliver(d)
                if self.max_samples is not None and engine.samples >= self.max_samples:
                    self.reached_duration = True
                    break
            if not self._stop_requested.is_set():  # the source's end (or the duration): the last frames' call
                for d in engine.flush():
                    self._stamp_and_deliver(d)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.error = exc
        finally:
            self._deliver(_END)

    def _stamp_and_deliver(self, d: Decision) -> None:
        """A decision's stream time (skipped audio counted), capture time and skipped audio, then `_deliver`."""
        d.t += self.stats.skipped_samples / self.rate
        d.extra["capture_end"] = self._capture_time(d.end_sample)
        if self._skipped_since_decision:
            d.extra["skipped_s"] = self._skipped_since_decision / self.rate
            self._skipped_since_decision = 0
        self._deliver(d)

    def _too_late(self, chunk, n: int) -> bool:
        """Whether to skip this live chunk to catch up with real time (see `MAX_LAG_S`); counts and warns.

        Skipping starts when the chunk's audio is more than ``max_lag_s`` old and lasts until the
        worker reaches audio less than half of that old, so it does not flicker at the bound. The
        skipped samples count as skipped (decision times stay true) and the next decision says how
        much audio came before it unheard.
        """
        if not getattr(self.source, "live", False) or chunk.capture_end is None:
            return False
        lag = time.monotonic() - chunk.capture_end
        if lag <= (0.5 if self._behind else 1.0) * self.max_lag_s:
            self._behind = False
            return False
        stats = self.stats
        if not self._behind:
            self._behind = True
            stats.catchups += 1
        stats.lag_skipped_samples += n
        stats.skipped_samples += n
        self._skipped_since_decision += n
        now = time.monotonic()
        if now - self._last_lag_warn > 1.0:
            self._last_lag_warn = now
            self.warn(f"warning: {lag:.2f} s behind real time: skipping audio to catch up ({stats.catchups} catch-up(s), "
                      f"{stats.lag_skipped_samples / self.rate:.1f} s skipped so far); fewer --threads or a smaller "
                      "model keeps up")
        return True

    def _deliver(self, item) -> None:
        """Queue a decision for the caller's thread.

        A live source (a microphone, a file paced in real time) cannot wait: when the
        queue is full the decision is dropped and counted. Any other source (a file at
        full speed, stdin) waits for room, so nothing is lost and the reader sets the pace.
        """
        import queue

        if item is _END or not getattr(self.source, "live", False):
            while not self._consumer_gone.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue
            return
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.stats.dropped_decisions += 1
            now = time.monotonic()
            if now - self._last_drop_warn > 1.0:
                self._last_drop_warn = now
                self.warn(f"warning: the output is not being read: {self.stats.dropped_decisions} decision(s) "
                          f"dropped so far (at most {MAX_PENDING_DECISIONS} wait)")

    def start(self) -> None:
        import threading

        self._thread = threading.Thread(target=self._work, name="edgetag-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.source.stop()

    def run(self, on_decision, on_idle=None, idle_every: float = 0.1) -> None:
        """Start (if needed) and deliver decisions until the end; Ctrl-C propagates after a clean stop."""
        import queue

        if self._thread is None:
            self.start()
        last_idle = 0.0
        try:
            while not self._stop_requested.is_set():
                try:
                    item = self.queue.get(timeout=idle_every)
                except queue.Empty:
                    item = None
                if item is _END:
                    break
                if item is not None:
                    capture = item.extra.get("capture_end")
                    if capture is not None:
                        item.latency_s = time.monotonic() - capture
                        self.latencies.add(item.latency_s)
                    self.compute_times.add(item.compute_s)
                    self.decisions += 1
                    on_decision(item)
                now = time.monotonic()
                if on_idle is not None and now - last_idle >= idle_every:
                    last_idle = now
                    on_idle()
        finally:
            self._consumer_gone.set()  # a worker waiting for queue room gives up
            self.source.stop()
            if self._thread is not None:
                self._thread.join(timeout=2.0)
            self.source.close()
        if self.error is not None:
            raise self.error


class DurationStats:
    """Durations in seconds over a stream of any length, in constant memory.

    Every value lands in a log-spaced histogram (1 us to 1000 s, 400 bins per
    decade: a bin is 0.58 % wide), so the whole run's p50 / p99 come out within
    about 0.3 % whatever its length; the last ``recent`` values stay in a ring
    for the live view. A day-long stream at 100 decisions per second keeps the
    same few kilobytes as a minute of it.
    """

    _LOW, _HIGH, _PER_DECADE = 1e-6, 1e3, 400

    def __init__(self, recent: int = 2000) -> None:
        from collections import deque

        decades = np.log10(self._HIGH / self._LOW)
        self._edges = self._LOW * 10.0 ** (np.arange(int(decades * self._PER_DECADE) + 1) / self._PER_DECADE)
        self._counts = np.zeros(len(self._edges) + 1, np.int64)  # [0]: below LOW, [-1]: above HIGH
        self.recent: deque[float] = deque(maxlen=recent)
        self.count = 0

    def add(self, seconds: float) -> None:
        self._counts[int(np.searchsorted(self._edges, seconds, side="right"))] += 1
        self.recent.append(seconds)
        self.count += 1

    def __len__(self) -> int:
        return self.count

    def percentiles_ms(self) -> tuple[float, float]:
        """p50 and p99 of every value so far, in milliseconds: exact while the ring holds them all,
        then from the histogram (bin centres; nan when empty)."""
        if not self.count:
            return float("nan"), float("nan")
        if self.count <= len(self.recent):
            return percentiles_ms(self.recent)
        cumulative = np.cumsum(self._counts)
        out = []
        for q in (0.50, 0.99):
            i = int(np.searchsorted(cumulative, q * self.count, side="left"))
            i = min(max(i, 1), len(self._edges) - 1)  # clamp the under/overflow bins to the range's ends
            out.append(1e3 * float(np.sqrt(self._edges[i - 1] * self._edges[i])))
        return out[0], out[1]

    def recent_ms(self) -> tuple[float, float]:
        """p50 and p99 of the last ``recent`` values, in milliseconds."""
        return percentiles_ms(self.recent)


def percentiles_ms(values) -> tuple[float, float]:
    """p50 and p99 of seconds, in milliseconds (nan when empty)."""
    if not len(values):
        return float("nan"), float("nan")
    p50, p99 = np.percentile(np.asarray(values, np.float64) * 1e3, [50, 99])
    return float(p50), float(p99)
