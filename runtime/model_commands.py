"""The commands that look at model files: ``edgetag models``, ``info`` and ``verify``.

Registered with the runtime's other commands by `edgetag.runtime.commands.register`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np


def cmd_models(args: argparse.Namespace) -> int:
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import BUILTIN_MODELS, DEFAULT_MODEL, MODELS_DIR

    from edgetag.runtime.card_text import describe_task, wrap, wrap_items

    print(f"built-in models (default: {DEFAULT_MODEL}; use one with --model NAME), in")
    print(f"  {MODELS_DIR}")
    indent = " " * 18  # under the description, beside the name column
    for name, file in BUILTIN_MODELS.items():
        path = MODELS_DIR / file
        print()
        if not path.is_file():
            print(f"{name:16}  missing from this installation")
            continue
        card = load_model(path).card  # validates the card against the graph
        lines = wrap(f"{path.stat().st_size / 1e6:.2f} MB; {describe_task(card)}; a decision every "
                     f"{card.decision_interval_s * 1e3:g} ms", f"{name:16}  ", indent)
        lines += wrap(f"{card.parameters:,} params, {card.macs_per_second / 1e6:.1f} MMAC per second of audio",
                      indent, indent)
        # a quantized file's card carries its fp32 file's measurements until a recipe measures it: say so
        of_fp32 = set(card.provenance.get("export", {}).get("metrics_of_fp32", []))
        own = [f"{k} {v:.3g}" for k, v in card.metrics.items() if k not in of_fp32]
        inherited = [f"{k} {v:.3g}" for k, v in card.metrics.items() if k in of_fp32]
        lines += wrap_items(own or ["no metrics recorded on this file"], indent, indent + "  ")
        if inherited:
            lines += wrap_items(inherited, indent + "of the fp32 file: ", indent + "  ")
        print("\n".join(lines))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from edgetag.runtime.model import load_any_model
    from edgetag.runtime.models import resolve_model
    from edgetag.runtime.pitch import VOICING_THRESHOLD, bin_frequencies, is_pitch_model

    model = load_any_model(resolve_model(args.model))  # validates the card against the graph; errors exit 1 with the message
    card = model.card
    if args.json:
        print(card.to_json(indent=2))  # JSON escapes every control character itself
        return 0

    from edgetag.runtime.card_text import columns, describe_task, field, label_cells, metric_lines, tree, wrap

    def show(lines: list[str]) -> None:  # card text is escaped by card_text's layout (printable)
        print("\n".join(lines))

    fe = card.frontend
    show(field("model", str(model.path)))
    show(field("name", f"{card.name} (card format {card.format_version})"))
    show(field("task", describe_task(card)))
    show(field("front end", fe.describe()))
    if card.streaming_mode == "window":
        mode = f"window: {card.window_frames} frames ({card.window_frames / fe.frame_rate:g} s), re-run every"
    else:
        states = ", ".join(f"{s.name}{list(s.shape)}" for s in card.states)
        wait = card.frames_per_call - 1  # frames gathered before a call: each one a hop later
        gather = f" (the first waits {wait * 1e3 / fe.frame_rate:g} ms for the rest)" if wait else ""
        mode = f"stateful: {card.frames_per_call} frame(s) per call{gather}, states {states}; decision every"
    show(field("streaming", f"{mode} {card.hop_frames} frames ({card.decision_interval_s * 1e3:g} ms)"))
    if card.streaming_mode == "stateful":  # algorithmic latency, as `edgetag bench --peers` counts it
        half_ms = (fe.win_length - fe.win_length / 2) * 1e3 / fe.sample_rate
        wait_ms = (card.frames_per_call - 1) * 1e3 / fe.frame_rate
        why = "half the frame" + (f" + {wait_ms:g} ms waiting" if wait_ms else "")
        show(field("latency", f"{half_ms + wait_ms:g} ms, frame centre to decision ({why})"))
    if card.min_durations_s is not None:
        on, off = card.min_durations_s
        show(field("events", f"a tag turns on after {on:g} s held, off after {off:g} s (--min-on / --min-off)"))
    student_params = card.provenance.get("export", {}).get("student_params", {})
    if student_params.get("level_normalise") or student_params.get("base", {}).get("params", {}).get("level_normalise"):
        show(field("level", "each window is brought to one loudness inside the model (up to 40 dB either way): "
                            "its tags do not follow the input level; the level gate still applies"))
    if card.input_gain:  # `edgetag.export.input_gain`
        gain = card.input_gain
        peaks = ", ".join(f"{_sine_peak_dbfs(fe, gain['target_db'], f0):.0f}{' dBFS' if not i else ''} at {f0:g} Hz"
                          for i, f0 in enumerate((110.0, 440.0, 1000.0)))
        gate = "none" if card.level_gate_dbfs is None else f"{card.level_gate_dbfs:g} dBFS RMS"
        show(field("level", f"quiet input is raised inside the model: a frame whose loudest of the last "
                            f"{gain['window_frames'] / fe.frame_rate:g} s is under {gain['target_db']:g} dB of band "
                            f"power (a sine peaking under {peaks}) is brought up to it, at most "
                            f"{gain['max_boost_db']:g} dB (state {gain['state']}); louder input is read as it is. "
                            f"Below the level gate (the card's: {gate}; --level-gate) a decision is silence"))
    show(field("params", f"{card.parameters:,}"))
    show(field("MACs", f"{card.macs_per_second:,.0f} per second of audio"))
    # a quantized file's card carries its fp32 file's measurements until a recipe measures it: say whose they are
    of_fp32 = set(card.provenance.get("export", {}).get("metrics_of_fp32", []))
    show(field("metrics", "(measured on this file)" if of_fp32 else ""))
    show(metric_lines({k: v for k, v in card.metrics.items() if k not in of_fp32}))
    if of_fp32:
        show(["  of fp32  (measured on the fp32 file, not on this one)"])
        show(metric_lines({k: v for k, v in card.metrics.items() if k in of_fp32}, indent="    "))
    show(field("provenance", "" if card.provenance else "(none recorded)"))
    show(tree(card.provenance))
    for line in _integrity_lines(card):
        show(wrap(line[11:], line[:11], " " * 11))
    if is_pitch_model(card):  # 360 bin names say nothing one by one: what they are and how they are read
        f = bin_frequencies()
        show([f"labels     {card.labels[0]} .. {card.labels[-1]}: {f[0]:.2f} Hz .. {f[-1]:.2f} Hz, "
              f"voiced >= {VOICING_THRESHOLD:g}"])
        show(wrap(f"CREPE's {card.n_labels} pitch bins, 20 cents apart; edgetag.runtime.pitch decodes them to "
                  f"f0, note and cents; a frame is voiced when its top score is >= {VOICING_THRESHOLD:g}",
                  " " * 11, " " * 11))
        return 0
    from edgetag.runtime.tag_reliability import held_out_auc, legend, unreliable_tags

    unreliable = unreliable_tags(card)  # held-out ROC-AUC below 0.75 (provenance -> evaluation -> per_tag)
    show([f"labels     (threshold) {card.n_labels} labels; a tag is on at its threshold"])
    show(columns(label_cells(card.labels, card.thresholds, unreliable)))
    if unreliable:
        show(wrap(legend(unreliable), "  ", "    "))
    unmeasured = card.n_labels - len(held_out_auc(card))
    if unmeasured < card.n_labels and unmeasured:  # an unmarked tag is not necessarily a measured one: say so
        show(wrap(f"no held-out AUC, so no mark: {unmeasured} of {card.n_labels} tags (too rare in the held-out "
                  "music)", "  ", "    "))
    return 0


def _integrity_lines(card) -> list[str]:
    """What `info` says of a card's digest and test vector (the record of the export's own check)."""
    digest = card.integrity.get("sha256")
    lines = [f"integrity  sha256 {digest[:16]}... of graph and weights: matches the file" if digest
             else "integrity  no digest recorded (exported before edgetag recorded one): corruption cannot be detected"]
    vector = card.test_vector
    if not vector:
        lines.append("verified   no test vector recorded: `edgetag verify` cannot check this file")
        return lines
    done = vector.get("verified", {})
    lines.append(
        f"verified   {vector.get('precision', '?')} test vector, {vector['features']['shape'][0]} frames, tolerance "
        f"{float(vector['tolerance']):.2g} vs fp32 scores; at export: max diff {float(done.get('max_abs_diff', 'nan')):.2g} "
        f"on {done.get('cpu', '?')}, onnxruntime {done.get('onnxruntime', '?')}, {done.get('date', '?')} "
        "(`edgetag verify` reruns it here)"
    )
    return lines


def cmd_verify(args: argparse.Namespace) -> int:
    """Run each model's test vector on this CPU; exit 1 when any fails or cannot be checked."""
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import BUILTIN_MODELS, available, resolve_model
    from edgetag.runtime.verify import cpu_description, verify_model

    import onnxruntime

    specs = args.models or list(available()) or list(BUILTIN_MODELS)
    print(f"this CPU: {cpu_description()}; onnxruntime {onnxruntime.__version__}")
    failed = 0
    for spec in specs:
        try:
            model = load_model(resolve_model(spec), threads=args.threads)  # digest and card checked here
            result = verify_model(model)
        except (ValueError, OSError) as exc:  # damaged, contradictory, unknown, or no test vector
            print(f"FAIL  {spec}: {exc}")
            failed += 1
            continue
        verdict = "ok  " if result.passed else "FAIL"
        failed += not result.passed
        at_export = result.recorded.get("max_abs_diff")
        print(f"{verdict}  {spec} ({result.precision}): max |score - fp32 reference| {result.max_abs_diff:.3g} "
              f"{'<=' if result.passed else '>'} tolerance {result.tolerance:.3g} over {result.n_decisions} decisions "
              f"({result.n_frames} frames); at export {float(at_export) if at_export is not None else float('nan'):.3g} "
              f"on {result.recorded.get('cpu', '?')}; sha256 {'ok' if model.card.integrity else 'not recorded'}")
    if failed:
        print(f"{failed} of {len(specs)} model(s) failed verification on this CPU", file=sys.stderr)
    return 1 if failed else 0


def _sine_peak_dbfs(fe: Any, level_db: float, f0_hz: float) -> float:
    """The peak (dBFS) of a sine of ``f0_hz`` whose frames sum to ``level_db`` dB of band power in front end ``fe``."""
    from edgetag.runtime.frontend import compute_features

    t = np.arange(fe.win_length + 4 * fe.hop_length) / fe.sample_rate
    frames = compute_features(np.sin(2 * np.pi * f0_hz * t).astype(np.float32), fe).astype(np.float64)
    return level_db - float(10 * np.log10(np.exp(frames).sum(axis=1)).max())
