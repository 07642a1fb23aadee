"""The trainer end to end on a tiny synthetic dataset and a fake teacher cache (CPU, seconds)."""

from __future__ import annotations

import csv
import shutil
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")

from edgetag.training.config import ConfigError, config_hash, load_config

SR = 16000
LABELS = ["high", "low", "noise"]


def write_clip(path: Path, i: int, kind: str, rng: np.random.Generator) -> None:
    """Clip ``i`` of the small datasets: 0.6-0.9 s of a 3 kHz ("high") or 300 Hz tone, or noise."""
    n = int(SR * (0.6 + 0.1 * (i % 4)))
    t = np.arange(n) / SR
    if kind == "noise":
        x = 0.3 * rng.standard_normal(n)
    else:
        x = 0.5 * np.sin(2 * np.pi * (3000.0 if kind == "high" else 300.0) * t) + 0.01 * rng.standard_normal(n)
    sf.write(path, x.astype(np.float32), SR, subtype="FLOAT")


def _write_dataset(root: Path) -> Path:
    """12 clips of 0.6-0.9 s: tones at 300 Hz / 3 kHz and noise; some labels missing."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        kind = LABELS[i % 3]
        write_clip(root / f"clip{i:02d}.wav", i, kind, rng)
        labels = kind
        missing = ""
        if i in (3, 7):
            missing = "*"  # unlabelled
            labels = ""
        elif i == 5:
            missing = "high"  # clip 5 is noise; whether it is also "high" is unknown
        split = "valid" if i >= 10 else "train"
        rows.append({"path": f"clip{i:02d}.wav", "start": "", "end": "", "labels": labels, "missing": missing, "split": split})
    # one segment with explicit bounds
    rows.append({"path": "clip00.wav", "start": "0.1", "end": "0.5", "labels": "high", "missing": "", "split": "train"})
    path = root / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "start", "end", "labels", "missing", "split"])
        w.writeheader()
        w.writerows(rows)
    return path


def _fake_teacher():
    from edgetag.training.teachers import (
        Teacher,
        TeacherOutput,
        known_teachers,
        register_teacher,
    )

    class FakeTeacher(Teacher):
        """Deterministic: band energies of 100 ms frames -> 8-dim embedding -> 3 sigmoid scores."""

        name = "fake-tiny"
        sample_rate = SR
        score_kind = "probabilities"
        task = "multi_label"
        frame_rate = 10.0
        labels = LABELS
        embedding_dim = 8

        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.proj = torch.nn.Parameter(torch.randn(8, 3, generator=g), requires_grad=False)

        def num_frames(self, num_samples: int) -> int:
            return max(1, num_samples // 1600)

        def forward(self, waveforms):
            b, n = waveforms.shape
            t = self.num_frames(n)
            frames = waveforms[:, : t * 1600].reshape(b, t, 1600) if n >= 1600 else torch.nn.functional.pad(waveforms, (0, 1600 - n)).reshape(b, 1, 1600)
            spec = torch.fft.rfft(frames, dim=-1).abs()[..., :800]
            emb = torch.log1p(spec.reshape(b, t, 8, 100).mean(-1))
            low, high = emb[..., 0], emb[..., 3:].mean(-1)
            flat = emb.std(-1)
            logits = torch.stack([4 * (high - low), 4 * (low - high), -4 * flat + 2], dim=-1)
            return TeacherOutput(scores=torch.sigmoid(logits), embeddings=emb)

    if "fake-tiny" not in known_teachers():
        register_teacher("fake-tiny")(FakeTeacher)
    return FakeTeacher


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models: threads only contend (these machines are shared); restored afterwards.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from edgetag.training.teach import fill_cache
    from edgetag.training.teachers import get_teacher

    root = tmp_path_factory.mktemp("data")
    manifest = _write_dataset(root)
    _fake_teacher()
    teacher = get_teacher("fake-tiny")
    fill_cache([teacher], manifest, root / "cache", progress=False, chunk_seconds=0.5)
    return {"root": root, "manifest": manifest, "cache": root / "cache", "identity": teacher.identity()}


def _config(dataset, *overrides: str):
    base = [
        f"data.manifest={dataset['manifest']}",
        f"teacher.cache_dir={dataset['cache']}",
        "teacher.teachers=[fake-tiny]",
        "data.segment_seconds=0.5",
        "frontend.overrides.n_bins=16",
        "student.kind=causal_cnn",
        "student.params={channels: 8, layers: 2}",
        "optim.batch_size=8",
        "optim.steps=20",
        "optim.warmup_steps=2",
        "optim.lr=0.01",
        "optim.ema_decay=0.9",
        "augment.gain_db=[-6,6]",
        "augment.time_masks=1",
        "augment.freq_masks=1",
        "augment.time_shift_seconds=0.05",
        "augment.mixup_alpha=0.3",
        "checkpoint.every=0",
        "logging.progress=false",
    ]
    return load_config(None, base + list(overrides))


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "student.pt", weights_only=True)["state_dict"]


def _losses(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("method", ["labels", "kd", "kd+conreg", "kd+disreg", "mean_teacher"])
def test_methods_train(dataset, tmp_path, method):
    from edgetag.training.checkpoint import load_checkpoint
    from edgetag.training.trainer import train

    # The augmentations make single steps noisy; compare without them.
    config = _config(dataset, f"method={method}", "augment.mixup_alpha=0", "augment.time_masks=0", "augment.freq_masks=0")
    result = train(config, tmp_path / "run")
    losses = _losses(tmp_path / "run")
    assert len(losses) == 20 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    ckpt = load_checkpoint(result.student_path)
    assert ckpt.labels == LABELS and ckpt.provenance["method"] == method
    assert ckpt.provenance["training_config_sha256"] == config_hash(config)
    if method.startswith("kd"):
        assert ckpt.provenance["teachers"] == [dataset["identity"]]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in rows} == {"train", "eval"}
    assert "map" in rows[-1] and rows[-1]["kind"] == "eval"


def test_label_enhancing_and_consistency_rampup(dataset, tmp_path, monkeypatch):
    """Missing labels filled by a confident teacher reach the label loss; the consistency weight ramps up."""
    from edgetag.training import losses as L
    from edgetag.training.trainer import train

    filled = []
    original = L.enhance_labels

    def spy(targets, mask, probs, hi, lo, *args, **kwargs):
        new_targets, new_mask = original(targets, mask, probs, hi, lo, *args, **kwargs)
        filled.append(float((new_mask > 0).sum() - (mask > 0).sum()))
        return new_targets, new_mask

    monkeypatch.setattr(L, "enhance_labels", spy)
    config = _config(dataset, "method=kd", "teacher.label_enhance=true", "teacher.label_enhance_hi=0.6",
                     "teacher.label_enhance_lo=0.4", "optim.steps=6")
    train(config, tmp_path / "enhanced")
    assert len(filled) == 6 and sum(filled) > 0  # some missing entries were filled
    assert L.sigmoid_rampup(0, 10) < 0.01 < L.sigmoid_rampup(5, 10) < L.sigmoid_rampup(10, 10) == 1.0
    config = _config(dataset, "method=mean_teacher", "teacher.consistency_rampup_steps=10", "optim.steps=4")
    train(config, tmp_path / "rampup")
    with pytest.raises(ConfigError, match="label_enhance: only for multi_label"):
        _config(dataset, "method=kd", "teacher.label_enhance=true", "data.task=multi_class")


def test_window_student_with_augmentations(dataset, tmp_path):
    from edgetag.training.trainer import train

    config = _config(dataset, "method=kd+conreg", "student.kind=mobilenet", "student.params={width: 0.25, embedding_dim: 16}",
                     "optim.steps=4", "sampling.class_balanced=true")
    result = train(config, tmp_path / "run")
    sd = _weights(tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())
    assert result.steps == 4


def test_kill_and_resume_is_bit_identical(dataset, tmp_path):
    from edgetag.training.trainer import train

    config = _config(dataset, "method=kd+conreg", "optim.steps=10", "checkpoint.every=3", "checkpoint.keep=2")
    train(config, tmp_path / "full")

    class Killed(Exception):
        pass

    def stop(step, metrics):
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        train(config, tmp_path / "resumed", on_step=stop)
    states = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").glob("state-*.pt"))
    assert states == ["state-00000003.pt"]
    result = train(config, tmp_path / "resumed")
    assert result.resumed_from == 3
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the killed run's rows after step 3 were replaced, not duplicated
    with open(tmp_path / "resumed" / "metrics.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == list(range(1, 11))
    sa = torch.load(tmp_path / "full" / "checkpoints" / "state-00000010.pt", weights_only=True)
    sb = torch.load(tmp_path / "resumed" / "checkpoints" / "state-00000010.pt", weights_only=True)
    for k in sa["optimizer"]["state"]:
        assert torch.equal(sa["optimizer"]["state"][k]["exp_avg"], sb["optimizer"]["state"][k]["exp_avg"])
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").glob("state-*.pt")) == [
        "state-00000009.pt", "state-00000010.pt"]


def test_a_resume_on_changed_data_or_another_students_state_is_refused(dataset, tmp_path):
    """A run's states record the manifest's sha256: relabelled data refuses to resume (it would mix two datasets
    and name data the student never saw), in one line; a state of another student shape is refused too."""
    from edgetag.training.train_state import ResumeError
    from edgetag.training.trainer import train

    root = tmp_path / "data"
    root.mkdir()
    manifest = _write_dataset(root)
    config = _config({**dataset, "manifest": manifest}, "method=labels", "optim.steps=4", "checkpoint.every=2")
    run = tmp_path / "run"
    train(config, run)
    original = manifest.read_bytes()
    manifest.write_bytes(original.replace(b",low,", b",high,", 1))  # one clip relabelled
    with pytest.raises(ResumeError, match=r"trained on another manifest .* the data changed since the run started"):
        train(config, run)
    manifest.write_bytes(original)
    assert train(config, run).resumed_from == 4  # the same data: the finished run stands
    wide = _config({**dataset, "manifest": manifest}, "method=labels", "optim.steps=4", "checkpoint.every=2",
                   "student.params={channels: 16, layers: 2}")
    other = tmp_path / "other"
    train(wide, other)
    for state in (run / "checkpoints").glob("state-*.pt"):
        state.unlink()
    shutil.copy(sorted((other / "checkpoints").glob("state-*.pt"))[-1], run / "checkpoints")
    with pytest.raises(ResumeError, match=r"does not fit this run's student .*size mismatch"):
        train(config, run)


def test_a_misspelt_split_is_warned_about_and_an_empty_manifest_named(dataset, tmp_path, caplog):
    from edgetag.training.trainer import train

    root = tmp_path / "data"
    root.mkdir()
    manifest = _write_dataset(root)
    original = manifest.read_bytes()
    manifest.write_bytes(original.replace(b",train\r\n", b",trian\r\n", 1))  # one row's split misspelt
    with caplog.at_level("WARNING"):
        train(_config({**dataset, "manifest": manifest}, "method=labels", "optim.steps=1"), tmp_path / "run")
    assert "1 entry in split 'trian', which is not 'train': left out of training (a typo?)" in caplog.text
    manifest.write_bytes(original.split(b"\r\n")[0] + b"\r\n")  # the header alone
    with pytest.raises(ConfigError, match="has no entries"):
        train(_config({**dataset, "manifest": manifest}, "method=labels", "optim.steps=1"), tmp_path / "empty")


def test_two_runs_in_one_folder_are_refused_while_one_trains(dataset, tmp_path):
    """The folder is locked while a run trains (its rows and checkpoints would all be written twice); the lock
    goes with the run, so the next one starts."""
    from edgetag.runtime.atomic import hold_lock
    from edgetag.training.trainer import RunBusyError, train

    run = tmp_path / "run"
    run.mkdir()
    config = _config(dataset, "method=labels", "optim.steps=2")
    other = hold_lock(run / ".run.lock", OSError)  # another run, holding the folder
    try:
        with pytest.raises(RunBusyError, match=rf"another edgetag distill \(pid {os.getpid()}\) is training in"):
            train(config, run)
        assert not (run / "student.pt").exists()
    finally:
        other.close()
    assert train(config, run).steps == 2


def test_a_checkpoint_write_killed_midway_is_cleaned_at_the_next_start(dataset, tmp_path):
    """A real SIGKILL inside a checkpoint's atomic write leaves a 0-byte temp file in the run folder; the next
    start removes it (its writer is dead) and the run's files get the umask's mode, not 0600."""
    from edgetag.training.trainer import train

    run = tmp_path / "run"
    config = _config(dataset, "method=kd", "optim.steps=2")
    train(config, run)
    code = ("import sys, time; from edgetag.runtime.atomic import atomic_write; "
            "atomic_write(sys.argv[1], lambda handle: time.sleep(60))")
    leftovers = []
    for target in (run / "checkpoints" / "state-00000003.pt", run / "student.pt"):
        proc = subprocess.Popen([sys.executable, "-c", code, str(target)])
        deadline = time.monotonic() + 60
        while not list(target.parent.glob(f".{target.name}.{proc.pid}.*.tmp")):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        leftovers += list(target.parent.glob(f".{target.name}.{proc.pid}.*.tmp"))
    assert len(leftovers) == 2 and all(p.stat().st_size == 0 for p in leftovers)
    train(config, run)  # the next start
    assert not any(p.exists() for p in leftovers)
    mask = os.umask(0)
    os.umask(mask)
    assert (run / "student.pt").stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.slow
def test_sigkill_and_resume(dataset, tmp_path):
    """A real kill (SIGKILL of a child process) after step 6 is checkpointed, then resume."""
    from edgetag.training.trainer import train

    overrides = ["method=kd", "optim.steps=10", "checkpoint.every=3"]
    config = _config(dataset, *overrides)
    train(config, tmp_path / "full")
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import torch
        torch.set_num_threads(1)
        from test_trainer import _config, _fake_teacher
        from edgetag.training.trainer import train
        ds = {{"manifest": {str(dataset['manifest'])!r}, "cache": {str(dataset['cache'])!r}}}
        train(_config(ds, *{overrides!r}), {str(tmp_path / 'killed')!r}, on_step=lambda s, m: time.sleep(0.3))
    """)
    child = subprocess.Popen([sys.executable, "-c", script])
    target = tmp_path / "killed" / "checkpoints" / "state-00000006.pt"
    deadline = time.time() + 300  # a hang guard: generous, a loaded machine imports torch slowly
    while not target.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert target.exists() and child.poll() is None, "the child finished or failed before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not (tmp_path / "killed" / "student.pt").exists()
    result = train(config, tmp_path / "killed")
    assert result.resumed_from in (6, 9)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "killed")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_config_errors_are_clear(dataset, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'optim.learning_rate'"):
        _config(dataset, "optim.learning_rate=1")
    with pytest.raises(ConfigError, match="optim.steps: expected an integer"):
        _config(dataset, "optim.steps=ten")
    with pytest.raises(ConfigError, match="method: expected one of"):
        _config(dataset, "method=distill")
    with pytest.raises(ConfigError, match="augment.gain_db"):
        _config(dataset, "augment.gain_db=[6,-6]")
    with pytest.raises(ConfigError, match="teacher.cache_dir: required"):
        load_config(None, [f"data.manifest={dataset['manifest']}", "method=kd", "teacher.teachers=[x]"])
    with pytest.raises(ConfigError, match="frontend"):
        _config(dataset, "frontend.preset=nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: [1, 2]\n")
    with pytest.raises(ConfigError, match="optim.lr: expected a number"):
        load_config(bad)
    # a teacher the cache does not hold
    from edgetag.training.trainer import train

    with pytest.raises(ConfigError, match="no outputs in the teacher cache"):
        train(_config(dataset, "method=kd", "teacher.teachers=[other-teacher]", "optim.steps=1"), tmp_path / "r")
    # resuming a run directory with another config
    train(_config(dataset, "optim.steps=1"), tmp_path / "r2")
    with pytest.raises(ConfigError, match="optim.lr"):
        train(_config(dataset, "optim.steps=1", "optim.lr=0.5"), tmp_path / "r2")


def test_files_and_overrides(dataset, tmp_path):
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text(textwrap.dedent(f"""
        data: {{manifest: {dataset['manifest']}, segment_seconds: 0.5}}
        method: labels
        optim: {{lr: 3.0e-3, steps: 7}}
    """))
    toml_path = tmp_path / "c.toml"
    toml_path.write_text(textwrap.dedent(f"""
        method = "labels"
        [data]
        manifest = "{dataset['manifest']}"
        segment_seconds = 0.5
        [optim]
        lr = 3.0e-3
        steps = 7
    """))
    a, b = load_config(yaml_path), load_config(toml_path)
    assert a == b and config_hash(a) == config_hash(b)
    c = load_config(yaml_path, ["optim.lr=1e-4", "augment.gain_db=[-3, 3]", "student.params.channels=16", "sampling.class_balanced=true"])
    assert c.optim.lr == 1e-4 and c.augment.gain_db == [-3.0, 3.0] and c.student.params == {"channels": 16}
    assert c.sampling.class_balanced is True and config_hash(c) != config_hash(a)
    # relative paths in a file are relative to the file
    (tmp_path / "sub").mkdir()
    rel = tmp_path / "sub" / "r.yaml"
    rel.write_text("data: {manifest: ../x.csv}\n")
    assert load_config(rel).data.manifest == str(tmp_path / "sub" / ".." / "x.csv")


def test_run_dir_records_config_and_metrics(dataset, tmp_path):
    from edgetag.training.trainer import train

    config = _config(dataset, "method=kd", "optim.steps=3", "optim.eval_every=2")
    train(config, tmp_path / "run")
    run = tmp_path / "run"
    assert (run / "config.sha256").read_text().strip() == config_hash(config)
    assert load_config(run / "config.yaml") == config
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert {"loss", "label", "kd", "lr"} <= set(rows[0])
    with open(run / "eval.csv") as f:
        evals = list(csv.DictReader(f))
    assert [int(r["step"]) for r in evals] == [2, 3] and "map" in evals[0]


def test_augmentations_deterministic():
    from edgetag.runtime.frontend import FrontendConfig
    from edgetag.training.augment import mixup, random_gain, spec_augment, time_shift
    from edgetag.training.frontend import TorchFrontend

    fe = FrontendConfig.preset("default", n_bins=16)
    wave = torch.randn(3, 4000, generator=torch.Generator().manual_seed(1)) * 0.1
    feats = TorchFrontend(fe)(wave)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        x = random_gain(feats, fe, -6, 6, g)
        x, (t,) = time_shift(x, 3, g, [torch.arange(x.shape[1]).repeat(3, 1)])
        x = spec_augment(x, 2, 4, 2, 3, g)
        y = torch.eye(3)
        m = torch.ones(3, 3)
        m[1, 2] = 0
        return mixup(x, y, m, 0.4, g, [t.float()])

    a, b = run(0), run(0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
    assert not torch.equal(run(1)[0], a[0])
    # masks combine: the missing entry (1, 2) stays missing wherever example 1 is mixed in
    assert a[2].sum() <= 9 - 1
    # gain is exact in the feature domain: +6 dB of audio == features of the louder audio
    g = torch.Generator().manual_seed(0)
    louder = random_gain(feats, fe, 6.0, 6.0, g)
    ref = TorchFrontend(fe)(wave * 10 ** (6 / 20))
    assert torch.allclose(louder, ref, atol=1e-3)


def test_noise_augmentation_adds_front_end_noise_at_the_snr():
    """The noise bank is real noise through the front end; at SNR s the added band energy is s dB under the
    example's; a sawtooth plus white noise in the feature domain lands where the front end of the noisy audio
    does (energies add in expectation); seeded; probability 0 and untouched examples stay bit-identical."""
    from edgetag.runtime.frontend import FrontendConfig, compute_features
    from edgetag.training.augment import NoiseBank, add_noise
    from edgetag.training.frontend import decompress

    fe = FrontendConfig.preset("default", n_bins=32)
    bank = NoiseBank(fe, seconds=2.0)
    assert bank.energies.shape[0] == 2 and bank.energies.shape[2] == 32 and bool((bank.energies > 0).all())
    # pink noise puts more of its energy low: its lowest bands over its highest, against white's
    tilt = lambda e: float(e[:, :4].sum() / e[:, -4:].sum())
    assert tilt(bank.energies[1]) > 3 * tilt(bank.energies[0])
    t = np.arange(fe.sample_rate) / fe.sample_rate
    saw = (0.2 * ((t * 220.0) % 1.0 - 0.5)).astype(np.float32)
    clean = torch.from_numpy(compute_features(saw, fe))[None].repeat(4, 1, 1)
    white_only = NoiseBank(fe, seconds=2.0)
    white_only.energies = white_only.energies[:1]
    noisy = add_noise(clean, fe, white_only, 1.0, 10.0, 10.0, torch.Generator().manual_seed(0))
    added = decompress(noisy.double(), fe) - decompress(clean.double(), fe)
    snr = 10 * torch.log10(decompress(clean.double(), fe).sum(dim=(1, 2)) / added.sum(dim=(1, 2)))
    assert torch.allclose(snr, torch.full_like(snr, 10.0), atol=0.05)
    # the same through the real front end: white noise whose band energy is 10 dB under the saw's
    noise = np.random.default_rng(5).standard_normal(len(saw))
    e_saw = float(decompress(clean[:1].double(), fe).sum())
    e_noise = float(decompress(torch.from_numpy(compute_features((0.1 * noise).astype(np.float32), fe)).double(), fe).sum()) / 0.01
    real = torch.from_numpy(compute_features((saw + noise * np.sqrt(e_saw / e_noise / 10)).astype(np.float32), fe))
    assert abs(float(noisy[0].mean() - real.mean())) < 0.15 and float((noisy[0] - clean[0]).mean()) > 0.3
    g = lambda: torch.Generator().manual_seed(7)
    assert torch.equal(add_noise(clean, fe, bank, 0.5, 0.0, 30.0, g()), add_noise(clean, fe, bank, 0.5, 0.0, 30.0, g()))
    assert add_noise(clean, fe, bank, 0.0, 0.0, 30.0, g()) is clean
    with pytest.raises(ValueError, match="power-spectrum"):
        NoiseBank(FrontendConfig.preset("default", n_bins=32, spectrum="magnitude"))
    batch = clean.repeat(4, 1, 1)  # 16 examples
    some = add_noise(batch, fe, bank, 0.5, 0.0, 30.0, torch.Generator().manual_seed(1))
    untouched = [bool(torch.equal(a, b)) for a, b in zip(some, batch)]
    chosen = (torch.rand(16, generator=torch.Generator().manual_seed(1), dtype=torch.float64) < 0.5).tolist()
    assert untouched == [not c for c in chosen] and 0 < sum(chosen) < 16  # each example decided on its own


def test_noise_augmentation_settings_are_checked(tmp_path):
    from edgetag.training.config import ConfigError, load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {manifest: m.csv}\nmethod: labels\n")
    assert load_config(cfg, ["augment.noise_probability=0.5"]).augment.noise_snr_db == [0.0, 30.0]
    with pytest.raises(ConfigError, match="augment.noise_probability"):
        load_config(cfg, ["augment.noise_probability=1.5"])
    with pytest.raises(ConfigError, match="augment.noise_snr_db"):
        load_config(cfg, ["augment.noise_snr_db=[20,10]"])


def test_cli_distill(dataset, tmp_path, capsys):
    from edgetag.runtime.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{manifest: {dataset['manifest']}, segment_seconds: 0.5}}\nmethod: labels\n")
    run = tmp_path / "run"
    rc = main(["distill", str(cfg), "optim.steps=2", "student.params.channels=8", "frontend.overrides.n_bins=16",
               "--run-dir", str(run), "--no-progress"])
    assert rc == 0 and (run / "student.pt").exists()
    assert "sha256" in capsys.readouterr().out
    assert main(["distill", str(cfg), "optim.nope=1", "--run-dir", str(run)]) == 1
    err = capsys.readouterr().err
    assert "edgetag distill: error:" in err and "optim.nope" in err


def test_stale_teacher_cache_is_an_error(tmp_path):
    """Cached outputs are found by content: audio changed after `teach` is refused, not used."""
    from edgetag.training.teach import fill_cache
    from edgetag.training.teachers import get_teacher
    from edgetag.training.trainer import train

    manifest = _write_dataset(tmp_path)
    _fake_teacher()
    fill_cache([get_teacher("fake-tiny")], manifest, tmp_path / "cache", progress=False)
    sf.write(tmp_path / "clip01.wav", np.zeros(SR, np.float32), SR, subtype="FLOAT")
    ds = {"manifest": manifest, "cache": tmp_path / "cache"}
    with pytest.raises(ConfigError, match=r"clip01\.wav.*audio changed"):
        train(_config(ds, "method=kd", "optim.steps=1"), tmp_path / "run")
    # a file that has gone is skipped (counted and logged by iter_audio), not fatal
    (tmp_path / "clip01.wav").unlink()
    train(_config(ds, "method=kd", "optim.steps=1"), tmp_path / "run2")


def test_unverified_cache_lookup_trains_the_same(dataset, tmp_path):
    """teacher.verify_audio=false finds the same cached windows by path and bounds (no re-decoding)."""
    from edgetag.training.trainer import train

    train(_config(dataset, "method=kd", "optim.steps=3"), tmp_path / "verified")
    train(_config(dataset, "method=kd", "optim.steps=3", "teacher.verify_audio=false"), tmp_path / "by_path")
    a, b = _weights(tmp_path / "verified"), _weights(tmp_path / "by_path")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_unverified_lookup_finds_a_window_stored_under_another_path(tmp_path, monkeypatch):
    """Two files with the same audio share one cache entry, recorded under one of the paths
    (music010 and music011 of colobot share 30 s); with teacher.verify_audio=false the
    other is found by decoding it, not refused."""
    import shutil

    from edgetag.training.teach import fill_cache
    from edgetag.training.teachers import get_teacher
    from edgetag.training.trainer import train

    manifest = _write_dataset(tmp_path)
    shutil.copyfile(tmp_path / "clip01.wav", tmp_path / "clip01-copy.wav")
    with open(manifest, "a", newline="") as f:
        csv.writer(f).writerow(["clip01-copy.wav", "", "", "", "*", "train"])
    _fake_teacher()
    fill_cache([get_teacher("fake-tiny")], manifest, tmp_path / "cache", progress=False, chunk_seconds=0.5)
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    paths = [m["path"] for m in index["entries"].values()]
    assert paths.count("clip01.wav") + paths.count("clip01-copy.wav") == paths.count("clip02.wav")  # stored once
    ds = {"manifest": manifest, "cache": tmp_path / "cache"}
    import edgetag.runtime.audio as audio_mod

    decoded: list[str] = []
    real_load = audio_mod.load_audio
    monkeypatch.setattr(audio_mod, "load_audio", lambda path, *a, **k: decoded.append(Path(path).name) or real_load(path, *a, **k))
    train(_config(ds, "method=kd", "optim.steps=2", "teacher.verify_audio=false"), tmp_path / "run")
    assert (tmp_path / "run" / "student.pt").is_file()
    # only the two files sharing entries are decoded for the lookup; the rest are found by path
    assert decoded and set(decoded) <= {"clip01.wav", "clip01-copy.wav"}


def test_features_of_unchanged_files_load_without_decoding(tmp_path, monkeypatch):
    """A restart reads cached features for files unchanged on disk without decoding them;
    a file rewritten since (new modification time) is decoded again and gets new features."""
    import edgetag.training.data as data_mod
    from edgetag.training.data import load_manifest
    from edgetag.training.train_data import load_split as _load_split

    manifest = load_manifest(_write_dataset(tmp_path))
    frontend = load_config(None, [f"data.manifest={tmp_path / 'manifest.csv'}"]).frontend_config()
    decoded: list[str] = []
    real_load = data_mod.load_audio
    monkeypatch.setattr(data_mod, "load_audio", lambda path, *a, **k: decoded.append(Path(path).name) or real_load(path, *a, **k))

    entries, first = _load_split(manifest, "train", frontend, tmp_path / "features")
    assert len(entries) == len(decoded) > 0
    decoded.clear()
    entries2, again = _load_split(manifest, "train", frontend, tmp_path / "features")
    assert decoded == [] and [e.path for e in entries2] == [e.path for e in entries]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))

    rng = np.random.default_rng(1)
    sf.write(tmp_path / "clip01.wav", rng.uniform(-0.5, 0.5, SR).astype(np.float32), SR, subtype="FLOAT")
    os.utime(tmp_path / "clip01.wav", ns=(time.time_ns(), time.time_ns() + 10**9))
    _, third = _load_split(manifest, "train", frontend, tmp_path / "features")
    assert decoded == ["clip01.wav"]
    i = [e.path for e in entries].index("clip01.wav")
    assert not np.array_equal(third[i], first[i])


def test_feature_moments_match_numpy_over_all_frames():
    """The per-track float64 accumulation gives the statistics of the concatenated frames."""
    from edgetag.training.train_data import feature_moments as _feature_moments

    rng = np.random.default_rng(0)
    feats = [rng.normal(-8.0, 3.0, (n, 7)).astype(np.float32) for n in (1, 250, 37)]
    every = np.concatenate(feats).astype(np.float64)
    mean, std = _feature_moments(feats)
    np.testing.assert_allclose(mean, every.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, every.std(0), rtol=1e-12)
