"""Tag families and held-out per-tag agreement (`edgetag.training.tag_families`), and how the runtime marks
the tags whose held-out ROC-AUC is poor (`edgetag.runtime.tag_reliability`) in info, the live view and the summary."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import LABELS, build_model, load_script
from edgetag.runtime.tag_reliability import MARK, held_out_auc, legend, unreliable_tags
from edgetag.training import metrics as M
from edgetag.training.tag_families import FAMILIES, MIN_POSITIVE_WINDOWS, card_record, family_of, tag_agreement

REPO = Path(__file__).resolve().parents[1]


def _synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """400 windows of 20 tracks: 'guitar' (instrument) the student ranks perfectly, 'techno' (genre) at chance,
    'fast' (mood/tempo/other) with 4 positive windows only, 'female' (vocal) never given by the teacher."""
    rng = np.random.default_rng(seed)
    labels = ("guitar", "techno", "fast", "female")
    n = 400
    teacher = np.zeros((n, 4))
    teacher[:, 0] = rng.random(n)
    teacher[:, 1] = rng.random(n)
    teacher[:4, 2] = 0.9
    student = np.stack([teacher[:, 0] * 0.5, rng.random(n), rng.random(n), rng.random(n)], 1)
    return student, teacher, np.repeat(np.arange(20), 20).astype(str), labels


def test_every_music_tags_label_is_in_exactly_one_family() -> None:
    pytest.importorskip("onnxruntime")
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model

    labels = load_model(resolve_model("music-tags")).card.labels
    family = family_of(labels)
    assert set(family) == set(labels) and len(labels) == sum(len(m) for m in FAMILIES.values()) == 50
    assert {family[t] for t in ("female vocal", "choir", "no voice")} == {"vocals"}
    assert (family["cello"], family["metal"], family["slow"]) == ("instruments", "genres", "mood/tempo/other")


def test_family_of_refuses_unknown_and_repeated_tags() -> None:
    with pytest.raises(ValueError, match="in no family: kazoo"):
        family_of(["guitar", "kazoo"])
    with pytest.raises(ValueError, match="in two families"):
        family_of(["guitar"], {"a": ("guitar",), "b": ("guitar",)})


def test_tag_agreement_scores_tags_with_enough_positives_and_averages_per_family() -> None:
    student, teacher, track, labels = _synthetic()
    r = tag_agreement(student, teacher, track, labels, families={
        "instruments": ("guitar",), "genres": ("techno",), "vocals": ("female",), "mood/tempo/other": ("fast",)})
    tags = r["tags"]
    assert tags["guitar"]["roc_auc"] == 1.0 and tags["guitar"]["pr_auc"] == pytest.approx(1.0)
    assert 0.35 < tags["techno"]["roc_auc"] < 0.65 and tags["techno"]["scored"]
    # 4 positive windows: measured, but below the minimum, so not scored (nor in any macro, nor in the card)
    assert tags["fast"]["positive_windows"] == 4 < MIN_POSITIVE_WINDOWS and not tags["fast"]["scored"]
    assert tags["fast"]["roc_auc"] is not None and tags["fast"]["positive_tracks"] == 1
    assert tags["female"]["roc_auc"] is None and not tags["female"]["scored"]
    fam = r["families"]
    assert fam["instruments"]["roc_auc"] == 1.0 and fam["vocals"]["tags_scored"] == 0 and "roc_auc" not in fam["vocals"]
    lo, hi = fam["genres"]["roc_auc_ci95"]
    assert lo <= fam["genres"]["roc_auc"] <= hi
    assert r["all"]["roc_auc"] == pytest.approx(round((1.0 + tags["techno"]["roc_auc"]) / 2, 4), abs=1e-4)
    # the recipe's macro keeps every tag with both classes, the 4-window one too
    assert r["both_classes"]["tags"] == 3
    record = card_record(r, "int8")
    assert set(record["per_tag"]) == {"guitar", "techno"} and record["per_tag_measured_on"] == "this file (int8)"
    assert record["per_tag"]["guitar"][record["per_tag_columns"].index("roc_auc")] == 1.0


def test_track_bootstrap_is_seeded_and_brackets_the_macro() -> None:
    student, teacher, track, _ = _synthetic()
    tags = (teacher[:, :2] >= 0.5).astype(int)
    a = M.track_bootstrap(tags, student[:, :2], track, n=50)
    assert a == M.track_bootstrap(tags, student[:, :2], track, n=50)
    assert a[0] <= M.macro(M.per_class(M.roc_auc, tags, student[:, :2]))[0] <= a[1]


# ----------------------------------------------------------------------------- the runtime's marks
@pytest.fixture(scope="module")
def marked_model(tmp_path_factory) -> Path:
    """The conftest band model with a held-out record: 'low' unreliable (0.62), 'mid' fine, 'high' unmeasured."""
    pytest.importorskip("onnxruntime")
    from edgetag.export.model_file import record_metrics

    path = build_model(tmp_path_factory.mktemp("marked") / "marked.onnx")
    record_metrics(path, {}, {"evaluation": {"per_tag": {"low": [0.62, 0.1, 12, 2], "mid": [0.91, 0.5, 40, 5]},
                                             "per_tag_columns": ["roc_auc", "pr_auc", "positive_windows",
                                                                 "positive_tracks"]}})
    return path


def test_unreliable_tags_come_from_the_card_and_a_bad_record_marks_nothing(marked_model) -> None:
    import dataclasses

    from edgetag.runtime.model import load_model

    card = load_model(marked_model).card
    assert held_out_auc(card) == {"low": 0.62, "mid": 0.91}
    assert unreliable_tags(card) == {"low": 0.62}
    for evaluation in ({"per_tag": {"low": "x"}}, {"per_tag": [1]}, {"per_tag": {"nope": [0.1]}},
                       {"per_tag": {"low": [0.5]}, "per_tag_columns": ["f1"]}, {"per_tag": {"low": [float("nan")]}},
                       {"per_tag": {"low": [True]}}, "x"):
        assert unreliable_tags(dataclasses.replace(card, provenance={"evaluation": evaluation})) == {}
    assert legend({"low": 0.62}, ["mid"]) == ""


def test_info_marks_unreliable_labels_once_with_a_legend(marked_model, capsys) -> None:
    from edgetag.runtime.cli import main

    assert main(["info", str(marked_model)]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = out[out.index(next(line for line in out if line.startswith("labels "))) + 1:]
    assert any(f"low{MARK}  (0.5)" in row for row in rows)
    assert not any(f"mid{MARK}" in row or f"high{MARK}" in row for row in rows)
    assert rows[-2:] == [f"  {MARK} unreliable: held-out ROC-AUC against the teacher below 0.75 (low 0.62)",
                         "  no held-out AUC, so no mark: 1 of 3 tags (too rare in the held-out music)"]
    assert max(len(line) for line in out[1:]) <= 80


def test_tag_summary_marks_unreliable_tags_and_explains_the_mark(marked_model, capsys) -> None:
    from edgetag.runtime.cli import main

    assert main(["tag", "--demo", "--model", str(marked_model), "--format", "summary"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"low{MARK}" in out[0] and f"mid{MARK}" not in out[0]  # the top line
    assert sum(line.startswith(f"  low{MARK} ") for line in out) == 1
    assert out[-1] == f"  {MARK} unreliable: held-out ROC-AUC against the teacher below 0.75 (low 0.62)"
    assert max(len(line) for line in out[1:]) <= 80


def test_summary_legend_wraps_in_80_columns_and_names_only_the_rows_shown() -> None:
    from edgetag.runtime.output import format_summary

    labels = [f"tag{i:02d}" for i in range(12)]
    summary = {"decisions": 10, "top": labels[:5], "mean": {lb: 0.5 - i / 100 for i, lb in enumerate(labels)},
               "max": {lb: 0.9 for lb in labels}}
    unreliable = {lb: 0.5 for lb in labels}
    text = format_summary(summary, "x.wav", rows=8, unreliable=unreliable).splitlines()
    legend_lines = text[2 + 8:]
    assert legend_lines and all(len(line) <= 80 for line in text)
    assert "tag07 0.50" in " ".join(legend_lines) and "tag08" not in " ".join(legend_lines)
    assert format_summary(summary, rows=3).splitlines()[-1].startswith("  tag02")  # no record: no mark, no legend


def test_live_view_marks_unreliable_tags_on_screen() -> None:
    from edgetag.runtime.engine import Decision
    from edgetag.runtime.output import LiveView
    from rich.console import Console

    def render(scores: list[float]) -> str:
        buffer = io.StringIO()
        with LiveView(LABELS, (0.5, 0.5, 0.5), source="test", k=2, unreliable={"low": 0.62},
                      console=Console(file=buffer, force_terminal=False, width=80)) as view:
            view.decision(Decision(1.0, 16000, np.array(scores, np.float32)))
        return buffer.getvalue()

    shown = render([0.9, 0.2, 0.1])
    assert f"low{MARK}" in shown and "held-out ROC-AUC against the teacher below 0.75 (low 0.62)" in " ".join(
        shown.split())
    hidden = render([0.1, 0.9, 0.8])  # 'low' is not among the top 2: no mark, no legend
    assert f"low{MARK}" not in hidden and "unreliable" not in hidden


def test_live_view_shows_a_tag_that_is_on_below_the_top_k() -> None:
    from edgetag.runtime.engine import Decision
    from edgetag.runtime.output import LiveView
    from rich.console import Console

    buffer = io.StringIO()
    with LiveView(LABELS, (0.5, 0.5, 0.05), source="test", k=2,
                  console=Console(file=buffer, force_terminal=False, width=80)) as view:
        view.bind_active(lambda: ("high",))  # the event detector holds 'high' on at its low threshold
        view.decision(Decision(1.0, 16000, np.array([0.9, 0.3, 0.06], np.float32)))
    rows = [line.split("│")[1].strip() for line in buffer.getvalue().splitlines() if line.count("│") >= 3]
    assert rows[:3] == ["low", "mid", "high"]


def test_card_record_keeps_the_builtin_file_verifiable(tmp_path) -> None:
    """benchmarks/tag_families.py --write-card goes through record_metrics: digest and test vector still hold."""
    pytest.importorskip("onnxruntime")
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model
    from edgetag.runtime.verify import verify_model

    bench = load_script(REPO / "benchmarks" / "tag_families.py", "bench_tag_families")
    path = tmp_path / "music-tags.int8.onnx"
    shutil.copyfile(resolve_model("music-tags-int8"), path)
    before = load_model(path).card
    student, teacher, track, _ = _synthetic()
    result = tag_agreement(student, teacher, track, ("guitar", "techno", "fast", "female"))
    result.update(packages=["p"], tracks=20, windows=400)
    bench.write_card(path, result)
    model = load_model(path)
    evaluation = model.card.provenance["evaluation"]
    assert evaluation["per_tag_measured_on"] == "this file (int8)"
    assert set(evaluation["per_tag"]) == {"guitar", "techno"}
    assert evaluation["what"] == before.provenance["evaluation"]["what"]  # the entries it had are kept
    assert model.card.integrity == before.integrity and model.card.test_vector == before.test_vector
    assert verify_model(model).passed


@pytest.mark.parametrize("name", ["music-tags", "music-tags-int8"])
def test_builtin_music_tags_cards_hold_their_own_held_out_per_tag_auc(name: str) -> None:
    pytest.importorskip("onnxruntime")
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model

    card = load_model(resolve_model(name)).card
    evaluation = card.provenance["evaluation"]
    precision = card.provenance["export"]["precision"]
    assert evaluation["per_tag_measured_on"] == f"this file ({precision})"  # the int8 file measured itself
    auc = held_out_auc(card)
    assert len(auc) >= 10 and set(evaluation["families"]) == set(FAMILIES)
    windows = evaluation["per_tag_columns"].index("positive_windows")
    assert all(row[windows] >= MIN_POSITIVE_WINDOWS for row in evaluation["per_tag"].values())
    assert unreliable_tags(card) == {label: v for label, v in auc.items() if v < 0.75}


def test_summary_shows_every_tag_that_was_on_even_with_a_low_mean_score() -> None:
    # music-tags-voices' voice tags have thresholds near 0.05: on for half a song, still last by mean score
    from edgetag.runtime.output import SpanRecorder, format_summary
    from edgetag.runtime.postprocess import Event

    labels = ["drums", "techno", "beat", "voice", "piano"]
    summary = {"decisions": 100, "top": labels[:2], "mean": dict(zip(labels, [0.4, 0.3, 0.2, 0.03, 0.01])),
               "max": dict.fromkeys(labels, 0.5)}
    spans = SpanRecorder()
    for e in [Event(1.0, "voice", "onset", 0.06), Event(6.0, "voice", "offset", 0.01)]:
        spans.event(e)
    text = format_summary(summary, rows=2, thresholds=dict.fromkeys(labels, 0.05), spans=spans,
                          duration_s=10.0).splitlines()
    assert [line.split()[0] for line in text[2:]] == ["drums", "techno", "voice"]  # beat was never on: not shown
    assert text[-1].endswith("50 %: 1.0-6.0")
