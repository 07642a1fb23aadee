"""The ``hf`` teacher: tiny random transformers models written with save_pretrained, never the hub."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers / huggingface_hub are imported
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from edgetag.training.teachers import get_teacher, known_teachers  # noqa: E402
from edgetag.training.teachers.huggingface import HuggingFaceTeacher, conv_frame_count  # noqa: E402

AST_LABELS = ["dog", "cat", "bird"]
AST_MAX_LENGTH = 64  # frames of 10 ms: 0.64 s windows
SR = 16000


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def ast_dir(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-ast")
    config = transformers.ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        num_mel_bins=32,
        max_length=AST_MAX_LENGTH,
        id2label=dict(enumerate(AST_LABELS)),
        label2id={label: i for i, label in enumerate(AST_LABELS)},
        problem_type="multi_label_classification",
    )
    transformers.ASTForAudioClassification(config).eval().save_pretrained(folder)
    transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=AST_MAX_LENGTH).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def w2v_dir(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("tiny-wav2vec2")
    config = transformers.Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=48,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    transformers.Wav2Vec2Model(config).eval().save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(folder)
    return folder


def _waves(batch: int, seconds: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, int(seconds * SR), generator=gen)


def test_registered() -> None:
    assert "hf" in known_teachers()
    with pytest.raises(ValueError, match="path="):
        get_teacher("hf")


def test_ast_logits_labels_and_direct_call(ast_dir) -> None:
    teacher = get_teacher("hf", path=ast_dir)
    assert isinstance(teacher, HuggingFaceTeacher)
    assert teacher.labels == AST_LABELS
    assert teacher.score_kind == "logits" and teacher.task == "multi_label"
    assert teacher.sample_rate == SR
    assert teacher.window_samples == AST_MAX_LENGTH * 160
    assert teacher.frame_rate == pytest.approx(SR / (AST_MAX_LENGTH * 160))
    assert teacher.embedding_dim == 32

    waves = _waves(2, 2.1 * AST_MAX_LENGTH * 160 / SR)  # 2 whole windows + a remainder
    assert teacher.num_frames(waves.shape[1]) == 2
    out = teacher(waves)
    assert out.scores.shape == (2, 2, 3)
    assert out.embeddings is not None and out.embeddings.shape == (2, 2, 32)

    # The same as running the feature extractor and the model by hand, window by window.
    fe = transformers.AutoFeatureExtractor.from_pretrained(ast_dir, local_files_only=True)
    model = transformers.AutoModelForAudioClassification.from_pretrained(ast_dir, local_files_only=True).eval()
    base = transformers.AutoModel.from_pretrained(ast_dir, local_files_only=True).eval()
    w = AST_MAX_LENGTH * 160
    for b in range(2):
        for t in range(2):
            window = waves[b, t * w : (t + 1) * w].numpy()
            inputs = fe(window, sampling_rate=SR, return_tensors="pt")
            with torch.no_grad():
                logits = model(**inputs).logits[0]
                last = base(**inputs).last_hidden_state[0]
            torch.testing.assert_close(out.scores[b, t], logits, atol=1e-5, rtol=1e-5)
            # layer=None: last_hidden_state (after AST's final layer norm), mean over tokens
            torch.testing.assert_close(out.embeddings[b, t], last.mean(dim=0), atol=1e-5, rtol=1e-5)


def test_ast_layer_selection_and_window(ast_dir) -> None:
    waves = _waves(1, 1.0, seed=3)
    fe = transformers.AutoFeatureExtractor.from_pretrained(ast_dir, local_files_only=True)
    model = transformers.AutoModelForAudioClassification.from_pretrained(ast_dir, local_files_only=True).eval()
    w = AST_MAX_LENGTH * 160
    with torch.no_grad():
        hidden = model(**fe(waves[0, :w].numpy(), sampling_rate=SR, return_tensors="pt"), output_hidden_states=True).hidden_states
    assert len(hidden) == 3
    embs = {}
    for layer in (0, 1, 2, -1):
        teacher = get_teacher("hf", path=ast_dir, layer=layer)
        emb = teacher(waves).embeddings
        assert emb is not None and emb.shape == (1, 1, 32)
        torch.testing.assert_close(emb[0, 0], hidden[layer][0].mean(dim=0), atol=1e-5, rtol=1e-5)
        embs[layer] = emb
    assert not torch.allclose(embs[0], embs[2])
    torch.testing.assert_close(embs[2], embs[-1])
    with pytest.raises(ValueError, match="out of range"):
        get_teacher("hf", path=ast_dir, layer=3)
    # A chosen window length; AST pads / cuts each window to max_length frames.
    half = get_teacher("hf", path=ast_dir, window_seconds=0.25)
    assert half.frame_rate == pytest.approx(4.0)
    assert half(waves).scores.shape == (1, 4, 3)
    # AST has no conv waveform encoder: no frame-level mode.
    with pytest.raises(ValueError, match="conv"):
        get_teacher("hf", path=ast_dir, pooling="frames")


def test_wav2vec2_frames_and_layers(w2v_dir) -> None:
    teacher = get_teacher("hf", path=w2v_dir, layer=2, pooling="frames")
    assert teacher.labels == [] and teacher.embedding_dim == 32
    assert teacher.frame_rate == pytest.approx(50.0)  # 320 samples per frame
    waves = _waves(2, 1.0, seed=5)
    frames = teacher.num_frames(waves.shape[1])
    assert frames == conv_frame_count(16000, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)) == 49
    out = teacher(waves)
    assert out.scores.shape == (2, 49, 0)
    assert out.embeddings is not None and out.embeddings.shape == (2, 49, 32)

    model = transformers.AutoModel.from_pretrained(w2v_dir, local_files_only=True).eval()
    fe = transformers.AutoFeatureExtractor.from_pretrained(w2v_dir, local_files_only=True)
    inputs = fe([w.numpy() for w in waves], sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        direct = model(input_values=inputs["input_values"], output_hidden_states=True)
    # The torch feature extractor matches the numpy one ...
    torch.testing.assert_close(teacher.model_inputs(waves)["input_values"], inputs["input_values"], atol=1e-5, rtol=1e-5)
    # ... and the embeddings are the chosen hidden state.
    torch.testing.assert_close(out.embeddings, direct.hidden_states[2], atol=1e-4, rtol=1e-4)
    last = get_teacher("hf", path=w2v_dir, pooling="frames")(waves).embeddings
    torch.testing.assert_close(last, direct.last_hidden_state, atol=1e-4, rtol=1e-4)

    # Clip-level (mean over frames per window), embeddings only.
    clip = get_teacher("hf", path=w2v_dir, window_seconds=0.5)
    out = clip(waves)
    assert out.scores.shape == (2, 2, 0) and out.embeddings is not None and out.embeddings.shape == (2, 2, 32)
    with torch.no_grad():
        first = model(input_values=clip.model_inputs(waves[:, :8000])["input_values"]).last_hidden_state.mean(dim=1)
    torch.testing.assert_close(out.embeddings[:, 0], first, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="window_seconds"):
        get_teacher("hf", path=w2v_dir, pooling="frames", window_seconds=1.0)


def test_frozen_and_short_input(w2v_dir) -> None:
    teacher = get_teacher("hf", path=w2v_dir, pooling="frames")
    teacher.train()
    assert not teacher.model.training
    assert all(not p.requires_grad for p in teacher.parameters())
    out = teacher(torch.zeros(1, 100))
    assert out.scores.shape == (1, 0, 0) and out.embeddings is not None and out.embeddings.shape == (1, 0, 32)
    assert teacher.identity().startswith("hf@")


def test_missing_directory_and_missing_config(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not found.*never downloads"):
        get_teacher("hf", path=tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="not found"):
        get_teacher("hf", path="MIT/ast-finetuned-audioset-10-10-0.4593")  # a hub id is not a directory
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        get_teacher("hf", path=tmp_path)
    with pytest.raises(NotADirectoryError):
        get_teacher("hf", path=tmp_path / "weights.bin")


class _RunsCode:
    """A pickle payload: unpickling it would call os.system (it must never be unpickled)."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_weights_that_carry_code_are_refused_in_one_line(w2v_dir, tmp_path, capsys) -> None:
    """A model folder whose pytorch_model.bin would run code: a ValueError naming the folder, and from
    `edgetag teach` one line and exit 1 (no traceback); the code never runs."""
    import shutil

    from edgetag.runtime.cli import main

    folder = tmp_path / "evil"
    shutil.copytree(w2v_dir, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()  # transformers prefers safetensors: leave it only the pickle
    marker = tmp_path / "PWNED"
    torch.save({"weight": _RunsCode(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"refused its pickled weights .* loading it could run code"):
        HuggingFaceTeacher(folder)
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "m.csv").write_text("path,labels,split\na.wav,x,train\n")
    code = main(["teach", "--teacher", "hf", "--teacher-option", f"path={folder}", "--data", str(tmp_path / "m.csv"),
                 "--out", str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "refused its pickled weights" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not marker.exists()
