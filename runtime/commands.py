"""Runtime subcommands of ``edgetag``: ``presets`` and ``features``.

Each commands module of edgetag (this one, ``edgetag.training.commands``,
...) has a ``register(subparsers)`` that adds its subcommands; heavy imports
happen inside the command functions, so ``edgetag --help`` stays light.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def _demo_signal(sample_rate: int, seconds: float) -> np.ndarray:
    """A deterministic test signal: a rising chirp, a chord, a noise burst, silence."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    quarter = len(t) // 4
    top_hz = 0.8 * sample_rate / 2
    chirp_hz = 100.0 * (top_hz / 100.0) ** (t / (seconds / 4))  # exponential sweep over the first quarter
    chirp = 0.5 * np.sin(2 * np.pi * np.cumsum(chirp_hz) / sample_rate)
    chord = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0))
    noise = 0.3 * np.random.default_rng(0).standard_normal(len(t))
    signal = np.concatenate([chirp[:quarter], chord[quarter : 2 * quarter], noise[2 * quarter : 3 * quarter]])
    return np.concatenate([signal, np.zeros(len(t) - len(signal))]).astype(np.float32)


def cmd_presets(args: argparse.Namespace) -> int:
    from edgetag.runtime.frontend import PRESETS

    for name, config in PRESETS.items():
        print(f"{name:8s} {config.describe()}")
        if args.json:
            print(config.to_json(indent=2))
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from edgetag.runtime.frontend import FrontendConfig, StreamingFrontend

    config = FrontendConfig.preset(args.preset)
    if args.config:
        config = FrontendConfig.from_json(Path(args.config).read_text(), partial=True)
    if args.demo:
        samples, source = _demo_signal(config.sample_rate, args.seconds), f"demo signal ({args.seconds:g} s)"
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


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``presets`` and ``features``."""
    p = sub.add_parser("presets", help="list the named front-end presets")
    p.add_argument("--json", action="store_true", help="also print each preset's full config as JSON")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser(
        "features",
        help="stream an audio file (or a demo signal) through the C++ front end",
        description="Stream audio through the C++ front end in microphone-sized chunks and report the frames.",
    )
    p.add_argument("file", nargs="?", help="audio file (any format libsndfile reads; resampled to the preset's rate)")
    p.add_argument("--demo", action="store_true", help="use a built-in test signal instead of a file")
    p.add_argument("--seconds", type=float, default=4.0, help="length of the demo signal (default 4)")
    p.add_argument("--preset", default="default", help="front-end preset (see `edgetag presets`)")
    p.add_argument("--config", help="front-end config JSON file (overrides --preset)")
    p.add_argument("--chunk", type=int, default=512, help="samples per push (default 512)")
    p.add_argument("-o", "--output", help="save the frames as a .npy file")
    p.add_argument("--plot", help="save a spectrogram picture (PNG) of the frames")
    p.set_defaults(func=cmd_features)
