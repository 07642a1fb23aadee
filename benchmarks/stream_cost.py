"""CPU per second of audio of a pitch model's stream, with the engine's bound calls and without them.

    python benchmarks/stream_cost.py --model pitch-small --model OTHER.onnx \
        [--eval /work/data/pitch/renders.jsonl --eval-root /work/data] [--rounds 5]

Each model streams the clips as ``listen`` runs it (`edgetag.runtime.engine.Engine`, 10 ms pushes, every
decision read with its frame's period by a `PitchReader`), once with its calls of the card's frames per
call through ONNX Runtime's I/O binding (`BoundCalls`, what the engine does) and once through
`OnnxModel.run` (what it did before), round-robin over ``--rounds`` rounds; process CPU time, one thread.
It prints each variant's median [min-max] and its ratio to the first row. Clips: the first 12 test renders
of ``--eval`` when given, else 30 s of a sung-like tone with vibrato and noise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def _clips(manifest: str | None, root: str | None, sample_rate: int) -> list[np.ndarray]:
    if manifest:
        from types import SimpleNamespace

        from edgetag.benchmarks.pitch_rows import PitchEvalSet

        data = PitchEvalSet(SimpleNamespace(eval_manifest=manifest, eval_root=root, eval_split="test"))
        return [wave for _, wave, _ in data.clips[:12]]
    t = np.arange(30 * sample_rate) / sample_rate
    f0 = 220.0 * 2 ** (0.3 * np.sin(2 * np.pi * 5.0 * t) / 12)
    tone = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / sample_rate) / k for k in range(1, 6))
    noise = np.random.default_rng(0).standard_normal(len(t))
    return [(0.2 * tone / np.abs(tone).max() + 0.002 * noise).astype(np.float32)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="built-in name or .onnx path (repeatable)")
    ap.add_argument("--eval", default=None, help="the pitch recipe's renders.jsonl (default: a synthetic clip)")
    ap.add_argument("--eval-root", default=None)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)

    from edgetag.runtime.engine import Engine
    from edgetag.runtime.model import OnnxModel, load_model
    from edgetag.runtime.models import resolve_model
    from edgetag.runtime.pitch import PitchReader

    models = [(name, load_model(resolve_model(name), threads=1)) for name in args.model]
    clips = _clips(args.eval, args.eval_root, models[0][1].card.frontend.sample_rate)
    seconds = sum(len(c) for c in clips) / models[0][1].card.frontend.sample_rate

    def stream(model: OnnxModel, bound: bool) -> None:
        hop = model.card.frontend.hop_length
        for wave in clips:
            engine = Engine(model, bound_calls=bound)  # False: every call through OnnxModel.run
            read = PitchReader(sample_rate=model.card.frontend.sample_rate)
            for k in range(0, len(wave), hop):
                for d in engine.push(wave[k:k + hop]):
                    read(d.scores, d.audio)
            for d in engine.flush():
                read(d.scores, d.audio)

    variants = [(f"{name}, {'bound calls' if bound else 'OnnxModel.run'}", model, bound)
                for name, model in models for bound in (True, False)]
    for _, model, bound in variants:  # warm-up
        stream(model, bound)
    times: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    for r in range(args.rounds):
        order = variants[r % len(variants):] + variants[: r % len(variants)]  # rotate the start each round
        for label, model, bound in order:
            start = time.process_time()
            stream(model, bound)
            times[label].append(1e3 * (time.process_time() - start) / seconds)
    first = float(np.median(times[variants[0][0]]))
    print(f"{len(clips)} clip(s), {seconds:.0f} s of audio, {args.rounds} rounds, one thread; CPU ms per second of audio")
    for label, values in times.items():
        median = float(np.median(values))
        print(f"{label:<60} {median:6.2f} [{min(values):.2f}-{max(values):.2f}]  {median / first:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
