"""musicnn teachers: the TF checkpoint reader and the torch port against the original tagger.

The fixtures under ``tests/fixtures/musicnn`` were made once by
``training/teachers/musicnn_fixtures/make_fixtures.py`` with the ORIGINAL
musicnn (TensorFlow 2.20 + tf-keras, in a separate environment). The clips
themselves are not stored: the tests regenerate them with the script's
`synth_clip` and check their SHA-256 first.

Tolerances, and why:
* network on the original's own (float16) features: taggram max abs <= 1e-4;
* waveform in, with ``float16_features=True`` (the original's arithmetic):
  taggram max abs <= 1e-4;
* waveform in, float32 features (the default, deliberately not float16): the
  features differ from the original's by float16 rounding (<= 2.5e-3), so the
  taggram is only held to 2e-3 (measured: 4e-4 at most).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # training code: skipped in the torch-free runtime environment

from edgetag.training.teachers import get_teacher, known_teachers
from edgetag.training.teachers.tf_checkpoint import CheckpointError, TFCheckpoint, crc32c, read_checkpoint

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "musicnn"

def _load_fixture_script():
    """The fixture script as a module (it imports only numpy at module level; no TensorFlow)."""
    path = REPO / "training" / "teachers" / "musicnn_fixtures" / "make_fixtures.py"
    spec = importlib.util.spec_from_file_location("_musicnn_make_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_script = _load_fixture_script()
CLIPS, clip_sha256, synth_clip = _script.CLIPS, _script.clip_sha256, _script.synth_clip

HAVE_WHEEL = importlib.util.find_spec("musicnn") is not None
needs_wheel = pytest.mark.skipif(
    not HAVE_WHEEL,
    reason="the musicnn wheel is not installed (`pip install --no-deps musicnn`): its TF checkpoints are the weights under test",
)
TEACHERS = {"MTT_musicnn": "musicnn-mtt", "MSD_musicnn": "musicnn-msd", "MTT_vgg": "musicnn-mtt-vgg", "MSD_vgg": "musicnn-msd-vgg"}
QUIET_CLIPS = [name for name in CLIPS if name != "loud"]


# --------------------------------------------------------------------------- a tiny bundle writer

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mask(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _block(entries: list[tuple[bytes, bytes]], restart_every: int = 2) -> bytes:
    body, restarts, last = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_every == 0:
            restarts.append(len(body))
        else:
            while shared < min(len(key), len(last)) and key[shared] == last[shared]:
                shared += 1
        body += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        last = key
    restarts = restarts or [0]
    return bytes(body) + struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))


def _write_bundle(prefix: str, tensors: dict[str, np.ndarray]) -> None:
    """Write ``tensors`` as a TF V2 checkpoint (one shard), as TensorFlow lays it out."""
    dtypes = {"<f4": 1, "<f8": 2, "<i4": 3, "<i8": 9, "|b1": 10, "<f2": 19}
    data, entries = bytearray(), [(b"", b"\x08\x01" + b"\x1a\x02\x08\x01")]  # header: 1 shard, version 1
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])  # (ascontiguousarray would turn a scalar into shape (1,))
        raw = arr.tobytes()
        shape = b"".join(b"\x12" + _varint(len(d)) + d for d in (b"\x08" + _varint(s) for s in arr.shape))
        proto = b"\x08" + _varint(dtypes[arr.dtype.str]) + b"\x12" + _varint(len(shape)) + shape
        proto += b"\x20" + _varint(len(data)) + b"\x28" + _varint(len(raw)) + b"\x35" + struct.pack("<I", _mask(crc32c(raw)))
        entries.append((name.encode(), proto))
        data += raw
    table = bytearray()

    def put(block: bytes) -> bytes:
        handle = _varint(len(table)) + _varint(len(block))
        table.extend(block + b"\x00" + struct.pack("<I", _mask(crc32c(block + b"\x00"))))
        return handle

    handles = [put(_block(entries[i : i + 3])) for i in range(0, len(entries), 3)]  # several data blocks
    index = _block([(entries[min(i + 2, len(entries) - 1)][0], h) for i, h in zip(range(0, len(entries), 3), handles)], 1)
    meta_handle = put(_block([]))
    index_handle = put(index)
    footer = (meta_handle + index_handle).ljust(40, b"\x00") + struct.pack("<Q", 0xDB4775248B80FB57)
    Path(prefix + ".index").write_bytes(bytes(table) + footer)
    Path(prefix + ".data-00000-of-00001").write_bytes(bytes(data))


def _toy_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "conv2d/kernel": rng.standard_normal((7, 38, 1, 4)).astype(np.float32),
        "conv2d/bias": rng.standard_normal(4).astype(np.float32),
        "dense/kernel": rng.standard_normal((3, 5)).astype(np.float64),
        "global_step": np.array(1234567890123, dtype=np.int64),
        "half": rng.standard_normal((2, 3)).astype(np.float16),
        "flags": np.array([True, False, True]),
        "counts": np.arange(-3, 3, dtype=np.int32),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }


@pytest.fixture()
def toy_checkpoint(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    tensors = _toy_tensors()
    folder = tmp_path / "ckpt"
    folder.mkdir()
    _write_bundle(str(folder) + os.sep, tensors)  # musicnn's empty base name: ckpt/.index, ckpt/.data-...
    return folder, tensors


# --------------------------------------------------------------------------- checkpoint reader

def test_crc32c_known_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert crc32c(b"") == 0


def test_reader_round_trip(toy_checkpoint: tuple[Path, dict[str, np.ndarray]]) -> None:
    folder, tensors = toy_checkpoint
    for where in (folder, str(folder) + os.sep, folder / ".index"):
        got = read_checkpoint(where, verify=True)
        assert sorted(got) == sorted(tensors)
        for name, expected in tensors.items():
            assert got[name].dtype == expected.dtype and got[name].shape == expected.shape, name
            np.testing.assert_array_equal(got[name], expected)
    ckpt = TFCheckpoint(folder)
    assert ckpt.read("global_step") == 1234567890123
    with pytest.raises(KeyError, match="no variable 'nope'"):
        ckpt.read("nope")


def _expect_index_error(folder: Path, data: bytes, match: str) -> None:
    (folder / ".index").write_bytes(data)
    with pytest.raises(CheckpointError, match=match):
        TFCheckpoint(folder)


def test_reader_rejects_corrupt_index(toy_checkpoint: tuple[Path, dict[str, np.ndarray]]) -> None:
    folder, _ = toy_checkpoint
    good = (folder / ".index").read_bytes()
    _expect_index_error(folder, b"", "shorter than a table footer")
    _expect_index_error(folder, good[:-1], "magic number")
    _expect_index_error(folder, good[:-100], "magic number")
    # Footer intact but the blocks it points to are gone: a truncated copy with its tail re-attached.
    _expect_index_error(folder, good[:20] + good[-48:], "runs past the end|checksum")
    flipped = bytearray(good)
    flipped[12] ^= 0x40  # inside the first data block
    _expect_index_error(folder, bytes(flipped), "checksum mismatch")
    (folder / ".index").unlink()
    with pytest.raises(CheckpointError, match="no TensorFlow checkpoint index"):
        TFCheckpoint(folder)


def test_reader_rejects_truncated_or_corrupt_data(toy_checkpoint: tuple[Path, dict[str, np.ndarray]]) -> None:
    folder, _ = toy_checkpoint
    data_path = folder / ".data-00000-of-00001"
    good = data_path.read_bytes()
    data_path.write_bytes(good[:-8])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(folder)
    corrupt = bytearray(good)
    corrupt[5] ^= 0x01  # inside conv2d/bias (the first variable in key order)
    data_path.write_bytes(bytes(corrupt))
    read_checkpoint(folder)  # no CRC check by default: the flip goes unnoticed
    with pytest.raises(CheckpointError, match="checksum mismatch for variable 'conv2d/bias'"):
        read_checkpoint(folder, verify=True)


@needs_wheel
def test_reader_on_the_wheel_checkpoints(tmp_path: Path) -> None:
    from edgetag.training.teachers.musicnn import find_musicnn_checkpoint

    expected = {"MTT_musicnn": (150, 792_079), "MSD_musicnn": (150, 792_079), "MTT_vgg": (86, 607_030), "MSD_vgg": (86, 607_030)}
    for model, (n_vars, n_params) in expected.items():
        ckpt = TFCheckpoint(find_musicnn_checkpoint(model))
        assert len(ckpt.entries) == n_vars
        weights = [n for n in ckpt.names() if "Adam" not in n and n not in ("beta1_power", "beta2_power")]
        assert sum(int(np.prod(ckpt.entries[n].shape)) for n in weights) == n_params
    # The model variables' CRC32Cs (pure Python, ~1 s; the Adam slots would triple it): the
    # reader's offsets and sizes are right.
    ckpt = TFCheckpoint(find_musicnn_checkpoint("MTT_musicnn"))
    tensors = {n: ckpt.read(n, verify=True) for n in ckpt.names() if "Adam" not in n}
    assert tensors["conv2d/kernel"].shape == (7, 38, 1, 204) and tensors["conv2d/kernel"].dtype == np.float32
    assert tensors["dense_1/kernel"].shape == (200, 50)
    # A truncated real index fails clearly.
    copy = tmp_path / "MTT_musicnn"
    shutil.copytree(find_musicnn_checkpoint("MTT_musicnn"), copy)
    index = (copy / ".index").read_bytes()
    (copy / ".index").write_bytes(index[: len(index) // 2])
    with pytest.raises(CheckpointError, match="magic number"):
        TFCheckpoint(copy)


# --------------------------------------------------------------------------- fixtures

def _clip(name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Regenerated clip (float32 in [-1, 1]) and its fixture."""
    fx = dict(np.load(FIXTURES / f"clip_{name}.npz"))
    spec = json.loads(str(fx["spec"]))
    assert spec == CLIPS[name], f"fixture of clip {name!r} was made from another spec; rerun make_fixtures.py"
    samples = synth_clip(spec)
    assert clip_sha256(samples) == str(fx["sha256"]), f"clip {name!r} does not regenerate bit-exactly (numpy differs?)"
    return samples.astype(np.float32) / 32768.0, fx


def _model_fixture(model: str) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / f"{model}.npz"))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small convolutions on a shared 2-core machine: one thread is faster than waiting for a second."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def teachers() -> dict[str, object]:
    if not HAVE_WHEEL:
        pytest.skip("the musicnn wheel is not installed (`pip install --no-deps musicnn`)")
    return {model: get_teacher(name) for model, name in TEACHERS.items()}


def _max_abs(a: torch.Tensor | np.ndarray, b: np.ndarray) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else a
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


# --------------------------------------------------------------------------- the port

@needs_wheel
def test_registry_and_metadata(teachers: dict) -> None:
    assert {"musicnn-mtt", "musicnn-msd", "musicnn-mtt-vgg", "musicnn-msd-vgg"} <= set(known_teachers())
    for model, teacher in teachers.items():
        fx = _model_fixture(model)
        assert teacher.name == TEACHERS[model]
        assert teacher.labels == [str(x) for x in fx["labels"]]  # the original's order
        assert teacher.sample_rate == 16000 and teacher.task == "multi_label" and teacher.score_kind == "probabilities"
        assert teacher.frame_rate == pytest.approx(16000 / (187 * 256))
        assert teacher.embedding_dim == (256 if "vgg" in model else 200)
    assert teachers["MTT_musicnn"].weights_hash() != teachers["MSD_musicnn"].weights_hash()


@needs_wheel
@pytest.mark.parametrize("model", list(TEACHERS))
def test_network_matches_original_on_its_features(teachers: dict, model: str) -> None:
    """The original's float16 log-mel through the port: the network itself, 1e-4."""
    teacher, fx = teachers[model], _model_fixture(model)
    for name in QUIET_CLIPS:
        _, clip_fx = _clip(name)
        logmel = torch.from_numpy(clip_fx["logmel_f16"].astype(np.float32))[None]
        patches = teacher.patches(logmel)[0]
        with torch.no_grad():
            if "vgg" in model:
                logits, pool5 = teacher.net(patches)
                inner = [(pool5, fx[f"{name}/pool5"])]
            else:
                logits, penultimate, max_pool, mean_pool = teacher.net(patches, return_pools=True)
                inner = [(max_pool, fx[f"{name}/max_pool"]), (mean_pool, fx[f"{name}/mean_pool"])]
                inner.append((penultimate[:1], fx[f"{name}/penultimate0"][None]))
        # Inner activations reach ~30: float32 summation order (TF vs torch) shows at ~1e-5 relative.
        for ours, theirs in inner:
            np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-4, atol=1e-4, err_msg=name)
        assert _max_abs(torch.sigmoid(logits), fx[f"{name}/taggram"]) <= 1e-4, name


@needs_wheel
@pytest.mark.parametrize("model", ["MTT_musicnn", "MSD_musicnn"])
def test_waveform_in_with_original_float16_features(teachers: dict, model: str) -> None:
    """End to end (waveform -> features -> taggram) with the original's float16 feature arithmetic."""
    teacher, fx = teachers[model], _model_fixture(model)
    teacher.float16_features = True
    try:
        for name in QUIET_CLIPS:
            audio, clip_fx = _clip(name)
            x = torch.from_numpy(audio)[None]
            with torch.no_grad():
                feats = teacher.logmel(x)[0].numpy()
                out = teacher(x)
            ref = clip_fx["logmel_f16"].astype(np.float32)
            differ = feats != ref
            # Our float32 mel and librosa's round to different float16 values in a few bins (1 ulp).
            assert differ.mean() < 2e-3 and _max_abs(feats, ref) <= 2**-9, name
            assert out.scores.shape == (1,) + fx[f"{name}/taggram"].shape
            assert _max_abs(out.scores[0], fx[f"{name}/taggram"]) <= 1e-4, name
    finally:
        teacher.float16_features = False


@needs_wheel
@pytest.mark.parametrize("model", list(TEACHERS))
def test_waveform_in_float32_features(teachers: dict, model: str) -> None:
    """The default path: float32 features (not float16, on purpose) close to the original's."""
    teacher, fx = teachers[model], _model_fixture(model)
    # The VGG front end is the same code: one clip is enough there (keeps the suite fast).
    for name in QUIET_CLIPS if "musicnn" in model else QUIET_CLIPS[:1]:
        audio, clip_fx = _clip(name)
        x = torch.from_numpy(audio)[None]
        with torch.no_grad():
            feats = teacher.logmel(x)[0].numpy()
            out = teacher(x)
        if "logmel_f32" in clip_fx:  # librosa's float32 mel, float64 log: no float16 in the way
            assert _max_abs(feats, clip_fx["logmel_f32"]) <= 1e-5, name
        assert _max_abs(feats, clip_fx["logmel_f16"]) <= 2.5e-3, name  # float16 rounding of values < 4
        assert _max_abs(out.scores[0], fx[f"{name}/taggram"]) <= 2e-3, name
        assert out.embeddings.shape == (1, out.scores.shape[1], teacher.embedding_dim)


@needs_wheel
def test_reflect_padding_edges(teachers: dict) -> None:
    """pad_mode='reflect' gives librosa < 0.10's first and last frames."""
    teacher = get_teacher("musicnn-mtt", pad_mode="reflect")
    for name in QUIET_CLIPS:
        audio, clip_fx = _clip(name)
        feats = teacher.logmel(torch.from_numpy(audio)[None])[0].numpy()
        edges = np.concatenate([feats[:2], feats[-2:]])
        assert _max_abs(edges, clip_fx["logmel_reflect_edges_f32"]) <= 5e-5, name  # float32 FFT vs float64


@needs_wheel
def test_loud_input_differs_from_the_original_on_purpose(teachers: dict) -> None:
    """The original overflows float16 on loud input and returns a fixed taggram; the port does not."""
    teacher, fx = teachers["MTT_musicnn"], _model_fixture("MTT_musicnn")
    audio, clip_fx = _clip("loud")
    assert np.isinf(clip_fx["logmel_f16"]).any()  # the original's features overflowed
    original = fx["loud/taggram"][0]
    assert [teacher.labels[i] for i in np.argsort(-original)[:3]] == ["guitar", "indian", "electronic"]
    with torch.no_grad():
        ours = teacher(torch.from_numpy(audio)[None]).scores[0, 0]
        other = teacher(torch.from_numpy(0.9 / 0.05 * _clip("drums")[0][:48000])[None]).scores[0, 0]
    assert torch.isfinite(ours).all() and _max_abs(ours, original) > 0.05
    assert (ours - other).abs().max() > 0.05  # input-dependent, unlike the original's fixed answer


# --------------------------------------------------------------------------- teacher behaviour

@needs_wheel
def test_windows_batching_and_errors(teachers: dict) -> None:
    teacher = teachers["MTT_musicnn"]
    for n in (0, 100, 47615, 47616, 47872, 95487, 95488, 96000):
        assert teacher.num_frames(n) == ((1 + n // 256) // 187), n
    assert teacher.num_frames(47615) == 0 and teacher.num_frames(47616) == 1  # 1 + n // 256 reaches 187
    chord, _ = _clip("chord")
    melody, _ = _clip("melody")
    x = torch.from_numpy(np.stack([chord[:56000], melody]))
    with torch.no_grad():
        both = teacher(x)
        alone = teacher(x[1:])
        short = teacher(x[:, :40000])
        teacher.train()  # frozen batch norm: training mode changes nothing
        trained = teacher(x[1:])
        teacher.eval()
    assert both.scores.shape == (2, 1, 50) and both.embeddings.shape == (2, 1, 200)
    assert _max_abs(both.scores[1], alone.scores[0].numpy()) <= 1e-6
    assert torch.equal(trained.scores, alone.scores)
    assert short.scores.shape == (2, 0, 50) and short.embeddings.shape == (2, 0, 200)
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        teacher(x[0])
    with pytest.raises(ValueError, match="NaN or Inf"):
        teacher(torch.full((1, 48000), float("nan")))
    with pytest.raises(TypeError, match="floating point"):
        teacher(torch.zeros(1, 48000, dtype=torch.int32))


@needs_wheel
def test_explicit_checkpoint_dir(tmp_path: Path) -> None:
    from edgetag.training.teachers.musicnn import MusicnnTeacher, find_musicnn_checkpoint

    src = find_musicnn_checkpoint("MTT_musicnn")
    shutil.copytree(src, tmp_path / "MTT_musicnn")
    by_parent = MusicnnTeacher("MTT_musicnn", tmp_path)
    by_folder = get_teacher("musicnn-mtt", checkpoint_dir=tmp_path / "MTT_musicnn")
    assert by_parent.weights_hash() == by_folder.weights_hash() == get_teacher("musicnn-mtt").weights_hash()
    with pytest.raises(FileNotFoundError, match="no musicnn checkpoint"):
        MusicnnTeacher("MSD_musicnn", tmp_path)


def test_missing_wheel_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "musicnn" else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps musicnn"):
        get_teacher("musicnn-mtt")
    with pytest.raises(ValueError, match="unknown musicnn model"):
        from edgetag.training.teachers.musicnn import find_musicnn_checkpoint

        find_musicnn_checkpoint("MSD_musicnn_big")
