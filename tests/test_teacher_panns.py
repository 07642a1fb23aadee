"""PANNs teachers: published state-dict layout, strict loading, outputs, parameter counts, front end.

No published checkpoint is downloaded: the tests save randomly initialised
networks in the published format (``{"model": state_dict}``) and load them
through the teacher, which is exactly the path a downloaded
``Cnn14_mAP=0.431.pth`` takes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # training code: skipped in the torch-free runtime environment

from edgetag.training.teachers import get_teacher, known_teachers
from edgetag.training.teachers.panns import (
    N_CLASSES,
    PUBLISHED_PARAMETER_COUNTS,
    PannsCheckpointError,
    PannsNet,
    PannsTeacher,
    learnable_parameter_count,
    mel_filterbank,
)


def _randomise(net: PannsNet, seed: int) -> PannsNet:
    """Random weights *and* batch-norm statistics, so a load that skipped anything would show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.startswith(("spectrogram_extractor", "logmel_extractor")) or not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith("running_mean"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=gen))
            elif name.startswith("bn0"):
                continue  # keep the log-mel scale sane for the layers after it
            elif tensor.dim() == 1:  # BN affine parameters and linear biases (conv weights: already random)
                tensor.add_(0.1 * torch.randn(tensor.shape, generator=gen))
    return net.eval()


def _save_published(net: PannsNet, path: Path) -> Path:
    torch.save({"model": net.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def cnn14_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PannsNet]:
    torch.manual_seed(0)
    net = _randomise(PannsNet("cnn14"), 1)
    return _save_published(net, tmp_path_factory.mktemp("panns") / "Cnn14_random.pth"), net


@pytest.fixture(scope="module")
def cnn6_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PannsNet]:
    torch.manual_seed(0)
    net = _randomise(PannsNet("cnn6"), 2)
    return _save_published(net, tmp_path_factory.mktemp("panns6") / "Cnn6_random.pth"), net


def _clip(batch: int = 2, seconds: float = 1.5, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(round(seconds * 32000)) / 32000
    tone = 0.3 * torch.sin(2 * torch.pi * 440 * t)
    return (tone + 0.05 * torch.randn(batch, t.numel(), generator=gen)).float()


def test_registered() -> None:
    names = known_teachers()
    assert "panns-cnn14" in names and "panns-cnn6" in names


def test_published_parameter_counts(cnn14_file: tuple[Path, PannsNet]) -> None:
    # The paper: CNN14 80.8 M parameters, CNN6 4.8 M (the frozen STFT/mel front end not counted).
    cnn14, cnn6 = cnn14_file[1], PannsNet("cnn6")
    assert learnable_parameter_count(cnn14) == PUBLISHED_PARAMETER_COUNTS["cnn14"] == 80_753_615
    assert round(learnable_parameter_count(cnn14) / 1e6, 1) == 80.8
    assert learnable_parameter_count(cnn6) == PUBLISHED_PARAMETER_COUNTS["cnn6"] == 4_837_455
    assert round(learnable_parameter_count(cnn6) / 1e6, 1) == 4.8
    # Front end as stored in the checkpoints: 2 x [513, 1, 1024] DFT kernels + [513, 64] mel matrix.
    front = sum(p.numel() for p in cnn14.parameters()) - learnable_parameter_count(cnn14)
    assert front == 2 * 513 * 1024 + 513 * 64


def test_state_dict_keys_match_published_layout(cnn14_file: tuple[Path, PannsNet]) -> None:
    keys = cnn14_file[1].state_dict()
    shapes = {k: tuple(v.shape) for k, v in keys.items()}
    assert shapes["spectrogram_extractor.stft.conv_real.weight"] == (513, 1, 1024)
    assert shapes["spectrogram_extractor.stft.conv_imag.weight"] == (513, 1, 1024)
    assert shapes["logmel_extractor.melW"] == (513, 64)
    assert shapes["bn0.running_mean"] == (64,)
    assert shapes["conv_block1.conv1.weight"] == (64, 1, 3, 3)
    assert shapes["conv_block6.conv2.weight"] == (2048, 2048, 3, 3)
    assert shapes["conv_block6.bn2.running_var"] == (2048,)
    assert "conv_block6.bn2.num_batches_tracked" in shapes
    assert shapes["fc1.weight"] == (2048, 2048)
    assert shapes["fc_audioset.weight"] == (527, 2048)
    assert len(keys) == 3 + 5 + 6 * 12 + 4  # front end, bn0, 6 blocks x (2 convs + 2 BNs x 5), fc1, fc_audioset
    cnn6 = {k: tuple(v.shape) for k, v in PannsNet("cnn6").state_dict().items()}
    assert cnn6["conv_block4.conv1.weight"] == (512, 256, 5, 5)
    assert cnn6["fc1.weight"] == (512, 512) and cnn6["fc_audioset.weight"] == (527, 512)
    assert not any(k.startswith("conv_block5") or ".conv2." in k for k in cnn6)


def test_cnn14_loads_strict_and_runs(cnn14_file: tuple[Path, PannsNet]) -> None:
    path, net = cnn14_file
    teacher = get_teacher("panns-cnn14", checkpoint=path, window_seconds=1.0, hop_seconds=0.5)
    assert isinstance(teacher, PannsTeacher)
    loaded = teacher.net.state_dict()
    for key, value in net.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert teacher.sample_rate == 32000 and teacher.frame_rate == 2.0
    assert teacher.score_kind == "probabilities" and teacher.task == "multi_label"
    assert teacher.embedding_dim == 2048 and len(teacher.labels) == N_CLASSES
    assert teacher.labels[0] == "class_0" and teacher.labels[-1] == "class_526"

    wave = _clip(1, 1.2)
    assert teacher.num_frames(wave.shape[1]) == 1 and teacher.num_frames(48000) == 2
    out = teacher(wave)
    assert out.scores.shape == (1, 1, 527)
    assert out.embeddings is not None and out.embeddings.shape == (1, 1, 2048)
    assert bool(((out.scores >= 0) & (out.scores <= 1)).all())
    assert bool((out.embeddings >= 0).all())  # ReLU output of fc1
    assert float(out.scores.std()) > 0
    # Window 0 covers samples [0, window): same as the bare network on that slice.
    with torch.no_grad():
        logits, emb = net(wave[:, :32000])
    torch.testing.assert_close(out.scores[:, 0], torch.sigmoid(logits), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.embeddings[:, 0], emb, rtol=1e-4, atol=1e-4)
    # Frozen: train() leaves it in eval mode.
    teacher.train()
    assert not teacher.net.training


def test_cnn6_outputs_logits_and_windowing(cnn6_file: tuple[Path, PannsNet]) -> None:
    path, _ = cnn6_file
    probs_teacher = get_teacher("panns-cnn6", checkpoint=path, window_seconds=0.5)
    logits_teacher = get_teacher("panns-cnn6", checkpoint=path, window_seconds=0.5, score_kind="logits")
    wave = _clip(1, 1.2, seed=3)
    probs, logits = probs_teacher(wave), logits_teacher(wave)
    assert probs.scores.shape == (1, 2, 527) and probs.embeddings is not None
    assert probs.embeddings.shape == (1, 2, 512) and probs_teacher.embedding_dim == 512
    torch.testing.assert_close(probs.scores, torch.sigmoid(logits.scores))
    assert bool(((probs.scores >= 0) & (probs.scores <= 1)).all())
    assert probs_teacher.num_frames(0) == 0 and probs_teacher.num_frames(15999) == 0
    # pad_last keeps the trailing 0.2 s as a zero-padded window.
    padded = get_teacher("panns-cnn6", checkpoint=path, window_seconds=0.5, pad_last=True)
    assert padded.num_frames(wave.shape[1]) == 3 and padded.num_frames(100) == 1
    out = padded(wave)
    assert out.scores.shape == (1, 3, 527)
    torch.testing.assert_close(out.scores[:, :2], probs.scores)
    assert padded(_clip(1, 0.2)).scores.shape == (1, 1, 527)
    assert probs_teacher(_clip(1, 0.2)).scores.shape == (1, 0, 527)


def test_wrong_keys_are_named(cnn6_file: tuple[Path, PannsNet], tmp_path: Path) -> None:
    path, net = cnn6_file
    state = net.state_dict()
    state.pop("fc1.bias")
    state["fc_extra.weight"] = torch.zeros(3)
    bad = tmp_path / "bad.pth"
    torch.save({"model": state}, bad)
    with pytest.raises(PannsCheckpointError, match=r"missing keys: fc1\.bias.*unexpected keys: fc_extra\.weight"):
        get_teacher("panns-cnn6", checkpoint=bad, window_seconds=1.0)
    # A CNN6 checkpoint is not a CNN14 one: the message names what is missing and unexpected.
    with pytest.raises(PannsCheckpointError, match=r"not a PANNs cnn14 state dict; missing keys: conv_block1\.bn2\.bias.*\(40 in all\)"):
        get_teacher("panns-cnn14", checkpoint=path, window_seconds=1.0)
    # Right keys, wrong shapes (e.g. a fine-tuned head with another class count).
    state = net.state_dict()
    state["fc_audioset.weight"] = torch.zeros(10, 512)
    state["fc_audioset.bias"] = torch.zeros(10)
    torch.save({"model": state}, bad)
    with pytest.raises(PannsCheckpointError, match=r"fc_audioset\.weight \(10, 512\) \(expected \(527, 512\)\)"):
        get_teacher("panns-cnn6", checkpoint=bad, window_seconds=1.0)
    # ... which loads when the class count is declared.
    teacher = get_teacher("panns-cnn6", checkpoint=bad, window_seconds=1.0, classes_num=10)
    assert len(teacher.labels) == 10
    torch.save([1, 2, 3], bad)
    with pytest.raises(PannsCheckpointError, match="published PANNs format"):
        get_teacher("panns-cnn6", checkpoint=bad, window_seconds=1.0)


def test_checkpoint_required_and_alternative_layouts(cnn6_file: tuple[Path, PannsNet], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"checkpoint=.*Cnn14_mAP=0\.431\.pth.*zenodo"):
        get_teacher("panns-cnn14")
    with pytest.raises(FileNotFoundError, match="zenodo"):
        get_teacher("panns-cnn6", checkpoint=tmp_path / "nope.pth")
    path, net = cnn6_file
    reference = get_teacher("panns-cnn6", checkpoint=path, window_seconds=1.0)
    bare = tmp_path / "bare.pth"
    torch.save(net.state_dict(), bare)
    prefixed = tmp_path / "prefixed.pth"
    torch.save({"model": {f"module.{k}": v for k, v in net.state_dict().items()}, "iteration": 3}, prefixed)
    no_counters = tmp_path / "old.pth"
    torch.save({"model": {k: v for k, v in net.state_dict().items() if "num_batches_tracked" not in k}}, no_counters)
    for other in (bare, prefixed, no_counters):
        assert get_teacher("panns-cnn6", checkpoint=other, window_seconds=1.0).weights_hash() == reference.weights_hash()
    with pytest.raises(ValueError, match="at least"):
        get_teacher("panns-cnn14", checkpoint=path, window_seconds=0.1)


def test_labels_csv(cnn6_file: tuple[Path, PannsNet], tmp_path: Path) -> None:
    path, _ = cnn6_file
    labels_csv = tmp_path / "class_labels_indices.csv"
    with open(labels_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "mid", "display_name"])
        writer.writerow([0, "/m/09x0r", "Speech"])
        writer.writerow([1, "/m/05zppz", "Male speech, man speaking"])
        for i in range(2, N_CLASSES):
            writer.writerow([i, f"/m/{i}", f"Name {i}"])
    teacher = get_teacher("panns-cnn6", checkpoint=path, window_seconds=1.0, labels=labels_csv)
    assert teacher.labels[:2] == ["Speech", "Male speech, man speaking"] and len(teacher.labels) == 527
    with pytest.raises(ValueError, match="3 labels given for 527 classes"):
        get_teacher("panns-cnn6", checkpoint=path, window_seconds=1.0, labels=["a", "b", "c"])


def test_front_end_matches_librosa_conventions() -> None:
    """Mel matrix: values recorded from ``librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64,
    fmin=50, fmax=14000)`` (librosa 0.11; importing librosa here would cost seconds).
    STFT: an independent numpy rfft of reflection-padded, periodic-Hann-windowed frames."""
    mel = mel_filterbank(32000, 1024, 64, 50.0, 14000.0)
    assert mel.shape == (64, 513)
    assert float(mel.sum()) == pytest.approx(2.048126220703125, rel=1e-6)
    recorded = {0: (2, 5, 0.01501181349158287), 1: (4, 6, 0.017933569848537445),
                31: (68, 75, 0.007326290477067232), 63: (401, 447, 0.0013412120752036572)}  # fmt: skip
    for band, (first, last, peak) in recorded.items():
        nonzero = np.nonzero(mel[band])[0]
        assert (nonzero[0], nonzero[-1]) == (first, last)
        assert float(mel[band].max()) == pytest.approx(peak, rel=1e-6)

    net = PannsNet("cnn6")
    x = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float64)
    padded = np.pad(x, 512, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, 1024)[::320]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    expected = 10 * np.log10(np.maximum(power @ mel.T.astype(np.float64), 1e-10))
    with torch.no_grad():
        got = net.logmel(torch.from_numpy(x.astype(np.float32))[None])[0, 0].numpy()
    assert got.shape == expected.shape == (1 + 16000 // 320, 64)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)  # dB


def test_teacher_identity_changes_with_weights(cnn6_file: tuple[Path, PannsNet], tmp_path: Path) -> None:
    path, net = cnn6_file
    a = get_teacher("panns-cnn6", checkpoint=path, window_seconds=1.0)
    state = net.state_dict()
    state["fc1.bias"] = state["fc1.bias"] + 1
    other = tmp_path / "other.pth"
    torch.save({"model": state}, other)
    b = get_teacher("panns-cnn6", checkpoint=other, window_seconds=1.0)
    assert a.identity() != b.identity() and a.identity().startswith("panns-cnn6@")
