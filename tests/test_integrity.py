"""Model files prove themselves: digests refuse damaged files, cards that lie are refused, `verify` reruns the test vector.

The damaged files: 64 zeroed bytes in the middle of the shipped
``music-tags.onnx``, 2,000 flipped bytes of its weights, a card whose
``window_frames`` contradicts the graph's fixed 98 frames, and cards that
declare 10^9 frames or a state of absurd size. Each must be refused by
``info``, ``tag`` and ``listen`` with one line, never run and never a traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from edgetag.runtime.cli import main
from edgetag.runtime.integrity import IntegrityError, model_digest, read_metadata
from edgetag.runtime.model import load_model
from edgetag.runtime.model_card import METADATA_KEY, ModelCardError
from edgetag.runtime.models import BUILTIN_MODELS, resolve_model
from edgetag.runtime.verify import verify_model


def _copy(name: str, tmp_path: Path) -> Path:
    out = tmp_path / f"{name}.onnx"
    shutil.copyfile(resolve_model(name), out)
    return out


def _weights_span(data: bytes) -> tuple[int, int]:
    """(start, end) of the largest raw_data run in the file: a weight tensor's bytes."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(data)
    biggest = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    start = data.find(biggest.raw_data)
    assert start > 0
    return start, start + len(biggest.raw_data)


def _with_card(path: Path, out: Path, edit) -> Path:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(path))
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    card = json.loads(entry.value)
    edit(card)
    entry.value = json.dumps(card)
    out.write_bytes(model.SerializeToString())
    return out


def _load_error(path: Path) -> str:
    try:
        load_model(path)
    except ValueError as exc:
        return str(exc)
    raise AssertionError(f"{path} loaded")


def _refused_everywhere(path: Path, needle: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``info``, ``tag`` and ``listen --file`` exit 1 with one line naming the problem."""
    wav = tmp_path / "a.wav"
    if not wav.exists():
        import soundfile as sf

        sf.write(wav, 0.1 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32), 16000)
    for argv in (["info", str(path)], ["tag", str(wav), "--model", str(path)],
                 ["listen", "--file", str(wav), "--model", str(path), "--format", "jsonl"]):
        assert main(argv) == 1, argv
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (argv, captured.err)
        assert "Traceback" not in captured.err and not captured.out.strip(), argv


def test_every_builtin_model_carries_a_digest_and_a_test_vector() -> None:
    for name in BUILTIN_MODELS:
        card = load_model(resolve_model(name)).card
        assert card.integrity["sha256"] == model_digest(resolve_model(name).read_bytes()), name
        assert card.test_vector["precision"] == ("int8" if name.endswith("int8") else "fp32"), name


@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_builtin_models_verify_on_this_cpu(name: str) -> None:
    result = verify_model(load_model(resolve_model(name), threads=1))
    assert result.passed, (name, result)
    assert result.n_decisions >= 3


def test_verify_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("this CPU: ") and out.count("\nok  ") == len(BUILTIN_MODELS)
    assert main(["info", "pitch-int8"]) == 0
    info = capsys.readouterr().out
    assert "integrity  sha256 " in info and "verified   int8 test vector" in info
    # the requantized file's card says which of its numbers were measured on the fp32 file
    assert "  of fp32  " in info and "measured on the fp32 file, not on this one" in info


def test_zeroed_bytes_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy("music-tags", tmp_path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    # corrupt: either the digest or the protobuf structure says so
    needle = "corrupt" if "corrupt" in _load_error(path) else "not a valid ONNX model"
    _refused_everywhere(path, needle, capsys, tmp_path)


def test_flipped_weight_bytes_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy("music-tags", tmp_path)
    data = bytearray(path.read_bytes())
    start, end = _weights_span(bytes(data))
    rng = np.random.default_rng(0)
    for i in rng.choice(np.arange(start, end), size=min(2000, end - start), replace=False):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="is corrupt: its weights and graph do not match the SHA-256"):
        load_model(path)
    _refused_everywhere(path, "is corrupt", capsys, tmp_path)


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    path = _copy("pitch", tmp_path)
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ValueError, match="truncated|corrupt|not a valid ONNX model"):
        load_model(path)


@pytest.mark.parametrize("edit, needle", [
    (lambda c: c.update(window_frames=50), "input 'features' has shape"),
    (lambda c: c.update(window_frames=10**9), "must be at most 100,000"),
    (lambda c: c.update(hop_frames=10**9), "must be at most 100,000"),
    (lambda c: c.update(labels=[f"l{i}" for i in range(200_000)], thresholds=[0.5] * 200_000), "200000 labels"),
    (lambda c: c.update(integrity={"sha256": "not hex"}), "64 lower-case hex digits"),
])
def test_cards_that_lie_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], edit, needle: str) -> None:
    path = _with_card(resolve_model("music-tags"), tmp_path / "lie.onnx", edit)
    with pytest.raises(ModelCardError, match=needle):
        load_model(path)
    _refused_everywhere(path, needle, capsys, tmp_path)


def test_absurd_state_shapes_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def huge(card: dict) -> None:
        card["states"][0]["shape"] = [100_000, 100_000]

    path = _with_card(resolve_model("pitch"), tmp_path / "state.onnx", huge)
    with pytest.raises(ModelCardError, match="10,000,000,000 elements"):
        load_model(path)
    _refused_everywhere(path, "10,000,000,000 elements", capsys, tmp_path)


def test_a_changed_test_vector_fails_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The reference scores are moved by 0.05: verify reports the difference and exits 1."""
    from edgetag.runtime.verify import decode_array, encode_array

    def shift(card: dict) -> None:
        ref = decode_array(card["test_vector"]["reference_scores"], "reference_scores")
        card["test_vector"]["reference_scores"] = encode_array(np.clip(ref + 0.05, 0, 1), "float32")

    path = _with_card(resolve_model("pitch-int8"), tmp_path / "moved.onnx", shift)
    result = verify_model(load_model(path))
    assert not result.passed and result.max_abs_diff > result.tolerance
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr()
    assert "FAIL" in out.out and "1 of 1 model(s) failed" in out.err


def test_a_file_without_test_vector_or_digest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Files from before digests load (nothing to check them against) but `verify` says it cannot check them."""
    def strip(card: dict) -> None:
        card.pop("integrity")
        card.pop("test_vector")

    path = _with_card(resolve_model("music-tags"), tmp_path / "old.onnx", strip)
    assert load_model(path).card.integrity == {}
    assert main(["verify", str(path)]) == 1
    assert "carries no test vector" in capsys.readouterr().out
    assert main(["info", str(path)]) == 0
    assert "no digest recorded" in capsys.readouterr().out


def test_digest_ignores_the_card_only(tmp_path: Path) -> None:
    data = resolve_model("pitch").read_bytes()
    edited = _with_card(resolve_model("pitch"), tmp_path / "m.onnx", lambda c: c["metrics"].update(x=1.0)).read_bytes()
    assert model_digest(edited) == model_digest(data)
    assert json.loads(read_metadata(edited)[METADATA_KEY])["metrics"]["x"] == 1.0
    with pytest.raises(IntegrityError, match="runs past the end"):
        model_digest(data[:-7])


def test_a_test_vector_that_checks_nothing_fails(tmp_path: Path) -> None:
    """A card whose test vector gives no decision (cut to 10 frames) must not pass as "ok"."""
    from edgetag.runtime.verify import decode_array, encode_array

    def cut(card: dict) -> None:
        features = decode_array(card["test_vector"]["features"], "features")
        card["test_vector"]["features"] = encode_array(features[:10], "float16")
        card["test_vector"]["reference_scores"] = encode_array(np.zeros((0, 50), np.float32), "float32")

    path = _with_card(resolve_model("music-tags"), tmp_path / "empty.onnx", cut)
    assert not verify_model(load_model(path)).passed


def test_a_malformed_test_vector_is_a_card_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _with_card(resolve_model("pitch"), tmp_path / "bad.onnx", lambda c: c["test_vector"].pop("features"))
    _refused_everywhere(path, "test_vector.features must be an object", capsys, tmp_path)
