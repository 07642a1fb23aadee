"""Students: shapes, sizes, the MAC counter, and streaming == offline for stateful students."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edgetag.training.students import (  # noqa: E402
    CausalConvStudent,
    CRNNStudent,
    MobileNetStudent,
    PlainCNNStudent,
    build_student,
    count_macs,
    count_parameters,
    macs_per_second,
)


def _random_stats(student) -> None:
    """Non-trivial normalisation and batch-norm statistics, so eval mode is exercised for real."""
    generator = torch.Generator().manual_seed(1)
    student.feature_mean.copy_(torch.randn(student.n_bins, generator=generator))
    student.feature_std.copy_(torch.rand(student.n_bins, generator=generator) + 0.5)
    for module in student.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


@pytest.mark.parametrize("kind", ["causal_cnn", "crnn"])
def test_streaming_equals_offline(kind: str) -> None:
    torch.manual_seed(0)
    student = build_student(kind, n_bins=64, n_labels=10).eval()
    _random_stats(student)
    features = torch.randn(2, 173, 64)
    with torch.no_grad():
        offline = student(features)
        states = student.initial_state(batch=2)
        pieces, start = [], 0
        for size in [1, 7, 0, 32, 1, 100, 32]:  # chunk sizes, an empty one included
            chunk = features[:, start : start + size]
            if chunk.shape[1] == 0:
                continue
            out, states = student.forward_stream(chunk, *states)
            pieces.append(out)
            start += size
        streamed = torch.cat(pieces, dim=1)
    assert streamed.shape == offline.shape == (2, 173, 10)
    assert (streamed - offline).abs().max().item() <= 1e-5


@pytest.mark.parametrize("kind", ["causal_cnn", "crnn"])
def test_state_shapes_follow_specs(kind: str) -> None:
    student = build_student(kind, n_bins=40, n_labels=5).eval()
    states = student.initial_state(batch=3)
    specs = student.state_specs()
    assert [tuple(s.shape) for s in states] == [(3, *spec.shape) for spec in specs]
    assert len({spec.name for spec in specs}) == len(specs)
    with torch.no_grad():
        _, new_states = student.forward_stream(torch.randn(3, 5, 40), *states)
    assert [s.shape for s in new_states] == [s.shape for s in states]


def test_mobilenet_window_output_and_width() -> None:
    small = MobileNetStudent(n_bins=64, n_labels=50, window_frames=96, width=0.5).eval()
    large = MobileNetStudent(n_bins=64, n_labels=50, window_frames=96, width=1.0).eval()
    with torch.no_grad():
        assert small(torch.randn(2, 96, 64)).shape == (2, 50)
        assert small.embed(torch.randn(2, 96, 64)).shape == (2, small.embedding_dim)
    assert count_parameters(small) < count_parameters(large)


def test_plain_cnn_window_output_layout_and_cost() -> None:
    """The int8-shaped student: dense 3x3 layers with ReLU only (what the 'dense-chain' int8 plan folds),
    and the default layout within the music tagger's budget (<= 9.35 M MACs per 1 s window)."""
    student = build_student("plain_cnn", n_bins=64, n_labels=50, window_frames=98).eval()
    _random_stats(student)
    with torch.no_grad():
        assert student(torch.randn(2, 98, 64)).shape == (2, 50)
        assert student.embed(torch.randn(2, 98, 64)).shape == (2, student.embedding_dim)
    convs = [m for m in student.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.groups for c in convs] == [1] * len(convs)  # no depthwise layer
    assert {type(m) for m in student.features} == {torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU}
    assert count_macs(student, torch.zeros(1, 98, 64)) <= 9_350_000
    wide = PlainCNNStudent(n_bins=64, n_labels=50, window_frames=98, width=1.5, head=0)
    assert count_parameters(wide) > count_parameters(student)
    with pytest.raises(ValueError, match="one entry per layer"):
        PlainCNNStudent(n_bins=64, n_labels=50, channels=(16, 32), strides=(2,))
    with pytest.raises(ValueError, match="one entry per layer"):
        PlainCNNStudent(n_bins=64, n_labels=50, channels=16, strides=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be positive"):
        PlainCNNStudent(n_bins=64, n_labels=50, channels=[16, 32], strides=[2, 0])
    with pytest.raises(ValueError, match="width must be positive"):
        PlainCNNStudent(n_bins=64, n_labels=50, width=0.0)


def test_size_range_covers_20k_to_5m() -> None:
    tiny = CausalConvStudent(n_bins=64, n_labels=10, channels=64, layers=4)
    big = MobileNetStudent(n_bins=64, n_labels=527, width=2.0)
    assert 15_000 <= count_parameters(tiny) <= 30_000
    assert 2_000_000 <= count_parameters(big) <= 6_000_000


def test_mac_counter_on_known_layers() -> None:
    linear = torch.nn.Linear(10, 4)
    assert count_macs(linear, torch.zeros(3, 10)) == 3 * 4 * 10
    conv = torch.nn.Conv1d(8, 16, kernel_size=3)
    assert count_macs(conv, torch.zeros(1, 8, 12)) == 16 * 10 * 8 * 3
    depthwise = torch.nn.Conv2d(8, 8, kernel_size=3, padding=1, groups=8)
    assert count_macs(depthwise, torch.zeros(1, 8, 5, 5)) == 8 * 25 * 9
    gru = torch.nn.GRU(6, 5, batch_first=True)
    assert count_macs(gru, torch.zeros(2, 7, 6)) == 2 * 7 * 3 * 5 * (6 + 5)


def test_mac_counter_sees_functional_calls() -> None:
    """Weights run through torch.nn.functional count like modules (edgetag's CREPE port does this)."""

    class Functional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv1d(8, 16, kernel_size=3)
            self.linear = torch.nn.Linear(10, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.nn.functional.conv1d(x, self.conv.weight, self.conv.bias)
            return torch.nn.functional.linear(y, self.linear.weight)

    assert count_macs(Functional(), torch.zeros(1, 8, 12)) == 16 * 10 * 8 * 3 + 16 * 4 * 10


def test_macs_per_second_modes() -> None:
    stateful = CRNNStudent(n_bins=64, n_labels=10)
    per_frame = count_macs(stateful.eval(), torch.zeros(1, 1, 64))
    assert macs_per_second(stateful, frame_rate=100.0) == pytest.approx(per_frame * 100, rel=1e-6)
    window = MobileNetStudent(n_bins=64, n_labels=10, window_frames=50, width=0.35)
    per_run = count_macs(window.eval(), torch.zeros(1, 50, 64))
    assert macs_per_second(window, frame_rate=100.0, hop_frames=10) == pytest.approx(per_run * 10)


def test_unknown_kind_and_bad_input() -> None:
    with pytest.raises(KeyError, match="known kinds"):
        build_student("transformer", n_bins=64, n_labels=2)
    student = CausalConvStudent(n_bins=64, n_labels=2)
    with pytest.raises(ValueError, match="expected 64 feature bins"):
        student(torch.zeros(1, 10, 32))
