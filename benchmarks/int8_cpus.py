"""Does an int8 file compute the same on every CPU? Each int8 format, here and on an emulated AVX2-only x86.

    python -m edgetag.benchmarks.int8_cpus --model pitch --model music-tags --calib DIR_OR_MANIFEST

For each fp32 model it writes int8 files in three weight formats and both
plans (`edgetag.export.quantize.INT8_PLANS`), calibrated on ``--calib``:

- ``s8``: int8 weights in 8 bits ([-127, 127]), what edgetag wrote before;
- ``s8-7bit``: int8 weights in 7 bits ([-64, 64], ``reduce_range``), what it writes now;
- ``u8``: uint8 weights (ONNX Runtime's u8u8 kernels),

then streams the held-out clips (every 4th of ``--calib``, or ``--eval``)
through each file, in plain ONNX Runtime sessions (``--runtime-session``: as
edgetag's runtime opens them), **on this CPU** and **under qemu-user's Haswell CPU**
(AVX2, no AVX-512, no VNNI: ``qemu-x86_64``, Debian's ``qemu-user``), and
prints, per CPU, the largest difference of any score to the fp32 file's and
the share of binarised decisions that agree with fp32. A format whose two
columns differ computes another network on one of the CPUs.
``--aarch64 DIR`` adds a third CPU: ARM64 under ``qemu-aarch64``, with the
Python that ``bash benchmarks/arm64_emulation.sh DIR`` builds (``DIR/python``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

FORMATS = {
    "s8": {"weight_type": "QInt8", "reduce_range": False},
    "s8-7bit": {"weight_type": "QInt8", "reduce_range": True},
    "u8": {"weight_type": "QUInt8", "reduce_range": False},
}

_SCORE_SCRIPT = """
import sys, numpy as np, onnxruntime as ort
from edgetag.runtime.model import load_model
from edgetag.runtime.verify import stream_scores
held = np.load(sys.argv[1])
clips = [held[k] for k in sorted(held.files, key=lambda k: int(k.split("_")[1]))]
out = {}
for path in sys.argv[3:]:
    model = load_model(path, threads=1)
    if PLAIN:  # the file's own behaviour: without the runtime's session.x64quantprecision
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        model.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    out[path] = np.concatenate([stream_scores(model, c) for c in clips])
np.savez(sys.argv[2], **{str(i): out[p] for i, p in enumerate(sys.argv[3:])})
"""


def compare_to_fp32(card, reference: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """How far scores ``got`` [decisions, labels] lie from the fp32 file's ``reference``.

    ``max_abs_diff``; ``agreement``: the share of binarised decisions (the card's thresholds)
    that agree; pitch models also ``rpa_vs_fp32`` (with ``voiced_frames``): the share of frames
    fp32 calls voiced whose f0 lies within 50 cents of fp32's.
    """
    from edgetag.runtime.pitch import VOICING_THRESHOLD, decode, is_pitch_model

    thresholds = np.asarray(card.thresholds, np.float32)
    out = {"max_abs_diff": float(np.abs(got - reference).max()),
           "agreement": float(np.mean((got > thresholds) == (reference > thresholds)))}
    if is_pitch_model(card):
        voiced = reference.max(axis=1) >= VOICING_THRESHOLD
        cents = 1200 * np.log2(decode(got)[0][voiced] / decode(reference)[0][voiced])
        out["rpa_vs_fp32"] = float(np.mean(np.abs(cents) <= 50))
        out["voiced_frames"] = float(voiced.sum())
    return out


def quantize_format(fp32: Path, out: Path, feeds: list, plan: str, weight_type: str, reduce_range: bool) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edgetag.export.gate import FeedReader
    from edgetag.export.quantize import plan_layers

    model = onnx.load(str(fp32))
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"node_{i}_{node.op_type}"
    _, kept = plan_layers(model, plan)
    named = out.with_suffix(".in.onnx")
    onnx.save(model, str(named))
    quantize_static(
        str(named), str(out), FeedReader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=getattr(QuantType, weight_type),
        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["Conv", "MatMul", "Gemm"],
        nodes_to_exclude=kept, reduce_range=reduce_range,
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )
    named.unlink()


def scores_on(cpu: str, held: Path, paths: list[Path], work: Path, sysroot: Path | None, plain: bool) -> list[np.ndarray]:
    script = work / "scores.py"
    script.write_text(_SCORE_SCRIPT.replace("PLAIN", str(plain)))
    out = work / f"scores-{cpu}.npz"
    args = [str(script), str(held), str(out), *map(str, paths)]
    if cpu == "here":
        command = [sys.executable, *args]
    elif cpu == "avx2":
        command = ["qemu-x86_64", "-cpu", "Haswell", sys.executable, *args]
    else:
        assert sysroot is not None
        command = [str(sysroot / "python"), *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{cpu}: {' '.join(command[:4])} ... failed:\n{done.stderr[-3000:]}")
    data = np.load(out)
    return [data[str(i)] for i in range(len(paths))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="fp32 edgetag ONNX file or built-in name")
    ap.add_argument("--calib", required=True, help="audio folder or manifest for calibration (and held-out clips)")
    ap.add_argument("--eval", help="held-out audio (default: held out of --calib)")
    ap.add_argument("--max-clips", type=int, default=24, help="held-out clips streamed per CPU (default 24)")
    ap.add_argument("--max-seconds", type=float, default=10.0, help="seconds of each clip streamed (default 10)")
    ap.add_argument("--aarch64", type=Path, metavar="DIR",
                    help="also run on ARM64: DIR made by benchmarks/arm64_emulation.sh")
    ap.add_argument("--json", type=Path, help="also write the table as JSON")
    ap.add_argument("--runtime-session", action="store_true",
                    help="run the files as edgetag's runtime does (session.x64quantprecision, which makes ONNX "
                         "Runtime repair 8-bit weights on x86 without VNNI); default: plain ONNX Runtime sessions, "
                         "what each file computes by itself")
    args = ap.parse_args(argv)

    from edgetag.export.commands import _load_source
    from edgetag.export.model_file import _ort_session
    from edgetag.export.gate import input_feeds
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model
    from edgetag.runtime.pitch import is_pitch_model
    from edgetag.runtime.verify import cpu_description

    cpus = ["here", "avx2"] + (["arm64"] if args.aarch64 else [])
    print(f"here: {cpu_description()}; avx2: qemu-x86_64 -cpu Haswell (AVX2, no AVX-512, no VNNI)"
          + ("; arm64: qemu-aarch64's default (max) CPU" if args.aarch64 else ""))
    rows = []
    for spec in args.model:
        fp32 = resolve_model(spec)
        card = load_model(fp32).card
        ns = argparse.Namespace(calib_split=None, eval_split=None, root=None)
        calib, held = _load_source(args.calib, card, ns)
        if args.eval:
            held, _ = _load_source(args.eval, card, ns, everything=True)
        frames = int(args.max_seconds * card.frontend.frame_rate)
        clips = [clip[:frames] for clip in held.features[: args.max_clips]]
        feeds = input_feeds(_ort_session(fp32), card, calib.features, limit=600)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            np.savez(work / "held.npz", *clips)
            paths = [fp32]
            names = ["fp32"]
            for plan in ("all", "pointwise"):
                for fmt, options in FORMATS.items():
                    path = work / f"{fmt}-{plan}.onnx"
                    quantize_format(fp32, path, feeds, plan, **options)
                    _copy_card(fp32, path)
                    paths.append(path)
                    names.append(f"{fmt} {plan}")
            results = {cpu: scores_on(cpu, work / "held.npz", paths, work, args.aarch64, not args.runtime_session)
                       for cpu in cpus}
        reference = results["here"][0]
        pitch = is_pitch_model(card)
        print(f"\n{spec}: {len(clips)} held-out clips, {len(reference)} decisions; "
              "max |score - fp32 here| / agreement of binarised decisions with fp32 here"
              + (" / f0 within 50 cents of fp32's on its voiced frames" if pitch else ""))
        print("| file | " + " | ".join(cpus) + " |")
        print("|---|" + "---|" * len(cpus))
        for i, name in enumerate(names):
            cells = []
            row = {"model": spec, "file": name}
            for cpu in cpus:
                row[cpu] = found = compare_to_fp32(card, reference, results[cpu][i])
                cell = f"{found['max_abs_diff']:.4f} / {100 * found['agreement']:.2f} %"
                if pitch:
                    cell += f" / RPA {100 * found['rpa_vs_fp32']:.2f} %"
                cells.append(cell)
            rows.append(row)
            print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def _copy_card(fp32: Path, path: Path) -> None:
    """The fp32 file's card (without digest or test vector) on a quantized file, so the runtime runs it."""
    import dataclasses

    import onnx

    from edgetag.export.model_file import save_single_file
    from edgetag.runtime.sealing import read_card, set_card

    card = read_card(onnx.load(str(fp32)))
    model = onnx.load(str(path))
    set_card(model, dataclasses.replace(card, integrity={}, test_vector={}))
    save_single_file(model, path)


if __name__ == "__main__":
    raise SystemExit(main())
