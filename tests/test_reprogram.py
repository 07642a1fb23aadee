"""Reprogramming (``method = "reprogram"``): a frozen student between a learnt input transform and a
learnt output mapping, trained for a few real steps on tiny WAV data, exported and run by the runtime."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")

from edgetag.training.config import ConfigError, load_config  # noqa: E402
from test_trainer import write_clip  # noqa: E402

SR = 16000
BASE_LABELS = ["high", "low", "noise"]
NEW_LABELS = ["noisy", "tonal"]  # a new label set over the same kind of audio


def _write_clips(root: Path) -> tuple[Path, Path]:
    """12 clips of 0.6-0.9 s (tones at 300 Hz / 3 kHz, noise) with two manifests: the base's labels, new labels."""
    rng = np.random.default_rng(0)
    base_rows, new_rows = [], []
    for i in range(12):
        kind = BASE_LABELS[i % 3]
        write_clip(root / f"clip{i:02d}.wav", i, kind, rng)  # the trainer tests' clips
        split = "valid" if i >= 10 else "train"
        row = {"path": f"clip{i:02d}.wav", "start": "", "end": "", "missing": "", "split": split}
        base_rows.append({**row, "labels": kind})
        new_rows.append({**row, "labels": "noisy" if kind == "noise" else "tonal"})
    paths = []
    for name, rows in (("base.csv", base_rows), ("new.csv", new_rows)):
        with open(root / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["path", "start", "end", "labels", "missing", "split"])
            w.writeheader()
            w.writerows(rows)
        paths.append(root / name)
    return paths[0], paths[1]


COMMON = ["data.segment_seconds=0.5", "frontend.overrides.n_bins=16", "optim.batch_size=8", "optim.warmup_steps=2",
          "optim.lr=0.01", "optim.ema_decay=0.9", "augment.gain_db=[-6,6]", "checkpoint.every=0", "logging.progress=false"]
STUDENTS = {"causal_cnn": "{channels: 8, layers: 2}", "mobilenet": "{width: 0.25, embedding_dim: 16}"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only contend on a shared machine
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The clips, and a base student of each mode trained (labels, 12 steps) on the base labels."""
    from edgetag.training.trainer import train

    root = tmp_path_factory.mktemp("reprogram")
    base_manifest, new_manifest = _write_clips(root)
    out = {"root": root, "new": new_manifest, "features": root / "features"}
    for kind, params in STUDENTS.items():
        config = load_config(None, [f"data.manifest={base_manifest}", f"student.kind={kind}", f"student.params={params}",
                                    "optim.steps=12", f"data.feature_cache={out['features']}", *COMMON])
        out[kind] = train(config, root / f"base-{kind}").student_path
    return out


def _config(data, *overrides: str, base: str = "causal_cnn", method: str = "reprogram"):
    return load_config(None, [f"data.manifest={data['new']}", f"method={method}", f"reprogram.base_checkpoint={data[base]}",
                              f"data.feature_cache={data['features']}", "optim.steps=15", *COMMON,
                              "reprogram.transform=conv", "reprogram.head_input=logits", *overrides])  # the paper's setting


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)["state_dict"]


def _initial(config, n_labels: int) -> dict:
    """The model a run starts from (the trainer seeds with optim.seed before building it)."""
    from edgetag.training.reprogram import build_reprogrammed, load_base

    torch.manual_seed(config.optim.seed)
    student, _, _ = build_reprogrammed(config, load_base(config), n_labels)
    return {k: v.clone() for k, v in student.state_dict().items()}


def test_only_the_transform_and_the_mapping_train(data, tmp_path) -> None:
    from edgetag.training.checkpoint import load_checkpoint
    from edgetag.training.trainer import train

    config = _config(data, "reprogram.transform=conv", "reprogram.channels=4")
    result = train(config, tmp_path / "run")
    ckpt = load_checkpoint(result.student_path)
    assert ckpt.kind == "reprogrammed" and ckpt.labels == NEW_LABELS and ckpt.student.streaming_mode == "stateful"
    record = ckpt.provenance["reprogram"]
    trainable = sum(p.numel() for n, p in ckpt.student.named_parameters() if not n.startswith("base."))
    # conv [1, 5] over 16 bands, 4 channels: affine 32 + conv 4*5+4 + 4+1; mapping 3 logits -> 2 labels: 8
    assert trainable == record["trainable_parameters"] == result.trainable_parameters == 32 + 24 + 5 + 8
    assert ckpt.provenance["trainable_parameters"] == trainable and record["base_frozen"] is True
    assert ckpt.params["transform"] == {"kind": "conv", "channels": 4, "kernel": [1, 5]}  # resolved, not a default
    weights = [v for k, v in _state(data["causal_cnn"]).items() if k.split(".")[-1] in ("weight", "bias")]
    assert record["base_labels"] == BASE_LABELS and record["base_parameters"] == sum(v.numel() for v in weights)

    after, before = _state(result.student_path), _initial(config, len(NEW_LABELS))
    base = _state(data["causal_cnn"])
    for key, value in base.items():  # every weight and running statistic of the frozen student, bit for bit
        assert torch.equal(after[f"base.{key}"], value), key
    moved = [k for k in after if not k.startswith("base.") and not k.startswith("feature_") and not torch.equal(after[k], before[k])]
    assert set(moved) == {"transform.gain", "transform.shift", "transform.conv_in.weight", "transform.conv_in.bias",
                          "transform.conv_out.weight", "transform.conv_out.bias", "classifier.weight", "classifier.bias"}
    # the optimiser only ever held the trainable tensors
    state = torch.load(result.state_path, weights_only=True)
    assert sum(len(g["params"]) for g in state["optimizer"]["param_groups"]) == len(moved)
    with open(tmp_path / "run" / "metrics.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert np.mean(losses[-4:]) < np.mean(losses[:4]), losses


def test_finetune_trains_the_whole_student(data, tmp_path) -> None:
    from edgetag.training.trainer import train

    config = _config(data, "reprogram.transform=none", "reprogram.head_input=embedding", "optim.steps=4", method="finetune")
    result = train(config, tmp_path / "run")
    after, base = _state(result.student_path), _state(data["causal_cnn"])
    assert not any(k.startswith("base.classifier") for k in after)  # the mapping reads the embedding
    assert not torch.equal(after["base.encoder.project.weight"], base["encoder.project.weight"])
    assert result.trainable_parameters == sum(v.numel() for k, v in after.items()
                                              if k.split(".")[-1] in ("weight", "bias") and "norm.running" not in k)


def test_budget_and_bad_configs_are_clear(data, tmp_path) -> None:
    from edgetag.training.trainer import train

    budget = (r"reprogram: 834 trainable parameters \(transform 800 \+ output mapping 34\) "
              r"exceed reprogram.max_trainable_parameters = 800")
    with pytest.raises(ConfigError, match=budget):
        # one value per frame and band of a 48-frame window: 48 x 16 = 768, plus affine 32; mapping 16 x 2 + 2
        train(_config(data, "reprogram.transform=additive", "reprogram.head_input=embedding",
                      "reprogram.max_trainable_parameters=800", base="mobilenet"), tmp_path / "budget")
    with pytest.raises(ConfigError, match="reprogram.base_checkpoint: no such file"):
        train(load_config(None, [f"data.manifest={data['new']}", "method=reprogram",
                                 f"reprogram.base_checkpoint={tmp_path / 'missing.pt'}"]), tmp_path / "missing")
    assert not (tmp_path / "missing").exists()  # refused before the run directory is made
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="reprogram.base_checkpoint: .*not a readable edgetag checkpoint"):
        train(_config(data, f"reprogram.base_checkpoint={junk}"), tmp_path / "junk")
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"")
    with pytest.raises(ConfigError, match="exported ONNX model"):
        train(_config(data, f"reprogram.base_checkpoint={onnx_path}"), tmp_path / "onnx")
    with pytest.raises(ConfigError, match=r"another front end \(n_bins: 16 \(base\) vs 24 \(config\)"):
        train(_config(data, "frontend.overrides.n_bins=24"), tmp_path / "frontend")
    with pytest.raises(ConfigError, match="data.segment_seconds: 0.3 s gives 28 frames, .* window student of 48 frames"):
        train(_config(data, "data.segment_seconds=0.3", base="mobilenet"), tmp_path / "window")
    with pytest.raises(ConfigError, match="conv transform must span 1 frame"):
        train(_config(data, "reprogram.kernel=[3,5]"), tmp_path / "kernel")
    with pytest.raises(ConfigError, match="additive transform .* needs a window student"):
        train(_config(data, "reprogram.transform=additive"), tmp_path / "additive")
    with pytest.raises(ConfigError, match="reprogram.base_checkpoint: required by method 'reprogram'"):
        load_config(None, [f"data.manifest={data['new']}", "method=reprogram"])
    with pytest.raises(ConfigError, match="reprogram: only used by methods reprogram and finetune"):
        load_config(None, [f"data.manifest={data['new']}", "reprogram.base_checkpoint=x.pt"])
    with pytest.raises(ConfigError, match="learns from labels only"):
        _config(data, "teacher.regulariser=disreg")


def test_resume_is_bit_identical(data, tmp_path) -> None:
    from edgetag.training.trainer import train

    config = _config(data, "optim.steps=8", "checkpoint.every=3", base="mobilenet")

    class Killed(Exception):
        pass

    def stop(step: int, metrics: dict) -> None:
        if step == 5:
            raise Killed

    train(config, tmp_path / "full")
    with pytest.raises(Killed):
        train(config, tmp_path / "resumed", on_step=stop)
    result = train(config, tmp_path / "resumed")
    assert result.resumed_from == 3
    a, b = _state(tmp_path / "full" / "student.pt"), _state(tmp_path / "resumed" / "student.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("base", ["causal_cnn", "mobilenet"])
def test_export_round_trip(data, tmp_path, capsys, base) -> None:
    """``edgetag export`` of a reprogrammed student: a sealed file with the new labels that the runtime
    runs (a stateful one streamed in chunks) like the checkpoint."""
    pytest.importorskip("onnxscript")
    from edgetag.runtime.cli import main
    from edgetag.runtime.clip import run_chunks
    from edgetag.runtime.frontend import compute_features
    from edgetag.runtime.model import load_model
    from edgetag.training.checkpoint import load_checkpoint
    from edgetag.training.trainer import train

    result = train(_config(data, "optim.steps=6", "reprogram.transform=conv", base=base), tmp_path / "run")
    out = tmp_path / "new.onnx"
    assert main(["export", str(result.student_path), "-o", str(out)]) == 0, capsys.readouterr()
    model = load_model(out)
    card = model.card
    ckpt, base_ckpt = load_checkpoint(result.student_path), load_checkpoint(data[base])
    assert list(card.labels) == NEW_LABELS and card.streaming_mode == base_ckpt.student.streaming_mode
    assert card.hop_frames == base_ckpt.hop_frames  # decides as often as its base
    assert card.embedding["size"] == len(BASE_LABELS)  # the mapping reads the base's logits
    assert card.provenance["reprogram"]["trainable_parameters"] == result.trainable_parameters
    audio, _ = sf.read(data["root"] / "clip05.wav", dtype="float32")
    feats = compute_features(audio, ckpt.frontend)
    if card.streaming_mode == "stateful":
        got, _ = run_chunks(model, feats, [1] * 5 + [feats.shape[0] - 5])
        with torch.no_grad():
            expected = ckpt.student(torch.from_numpy(feats[None]))[0].numpy()
    else:
        windows = np.stack([feats[i : i + card.window_frames] for i in (0, feats.shape[0] - card.window_frames)])
        got, _ = model.run(windows)
        with torch.no_grad():
            expected = ckpt.student(torch.from_numpy(windows)).numpy()
    assert got.shape == expected.shape and got.shape[-1] == len(NEW_LABELS)
    assert np.abs(got - expected).max() <= 1e-5


def test_a_level_normalising_base_trains_with_its_reference_and_reprograms_keeping_it(data, tmp_path, capsys) -> None:
    """The trainer sets `level_reference` (the median window energy of the training features, the moments
    taken on the normalised windows); a model reprogrammed around such a base keeps its level invariance,
    in PyTorch and in the exported file."""
    from edgetag.export.onnx_export import export_onnx
    from edgetag.runtime.cli import main
    from edgetag.runtime.model import load_model
    from edgetag.training.checkpoint import load_checkpoint
    from edgetag.training.trainer import train

    base_manifest = data["root"] / "base.csv"
    config = load_config(None, [f"data.manifest={base_manifest}", "student.kind=mobilenet",
                                "student.params={width: 0.25, embedding_dim: 16, level_normalise: true}",
                                "optim.steps=4", f"data.feature_cache={data['features']}", *COMMON])
    path = train(config, tmp_path / "level-base").student_path
    student = load_checkpoint(path).student
    assert student.level_normalise and float(student.level_floor) == pytest.approx(1e-6)
    assert 1e-8 < float(student.level_reference) < 1e3
    x = torch.randn(2, student.window_frames, 16) - 4.0
    quieter = torch.log((torch.exp(x) - 1e-6).clamp_min(0) * 0.1 + 1e-6)  # the same windows, 10 dB down
    with torch.no_grad():
        assert (student.eval()(x) - student(quieter)).abs().max() < 1e-3
    for method in ("reprogram", "finetune"):
        reprogram = load_config(None, [f"data.manifest={data['new']}", f"method={method}", f"reprogram.base_checkpoint={path}",
                                       f"data.feature_cache={data['features']}", "optim.steps=3", *COMMON])
        ckpt = load_checkpoint(train(reprogram, tmp_path / method).student_path)
        model = ckpt.student.eval()
        assert float(model.base.level_reference) == pytest.approx(float(student.level_reference))
        with torch.no_grad():
            assert (model(x) - model(quieter)).abs().max() < 1e-3, method
    out = tmp_path / "reprogrammed.onnx"
    export_onnx(ckpt, out)
    onnx_model = load_model(out)
    assert np.abs(onnx_model.run(x.numpy())[0] - onnx_model.run(quieter.numpy())[0]).max() < 1e-3
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "brought to one loudness" in capsys.readouterr().out
