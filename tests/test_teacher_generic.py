"""Generic (TorchScript / ONNX file) teachers with a declared contract, and teacher ensembles."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # training code: skipped in the torch-free runtime environment

# torch.jit.script/save are deprecated in recent torch; the tests still need them to make TorchScript files.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

from edgetag.training.teachers import (
    Teacher,
    TeacherOutput,
    get_teacher,
    known_teachers,
)
from edgetag.training.teachers.ensemble import EnsembleTeacher
from edgetag.training.teachers.generic import (
    ContractError,
    OnnxTeacher,
    TorchScriptTeacher,
    file_sha256,
)

SR = 8000
WINDOW = 4000  # 0.5 s windows at 8 kHz
N_LABELS = 5
EMB = 16


class TinyClip(torch.nn.Module):
    """Clip-level model: [n, 4000] -> (logits [n, 5], embedding [n, 16])."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(0.05 * torch.randn(WINDOW, EMB, generator=gen))
        self.b1 = torch.nn.Parameter(0.1 * torch.randn(EMB, generator=gen))
        self.w2 = torch.nn.Parameter(torch.randn(EMB, N_LABELS, generator=gen))
        self.b2 = torch.nn.Parameter(torch.tensor([2.0, -1.0, 0.5, 0.0, -3.0]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(x @ self.w1 + self.b1)
        return h @ self.w2 + self.b2, h


class TinyFrames(torch.nn.Module):
    """Frame-level model: [b, n] -> {"probs": [b, frames, 3]} with 400-sample frames every 200."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(400, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        frames = x.unfold(1, 400, 200)
        return {"probs": torch.sigmoid(self.proj(frames))}


def _waves(batch: int = 2, seconds: float = 1.3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(batch, round(seconds * SR), generator=gen)


@pytest.fixture(scope="module")
def tiny() -> TinyClip:
    return TinyClip().eval()


@pytest.fixture()
def script_file(tiny: TinyClip, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(tiny), str(path))
    return path


def _onnx_file(model: TinyClip, path: Path) -> Path:
    """The same network built with onnx.helper (MatMul/Add/Relu), outputs "logits" and "embedding"."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(getattr(model, name).detach().numpy().astype(np.float32), name)
        for name in ("w1", "b1", "w2", "b2")
    ]
    nodes = [
        helper.make_node("MatMul", ["waveform", "w1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["embedding"]),
        helper.make_node("MatMul", ["embedding", "w2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["n", WINDOW])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", N_LABELS]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", EMB]),
        ],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def _expected(model: TinyClip, waves: torch.Tensor, hop: int = WINDOW) -> tuple[torch.Tensor, torch.Tensor]:
    count = 1 + (waves.shape[1] - WINDOW) // hop
    windows = waves[:, : (count - 1) * hop + WINDOW].unfold(1, WINDOW, hop)
    with torch.no_grad():
        logits, emb = model(windows.reshape(-1, WINDOW))
    return logits.reshape(waves.shape[0], count, -1), emb.reshape(waves.shape[0], count, -1)


def test_registered() -> None:
    assert {"torchscript", "onnx", "ensemble"} <= set(known_teachers())


def test_torchscript_matches_module(tiny: TinyClip, script_file: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\nd\ne\n")
    teacher = get_teacher(
        "torchscript", path=script_file, sample_rate=SR, labels=labels, window_seconds=0.5, hop_seconds=0.25,
        scores_output=0, embeddings_output=1, score_kind="logits",
    )  # fmt: skip
    assert isinstance(teacher, TorchScriptTeacher)
    assert teacher.labels == ["a", "b", "c", "d", "e"] and teacher.frame_rate == 4.0 and teacher.embedding_dim == EMB
    waves = _waves()
    out = teacher(waves)
    logits, emb = _expected(tiny, waves, hop=2000)
    assert out.scores.shape == (2, teacher.num_frames(waves.shape[1]), N_LABELS) == (2, 4, 5)
    torch.testing.assert_close(out.scores, logits)
    torch.testing.assert_close(out.embeddings, emb)
    assert teacher.weights_hash() == file_sha256(script_file)
    assert teacher(_waves(1, 0.4)).scores.shape == (1, 0, 5)


def test_onnx_matches_module(tiny: TinyClip, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = _onnx_file(tiny, tmp_path / "tiny.onnx")
    teacher = get_teacher(
        "onnx", path=path, sample_rate=SR, n_labels=N_LABELS, window_seconds=0.5,
        scores_output="logits", embeddings_output="embedding", max_windows=3,
    )  # fmt: skip
    assert isinstance(teacher, OnnxTeacher)
    assert teacher.labels[0] == "class_0" and teacher.frame_rate == 2.0 and teacher.score_kind == "logits"
    waves = _waves(3, 2.2)
    out = teacher(waves)
    logits, emb = _expected(tiny, waves)
    assert out.scores.shape == (3, 4, 5) and out.embeddings is not None and out.embeddings.shape == (3, 4, EMB)
    torch.testing.assert_close(out.scores, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.embeddings, emb, rtol=1e-5, atol=1e-5)
    # Scores only: no embeddings declared.
    plain = get_teacher("onnx", path=path, sample_rate=SR, n_labels=N_LABELS, window_seconds=0.5)
    assert plain(waves).embeddings is None and plain.embedding_dim == 0


def test_frame_level_torchscript(tmp_path: Path) -> None:
    model = TinyFrames().eval()
    path = tmp_path / "frames.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    teacher = get_teacher(
        "torchscript", path=path, sample_rate=SR, labels=["x", "y", "z"], frame_rate=SR / 200,
        frame_length=400, frame_hop=200, scores_output="probs", score_kind="probabilities",
    )  # fmt: skip
    waves = _waves(2, 0.3)
    out = teacher(waves)
    assert out.scores.shape == (2, teacher.num_frames(2400), 3) == (2, 11, 3)
    with torch.no_grad():
        torch.testing.assert_close(out.scores, model(waves)["probs"])


def test_contract_mismatches_are_clear(tiny: TinyClip, script_file: Path, tmp_path: Path) -> None:
    common = {"path": script_file, "sample_rate": SR, "window_seconds": 0.5}
    with pytest.raises(ContractError, match="declares 7 labels, the model outputs 5 scores"):
        get_teacher("torchscript", n_labels=7, **common)
    with pytest.raises(ContractError, match=r"rank 3 \[batch, frames, n_labels\].*got shape \(2, 5\)"):
        get_teacher("torchscript", path=script_file, sample_rate=SR, n_labels=5, frame_rate=2.0, probe_seconds=0.5)
    with pytest.raises(ContractError, match=r"embeddings output index 4 declared, but the model returns 2 outputs"):
        get_teacher("torchscript", n_labels=5, embeddings_output=4, **common)
    with pytest.raises(ContractError, match=r"score_kind='probabilities' declared"):
        get_teacher("torchscript", n_labels=5, score_kind="probabilities", **common)
    with pytest.raises(ValueError, match="declare labels= .* or n_labels="):
        get_teacher("torchscript", **common)
    with pytest.raises(ValueError, match="3 labels given but n_labels=5"):
        get_teacher("torchscript", labels=["a", "b", "c"], n_labels=5, **common)
    with pytest.raises(ValueError, match="window_seconds .* or a positive frame_rate"):
        get_teacher("torchscript", path=script_file, sample_rate=SR, n_labels=5)
    with pytest.raises(FileNotFoundError):
        get_teacher("torchscript", path=tmp_path / "missing.pt", sample_rate=SR, n_labels=5, window_seconds=0.5)
    if importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None:
        onnx_path = _onnx_file(tiny, tmp_path / "tiny.onnx")
        with pytest.raises(ContractError, match=r"'scores' declared.*\['logits', 'embedding'\]"):
            get_teacher("onnx", path=onnx_path, sample_rate=SR, n_labels=5, window_seconds=0.5, scores_output="scores")
        # A window length the graph does not accept is reported as a load-time failure of the probe.
        with pytest.raises(ContractError, match=r"failed on silence shaped \[2, 2000\]"):
            get_teacher("onnx", path=onnx_path, sample_rate=SR, n_labels=5, window_seconds=0.25)


# --------------------------------------------------------------------------- ensembles


class StubTeacher(Teacher):
    """A deterministic test teacher: per-window scores from the window's RMS times a per-label factor."""

    def __init__(
        self,
        name: str,
        labels: list[str],
        hop: int = 4000,
        factor: float = 1.0,
        score_kind: str = "probabilities",
        sample_rate: int = SR,
        embedding_dim: int = 2,
    ) -> None:
        super().__init__()
        self.name = name
        self.labels = labels
        self.hop = hop
        self.factor = factor
        self.score_kind = score_kind  # type: ignore[assignment]
        self.task = "multi_label"
        self.sample_rate = sample_rate
        self.frame_rate = sample_rate / hop
        self.embedding_dim = embedding_dim

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop

    def forward(self, waveforms: torch.Tensor) -> TeacherOutput:
        count = self.num_frames(waveforms.shape[1])
        windows = waveforms[:, : count * self.hop].reshape(waveforms.shape[0], count, self.hop)
        rms = windows.square().mean(-1, keepdim=True).sqrt()
        steps = torch.arange(1, len(self.labels) + 1, dtype=torch.float32)
        scores = torch.sigmoid(self.factor * rms * steps)
        emb = torch.cat([rms * self.factor, torch.full_like(rms, self.factor)], -1)[..., : self.embedding_dim]
        return TeacherOutput(scores=scores, embeddings=emb if self.embedding_dim else None)


def test_ensemble_weighted_mean_and_concat() -> None:
    a = StubTeacher("a", ["x", "y", "z"], factor=1.0)
    b = StubTeacher("b", ["x", "y", "z"], factor=3.0)
    ens = get_teacher("ensemble", members=[a, b], weights=[1.0, 3.0])
    assert isinstance(ens, EnsembleTeacher) and ens.weights == [0.25, 0.75]
    assert ens.labels == ["x", "y", "z"] and ens.embedding_dim == 4 and ens.embedding_slices == [(0, 2), (2, 4)]
    waves = _waves(2, 1.6)
    out, oa, ob = ens(waves), a(waves), b(waves)
    torch.testing.assert_close(out.scores, 0.25 * oa.scores + 0.75 * ob.scores)
    torch.testing.assert_close(out.embeddings, torch.cat([oa.embeddings, ob.embeddings], -1))
    assert ens.num_frames(waves.shape[1]) == out.scores.shape[1] == 3
    assert ens.identity() != get_teacher("ensemble", members=[a, b]).identity()


def test_ensemble_refusals() -> None:
    a = StubTeacher("a", ["x", "y"])
    with pytest.raises(ValueError, match="cannot average probabilities with logits"):
        EnsembleTeacher([a, StubTeacher("l", ["x", "y"], score_kind="logits")])
    with pytest.raises(ValueError, match="label sets differ.*labels='union'"):
        EnsembleTeacher([a, StubTeacher("b", ["x", "w"])])
    with pytest.raises(ValueError, match="same names, different order"):
        EnsembleTeacher([a, StubTeacher("b", ["y", "x"])])
    with pytest.raises(ValueError, match="different frame rates.*frame_rates='nearest'"):
        EnsembleTeacher([a, StubTeacher("b", ["x", "y"], hop=2000)])
    with pytest.raises(ValueError, match="different sample rates"):
        EnsembleTeacher([a, StubTeacher("b", ["x", "y"], sample_rate=16000)])
    with pytest.raises(ValueError, match="2 weights for 1 teachers"):
        EnsembleTeacher([a], [0.5, 0.5])
    with pytest.raises(ValueError, match="non-negative"):
        EnsembleTeacher([a, a], [1.0, -1.0])
    with pytest.raises(ValueError, match="collide"):
        EnsembleTeacher([a, a], label_maps=[{"x": "y"}, None])
    with pytest.raises(KeyError, match="unknown teacher"):
        get_teacher("ensemble", members=["no-such-teacher"])


def test_ensemble_union_intersection_and_maps() -> None:
    a = StubTeacher("a", ["x", "y", "only_a"], factor=1.0)
    b = StubTeacher("b", ["only_b", "y", "x"], factor=2.0)
    waves = _waves(1, 1.0)
    oa, ob = a(waves).scores, b(waves).scores
    union = EnsembleTeacher([a, b], [0.5, 0.5], labels="union")
    assert union.labels == ["x", "y", "only_a", "only_b"]
    assert union.label_sources == [["a", "b"], ["a", "b"], ["a"], ["b"]]
    s = union(waves).scores
    torch.testing.assert_close(s[..., 0], 0.5 * oa[..., 0] + 0.5 * ob[..., 2])
    torch.testing.assert_close(s[..., 1], 0.5 * oa[..., 1] + 0.5 * ob[..., 1])
    torch.testing.assert_close(s[..., 2], oa[..., 2])  # only one member knows it: its score unchanged
    torch.testing.assert_close(s[..., 3], ob[..., 0])
    inter = EnsembleTeacher([a, b], labels="intersection")
    assert inter.labels == ["x", "y"]
    torch.testing.assert_close(inter(waves).scores[..., 0], 0.5 * oa[..., 0] + 0.5 * ob[..., 2])
    mapped = EnsembleTeacher([a, b], labels="intersection", label_maps=[{"only_a": "shared"}, {"only_b": "shared"}])
    assert mapped.labels == ["x", "y", "shared"]
    torch.testing.assert_close(mapped(waves).scores[..., 2], 0.5 * oa[..., 2] + 0.5 * ob[..., 0])


def test_ensemble_nearest_frame_resampling() -> None:
    a = StubTeacher("a", ["x"], hop=4000)  # 2 frames/s
    b = StubTeacher("b", ["x"], hop=2000)  # 4 frames/s
    ens = EnsembleTeacher([a, b], frame_rates="nearest")
    assert ens.frame_rate == 2.0
    waves = _waves(1, 2.0)
    out, ob = ens(waves), b(waves)
    assert out.scores.shape == (1, 4, 1) == (1, ens.num_frames(waves.shape[1]), 1)
    # Output frame i starts at i / 2 s: b's frame 2 i starts there too.
    torch.testing.assert_close(out.scores, 0.5 * a(waves).scores + 0.5 * ob.scores[:, ::2])


@pytest.mark.skipif(importlib.util.find_spec("musicnn") is None, reason="musicnn wheel not installed")
def test_musicnn_mtt_msd_union_ensemble() -> None:
    """MTT and MSD tag sets differ (8 shared names), so the real ensemble uses labels='union'."""
    with pytest.raises(ValueError, match="label sets differ"):
        get_teacher("ensemble", members=["musicnn-mtt", "musicnn-msd"], weights=[0.5, 0.5])
    ens = get_teacher("ensemble", members=["musicnn-mtt", "musicnn-msd"], weights=[0.5, 0.5], labels="union")
    mtt, msd = ens.members
    shared = [x for x in mtt.labels if x in msd.labels]
    assert sorted(shared) == sorted(["guitar", "electronic", "rock", "ambient", "pop", "dance", "country", "metal"])
    assert len(ens.labels) == 92 and ens.labels[:50] == mtt.labels
    assert ens.embedding_dim == 400 and ens.frame_rate == mtt.frame_rate
    t = torch.arange(6 * 16000) / 16000
    gen = torch.Generator().manual_seed(0)
    wave = (0.2 * torch.sin(2 * torch.pi * 220 * t) * (1 + torch.sin(2 * torch.pi * 2 * t)) / 2)[None]
    wave = (wave + 0.01 * torch.randn(wave.shape, generator=gen)).float()
    out, om, os_ = ens(wave), mtt(wave), msd(wave)
    assert out.scores.shape == (1, 2, 92) and out.embeddings.shape == (1, 2, 400)
    assert bool(((out.scores >= 0) & (out.scores <= 1)).all())
    for j, label in enumerate(ens.labels):
        in_mtt, in_msd = label in mtt.labels, label in msd.labels
        a = om.scores[..., mtt.labels.index(label)] if in_mtt else None
        b = os_.scores[..., msd.labels.index(label)] if in_msd else None
        expected = 0.5 * a + 0.5 * b if in_mtt and in_msd else (a if in_mtt else b)
        torch.testing.assert_close(out.scores[..., j], expected)
    torch.testing.assert_close(out.embeddings, torch.cat([om.embeddings, os_.embeddings], -1))
