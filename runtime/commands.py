"""Runtime subcommands of ``edgetag``: ``presets``, ``features``, ``models``, ``info``, ``verify``, ``tag`` and ``listen``.

Each commands module of edgetag (this one, ``edgetag.training.commands``,
...) has a ``register(subparsers)`` that adds its subcommands; heavy imports
happen inside the command functions, so ``edgetag --help`` stays light.
"""

from __future__ import annotations

import argparse
import itertools
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgetag.runtime.formats import BACKENDS
from edgetag.runtime.model import STREAM_THREADS
from edgetag.runtime.model_commands import cmd_info, cmd_models, cmd_verify


def _gate_dbfs(text: str) -> float:
    """``--level-gate``: a level in dBFS (<= 0), or ``off``."""
    if text.strip().lower() == "off":
        return -math.inf
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a level in dBFS such as -60, or 'off'; got {text!r}") from None
    if not -200.0 <= value <= 0.0:
        raise argparse.ArgumentTypeError(f"a level in dBFS from -200 to 0, or 'off'; got {text!r}")
    return value


def _sample_rate(text: str) -> int:
    """An argparse type: an input sample rate in Hz (`edgetag.runtime.audio.check_input_rate`)."""
    from edgetag.runtime.audio import check_input_rate

    value = _positive_int(text)
    try:
        check_input_rate(value, "--rate")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (a chunk, a count, a rate)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _float_at_least(low: float, *, inclusive: bool, unit: str = ""):
    """An argparse type: a finite number above ``low`` (NaN and inf would pass a plain comparison or crash later)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number{unit}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(
                f"must be a finite number{unit} {'>=' if inclusive else '>'} {low:g}, got {text!r}")
        return value

    return parse


_seconds = _float_at_least(0.0, inclusive=False, unit=" of seconds")
_non_negative = _float_at_least(0.0, inclusive=True)


def cmd_presets(args: argparse.Namespace) -> int:
    from edgetag.runtime.frontend import PRESETS

    for name, config in PRESETS.items():
        print(f"{name:8s} {config.describe()}")
        if args.json:
            print(config.to_json(indent=2))
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from edgetag.runtime.demo import demo_signal
    from edgetag.runtime.frontend import FrontendConfig, StreamingFrontend

    config = FrontendConfig.preset(args.preset)
    if args.config:
        config = FrontendConfig.from_json(Path(args.config).read_text(), partial=True)
    if args.demo:
        samples, source = demo_signal(config.sample_rate, args.seconds), f"demo signal ({args.seconds:g} s)"
    elif args.file:
        from edgetag.runtime.audio import load_audio

        samples, source = load_audio(args.file, config.sample_rate), args.file
    else:
        print("edgetag features: give an audio FILE or --demo", file=sys.stderr)
        return 2

    # Stream the audio in chunks as a microphone would deliver it.
    frontend = StreamingFrontend(config)
    chunks = []
    start = time.perf_counter()
    for offset in range(0, len(samples), args.chunk):
        chunks.append(frontend.push(samples[offset : offset + args.chunk]))
    elapsed = time.perf_counter() - start
    features = np.concatenate(chunks) if chunks else np.zeros((0, config.n_bins), np.float32)

    seconds = len(samples) / config.sample_rate
    print(f"source    {source}")
    print(f"front end {args.preset if not args.config else args.config}: {config.describe()}")
    print(f"frames    {features.shape[0]} x {features.shape[1]} bins ({config.frame_rate:g} frames/s)")
    if features.size:
        print(f"values    min {features.min():.3f}  mean {features.mean():.3f}  max {features.max():.3f}")
        per_frame_us = elapsed / features.shape[0] * 1e6
        print(
            f"speed     {per_frame_us:.2f} us/frame in {args.chunk}-sample pushes, "
            f"{seconds / elapsed:,.0f}x real time (one run, Python loop included)"
        )
    if args.output:
        np.save(args.output, features)
        print(f"saved     {args.output}")
    if args.plot:
        _plot_features(features, config, args.plot, source)
        print(f"plotted   {args.plot}")
    return 0


def _plot_features(features: np.ndarray, config, path: str, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from exc
    fig, ax = plt.subplots(figsize=(10, 4))
    extent = (0, features.shape[0] / config.frame_rate, 0, config.n_bins)
    image = ax.imshow(features.T, origin="lower", aspect="auto", extent=extent, cmap="magma")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"{config.filterbank} band")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=config.compression)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _load(args: argparse.Namespace):
    """``--model``: a file, a built-in model's name, or (absent) the default built-in model."""
    from edgetag.runtime.model import load_any_model  # a checkpoint goes to the loader training/ plugs in
    from edgetag.runtime.models import resolve_model

    return load_any_model(resolve_model(args.model), backend=getattr(args, "backend", "cpu"), threads=args.threads)


def _pipeline(model, writers, args: argparse.Namespace, summary=None, reader=None):
    """The `DecisionPipeline` of ``tag`` and ``listen``, from the command line's post-processing options."""
    from edgetag.runtime.pipeline import DecisionPipeline, level_gate, min_durations

    gate = level_gate(model.card) if args.level_gate is None else args.level_gate
    card_on, card_off = min_durations(model.card)
    post = DecisionPipeline(model.card.labels, model.card.thresholds, writers, smooth=args.smooth,
                            margin=args.margin, events_only=args.events, summary=summary, reader=reader,
                            gate_dbfs=gate, min_on_s=card_on if args.min_on is None else args.min_on,
                            min_off_s=card_off if args.min_off is None else args.min_off,
                            interval_s=model.card.decision_interval_s)
    _bind_active(post, writers)
    return post


def _bind_active(post, writers) -> None:
    """Writers that name each decision's active labels read them from ``post``'s event detector, after it saw
    that decision: the one hysteresis (tags) or note tracker (pitch) that ``--events`` and the Python API use."""
    def active() -> tuple[str, ...]:
        return post.event_detector.active_labels()

    for writer in writers:
        bind = getattr(writer, "bind_active", None)
        if bind is not None:
            bind(active)


def _scores_wanted(args: argparse.Namespace, pitch: bool) -> bool:
    """``--scores``, whose default leaves a pitch model's 360 bin scores out (its decoded pitch says it all)."""
    return args.scores == "all" if args.scores else not pitch


def _open_output(path):
    """``listen -o``: written into as decisions come (a file someone follows while it grows, a FIFO, a device),
    its folder made if need be (`_check_output` first)."""
    if not path:
        return sys.stdout
    _make_output_folder("listen", path)
    return open(path, "w", encoding="utf-8")


def _make_output_folder(command: str, path: str) -> None:
    """The folder of ``-o PATH``, made when missing, and said: a mistyped folder should not go unnoticed."""
    folder = Path(path).parent
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True)
        print(f"edgetag {command}: made the folder {folder} for -o", file=sys.stderr)


def _check_output(command: str, path: str | None, inputs: tuple[str, ...]) -> bool:
    """``-o PATH`` refused (one line on stderr, False) when it is a folder, inside a file or one of the input
    files."""
    from edgetag.runtime.atomic import check_output_path

    try:
        if path:
            check_output_path(path, inputs)
    except OSError as exc:
        print(f"edgetag {command}: error: -o {exc.strerror or exc}", file=sys.stderr)
        return False
    return True


def _min_audio_s(card) -> float:
    """Seconds of audio before a model's first decision: its first window (window mode), or its first
    ``hop_frames`` frames (stateful: at the end of a file `Engine.flush` runs frames short of a whole call)."""
    fe = card.frontend
    frames = card.window_frames if card.streaming_mode == "window" else card.hop_frames
    return ((frames - 1) * fe.hop_length + fe.win_length) / fe.sample_rate


def _not_enough_audio(path: str, samples: int, card) -> str:
    from edgetag.runtime.pitch import is_pitch_model

    needed = round(_min_audio_s(card) * card.frontend.sample_rate)
    return (f"not enough audio in {path}: {samples} sample(s), {samples / card.frontend.sample_rate:.3f} s, and one "
            f"decision of {card.name} needs {needed} samples ({_min_audio_s(card):.3f} s); "
            f"{'no notes' if is_pitch_model(card) else 'no tags'}")


def _source_conflict(args: argparse.Namespace) -> str | None:
    """What is wrong with ``listen``'s choice of source, if anything: one source at a time, and the raw-PCM
    options only with --stdin (they were silently ignored)."""
    if args.file and args.stdin:
        return "give --file or --stdin, not both"
    stdin_only = [f"--{name}" for name, given in (("rate", args.rate), ("pcm", args.pcm != "s16le"),
                                                   ("channels", args.channels != 1)) if given]
    if stdin_only and not args.stdin:
        return (f"{', '.join(stdin_only)}: raw PCM on stdin only, with --stdin (a file's header gives its rate and "
                "format; a microphone is opened at the model's rate)")
    if args.realtime and not args.file:
        return "--realtime paces a --file; a microphone and stdin are real time already"
    if args.device is not None and (args.file or args.stdin):
        return "--device picks a microphone: not with --file or --stdin"
    return None


#: Formats ``-o FILE`` implies by its suffix when ``--format`` is not given (any other suffix: jsonl).
_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def _suffix_format(path: str) -> str:
    """The format an output file's suffix names (`_SUFFIX_FORMATS`; any other suffix: jsonl)."""
    return _SUFFIX_FORMATS.get(Path(path).suffix.lower(), "jsonl")


def _output_format(args: argparse.Namespace, interactive: str) -> str:
    """``--format``; else the one ``-o FILE``'s suffix names (``out.csv``: csv); else ``interactive`` (the view
    for people) when stdout is a terminal and there is no ``-o``, jsonl otherwise."""
    from edgetag.runtime.progress import is_terminal

    if args.format:
        return args.format
    if args.output:
        return _suffix_format(args.output)
    return interactive if is_terminal(sys.stdout) else "jsonl"


def cmd_tag(args: argparse.Namespace) -> int:
    from edgetag.runtime.audio import AudioError, audio_info, stream_audio
    from edgetag.runtime.engine import Engine
    from edgetag.runtime.output import SpanRecorder, format_pitch_report, format_summary, make_writer
    from edgetag.runtime.pitch import PitchSummary, is_pitch_model, reader_for
    from edgetag.runtime.postprocess import ClipSummary
    from edgetag.runtime.progress import Progress, is_terminal
    from edgetag.runtime.tag_reliability import unreliable_tags

    if bool(args.files) == args.demo:
        print("edgetag tag: error: give audio FILEs or --demo (a built-in music clip)", file=sys.stderr)
        return 2
    if not _check_output("tag", args.output, tuple(args.files)):
        return 2
    model = _load(args)
    card = model.card
    pitch = is_pitch_model(card)
    scores = _scores_wanted(args, pitch)

    def warn(message: str) -> None:
        print(f"edgetag tag: warning: {message}", file=sys.stderr, flush=True)

    fmt = _output_format(args, "summary")
    # progress only where it cannot garble decisions written to the same terminal
    progress_ok = is_terminal(sys.stderr) and (fmt == "summary" or bool(args.output) or not is_terminal(sys.stdout))
    rate = card.frontend.sample_rate
    from edgetag.runtime.atomic import ReplacingTextFile, open_text_output, remove_stale_temps

    # -o FILE: written beside FILE and moved over it at the end if any file was tagged (a run that tags
    # nothing, such as one whose only file cannot be read, leaves an existing FILE as it was); a FIFO or a
    # device is written into; an input file or a folder is refused before any tagging
    if args.output:
        _make_output_folder("tag", args.output)
    pending = open_text_output(args.output) if args.output else None  # checked before the model was loaded
    if isinstance(pending, ReplacingTextFile):  # what killed runs left beside it (their pid is gone)
        remove_stale_temps(pending.path.parent, target=pending.path.name)
    out = pending.handle if pending else sys.stdout
    failed: list[str] = []
    tagged = 0
    completed = False  # every file tagged (or refused): not cut short by Ctrl-C or an error
    header = True  # a csv header before the first file that is tagged
    try:
        for path in args.files or ["demo"]:
            if args.demo:
                from edgetag.runtime.demo import demo_music

                demo = demo_music(rate)
                blocks: Iterator[np.ndarray] = iter([demo])
                total_s = len(demo) / rate
            else:
                # decoded a block at a time (memory flat whatever the file's length; the same samples as
                # decoding it whole); the first block is read here, so a file that cannot be opened or
                # decoded fails before any of its output
                try:
                    blocks = stream_audio(path, rate, warn=warn)
                    blocks = itertools.chain([next(blocks)], blocks)
                except (AudioError, OSError) as exc:  # one bad file does not stop the others
                    print(f"edgetag tag: error: {exc}", file=sys.stderr, flush=True)
                    failed.append(path)
                    continue
                try:
                    total_s = audio_info(path).duration  # the header's length, for the progress line
                except (AudioError, OSError):  # a container ffmpeg decodes: no length before the end
                    total_s = 0.0
            tagged += 1  # its decisions go out from here (an interrupted run keeps what it wrote)
            file_field = path if len(args.files) > 1 else None
            reader = reader_for(card)
            if fmt == "summary":  # for people: event lines (--events), then the summary
                writers = [make_writer("events-text", out, card.labels, file=file_field)] if args.events else []
            else:
                writers = [make_writer("events" if args.events and fmt == "csv" else fmt, out, card.labels,
                                       file=file_field, header=header, reader=reader, scores=scores)]
            header = False
            spans = SpanRecorder(reader=reader)  # when each tag (note) was on, for the summary
            summary = PitchSummary(reader) if pitch else ClipSummary(card.labels)
            post = _pipeline(model, [*writers, spans], args, summary, reader)
            engine = Engine(model)
            chunk = int(rate * 0.5)
            decisions = n_samples = 0
            with Progress(f"edgetag tag: {path}", total_s, enabled=None if progress_ok else False) as bar:
                broken = None
                while True:
                    try:
                        block = next(blocks, None)
                    except (AudioError, OSError) as exc:  # part-way through the file: what came before is written
                        broken = exc
                        break
                    if block is None:
                        break
                    for offset in range(0, len(block), chunk):
                        piece = block[offset : offset + chunk]
                        for d in engine.push(piece):
                            post(d)
                            decisions += 1
                        n_samples += len(piece)
                        bar.update(n_samples / rate)
                if broken is not None:
                    post.finish()  # events still open end here
                    print(f"edgetag tag: error: {broken} (its decisions up to there were written; no summary)",
                          file=sys.stderr, flush=True)
                    failed.append(path)
                    continue
                for d in engine.flush():  # the end of the file: frames still gathered for a call
                    post(d)
                    decisions += 1
            post.finish()
            spans.finish()
            result = summary.to_dict(args.top_k)
            duration = n_samples / rate
            if decisions == 0:
                short = _not_enough_audio(path, n_samples, card)
                if not (fmt == "summary" and out is sys.stdout):  # else the summary on the screen says it already
                    warn(short)
                text = f"{'pitch' if pitch else 'clip'} summary of {path}: 0 decisions; {short}"
            elif summary.count == 0 or getattr(post, "silent_decisions", 0) == decisions:  # all below the level gate
                text = (f"{'pitch' if pitch else 'clip'} summary of {path}: {decisions} decisions, all below the "
                        f"level gate ({getattr(post, 'gate_dbfs', float('nan')):g} dBFS): silence, "
                        f"{'no notes' if pitch else 'no tags'}")
            elif pitch:
                text = format_pitch_report(result, path, notes=spans, duration_s=duration)
            else:
                text = format_summary(result, path, rows=args.top_k,
                                      thresholds=dict(zip(card.labels, card.thresholds)), spans=spans,
                                      duration_s=duration, unreliable=unreliable_tags(card))
            if fmt == "summary":
                print(text, file=out, flush=True)
            elif fmt == "jsonl":
                writers[0].summary(result)
            else:
                print(text, file=sys.stderr)
        completed = True
    finally:
        if pending is not None:
            _close_tag_output(pending, args.output, tagged=bool(tagged), completed=completed)
    if failed:
        if len(args.files) > 1:
            print(f"edgetag tag: {len(failed)} of {len(args.files)} files could not be read (the others were tagged): "
                  f"{', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _close_tag_output(pending: Any, name: str, *, tagged: bool, completed: bool) -> None:
    """``tag -o FILE`` at the end: a completed run that tagged something replaces FILE; one that tagged nothing
    leaves it as it was; one cut short (Ctrl-C, an error) leaves it too and keeps what it wrote in FILE.partial
    (or the first free FILE.partial.N: an earlier cut run's lines stay), saying so (a FIFO or a device is only closed)."""
    from edgetag.runtime.atomic import ReplacingTextFile

    if not isinstance(pending, ReplacingTextFile) or (completed and tagged):
        pending.commit()
        return
    if not tagged:
        pending.discard()
        return
    existed = pending.path.exists()
    partial = pending.path.with_name(pending.path.name + ".partial")
    try:
        kept = pending.keep_as(partial)
    except OSError as exc:
        print(f"edgetag tag: {name} {'is left as it was' if existed else 'was not written'}; what was written "
              f"before the run stopped could not be kept in {partial}: {exc}", file=sys.stderr, flush=True)
        return
    print(f"edgetag tag: {name} {'is left as it was' if existed else 'was not written'}; what was written before the "
          f"run stopped is in {kept} (the file cut short has no summary, and its last line may be cut)",
          file=sys.stderr, flush=True)


def cmd_listen(args: argparse.Namespace) -> int:
    from edgetag.runtime.engine import Engine, StreamRunner
    from edgetag.runtime.output import JsonlWriter, make_writer
    from edgetag.runtime.pitch import PitchSummary, is_pitch_model, reader_for
    from edgetag.runtime.postprocess import ClipSummary
    from edgetag.runtime.sources import FileSource, MicSource, SourceError, StdinSource

    def say(msg: str) -> None:
        print(f"edgetag listen: {msg}", file=sys.stderr, flush=True)

    if args.list_devices:
        from edgetag.runtime.sources import describe_devices, import_sounddevice

        print(describe_devices(import_sounddevice()))
        return 0
    if not _check_output("listen", args.output, (args.file,) if args.file else ("/dev/stdin",) if args.stdin else ()):
        return 2
    conflict = _source_conflict(args)
    if conflict:
        say(f"error: {conflict}")
        return 2
    model = _load(args)
    card = model.card
    rate = card.frontend.sample_rate
    if args.file:
        source = FileSource(args.file, rate, realtime=args.realtime, warn=lambda m: say(f"warning: {m}"))
    elif args.stdin:
        if not args.rate:
            say("error: --stdin needs --rate (the sample rate of the raw PCM on stdin)")
            return 2
        if args.rate != rate:
            say(f"stdin is {args.rate} Hz, the model takes {rate} Hz: resampling")
        source = StdinSource(rate, args.rate, args.pcm, channels=args.channels, warn=lambda m: say(f"warning: {m}"))
    else:
        source = MicSource(rate, args.device, log=say)
    source.open()  # errors (no device, bad index, unreadable file) exit 1 with the message

    fmt = _output_format(args, "live")
    runner = StreamRunner(Engine(model), source, duration=args.duration, warn=lambda m: say(m))
    out = _open_output(args.output)
    live = None
    writers = []
    pitch = is_pitch_model(card)  # 360 CREPE bins: a tuner view, and decoded f0 in jsonl and csv
    reader = reader_for(card)
    scores = _scores_wanted(args, pitch)
    if fmt == "live":
        from edgetag.runtime.output import LiveView, TunerView
        from edgetag.runtime.tag_reliability import unreliable_tags

        rate = card.frontend.sample_rate
        live = (TunerView(card.labels, card.thresholds, source=source.describe(), k=args.top_k, reader=reader,
                          sample_rate=rate)
                if pitch else LiveView(card.labels, card.thresholds, source=source.describe(), k=args.top_k,
                                       sample_rate=rate, unreliable=unreliable_tags(card)))
        writers.append(live)
        if args.output:  # beside the view: what the file's suffix asks for (out.csv: CSV)
            writers.append(make_writer(_suffix_format(args.output), out, card.labels, reader=reader, scores=scores))
        if args.events:
            args.events = False  # the live view shows states; events would garble it
    else:
        writers.append(make_writer("events" if args.events and fmt == "csv" else fmt, out, card.labels,
                               reader=reader, scores=scores))
    # the stream's summary for jsonl's last line, as `tag` writes one for a file (flat memory: running sums,
    # 1-cent f0 bins); nothing else reads it, so without a jsonl writer no decision adds to one
    jsonl = [w for w in writers if isinstance(w, JsonlWriter)]
    clip_summary = (PitchSummary(reader) if pitch else ClipSummary(card.labels)) if jsonl else None
    post = _pipeline(model, writers, args, clip_summary, reader=reader)
    # Ctrl-C only sets a flag: a KeyboardInterrupt could land anywhere (mid-line in the output,
    # or inside a finalizer, where Python prints it and carries on); a second Ctrl-C stops at once.
    previous_sigint = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        if runner.stop_requested:
            raise KeyboardInterrupt
        runner.request_stop()

    main_thread = threading.current_thread() is threading.main_thread()  # only there can handlers be set
    if main_thread:
        signal.signal(signal.SIGINT, on_sigint)
    say(f"listening on {source.describe()} with {card.name} "
        f"({card.streaming_mode}, a decision every {card.decision_interval_s * 1e3:g} ms)")

    def idle() -> None:
        if live is not None:
            live.refresh(source.stats, runner.latencies.recent_ms(), runner.compute_times.recent_ms())

    status, rc = "done", 0
    try:
        try:
            if live is not None:
                with live:
                    runner.run(post, on_idle=idle)
            else:
                runner.run(post)
            if runner.stop_requested:
                status = "stopped (Ctrl-C)"
        except KeyboardInterrupt:
            status = "stopped (Ctrl-C)"
        except SourceError as exc:
            status, rc = f"error: {exc}", 1
        finally:
            post.finish()
        stream_stats = _listen_stats(runner, source, card, status, rc, args.duration, say)
        # jsonl ends with a summary line, as `tag`'s does: what was heard, and what happened to the audio
        # (under the run's Ctrl-C handler still: a first Ctrl-C now changes nothing, a second stops at once)
        for writer in jsonl:
            writer.summary({**clip_summary.to_dict(args.top_k), "stream": stream_stats})
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous_sigint)
        if out is not sys.stdout:
            out.close()
    return rc


def _listen_stats(runner: Any, source: Any, card: Any, status: str, rc: int, duration: float | None,
                  say: Callable[[str], None]) -> dict[str, Any]:
    """The end of a `listen` run on stderr (how stdin ended, a stream too short for a decision, one line for
    people and the ``stats`` JSON line); returns the stats."""
    import json

    from edgetag.runtime.output import count_of
    from edgetag.runtime.sources import StdinSource

    if isinstance(source, StdinSource) and source.eof:
        secs = source.samples_read / source.rate
        if duration is not None and not runner.reached_duration:
            say(f"stdin closed early, after {secs:.3f} s of audio (asked for {duration:g} s); ending cleanly")
        else:
            say(f"stdin ended after {secs:.3f} s of audio")
        if source.leftover_bytes:
            say(f"warning: ignored {source.leftover_bytes} trailing byte(s): not a whole sample")
    if runner.decisions == 0 and rc == 0 and status == "done":
        # --duration stopped the stream before its first decision: the option, not the source, was short
        if duration is not None and runner.reached_duration:
            heard = f"the first {duration:g} s (--duration) of {source.describe()}"
        else:
            heard = source.describe()
        say("warning: " + _not_enough_audio(heard, runner.engine.samples, card))
    lat, comp = runner.latencies.percentiles_ms(), runner.compute_times.percentiles_ms()
    stats = source.stats
    stream_stats = {
        "status": status, "decisions": runner.decisions,
        "audio_s": round(runner.engine.samples / card.frontend.sample_rate, 3),
        "compute_ms_p50": _ms_or_none(comp[0]), "compute_ms_p99": _ms_or_none(comp[1]),
        "latency_ms_p50": _ms_or_none(lat[0]), "latency_ms_p99": _ms_or_none(lat[1]),
        "overflows": stats.overflows, "dropped_samples": stats.dropped_samples,
        "nonfinite_samples": stats.nonfinite_samples, "skipped_samples": stats.skipped_samples,
        "dropped_decisions": stats.dropped_decisions,
        # the watchdog: times the worker fell more than MAX_LAG_S behind and skipped audio to catch up
        "catchups": stats.catchups, "lag_skipped_samples": stats.lag_skipped_samples,
    }
    # a file at full speed has no capture times, hence no latency
    latency = f"latency p50 {lat[0]:.1f} ms p99 {lat[1]:.1f} ms" if math.isfinite(lat[0]) else "no latency (not live)"
    compute = f"compute p50 {comp[0]:.2f} ms p99 {comp[1]:.2f} ms" if math.isfinite(comp[0]) else "no compute timed"
    say(f"{status}: {count_of(runner.decisions, 'decision')} over {stream_stats['audio_s']:g} s; {compute}; {latency}; "
        f"{stats.summary()}")
    say("stats " + json.dumps(stream_stats))
    return stream_stats


def _ms_or_none(ms: float) -> float | None:
    """Rounded milliseconds, or None (JSON null, not NaN, which strict JSON parsers reject) when undefined:
    a file read at full speed has no capture time, so no latency."""
    return None if math.isnan(ms) else round(ms, 3)


def _add_post_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="edgetag model file (.onnx), or a built-in model's name (see `edgetag models`; "
                   "default: music-tags)")
    p.add_argument("--level-gate", type=_gate_dbfs, default=None, metavar="DBFS",
                   help="below this RMS level (dBFS) of a decision's audio it is silence: no tag on, no event, "
                        "pitch unvoiced (default: the card's, else -60; 'off' for none)")
    p.add_argument("--threads", type=_positive_int, default=STREAM_THREADS,
                   help=f"ONNX Runtime intra-op threads (default {STREAM_THREADS}: a decision is too small a job "
                        "for more threads to pay, and they take the cores the audio needs)")
    p.add_argument("--backend", default="cpu", choices=tuple(BACKENDS),
                   help="ONNX Runtime execution provider, or torch for a student checkpoint (.pt; debugging)")
    p.add_argument("-o", "--output", help="write decisions to this file instead of stdout")
    p.add_argument("--events", action="store_true", help="print onset/offset events instead of every decision")
    p.add_argument("--smooth", type=int, default=1, help="moving average over this many decisions (default 1: none)")
    p.add_argument("--margin", type=_non_negative, default=0.1,
                   help="hysteresis: a tag turns on at its threshold, off below threshold - margin (default 0.1; "
                        "at most half the threshold)")
    p.add_argument("--min-on", type=_non_negative, default=None, metavar="SECONDS",
                   help="a tag turns on only once the hysteresis has held it on this long; the onset is dated where "
                        "that began (default: the card's, 1 for music-tags, else 0; pitch notes have their own rule)")
    p.add_argument("--min-off", type=_non_negative, default=None, metavar="SECONDS",
                   help="a tag turns off only once the hysteresis has held it off this long (default: the card's, "
                        "2 for music-tags, else 0)")
    p.add_argument("--top-k", type=_positive_int, default=5,
                   help="tags shown in summaries and the live view (default 5)")
    p.add_argument("--scores", choices=("all", "none"), default=None,
                   help="every label's score in each jsonl/csv decision, or none (each decision still names its "
                   "active tags; default: all; none for pitch models, whose decisions carry the decoded f0, note, "
                   "cents and confidence instead)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``presets``, ``features``, ``models``, ``info``, ``verify``, ``tag`` and ``listen``."""
    p = sub.add_parser("presets", help="list the named front-end presets")
    p.add_argument("--json", action="store_true", help="also print each preset's full config as JSON")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser(
        "features",
        help="stream an audio file (or a demo signal) through the C++ front end",
        description="Stream audio through the C++ front end in microphone-sized chunks and report the frames.",
    )
    p.add_argument("file", nargs="?", help="audio file (any format libsndfile reads; m4a, mp4, webm, aac... through "
                   "ffmpeg when it is installed; resampled to the preset's rate)")
    p.add_argument("--demo", action="store_true", help="use a built-in test signal instead of a file")
    p.add_argument("--seconds", type=_seconds, default=4.0, help="length of the demo signal (default 4)")
    p.add_argument("--preset", default="default", help="front-end preset (see `edgetag presets`)")
    p.add_argument("--config", help="front-end config JSON file (overrides --preset)")
    p.add_argument("--chunk", type=_positive_int, default=512, help="samples per push (default 512)")
    p.add_argument("-o", "--output", help="save the frames as a .npy file")
    p.add_argument("--plot", help="save a spectrogram picture (PNG) of the frames")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("models", help="list the built-in models and their measured metrics")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("info", help="show and validate a model file's card",
                       description="Print a model's card (labels, front end, streaming mode, size, metrics, "
                       "provenance) after checking it against the graph; exit 1 on a bad card.")
    p.add_argument("model", nargs="?", help="edgetag model file (.onnx) or built-in name (default: music-tags)")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("verify", help="self-check models on this CPU with the test vectors in their cards",
                       description="Load each model (its SHA-256 digest checked), stream its card's test vector "
                       "(real features) through the runtime's engine on this CPU and compare with the fp32 reference "
                       "scores recorded at export. Prints the max difference; exits 1 if any model fails.")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="model files or built-in names (default: every built-in model)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("tag", help="tag audio files offline: a summary for people, or every decision (jsonl/csv)",
                       description="Run a model over whole files, decision by decision, as the live runtime would. "
                       "On a terminal it prints a summary per file (the top tags and when they were on, or the notes "
                       "played); piped or with -o it writes every decision as jsonl (CSV with --format csv or "
                       "-o FILE.csv); a "
                       "progress line goes to stderr for long files when stderr is a terminal. Ctrl-C stops it "
                       "(exit status 130).")
    p.add_argument("files", nargs="*", metavar="FILE", help="audio files (any format libsndfile reads; m4a, mp4, "
                   "webm, aac... through ffmpeg when it is installed)")
    p.add_argument("--demo", action="store_true", help="tag a built-in 8 s music clip (plucked melody over drums)")
    p.add_argument("--format", choices=("jsonl", "csv", "summary"), default=None,
                   help="jsonl or csv: every decision (with --events: onsets and offsets) and a summary; summary: "
                   "for people, the top tags per file and when they were on, or the notes played (default: summary "
                   "on a terminal, jsonl when stdout is a pipe or a file; with -o, csv for a .csv file, else jsonl)")
    _add_post_args(p)
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("listen", help="tag live audio: microphone, a file in real time, or raw PCM on stdin",
                       description="Stream audio through the model and print a decision every hop. Default "
                       "source: the default microphone. Ctrl-C stops.")
    _add_post_args(p)
    p.add_argument("--device", help="input device index or (part of its) name (see --list-devices)")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--format", choices=("jsonl", "csv", "live"), default=None,
                   help="jsonl, csv or a live terminal view (default: live on a terminal, else jsonl; with -o, "
                   "csv for a .csv file, else jsonl)")
    p.add_argument("--duration", type=_seconds, default=None, help="stop after this many seconds of audio")
    p.add_argument("--file", help="read this audio file instead of the microphone")
    p.add_argument("--realtime", action="store_true", help="with --file: pace the file in real time")
    p.add_argument("--stdin", action="store_true", help="read raw PCM from stdin (give --rate and --pcm)")
    p.add_argument("--rate", type=_sample_rate,
                   help="with --stdin: sample rate of the PCM in Hz (resampled if not the model's)")
    p.add_argument("--pcm", choices=("s16le", "f32le"), default="s16le", help="with --stdin: sample format")
    p.add_argument("--channels", type=_positive_int, default=1, help="with --stdin: interleaved channels (downmixed)")
    p.set_defaults(func=cmd_listen)
