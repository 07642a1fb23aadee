"""Export subcommand of ``edgetag``: ``export``.

Imports only the standard library at module level (torch, onnx and
onnxruntime are imported inside the command), so ``edgetag --help`` works on
a runtime-only install.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edgetag.runtime.formats import sibling

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
_EVAL_SPLITS = ("valid", "val", "validation", "dev", "test", "eval")


class _Clips:
    """Features of clips, and clip-level targets when the source has labels."""

    def __init__(self, features: list[Any], targets: Any = None, mask: Any = None, description: str = "") -> None:
        self.features, self.targets, self.mask, self.description = features, targets, mask, description


def _load_source(
    source: str, checkpoint: Any, args: argparse.Namespace, everything: bool = False
) -> tuple[_Clips, _Clips]:
    """(calibration clips, held-out clips) from a manifest or a folder of audio files.

    ``everything``: the whole source as the first element (for ``--eval``).
    """
    import numpy as np
    from edgetag.export.inputs import features_of

    frontend = checkpoint.frontend
    path = Path(source)
    if path.is_dir():
        from edgetag.runtime.audio import load_audio

        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise ValueError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {path}")
        held = [] if everything else [f for i, f in enumerate(files) if i % 4 == 3]
        calib = files if everything else [f for i, f in enumerate(files) if i % 4 != 3]
        note = "all files" if everything else "every 4th file held out"
        if not held and not everything:
            # too few files to hold any out: split each file in time (first 3/4 calibrate, last 1/4 evaluates)
            audio = [load_audio(f, frontend.sample_rate) for f in files]
            cut = [int(len(a) * 0.75) for a in audio]
            return (
                _Clips(features_of([a[:c] for a, c in zip(audio, cut)], frontend), description=f"{len(files)} file(s), first 3/4"),
                _Clips(features_of([a[c:] for a, c in zip(audio, cut)], frontend), description=f"{len(files)} file(s), last 1/4"),
            )
        load = lambda fs: features_of([load_audio(f, frontend.sample_rate) for f in fs], frontend)
        return (
            _Clips(load(calib), description=f"{len(calib)} files ({note})"),
            _Clips(load(held), description=f"{len(held)} held-out files (no labels: metric is agreement with fp32)"),
        )
    if not path.is_file():
        raise FileNotFoundError(f"calibration source not found: {path}")
    from edgetag.training.data import iter_audio, label_matrix, load_manifest

    try:
        manifest = load_manifest(path, labels=checkpoint.labels, root=args.root)
        labelled = True
    except ValueError:
        manifest = load_manifest(path, root=args.root)  # labels outside the model's vocabulary: no targets
        labelled = False
    splits = set(manifest.splits())
    eval_split = args.eval_split or next((s for s in _EVAL_SPLITS if s in splits), None)
    calib_split = args.calib_split or ("train" if "train" in splits else None)
    calib_entries, eval_entries = [], []
    for i, entry in enumerate(manifest.entries):
        in_eval = entry.split == eval_split if eval_split else i % 4 == 3
        if everything:
            calib_entries.append(entry)
        elif in_eval:
            eval_entries.append(entry)
        elif calib_split is None or entry.split == calib_split:
            calib_entries.append(entry)

    def read(entries: list[Any], what: str) -> _Clips:
        sub = type(manifest)(entries=entries, labels=manifest.labels, root=manifest.root, source=manifest.source)
        feats, kept = [], []
        for entry, audio in iter_audio(sub, frontend.sample_rate):
            f = features_of([audio], frontend)
            if f:
                feats.append(f[0])
                kept.append(entry)
        targets = mask = None
        if labelled and kept:
            targets, mask = label_matrix(kept, checkpoint.labels)
            if not np.any(mask * targets) or not np.any(mask * (1 - targets)):
                targets = mask = None
        desc = f"{len(feats)} clips ({what})" + ("" if targets is not None else ", no usable labels: agreement with fp32")
        return _Clips(feats, targets, mask, desc)

    if everything:
        return read(calib_entries, "all entries"), _Clips([])
    return (
        read(calib_entries, f"split {calib_split}" if calib_split else "all but the held-out entries"),
        read(eval_entries, f"split {eval_split}" if eval_split else "every 4th entry"),
    )


def cmd_export(args: argparse.Namespace) -> int:
    # a checkpoint needs torch, and so do TensorRT's engines (device buffers); an edgetag .onnx file (reseal,
    # int8 / fp16, one-file changes) needs onnx only
    from_onnx = Path(args.checkpoint).suffix.lower() == ".onnx"
    _require_packages(tensorrt=args.tensorrt, torch=not from_onnx or args.tensorrt)
    out = Path(args.output)
    from edgetag.runtime.atomic import check_output_path

    # not a folder; not the checkpoint being exported (`export student.pt -o student.pt` replaced it with the
    # ONNX file); an .onnx source may be rewritten in place (resealed, or a one-file change: atomic writes)
    try:
        check_output_path(out, (args.checkpoint,) if not from_onnx else ())
    except OSError as exc:
        raise ValueError(f"-o {exc.strerror or exc}") from None
    if args.add_embedding and args.add_input_gain:
        raise ValueError("--add-embedding and --add-input-gain: one change per run (run it twice)")
    if args.add_embedding:
        return _add_embedding(args, out)
    if args.add_input_gain:
        return _add_input_gain(args, out)
    checkpoint, from_onnx = _load_model(args.checkpoint)
    calib, held = _load_audio(args, checkpoint)
    sizes = {"fp32": _write_fp32(args, checkpoint, out, calib, from_onnx)}
    failures = _write_int8_fp16(args, out, calib, held, sizes)
    if args.tensorrt:
        _build_tensorrt_engines(out, calib, args.int8, sizes)
    print("sizes: " + ", ".join(f"{k} {v} bytes" for k, v in sizes.items()))
    return 1 if failures else 0


def _check_one_file_change(args: argparse.Namespace, flag: str, why: str = "") -> None:
    """``--add-embedding`` / ``--add-input-gain`` change one edgetag .onnx file as it is: no other export options."""
    if Path(args.checkpoint).suffix.lower() != ".onnx":
        raise ValueError(f"{flag} takes an edgetag .onnx file{why}")
    if args.int8 or args.fp16 or args.tensorrt or args.calib or args.frames_per_call is not None or args.name:
        raise ValueError(f"{flag} changes one file as it is: give no --int8, --fp16, --tensorrt, --calib, "
                         "--frames-per-call or --name")


def _add_input_gain(args: argparse.Namespace, out: Path) -> int:
    """``--add-input-gain``: a stateful edgetag ONNX file copied with the quiet-input gain, resealed."""
    _check_one_file_change(args, "--add-input-gain")
    from edgetag.export.input_gain import add_input_gain_to_file

    card, worst = add_input_gain_to_file(args.checkpoint, out)
    gain = card.input_gain
    print(f"wrote {out}: quiet-input gain ({gain['what']}); state '{gain['state']}' {[1, gain['window_frames'] - 1]}; "
          f"max logit difference to the numpy reference {worst:.3g}; sha256 {card.integrity['sha256'][:16]}...")
    return 0


def _add_embedding(args: argparse.Namespace, out: Path) -> int:
    """``--add-embedding``: an edgetag ONNX file of any precision copied with an ``embedding`` output, resealed."""
    _check_one_file_change(args, "--add-embedding", " (a checkpoint's export has the output already)")
    from edgetag.export.embedding import add_embedding_to_file

    card = add_embedding_to_file(args.checkpoint, out)
    vector = card.test_vector
    print(f"wrote {out}: output 'embedding' [{card.embedding['size']}], {card.embedding['layer']}; other outputs "
          f"bit-identical on the test vector; sha256 {card.integrity['sha256'][:16]}..., {vector['precision']} "
          f"test vector here: max diff {vector['verified']['max_abs_diff']:.3g} (tolerance {vector['tolerance']:.3g})")
    return 0


def _require_packages(tensorrt: bool, torch: bool = True) -> None:
    """Refuse to start without onnx (and torch, when asked), or without TensorRT when asked for (before the slow
    part)."""
    needed = "torch and onnx" if torch else "onnx"
    try:
        import onnx  # noqa: F401
        if torch:
            import torch  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"edgetag export needs {needed} here ({exc}): pip install 'edgetag[export]'") from None
    if tensorrt:  # fail before the slow part when TensorRT is missing
        from edgetag.export.tensorrt import _import_tensorrt

        _import_tensorrt()


def _load_model(path: str) -> tuple[Any, bool]:
    """(the checkpoint, or an fp32 edgetag file's card; whether it is an ONNX file), described on stdout."""
    from_onnx = Path(path).suffix.lower() == ".onnx"
    if from_onnx:  # an fp32 edgetag file: resealed (`edgetag.export.model_file.reseal`), its card gains a test vector
        from edgetag.export.model_file import require_fp32
        from edgetag.runtime.model import load_model

        checkpoint = load_model(path).card  # has .frontend and .labels, all _load_source reads
        require_fp32(checkpoint, path)  # before anything is said or computed
        print(f"fp32 model: {path} ({checkpoint.name}, {checkpoint.streaming_mode}, "
              f"{checkpoint.n_labels} labels): to be resealed without a PyTorch parity check (no checkpoint)")
    else:
        from edgetag.training.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(path)
        print(f"checkpoint: {path} ({checkpoint.kind}, {checkpoint.student.streaming_mode}, "
              f"{len(checkpoint.labels)} labels, front end {checkpoint.frontend.describe()})")
    return checkpoint, from_onnx


def _load_audio(args: argparse.Namespace, checkpoint: Any) -> tuple[_Clips | None, _Clips | None]:
    """(calibration clips, held-out clips) of ``--calib`` (held out: ``--eval`` when given); None without ``--calib``."""
    if (args.int8 or args.fp16) and not args.calib:
        raise ValueError("--int8 and --fp16 need real audio: give --calib MANIFEST_OR_DIR")
    calib = held = None
    if args.calib:
        calib, held = _load_source(args.calib, checkpoint, args)
        if args.eval:
            held, _ = _load_source(args.eval, checkpoint, args, everything=True)
        print(f"calibration: {calib.description}; held out: {held.description}")
        if not calib.features:
            raise ValueError(f"no readable calibration audio in {args.calib}")
    return calib, held


def _write_fp32(args: argparse.Namespace, checkpoint: Any, out: Path, calib: _Clips | None, from_onnx: bool) -> int:
    """The fp32 file at ``out`` (exported from the checkpoint, or the ONNX file re-sealed); returns its size."""
    if from_onnx:
        from edgetag.export.model_file import reseal

        from edgetag.export.stream_layout import TIME_MAJOR

        layout_before = checkpoint.provenance.get("export", {}).get("stream_layout")  # the source's card
        card = reseal(args.checkpoint, out, calib.features if calib else None, frames_per_call=args.frames_per_call,
                      say=print)
        if card.provenance.get("export", {}).get("stream_layout") == TIME_MAJOR != layout_before:
            print("fp32: the streaming graph is rewritten time-major (MatMuls; states [context, channels]), "
                  "its stream checked against the source graph's")
        print(f"fp32: wrote {out}: sha256 {card.integrity['sha256'][:16]}..., test vector of "
              f"{card.test_vector['features']['shape'][0]} frames")
        _warn_stale_siblings(out, card, args)
        return out.stat().st_size
    from edgetag.export.onnx_export import export_onnx

    result = export_onnx(
        checkpoint, out, calib.features if calib else None, name=args.name, opset=args.opset,
        stream_atol=args.stream_atol, frames_per_call=args.frames_per_call, log=lambda line: print(f"fp32: {line}"),
    )
    return result.size_bytes


def _warn_stale_siblings(out: Path, card: Any, args: argparse.Namespace) -> None:
    """A resealed fp32 file whose int8 / fp16 siblings (not rebuilt now) gather another number of frames."""
    from edgetag.runtime.model import load_model

    for precision, rebuilt in (("int8", args.int8), ("fp16", args.fp16)):
        other = sibling(out, precision)
        if rebuilt or not other.is_file():
            continue
        theirs = load_model(other).card.frames_per_call
        if theirs != card.frames_per_call:
            print(f"note: {other} still runs {theirs} frame(s) per call, {out} now {card.frames_per_call}: "
                  f"add --{precision} --calib DATA to rebuild it from the resealed file")


def _write_int8_fp16(args: argparse.Namespace, out: Path, calib: _Clips | None, held: _Clips | None,
                     sizes: dict[str, int]) -> list[str]:
    """The ``--int8`` and ``--fp16`` files beside ``out`` (sizes recorded); returns the precisions that failed."""
    from edgetag.export.quantize import convert_fp16, quantize_int8

    failures = []
    for precision, wanted in (("int8", args.int8), ("fp16", args.fp16)):
        if not wanted:
            continue
        assert calib is not None and held is not None
        target = sibling(out, precision)
        try:
            if precision == "int8":
                report = quantize_int8(
                    out, target, calib.features, held.features, held.targets, held.mask,
                    max_relative_drop=args.max_drop, accept_drop=args.accept_drop, log=print,
                )
            else:
                report = convert_fp16(
                    out, target, held.features, held.targets, held.mask,
                    max_relative_drop=args.max_drop, accept_drop=args.accept_drop, log=print,
                )
            sizes[precision] = report.size_bytes
        except ValueError as exc:
            print(f"edgetag export: {exc}", file=sys.stderr)
            failures.append(precision)
    return failures


def _build_tensorrt_engines(out: Path, calib: _Clips | None, int8: bool, sizes: dict[str, int]) -> None:
    """TensorRT engines of ``out``: fp16, and int8 too with ``--int8`` (sizes recorded)."""
    from edgetag.export.tensorrt import build_engine

    for precision in ("fp16", "int8") if int8 else ("fp16",):
        engine = sibling(out, f"trt-{precision}")
        build_engine(
            out, engine, precision=precision,
            calibration_features=calib.features if calib else None,
        )
        sizes[f"trt-{precision}"] = engine.stat().st_size
        print(f"tensorrt: wrote {engine} and {engine.with_suffix('.card.json')}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export``."""
    from edgetag.export.onnx_export import STREAM_ATOL  # torch-free

    p = sub.add_parser(
        "export",
        help="export a student checkpoint to a verified, self-describing ONNX file (+ int8 / fp16 / TensorRT)",
        description=(
            "Export a student to one ONNX file carrying its model card, checked against PyTorch on real "
            "features (max abs <= 1e-4; stateful: streamed vs offline <= 1e-5) and loaded back by the "
            "runtime. --int8 (static QDQ, per-channel) and --fp16 write MODEL.int8.onnx / MODEL.fp16.onnx, "
            "each gated on the task metric of held-out audio (at most --max-drop relative loss)."
        ),
    )
    p.add_argument("checkpoint", help="student checkpoint (.pt written by training; needs torch), or an edgetag "
                   ".onnx file (no torch needed): an fp32 one to re-seal (digest, test vector; a causal CNN traced "
                   "channel-major is rewritten time-major, checked against the source graph) and quantize without "
                   "its checkpoint, or one of any precision for --add-embedding / --add-input-gain")
    p.add_argument("-o", "--output", required=True, help="output ONNX file (fp32)")
    p.add_argument("--calib", metavar="MANIFEST_OR_DIR",
                   help="real audio for parity checks and calibration: a manifest (CSV/JSONL) or a folder of audio files")
    p.add_argument("--eval", metavar="MANIFEST_OR_DIR", help="held-out audio for the gates (default: held out of --calib)")
    p.add_argument("--calib-split", help="manifest split used for calibration (default: train if present)")
    p.add_argument("--eval-split", help="manifest split held out for the gates (default: valid/val/test if present)")
    p.add_argument("--root", help="folder that manifest paths are relative to (default: the manifest's folder)")
    p.add_argument("--int8", action="store_true", help="also write an int8 (static QDQ) model")
    p.add_argument("--fp16", action="store_true", help="also write an fp16-weight model (float32 I/O)")
    p.add_argument("--tensorrt", action="store_true", help="also build TensorRT engines (needs the tensorrt package)")
    p.add_argument("--max-drop", type=float, default=0.01, help="allowed relative metric drop (default 0.01 = 1 %%)")
    p.add_argument("--accept-drop", action="store_true", help="keep an int8/fp16 model that fails the gate")
    p.add_argument("--add-embedding", action="store_true",
                   help="with an edgetag .onnx file of any precision: write it with an 'embedding' output (what its "
                        "classifier reads) beside 'logits', which stay bit-identical, resealed (for edgetag enroll)")
    p.add_argument("--add-input-gain", action="store_true",
                   help="with a stateful edgetag .onnx file (fp32 or int8): write it with the quiet-input gain in its "
                        "graph (input whose loudest frame of the last second is quiet is raised before the network "
                        "reads it; loud input stays bit-identical), resealed")
    p.add_argument("--name", help="model name in the card (default edgetag-KIND)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17; default 18)")
    p.add_argument("--stream-atol", type=float, default=STREAM_ATOL,
                   help=f"stateful models: max abs logit difference of streaming vs offline (default {STREAM_ATOL:g}); "
                        "raise it a little for models whose logits are large, where float32 summation order alone nears it")
    p.add_argument("--frames-per-call", type=int, default=None, metavar="N",
                   help="stateful models: new frames the runtime gathers before each model call (default 1). Each "
                        "frame more adds one hop of latency and saves calls: the per-call overhead dominates small "
                        "models (the pitch recipe's README has the curve)")
    p.set_defaults(func=cmd_export)
