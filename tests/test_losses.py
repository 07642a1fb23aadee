"""Losses and methods of `edgetag.training.losses`."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from edgetag.training import losses as L


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- label losses
def test_masked_bce_mean_over_observed():
    x = torch.randn(4, 5, generator=_g())
    y = (torch.rand(4, 5, generator=_g(1)) < 0.5).float()
    m = (torch.rand(4, 5, generator=_g(2)) < 0.6).float()
    got = L.masked_bce_with_logits(x, y, m)
    full = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert torch.allclose(got, full[m > 0].mean())
    assert torch.allclose(L.masked_bce_with_logits(x, y), full.mean())
    # masked entries contribute nothing, even absurd ones
    x2 = x.clone()
    x2[m == 0] = 1e4
    y2 = y.clone()
    y2[m == 0] = 1 - y2[m == 0]
    assert torch.allclose(L.masked_bce_with_logits(x2, y2, m), got)
    # frame-level [B, T, C]
    xf = torch.randn(2, 7, 3, generator=_g(3))
    yf = torch.ones(2, 7, 3)
    mf = torch.ones(2, 7, 3)
    mf[1] = 0
    assert torch.allclose(L.masked_bce_with_logits(xf, yf, mf), F.binary_cross_entropy_with_logits(xf[0], yf[0]))


def test_all_masked_is_zero_with_finite_grad():
    x = torch.randn(3, 4, requires_grad=True)
    for loss in (
        L.masked_bce_with_logits(x, torch.ones(3, 4), torch.zeros(3, 4)),
        L.masked_cross_entropy(x, torch.tensor([0, 1, 2]), torch.zeros(3)),
        L.kd_multilabel(x, torch.randn(3, 4), 2.0, mask=torch.zeros(3, 4)),
        L.kd_multiclass(x, torch.randn(3, 4), 2.0, mask=torch.zeros(3)),
    ):
        assert loss.item() == 0.0
        (g,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(g).all() and (g == 0).all()


def test_masked_cross_entropy_forms_agree():
    x = torch.randn(6, 4, generator=_g())
    idx = torch.tensor([0, 3, 1, 2, 2, 0])
    ref = F.cross_entropy(x, idx)
    assert torch.allclose(L.masked_cross_entropy(x, idx), ref)
    onehot = F.one_hot(idx, 4).float()
    assert torch.allclose(L.masked_cross_entropy(x, onehot), ref)
    # unlabelled examples: ignore_index, an all-zero row, a per-example mask, a per-class mask
    idx2 = idx.clone()
    idx2[:2] = -1
    ref2 = F.cross_entropy(x[2:], idx[2:])
    assert torch.allclose(L.masked_cross_entropy(x, idx2), ref2)
    oh2 = onehot.clone()
    oh2[:2] = 0
    assert torch.allclose(L.masked_cross_entropy(x, oh2), ref2)
    m = torch.tensor([0.0, 0, 1, 1, 1, 1])
    assert torch.allclose(L.masked_cross_entropy(x, idx, m), ref2)
    mc = torch.ones(6, 4)
    mc[:2] = 0
    mc[2:, :] = 1
    mc[3, 0] = 0  # a missing negative does not hide a known positive (class 3)
    assert torch.allclose(L.masked_cross_entropy(x, onehot, mc), ref2)
    assert torch.allclose(L.label_loss("multi_class", x, onehot, mc), ref2)
    assert torch.allclose(L.masked_cross_entropy(x, idx, label_smoothing=0.1), F.cross_entropy(x, idx, label_smoothing=0.1))


def test_label_matrix_mask_works_with_bce():
    from edgetag.training.data import label_matrix
    from edgetag.training.manifest_entry import ManifestEntry

    entries = [
        ManifestEntry("a.wav", "train", positives=frozenset({"dog"})),
        ManifestEntry("b.wav", "train", positives=frozenset({"cat"}), missing_all=True),
    ]
    y, m = label_matrix(entries, ["cat", "dog", "owl"])
    x = torch.randn(2, 3, generator=_g())
    got = L.masked_bce_with_logits(x, torch.from_numpy(y), torch.from_numpy(m))
    full = F.binary_cross_entropy_with_logits(x, torch.from_numpy(y), reduction="none")
    assert torch.allclose(got, torch.cat([full[0], full[1, :1]]).mean())


# ----------------------------------------------------------------------------- distillation
@pytest.mark.parametrize("T", [1.0, 2.5])
def test_kd_multiclass_is_tempered_kl_times_t2(T):
    s = torch.randn(5, 7, generator=_g())
    t = torch.randn(5, 7, generator=_g(1)) * 3
    ref = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean") * T * T
    assert torch.allclose(L.kd_multiclass(s, t, T), ref, atol=1e-6)
    # the same teacher as probabilities gives the same loss
    assert torch.allclose(L.kd_multiclass(s, F.softmax(t, -1), T, "probabilities"), ref, atol=1e-5)
    # a zero probability is safe
    p = F.one_hot(torch.arange(5) % 7, 7).float()
    assert torch.isfinite(L.kd_multiclass(s, p, T, "probabilities"))
    assert L.kd_multiclass(t, t, T).abs() < 1e-6


@pytest.mark.parametrize("T", [1.0, 3.0])
def test_kd_multilabel(T):
    s = torch.randn(4, 6, requires_grad=True, generator=_g())
    t = torch.randn(4, 6, generator=_g(1)) * 2
    ref = F.binary_cross_entropy(torch.sigmoid(s / T), torch.sigmoid(t / T)) * T * T
    got = L.kd_multilabel(s, t, T)
    assert torch.allclose(got, ref, atol=1e-6)
    assert torch.allclose(L.kd_multilabel(s, torch.sigmoid(t), T, "probabilities"), ref, atol=1e-4)
    assert torch.isfinite(L.kd_multilabel(s, torch.tensor([[0.0, 1.0] * 3] * 4), T, "probabilities"))
    # minimum where the student equals the teacher, and the teacher gets no gradient
    tt = t.clone().requires_grad_()
    ss = t.clone().requires_grad_()
    loss = L.kd_multilabel(ss, tt, T)
    loss.backward()
    assert tt.grad is None and ss.grad.abs().max() < 1e-6


def test_distillation_loss_combines_weights():
    s = torch.randn(4, 3, generator=_g())
    y = (torch.rand(4, 3, generator=_g(1)) < 0.5).float()
    m = torch.ones(4, 3)
    t = torch.randn(4, 3, generator=_g(2))
    crit = L.DistillationLoss("multi_label", temperature=2.0, label_weight=0.3, teacher_weight=0.7)
    total, parts = crit(s, y, m, t)
    assert torch.allclose(total, 0.3 * L.masked_bce_with_logits(s, y, m) + 0.7 * L.kd_multilabel(s, t, 2.0))
    assert set(parts) == {"label", "teacher"}
    total, parts = crit(s, teacher=t)  # unlabelled batch
    assert set(parts) == {"teacher"} and torch.allclose(total, 0.7 * L.kd_multilabel(s, t, 2.0))
    mc = L.DistillationLoss("multi_class", temperature=1.0, label_weight=1.0, teacher_weight=1.0)
    idx = torch.tensor([0, 1, 2, 0])
    total, _ = mc(s, idx, None, t)
    assert torch.allclose(total, F.cross_entropy(s, idx) + L.kd_multiclass(s, t))
    with pytest.raises(ValueError):
        L.DistillationLoss("regression")


# ----------------------------------------------------------------------------- embedding regularisers
def test_conreg_projection_alignment_and_several_teachers():
    s = torch.randn(8, 5, generator=_g())
    reg = L.ConReg(5, [3, 4], weights=[1.0, 0.5])
    with torch.no_grad():
        t1 = reg.projections[0](s) * 2.0  # same direction, other scale
        t2 = -reg.projections[1](s)  # opposite direction
    loss = reg(s, [t1, t2])
    assert torch.allclose(loss, torch.tensor(0.5 * 2.0), atol=1e-5)
    loss.backward()
    assert reg.projections[1].weight.grad is not None
    # frame-level teacher [B, T, D] for a clip student [B, D] is mean-pooled
    tf = torch.randn(8, 6, 3, generator=_g(1))
    one = L.ConReg(5, 3)
    pooled = one(s, tf.mean(1))
    assert torch.allclose(one(s, tf), pooled)
    # frame student with a row mask; no rows left gives 0
    sf = torch.randn(2, 4, 5, requires_grad=True)
    tf2 = torch.randn(2, 4, 3)
    assert one(sf, tf2, torch.zeros(2, 4)).item() == 0.0
    assert torch.isfinite(one(sf, tf2, torch.ones(2, 4)))
    with pytest.raises(ValueError):
        reg(s, [t1])


def test_disreg_invariances():
    s = torch.randn(10, 6, generator=_g())
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=_g(1)))
    t = 3.7 * s @ q  # rotated and scaled: same normalised distances
    assert L.dis_reg(s, t).item() < 1e-8
    # a wider teacher (zero-padded) too: no projection needed
    t_wide = torch.cat([t, torch.zeros(10, 4)], dim=1)
    assert L.dis_reg(s, t_wide).item() < 1e-8
    assert L.dis_reg(s, t_wide, metric="cosine").item() < 1e-6
    other = torch.randn(10, 6, generator=_g(2))
    assert L.dis_reg(s, other).item() > 1e-3
    assert torch.allclose(L.dis_reg(s, [t, other], [2.0, 0.5]), 0.5 * L.dis_reg(s, other), atol=1e-6)
    assert torch.allclose(L.DisReg([2.0, 0.5])(s, [t, other]), 0.5 * L.dis_reg(s, other), atol=1e-6)
    # duplicate rows (zero distances) keep gradients finite; one row gives 0
    sd = torch.cat([s[:3], s[:3]]).requires_grad_()
    L.dis_reg(sd, other[:6]).backward()
    assert torch.isfinite(sd.grad).all()
    assert L.dis_reg(s[:1], t[:1]).item() == 0.0


def test_regularisers_on_a_real_student():
    from edgetag.training.students import CausalConvStudent

    torch.manual_seed(0)
    st = CausalConvStudent(n_bins=16, n_labels=3, channels=8, layers=2)
    feats = torch.randn(3, 20, 16)
    emb = st.embed(feats)  # [B, T, 8]
    teacher_emb = torch.randn(3, 20, 12)
    reg = L.ConReg(st.embedding_dim, 12)
    loss = reg(emb, teacher_emb) + L.dis_reg(emb, teacher_emb)
    loss.backward()
    assert all(p.grad is not None for p in st.encoder.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------- mean teacher
def test_model_ema_params_and_buffers():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = L.ModelEMA(model, decay=0.9)
    assert all(not p.requires_grad for p in ema.module.parameters())
    model.train()
    model(torch.randn(8, 3))  # moves the running stats
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    old = {k: v.clone() for k, v in ema.module.state_dict().items()}
    ema.update(model)  # step 0 with warm-up: decay 0, a copy
    for k, v in model.state_dict().items():
        assert torch.equal(ema.module.state_dict()[k], v), k
    new_model = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model(torch.randn(8, 3))
    ema.update(model)  # step 1: decay min(0.9, 1 - 1/2) = 0.5
    sd = ema.module.state_dict()
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(sd[k], 0.5 * new_model[k] + 0.5 * v), k
        else:
            assert torch.equal(sd[k], v), k  # num_batches_tracked copied
    ema2 = L.ModelEMA(model, decay=0.99, warmup=False)
    before = ema2.module[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema2.update(model)
    assert torch.allclose(ema2.module[0].weight, before + 0.01)
    state = ema2.state_dict()
    ema.load_state_dict(state)
    assert ema.step == 1 and torch.equal(ema.module[0].weight, ema2.module[0].weight)
    del old


def test_consistency_loss_and_rampup():
    s = torch.randn(4, 5, requires_grad=True, generator=_g())
    t = torch.randn(4, 5, requires_grad=True, generator=_g(1))
    loss = L.consistency_loss(s, t, "multi_label")
    assert torch.allclose(loss, (torch.sigmoid(s) - torch.sigmoid(t)).square().mean())
    loss.backward()
    assert t.grad is None and s.grad is not None
    assert torch.allclose(L.consistency_loss(s, t, "multi_class"), (F.softmax(s, -1) - F.softmax(t, -1)).square().mean())
    assert L.consistency_loss(s, s.detach(), "multi_label").item() == 0.0
    assert L.sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert L.sigmoid_rampup(100, 100) == 1.0 and L.sigmoid_rampup(500, 100) == 1.0
    assert L.sigmoid_rampup(50, 100) == pytest.approx(math.exp(-1.25))
    assert L.linear_rampup(25, 100) == 0.25 and L.linear_rampup(3, 0) == 1.0


# ----------------------------------------------------------------------------- label enhancing
def test_enhance_labels():
    y = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0]])
    m = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]])
    p = torch.tensor([[0.01, 0.99, 0.95, 0.5, 0.02]])
    t, mm = L.enhance_labels(y, m, p, hi=0.9, lo=0.1)
    assert t.tolist() == [[1.0, 0.0, 1.0, 0.0, 0.0]]  # observed kept even against the teacher
    assert mm.tolist() == [[1.0, 1.0, 1.0, 0.0, 1.0]]  # unsure teacher: still masked
    t, mm = L.enhance_labels(y, m, p, soft=True, weight=0.5)
    assert torch.allclose(t, torch.tensor([[1.0, 0.0, 0.95, 0.0, 0.02]]))
    assert mm.tolist() == [[1.0, 1.0, 0.5, 0.0, 0.5]]
    x = torch.randn(1, 5)
    loss = L.masked_bce_with_logits(x, t, mm)
    full = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert torch.allclose(loss, (full * mm).sum() / mm.sum())
    with pytest.raises(ValueError):
        L.enhance_labels(y, m, p, hi=0.2, lo=0.8)


# ----------------------------------------------------------------------------- frame targets
def test_align_teacher_frames():
    teacher = torch.arange(5, dtype=torch.float32).reshape(1, 5, 1)  # value = teacher frame index
    # teacher at 10 Hz, student at 20 Hz: student frame j at j/20 s = teacher index j/2
    out, valid = L.align_teacher_frames(teacher, 10.0, 20.0, 12, "nearest")
    assert out[0, :, 0].tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4, 4]  # round half up
    assert valid.tolist() == [True] * 10 + [False] * 2
    out, valid = L.align_teacher_frames(teacher, 10.0, 20.0, 12, "linear")
    np.testing.assert_allclose(out[0, :, 0].numpy(), [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4, 4, 4])
    assert valid.tolist() == [True] * 9 + [False] * 3
    # offsets: teacher frames centred at 0.05 s + i/10
    out, valid = L.align_teacher_frames(teacher[0], 10.0, 10.0, 3, "linear", teacher_offset=0.05)
    np.testing.assert_allclose(out[:, 0].numpy(), [0, 0.5, 1.5])
    assert valid.tolist() == [False, True, True]


def test_align_teacher_windows_is_causal():
    w = torch.tensor([[[10.0], [20.0], [30.0]]])  # windows of 4 frames, hop 2: [0,4) [2,6) [4,8)
    out, valid = L.align_teacher_windows(w, [0, 2, 4], 4, 9, mode="end")
    assert valid.tolist() == [False, False, False, True, False, True, False, True, False]
    assert out[0, :, 0].tolist() == [0, 0, 0, 10, 0, 20, 0, 30, 0]
    out, valid = L.align_teacher_windows(w, torch.tensor([0, 2, 4]), 4, 9, mode="hold")
    assert valid.tolist() == [False] * 3 + [True] * 6
    assert out[0, :, 0].tolist() == [0, 0, 0, 10, 10, 20, 20, 30, 30]
    # the aligned targets and their validity feed a frame-level KD loss
    probs = torch.sigmoid(out / 10.0)
    s = torch.randn(1, 9, 1)
    loss = L.kd_multilabel(s, probs, 2.0, "probabilities", mask=valid.view(1, 9, 1))
    ref = L.kd_multilabel(s[:, 3:], probs[:, 3:], 2.0, "probabilities")
    assert torch.allclose(loss, ref)
    # a window ending past the sequence is dropped
    out, valid = L.align_teacher_windows(w, [0, 2, 4], 4, 6)
    assert out[0, :, 0].tolist() == [0, 0, 0, 10, 10, 20]
