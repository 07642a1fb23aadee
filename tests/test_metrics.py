"""Metrics against scikit-learn (an independent implementation) and hand-computed pitch cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from edgetag.training import metrics as M

skm = pytest.importorskip("sklearn.metrics")


def _cases(seed: int = 0):
    rng = np.random.default_rng(seed)
    for n in (5, 17, 200):
        y = (rng.random(n) < 0.3).astype(int)
        y[0], y[1] = 1, 0
        yield y, rng.random(n)  # no ties
        yield y, np.round(rng.random(n), 1)  # many ties
        yield y, rng.integers(0, 3, n).astype(float)  # heavy ties


@pytest.mark.parametrize("case", list(_cases()), ids=lambda c: f"n{len(c[0])}")
def test_binary_metrics_match_sklearn(case):
    y, s = case
    assert M.average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    assert M.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    p, r, _ = skm.precision_recall_curve(y, s)
    assert M.pr_auc(y, s) == pytest.approx(skm.auc(r, p), abs=1e-12)


def test_undefined_classes_are_skipped_and_counted():
    rng = np.random.default_rng(1)
    y = (rng.random((50, 4)) < 0.4).astype(int)
    y[:, 2] = 0  # no positive
    y[:, 3] = 1  # no negative
    s = rng.random((50, 4))
    out = M.tagging_metrics(y, s)
    assert out["map_skipped"] == 1 and out["roc_auc_skipped"] == 2 and out["pr_auc_skipped"] == 1
    ap = [skm.average_precision_score(y[:, c], s[:, c]) for c in (0, 1, 3)]
    auc = [skm.roc_auc_score(y[:, c], s[:, c]) for c in (0, 1)]
    assert out["map"] == pytest.approx(np.mean(ap))
    assert out["roc_auc"] == pytest.approx(np.mean(auc))
    assert math.isnan(M.roc_auc(np.ones(3), np.arange(3.0)))
    # no labelled positive anywhere (a pitch student's split): no tag metric at all, not a macro F1 of 0
    assert M.tagging_metrics(np.zeros((5, 3)), s[:5, :3]) == {"n_examples": 5}
    assert M.tagging_metrics(y[:, :2], s[:, :2], mask=np.zeros((50, 2))) == {"n_examples": 50}
    assert math.isnan(M.macro(np.array([np.nan]))[0])


def test_mask_uses_observed_rows_only():
    rng = np.random.default_rng(2)
    y = (rng.random((80, 3)) < 0.5).astype(int)
    s = rng.random((80, 3))
    mask = (rng.random((80, 3)) < 0.7).astype(np.float32)
    got = M.per_class(M.roc_auc, y, s, mask)
    for c in range(3):
        m = mask[:, c] > 0
        assert got[c] == pytest.approx(skm.roc_auc_score(y[m, c], s[m, c]))
    ap = M.per_class(M.average_precision, y, s, mask)
    for c in range(3):
        m = mask[:, c] > 0
        assert ap[c] == pytest.approx(skm.average_precision_score(y[m, c], s[m, c]))


def test_f1_and_accuracy_match_sklearn():
    rng = np.random.default_rng(3)
    y = (rng.random((60, 5)) < 0.3).astype(int)
    y[:, 4] = 0
    s = rng.random((60, 5))
    s[:, 4] = 0.1  # nothing predicted, nothing true: zero_division
    f1, macro_f1 = M.f1_scores(y, s, 0.5)
    ref = skm.f1_score(y, (s >= 0.5).astype(int), average=None, zero_division=0)
    np.testing.assert_allclose(f1, ref)
    assert macro_f1 == pytest.approx(skm.f1_score(y, (s >= 0.5).astype(int), average="macro", zero_division=0))
    thr = np.array([0.2, 0.4, 0.6, 0.8, 0.5])
    f1, _ = M.f1_scores(y, s, thr)
    np.testing.assert_allclose(f1, skm.f1_score(y, (s >= thr).astype(int), average=None, zero_division=0))

    labels = rng.integers(0, 4, 40)
    scores = rng.random((40, 4))
    assert M.accuracy(labels, scores) == pytest.approx(skm.accuracy_score(labels, scores.argmax(1)))
    onehot = np.eye(4)[labels]
    assert M.accuracy(onehot, scores) == pytest.approx(skm.accuracy_score(labels, scores.argmax(1)))
    labels2 = labels.copy()
    labels2[:10] = -1  # unlabelled
    assert M.accuracy(labels2, scores) == pytest.approx(skm.accuracy_score(labels[10:], scores[10:].argmax(1)))
    mask = np.ones((40, 4))
    mask[:10] = 0
    assert M.accuracy(onehot, scores, mask) == pytest.approx(skm.accuracy_score(labels[10:], scores[10:].argmax(1)))


def test_hz_to_cents_convention():
    np.testing.assert_allclose(M.hz_to_cents(np.array([10.0, 20.0, 440.0, 0.0, -20.0])),
                               [0.0, 1200.0, 1200 * math.log2(44.0), 0.0, 1200.0])


def test_pitch_metrics_hand_computed():
    a4 = 440.0
    cent = 2 ** (1 / 1200)
    ref = np.array([a4, a4, a4, a4, a4, 0.0, 0.0, 0.0, a4, a4])
    est = np.array([
        a4 * cent**49,   # within 50 cents: pitch and chroma correct
        a4 * cent**51,   # 51 cents off: wrong
        a4 * 2,          # octave error: chroma only
        a4 / 2 * cent**10,  # octave below + 10 cents: chroma only
        0.0,             # unvoiced, no pitch: wrong, voicing miss
        0.0,             # correct rejection
        220.0,           # false alarm
        -300.0,          # unvoiced with a guess: no false alarm
        -a4,             # unvoiced estimate with the right pitch: counts for RPA, voicing miss
        a4 * cent**-50,  # exactly 50 cents: wrong (strict <, as mir_eval)
    ])
    out = M.pitch_metrics(ref, est)
    assert out["n_voiced"] == 7
    assert out["raw_pitch_accuracy"] == pytest.approx(2 / 7)  # frames 0, 8
    assert out["raw_chroma_accuracy"] == pytest.approx(4 / 7)  # frames 0, 2, 3, 8
    assert out["voicing_recall"] == pytest.approx(5 / 7)  # 0, 1, 2, 3, 9 estimated voiced
    assert out["voicing_false_alarm"] == pytest.approx(1 / 3)
    # explicit voicing overrides the sign of the estimate
    v = est > 0
    v[8] = True
    out2 = M.pitch_metrics(ref, np.abs(est), est_voicing=v)
    assert out2["voicing_recall"] == pytest.approx(6 / 7)
    # |est| is > 0 on frame 7 too, but the explicit voicing says unvoiced there
    assert out2["voicing_false_alarm"] == pytest.approx(1 / 3)
    assert math.isnan(M.pitch_metrics(np.zeros(3), np.zeros(3))["raw_pitch_accuracy"])


def test_agreement():
    rng = np.random.default_rng(4)
    t = rng.random((100, 6))
    out = M.agreement(t, t, threshold=0.5)
    assert out["roc_auc"] == pytest.approx(1.0) and out["pearson"] == pytest.approx(1.0) and out["top1"] == 1.0
    s = t + 0.3 * rng.standard_normal(t.shape)
    out = M.agreement(s, t, threshold=0.5)
    ref = np.mean([skm.roc_auc_score(t[:, c] >= 0.5, s[:, c]) for c in range(6)])
    assert out["roc_auc"] == pytest.approx(ref)
    ref_r = np.mean([np.corrcoef(s[:, c], t[:, c])[0, 1] for c in range(6)])
    assert out["pearson"] == pytest.approx(ref_r)
    assert out["top1"] == pytest.approx(np.mean(s.argmax(1) == t.argmax(1)))
    const = t.copy()
    const[:, 0] = 0.2
    out = M.agreement(s, const)
    assert out["pearson_skipped"] == 1 and out["roc_auc_skipped"] == 1


# ----------------------------------------------------------------------------- edgetag evaluate
def _eval_fixture(tmp_path):
    """Tone/noise WAVs at 16 kHz, a manifest with a test split, a tiny teacher's cache, two students."""
    torch = pytest.importorskip("torch")
    sf = pytest.importorskip("soundfile")
    from edgetag.runtime.frontend import FrontendConfig
    from edgetag.training.teach import fill_cache
    from edgetag.training.checkpoint import StudentCheckpoint, save_checkpoint
    from edgetag.training.students import build_student
    from edgetag.training.teachers.base import Teacher, TeacherOutput

    class EvalTeacher(Teacher):
        name = "eval-tiny"
        sample_rate = 8000
        score_kind = "probabilities"
        task = "multi_label"
        frame_rate = 20.0
        labels = ["a", "b", "c"]  # noqa: RUF012
        embedding_dim = 2

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("w", torch.tensor([-3.0, 0.5, 3.0]))

        def num_frames(self, n: int) -> int:
            return n // 400

        def forward(self, x):
            b, n = x.shape
            t = self.num_frames(n)
            fr = x[:, : t * 400].reshape(b, t, 400)
            rms = fr.pow(2).mean(-1, keepdim=True).sqrt()
            return TeacherOutput(scores=torch.sigmoid(20 * rms * self.w), embeddings=torch.cat([rms, -rms], -1))

    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        n = int(16000 * (1.0 + 0.25 * (i % 3)))
        x = (0.05 + 0.1 * (i % 4)) * rng.standard_normal(n).astype(np.float32)
        sf.write(tmp_path / f"c{i}.wav", x, 16000)
        labels = {"a": int(i % 2 == 0), "b": int(i % 3 == 0), "c": None if i == 3 else int(i >= 4)}
        rows.append({"path": f"c{i}.wav", "labels": labels, "split": "test" if i < 6 else "train"})
    long = (0.2 * rng.standard_normal(16000 * 3)).astype(np.float32)
    sf.write(tmp_path / "long.wav", long, 16000)
    rows.append({"path": "long.wav", "start": 0.5, "labels": {"a": 1, "zzz": 1}, "split": "test"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    teacher = EvalTeacher()
    fill_cache([teacher], manifest, tmp_path / "cache", progress=False, chunk_seconds=1.0, device="cpu")

    torch.manual_seed(0)
    fe = FrontendConfig.preset("default")
    paths = {}
    for kind, params, wf, hop in (("causal_cnn", {"channels": 8, "layers": 2}, 1, 10),
                                  ("mobilenet", {"window_frames": 40, "width": 0.25, "embedding_dim": 16}, 40, 20)):
        ck = StudentCheckpoint(
            student=build_student(kind, fe.n_bins, 3, **params), kind=kind, params=params, frontend=fe,
            task="multi_label", labels=["a", "b", "c"], thresholds=[0.5, 0.4, 0.6], window_frames=wf, hop_frames=hop,
        )
        paths[kind] = save_checkpoint(ck, tmp_path / f"{kind}.pt")
    return manifest, tmp_path / "cache", paths, teacher


def test_evaluate_end_to_end(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead (and the CI machine is shared)
    try:
        _check_evaluate(tmp_path, capsys)
    finally:
        torch.set_num_threads(threads)


def _check_evaluate(tmp_path, capsys):
    import torch
    from edgetag.runtime.audio import load_audio
    from edgetag.runtime.cli import main
    from edgetag.runtime.frontend import compute_features
    from edgetag.training.checkpoint import load_checkpoint
    from edgetag.training.data import load_manifest
    from edgetag.training.evaluate import TeacherCacheLookup, evaluate

    manifest, cache, paths, teacher = _eval_fixture(tmp_path)
    m = load_manifest(manifest).select("test")

    # the cache lookup chains a long entry's windows: [0.5, 1.5) [1.5, 2.5) [2.5, end)
    lookup = TeacherCacheLookup(cache, "eval-tiny")
    long_entry = next(e for e in m if e.path == "long.wav")
    got = lookup.get(long_entry, 3)
    parts = []
    for ws, we in ((0.5, 1.5), (1.5, 2.5), (2.5, None)):
        wave = torch.from_numpy(load_audio(tmp_path / "long.wav", 8000, ws, we))
        parts.append(teacher(wave[None]).scores[0].numpy())
    ref = np.concatenate(parts)
    np.testing.assert_allclose(got.scores, ref, atol=2e-3)
    np.testing.assert_allclose(got.times[[0, 20, 40]], [0.0, 1.0, 2.0])

    # labels section == metrics of clip scores computed by hand
    res = evaluate(paths["causal_cnn"], manifest, teacher_cache=cache, teacher="eval-tiny")
    ck = load_checkpoint(paths["causal_cnn"])
    scores, t_scores = [], []
    for e in m:
        wave = load_audio(tmp_path / e.path, 16000, e.start, e.end)
        with torch.no_grad():
            logits = ck.student(torch.from_numpy(compute_features(wave, ck.frontend))[None])[0]
        scores.append(torch.sigmoid(logits).mean(0).numpy())
        t_scores.append(lookup.get(e, 3).scores.astype(np.float64).mean(0))
    y = np.array([[e.label_state(n) or 0 for n in "abc"] for e in m], float)
    mask = np.array([[e.label_state(n) is not None for n in "abc"] for e in m], float)
    want = M.tagging_metrics(y, np.stack(scores), mask, np.array([0.5, 0.4, 0.6]))
    for k, v in want.items():
        assert res.sections["labels"][k] == pytest.approx(v, abs=1e-5), k
    want_t = M.agreement(np.stack(scores), np.stack(t_scores), 0.5)
    for k in ("roc_auc", "pearson", "top1"):
        assert res.sections["teacher"][k] == pytest.approx(want_t[k], abs=1e-4, nan_ok=True), k
    assert "teacher_frames" in res.sections and res.sections["teacher_frames"]["n_examples"] > 100
    assert res.info["evaluated"] == 7 and res.info["labels_not_in_checkpoint"] == 1

    # the command, with a window student: table printed, JSON written
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(paths["mobilenet"]), "--data", str(manifest), "--teacher-cache", str(cache),
                 "--teacher", "eval-tiny", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "[labels]" in text and "[teacher]" in text and "map" in text
    data = __import__("json").loads(out.read_text())
    assert data["info"]["student"] == "mobilenet" and 0.0 <= data["metrics"]["labels"]["map"] <= 1.0
    assert "tiled_short_clips" not in data["info"]  # every clip is longer than a window
    # labels only, all splits
    res = evaluate(paths["causal_cnn"], manifest, split=None)
    assert res.info["evaluated"] == 9 and "teacher" not in res.sections
    with pytest.raises(ValueError, match="split"):
        evaluate(paths["mobilenet"], manifest, split="nope")
    with pytest.raises(ValueError, match="no outputs of teacher"):
        evaluate(paths["mobilenet"], manifest, teacher_cache=cache, teacher="other")


def test_evaluate_student_against_itself_as_teacher(tmp_path):
    """A teacher that *is* the student: perfect frame agreement and pitch accuracy (CREPE-bin labels)."""
    torch = pytest.importorskip("torch")
    sf = pytest.importorskip("soundfile")
    from edgetag.runtime.frontend import FrontendConfig, compute_features
    from edgetag.runtime.pitch import crepe_bin_names
    from edgetag.training.teach import fill_cache
    from edgetag.training.checkpoint import StudentCheckpoint, save_checkpoint
    from edgetag.training.evaluate import evaluate
    from edgetag.training.students import build_student
    from edgetag.training.teachers.base import Teacher, TeacherOutput

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fe = FrontendConfig.preset("default")
        torch.manual_seed(1)
        params = {"channels": 8, "layers": 2}
        student = build_student("causal_cnn", fe.n_bins, 360, **params).eval()
        with torch.no_grad():  # a peaky student that does not saturate (ties would make argmax arbitrary)
            student.classifier.weight.mul_(3.0)
            student.classifier.bias.sub_(3.0)

        class Mirror(Teacher):
            name = "mirror"
            sample_rate = 16000
            score_kind = "probabilities"
            task = "multi_label"
            frame_rate = fe.frame_rate
            labels = list(crepe_bin_names())  # noqa: RUF012 - CREPE's bin names, as its teacher writes them
            embedding_dim = 0

            def __init__(self) -> None:
                super().__init__()
                self.student = student

            def forward(self, x):
                feats = torch.stack([torch.from_numpy(compute_features(w.numpy(), fe)) for w in x])
                return TeacherOutput(scores=torch.sigmoid(self.student(feats)), embeddings=None)

        rng = np.random.default_rng(0)
        rows = []
        for i in range(3):
            sf.write(tmp_path / f"p{i}.wav", (0.2 * rng.standard_normal(16000)).astype(np.float32), 16000)
            rows.append({"path": f"p{i}.wav", "labels": [], "split": "test"})
        manifest = tmp_path / "m.jsonl"
        manifest.write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
        fill_cache([Mirror()], manifest, tmp_path / "cache", progress=False, device="cpu")
        path = save_checkpoint(StudentCheckpoint(
            student=student, kind="causal_cnn", params=params, frontend=fe, task="multi_label",
            labels=Mirror.labels, thresholds=[0.5] * 360, window_frames=1, hop_frames=1), tmp_path / "s.pt")
        offset = fe.win_length / 2 / fe.sample_rate  # teacher frames are the student's frames
        res = evaluate(path, manifest, teacher_cache=tmp_path / "cache", teacher="mirror", teacher_offset=offset)
    finally:
        torch.set_num_threads(threads)
    assert "labels" not in res.sections  # no labels in this manifest
    pitch = res.sections["pitch"]
    assert pitch["n_frames"] == 3 * 98
    assert pitch["raw_pitch_accuracy"] > 0.99 and pitch["raw_chroma_accuracy"] >= pitch["raw_pitch_accuracy"]
    assert pitch["voicing_recall"] > 0.99
    assert res.sections["teacher"]["top1"] == 1.0 and res.sections["teacher"]["n_examples"] == 3
