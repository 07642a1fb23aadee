"""Soak test: hours of audio through ``edgetag listen``, its memory sampled, every decision counted.

Two paths, one run at a time, each a real ``edgetag listen`` child process:

- stdin, faster than real time: a generated signal (varied clips, silences) is piped as s16le at
  the model's rate for ``--hours`` of audio per model, as fast as listen takes it; a reader thread
  consumes stdout as it comes (a consumer that keeps up).
- live, at real time: the same signal played into the PulseAudio virtual microphone
  (`edgetag.benchmarks.virtual_mic`) for ``--live-minutes`` per model and recorded by
  ``listen --device pulse``; Ctrl-C (SIGINT) ends it cleanly.

Every ``--sample-every`` seconds the child's resident memory (VmRSS) is sampled against the
audio it has been given. Reported per run: RSS at the start and the end of the steady part and
its peak, the slope of a least-squares line through the steady samples (MB per hour of audio;
the first ``--warmup`` seconds of audio are left out: ONNX Runtime's arenas and the first
buffers settle there), the decisions read against those listen reports and, on stdin, against
the count the model's card implies, and listen's own drop counters.

    python -m edgetag.benchmarks.soak --models pitch,music-tags --hours 3 --live-minutes 5 --json soak.json

Target: a slope below 1 MB per hour of audio, 0 decisions lost when the consumer keeps up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

EDGETAG = [sys.executable, "-m", "edgetag.runtime.cli"]
#: Seconds of audio written per write (stdin) or per pacat write (live).
BLOCK_SECONDS = 0.5


# ---------------------------------------------------------------- the signal
class Tape:
    """Endless s16le audio at ``rate``: a 5-minute tape of varied clips (`eval_signal`) and silences, looped.

    Each pass has its own gain (from a fixed sequence), so the stream never repeats exactly; the
    tape is made once, so feeding hours costs the feeder almost nothing (the machine's cores are
    for the process under test).
    """

    def __init__(self, rate: int, seconds: float = 300.0, seed: int = 18) -> None:
        from edgetag.benchmarks.measure import eval_signal

        rng = np.random.default_rng(seed)
        parts, total = [], 0.0
        while total < seconds:
            length = float(rng.uniform(4.0, 15.0))
            parts.append(eval_signal(length, rate, int(rng.integers(1 << 30))))
            gap = float(rng.choice([0.0, 0.3, 2.0]))  # silences: pitch unvoiced, tags off
            parts.append(np.zeros(int(gap * rate), np.float32))
            total += length + gap
        self.samples = np.concatenate(parts).astype(np.float32)
        self.rate = rate
        self.block = int(BLOCK_SECONDS * rate)
        self._pos = 0
        self._pass = 0

    def next_block(self, n: int | None = None) -> bytes:
        n = self.block if n is None else n
        out = np.empty(n, np.float32)
        got = 0
        while got < n:
            take = min(n - got, len(self.samples) - self._pos)
            gain = 0.55 + 0.45 * ((self._pass * 0.6180339887) % 1.0)
            out[got : got + take] = self.samples[self._pos : self._pos + take] * gain
            got += take
            self._pos += take
            if self._pos == len(self.samples):
                self._pos, self._pass = 0, self._pass + 1
        return (np.clip(out, -1.0, 1.0) * 32767).astype("<i2").tobytes()


# ---------------------------------------------------------------- one run
@dataclass
class SoakRun:
    model: str
    path: str
    """"stdin" (faster than real time) or "live" (virtual microphone, real time)."""
    audio_s: float = 0.0
    wall_s: float = 0.0
    decisions_read: int = 0
    decisions_expected: int | None = None
    """stdin only: the decisions the card's window, hop and mode imply for the audio given."""
    exit_code: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    rss: list[tuple[float, float]] = field(default_factory=list)
    """(hours of audio given, RSS in MB) samples."""
    warnings: list[str] = field(default_factory=list)

    def summary(self, warmup_s: float) -> dict[str, Any]:
        steady = [(h, mb) for h, mb in self.rss if h * 3600 >= warmup_s] or self.rss
        hours = np.array([h for h, _ in steady])
        mb = np.array([m for _, m in steady])
        slope = float(np.polyfit(hours, mb, 1)[0]) if len(steady) >= 3 and np.ptp(hours) > 0 else float("nan")
        late = steady[len(steady) // 2 :]
        late_slope = (float(np.polyfit([h for h, _ in late], [m for _, m in late], 1)[0])
                      if len(late) >= 3 and np.ptp([h for h, _ in late]) > 0 else float("nan"))
        lost = None if self.decisions_expected is None else self.decisions_expected - self.decisions_read
        return {
            "model": self.model, "path": self.path, "audio_h": round(self.audio_s / 3600, 4),
            "wall_s": round(self.wall_s, 1),
            "x_real_time": round(self.audio_s / self.wall_s, 1) if self.wall_s else None,
            "rss_mb_start": round(float(mb[0]), 1) if len(mb) else None,
            "rss_mb_end": round(float(mb[-1]), 1) if len(mb) else None,
            "rss_mb_peak": round(max((m for _, m in self.rss), default=float("nan")), 1),
            "rss_slope_mb_per_audio_h": round(slope, 3), "rss_slope_second_half": round(late_slope, 3),
            "rss_samples": len(self.rss), "decisions_read": self.decisions_read,
            "decisions_reported": self.stats.get("decisions"), "decisions_expected": self.decisions_expected,
            "decisions_lost": lost, "dropped_decisions": self.stats.get("dropped_decisions"),
            "overflows": self.stats.get("overflows"), "dropped_samples": self.stats.get("dropped_samples"),
            "status": self.stats.get("status"), "exit_code": self.exit_code,
        }


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _start_readers(proc: Any, run: Any) -> tuple[list[str], threading.Event, list[threading.Thread]]:
    """Threads that count the decisions on ``proc``'s stdout and keep its stderr (setting the event at "listening")."""
    err: list[str] = []
    listening = threading.Event()
    readers = [threading.Thread(target=_count_lines, args=(proc.stdout, run), daemon=True),
               threading.Thread(target=_collect_stderr, args=(proc.stderr, err, listening), daemon=True)]
    for r in readers:
        r.start()
    return err, listening, readers


def _count_lines(stream: BinaryIO, run: SoakRun) -> None:
    """The consumer that keeps up: read stdout as it comes, count the decisions (one JSON line each; the
    summary line listen writes last is not one)."""
    fd = stream.fileno()
    tail = b""  # the end of what was read: the summary line, once the stream is over
    while True:
        data = os.read(fd, 1 << 20)
        if not data:
            lines = tail.split(b"\n")
            if len(lines) > 1 and lines[-2].startswith(b'{"summary"'):
                run.decisions_read -= 1
            return
        run.decisions_read += data.count(b"\n")
        tail = (tail + data)[-(1 << 16):]


def _collect_stderr(stream: BinaryIO, lines: list[str], listening: threading.Event) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        lines.append(line)
        if "listening on" in line:
            listening.set()


def _stats(lines: list[str]) -> dict[str, Any]:
    line = next((ln for ln in reversed(lines) if ln.startswith("edgetag listen: stats ")), None)
    return json.loads(line.split(" stats ", 1)[1]) if line else {}


def _expected_decisions(card, samples: int) -> int:
    """Decisions a stream of ``samples`` gives (the engine's rule): frames first, then window or stateful calls."""
    fe = card.frontend
    frames = 0 if samples < fe.win_length else (samples - fe.win_length) // fe.hop_length + 1
    if card.streaming_mode == "window":
        return 0 if frames < card.window_frames else (frames - card.window_frames) // card.hop_frames + 1
    return frames // card.hop_frames  # stateful: the end of the input flushes the frames short of a whole call


def _listen(model: str, threads: int, extra: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(EDGETAG + ["listen", "--model", model, "--format", "jsonl", "--threads", str(threads),
                                       *extra], stdin=subprocess.PIPE if "--stdin" in extra else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _sample_until(proc: subprocess.Popen, run: SoakRun, audio_s, every: float, done: threading.Event) -> None:
    """Sample the child's RSS against ``audio_s()`` every ``every`` s of wall time until ``done`` or its exit."""
    while not done.is_set() and proc.poll() is None:
        mb = _rss_mb(proc.pid)
        if mb is not None:
            run.rss.append((audio_s() / 3600, mb))
        done.wait(every)


def soak_stdin(model: str, hours: float, *, threads: int, every: float, log) -> SoakRun:
    from edgetag.runtime.model import load_any_model
    from edgetag.runtime.models import resolve_model

    card = load_any_model(resolve_model(model)).card
    rate = card.frontend.sample_rate
    tape = Tape(rate)
    total = int(round(hours * 3600 * rate))
    run = SoakRun(model, "stdin")
    proc = _listen(model, threads, ["--stdin", "--rate", str(rate), "--pcm", "s16le"])
    err, listening, readers = _start_readers(proc, run)
    fed = [0]
    done = threading.Event()

    def feed() -> None:
        try:
            while fed[0] < total:
                n = min(tape.block, total - fed[0])
                proc.stdin.write(tape.next_block(n))
                fed[0] += n
            proc.stdin.close()
        except BrokenPipeError:
            pass
        finally:
            done.set()

    start = time.monotonic()
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    last_log = start
    while proc.poll() is None:
        mb = _rss_mb(proc.pid)
        if mb is not None:
            run.rss.append((fed[0] / rate / 3600, mb))
        if time.monotonic() - last_log > 60:
            last_log = time.monotonic()
            log(f"  {model} stdin: {fed[0] / rate / 3600:.2f} h of audio in {last_log - start:.0f} s, RSS {mb} MB")
        time.sleep(every)
    run.wall_s = time.monotonic() - start
    for r in readers:
        r.join(timeout=30)
    run.exit_code = proc.returncode
    run.audio_s = fed[0] / rate
    run.decisions_expected = _expected_decisions(card, fed[0])
    run.stats = _stats(err)
    run.warnings = [ln for ln in err if "warning" in ln][:20]
    return run


def soak_live(model: str, minutes: float, *, threads: int, every: float, log) -> SoakRun:
    from edgetag.benchmarks.virtual_mic import SINK, VirtualMic, VirtualMicUnavailable

    run = SoakRun(model, "live")
    rate = 16000  # the virtual microphone's null sink; listen resamples if the model wants another rate
    tape = Tape(rate)
    try:
        mic = VirtualMic(rate).start()
    except VirtualMicUnavailable as exc:
        run.stats = {"status": f"skipped: virtual microphone unavailable: {exc}"}
        return run
    try:
        proc = _listen(model, threads, ["--device", "pulse"], env=mic.env)
        err, listening, readers = _start_readers(proc, run)
        if not listening.wait(60):
            proc.kill()
            proc.wait()
            run.stats = {"status": "failed: listen did not start: " + " / ".join(err[-3:])}
            return run
        # pacat plays at the sink's clock: writing into it as fast as it takes is real time
        player = subprocess.Popen(["pacat", "--playback", f"--device={SINK}", f"--rate={rate}", "--channels=1",
                                   "--format=s16le", "--latency-msec=50"], stdin=subprocess.PIPE, env=mic.env)
        total = int(minutes * 60 * rate)
        start = time.monotonic()
        done = threading.Event()
        sampler = threading.Thread(target=_sample_until, daemon=True,
                                   args=(proc, run, lambda: time.monotonic() - start, every, done))
        sampler.start()
        fed, last_log = 0, start
        while fed < total and proc.poll() is None:
            n = min(tape.block, total - fed)
            player.stdin.write(tape.next_block(n))
            fed += n
            if time.monotonic() - last_log > 60:
                last_log = time.monotonic()
                log(f"  {model} live: {fed / rate / 60:.1f} min of audio, RSS {_rss_mb(proc.pid)} MB")
        player.stdin.close()
        player.wait(timeout=30)
        time.sleep(1.0)  # the last blocks through PulseAudio and the engine
        run.wall_s = time.monotonic() - start
        done.set()
        sampler.join(timeout=10)
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop with the final stats line
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for r in readers:
            r.join(timeout=30)
        run.exit_code = proc.returncode
        run.audio_s = fed / rate
        run.stats = _stats(err)
        run.warnings = [ln for ln in err if "warning" in ln][:20]
    finally:
        mic.stop()
    return run


# ---------------------------------------------------------------- the report
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} logical CPUs"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs"


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'model':12} {'path':5} {'audio h':>8} {'x RT':>6} {'RSS start':>9} {'end':>7} {'peak':>7} "
            f"{'slope MB/h':>10} {'2nd half':>8} {'decisions':>10} {'lost':>5} {'dropped':>7} {'ovfl':>4} {'drop smp':>8}")
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['model']:12} {r['path']:5} {r['audio_h']:8.3f} {r['x_real_time'] or 0:6.1f} "
            f"{r['rss_mb_start'] or 0:9.1f} {r['rss_mb_end'] or 0:7.1f} {r['rss_mb_peak']:7.1f} "
            f"{r['rss_slope_mb_per_audio_h']:10.3f} {r['rss_slope_second_half']:8.3f} {r['decisions_read']:10d} "
            f"{'-' if r['decisions_lost'] is None else r['decisions_lost']:>5} {r['dropped_decisions']!s:>7} "
            f"{r['overflows']!s:>4} {r['dropped_samples']!s:>8}  {r['status']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgetag.benchmarks.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="pitch,music-tags", help="comma-separated models (default pitch,music-tags)")
    p.add_argument("--hours", type=float, default=3.0, help="hours of audio per model through stdin (default 3)")
    p.add_argument("--live-minutes", type=float, default=5.0,
                   help="minutes of audio per model through the virtual microphone at real time (default 5; 0: none)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads of listen (default 1)")
    p.add_argument("--sample-every", type=float, default=2.0, help="seconds of wall time between RSS samples")
    p.add_argument("--warmup", type=float, default=120.0, help="seconds of audio left out of the slope (default 120)")
    p.add_argument("--json", help="write the report (and every RSS sample) to this file")
    args = p.parse_args(argv)
    if args.hours <= 0 and args.live_minutes <= 0:
        p.error("give --hours or --live-minutes > 0")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    log(f"soak on {cpu_name()}: {args.hours:g} h per model through stdin, {args.live_minutes:g} min live; "
        f"models {', '.join(models)}; one run at a time")
    runs: list[SoakRun] = []
    plan = [(m, "stdin") for m in models if args.hours > 0] + [(m, "live") for m in models if args.live_minutes > 0]

    def warmup(run: SoakRun) -> float:
        return args.warmup if run.path == "stdin" else min(args.warmup, 30.0)  # live runs are short: 30 s

    def report() -> list[dict[str, Any]]:
        rows = [r.summary(warmup(r)) for r in runs]
        if args.json:  # rewritten after every run: a later failure keeps the earlier figures
            Path(args.json).write_text(json.dumps({
                "cpu": cpu_name(), "python": platform.python_version(), "argv": argv or sys.argv[1:],
                "rows": rows, "runs": [asdict(r) for r in runs]}, indent=1))
        return rows

    for model, path in plan:  # one run at a time: the process under test gets the machine
        try:
            if path == "stdin":
                run = soak_stdin(model, args.hours, threads=args.threads, every=args.sample_every, log=log)
            else:
                run = soak_live(model, args.live_minutes, threads=args.threads, every=args.sample_every, log=log)
        except Exception as exc:  # noqa: BLE001 - reported as that run's status; the other runs go on
            run = SoakRun(model, path, stats={"status": f"failed: {type(exc).__name__}: {exc}"})
        runs.append(run)
        log(f"done: {json.dumps(run.summary(warmup(run)))}")
        rows = report()
    print(f"CPU: {cpu_name()}; command: {' '.join(['python -m edgetag.benchmarks.soak', *(argv or sys.argv[1:])])}")
    print(format_table(rows))
    bad = [r for r in rows if r["exit_code"] != 0 or r["decisions_lost"] not in (None, 0)
           or (r["decisions_reported"] is not None and r["decisions_reported"] != r["decisions_read"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
