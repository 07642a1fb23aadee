"""The public Python API (`edgetag.load`, `Tagger.push`, `edgetag.tag_file`) on the built-in models.

Real models and ONNX Runtime: the decisions must be the CLI's (``edgetag tag
--format jsonl``) number for number, whatever the chunking, sample type or
channel layout; audio at another rate must equal resampling it as a whole;
bad input must be refused without disturbing the stream.
"""

from __future__ import annotations

import json
import math
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
sf = pytest.importorskip("soundfile")
soxr = pytest.importorskip("soxr")

import edgetag  # noqa: E402
from edgetag.runtime.cli import main  # noqa: E402
from edgetag.runtime.demo import demo_music  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    """The built-in 8 s demo piece (plucked A-minor melody over drums) at 16 kHz, float32: it turns
    `techno`, `electronic` and `beat` on, and the pitch model reads its notes."""
    return demo_music(16000)


@pytest.fixture(scope="module")
def music_wav(music: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "music.wav"
    sf.write(path, music, 16000, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def taggers() -> dict[str, edgetag.Tagger]:
    return {name: edgetag.load(name, threads=1) for name in ("music-tags", "pitch")}


def _cli_jsonl(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    assert main(["tag", *args, "--threads", "1"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def _push_all(tagger: edgetag.Tagger, x: np.ndarray, rate: int, sizes: list[int]) -> list[edgetag.TagDecision]:
    out, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        out += tagger.push(x[i : i + n], sample_rate=rate)
        i, k = i + n, k + 1
    return out + tagger.flush()


def _same(a: list[edgetag.TagDecision], b: list[edgetag.TagDecision]) -> None:
    assert [d.t for d in a] == [d.t for d in b]
    assert [d.active for d in a] == [d.active for d in b]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.scores, y.scores)


# ---------------------------------------------------------------- the package
def test_version_is_pyprojects_in_the_package_and_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert edgetag.__version__ == version
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"edgetag {version}"


def test_public_names() -> None:
    assert set(edgetag.__all__) == {"PitchReading", "TagDecision", "Tagger", "__version__", "load", "tag_file"}
    assert all(hasattr(edgetag, name) for name in edgetag.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        edgetag.nope  # noqa: B018
    from edgetag import _core  # the extension beside the package's __init__ still imports

    assert hasattr(_core, "StreamingFrontend")


def test_the_top_level_init_is_mapped_last_in_pyproject() -> None:
    """scikit-build-core keys its copy list by source file: runtime/_toplevel/__init__.py is also under
    the "edgetag/runtime" entry, and the entry listed last wins. Listed first, the wheel lost edgetag/__init__.py."""
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["scikit-build"]["wheel"]["packages"]
    assert list(packages.items())[-1] == ("edgetag/__init__.py", "runtime/_toplevel/__init__.py")


# ------------------------------------------------------------ equal to the CLI
@pytest.mark.parametrize("name", ["music-tags", "pitch"])
def test_tag_file_equals_the_cli(name: str, music_wav: Path, taggers, capsys: pytest.CaptureFixture[str]) -> None:
    cli = _cli_jsonl(capsys, str(music_wav), "--model", name, "--scores", "all")
    cli_decisions, summary = cli[:-1], cli[-1]
    assert "summary" in summary
    api = edgetag.tag_file(music_wav, model=name, threads=1)
    assert len(api) == len(cli_decisions) > 10
    for d, c in zip(api, cli_decisions):
        got = d.to_dict()
        assert got["t"] == c["t"] and got["scores"] == c["scores"]
        assert got.get("pitch") == c.get("pitch")
    # a loaded tagger given to tag_file gives the same, and so does another tagger on the same model
    _same(api, edgetag.tag_file(music_wav, model=taggers[name]))
    _same(api, edgetag.tag_file(music_wav, model=edgetag.Tagger(taggers[name].model)))


@pytest.mark.parametrize("name", ["music-tags", "pitch"])
def test_active_follows_the_clis_events(name: str, music_wav: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`d.active` is the state ``--events`` reports: its changes are the CLI's onsets and offsets."""
    min_on, min_off = 0.2, 0.3  # short, so that the 8 s demo has several events
    flags = ["--min-on", str(min_on), "--min-off", str(min_off)]
    events = [e for e in _cli_jsonl(capsys, str(music_wav), "--model", name, "--events", *flags) if "event" in e]
    api = edgetag.tag_file(music_wav, model=name, threads=1, min_on=min_on, min_off=min_off)
    changes, before = [], set()
    for d in api + [None]:  # None: the end of the stream closes what is on
        now = set(d.active) if d is not None else set()
        t = d.t if d is not None else api[-1].t
        changes += [(round(t, 6), "offset", lb) for lb in sorted(before - now)]
        changes += [(round(t, 6), "onset", lb) for lb in sorted(now - before)]
        before = now
    assert len(events) >= 4 and len(changes) == len(events)
    step = api[1].t - api[0].t
    # events are dated where their run began and confirmed (active) later: tags after --min-on / --min-off,
    # notes two decisions later; each label's changes and events come in the same order
    def by_label(items: list[tuple[float, str, str]]) -> dict[str, list[tuple[float, str]]]:
        out: dict[str, list[tuple[float, str]]] = {}
        for t, kind, label in sorted(items):
            out.setdefault(label, []).append((t, kind))
        return out

    confirmed, dated = by_label(changes), by_label([(e["t"], e["event"], e["label"]) for e in events])
    assert {k: [kind for _, kind in v] for k, v in confirmed.items()} == {k: [kind for _, kind in v] for k, v in dated.items()}
    for label in confirmed:
        for (t_active, kind), (t_event, _) in zip(confirmed[label], dated[label]):
            if t_active == round(api[-1].t, 6):
                continue  # the end of the stream closes what is on
            wait = (min_on if kind == "onset" else min_off) if name == "music-tags" else 2 * step
            assert 0 <= t_active - t_event <= wait + 1e-6, (label, kind, t_active, t_event)


# --------------------------------------------------------------------- push
def test_push_in_any_chunking_and_sample_type_equals_tag_file(music: np.ndarray, music_wav: Path, taggers) -> None:
    tagger = taggers["music-tags"]
    reference = edgetag.tag_file(music_wav, model=tagger)
    _same(_push_all(tagger, music, 16000, [1, 7, 160, 513, 4000]), reference)
    stereo = np.stack([music, music], axis=1)  # the average of two equal channels is that channel
    _same(_push_all(tagger, stereo, 16000, [1000]), reference)
    _same(_push_all(tagger, music[:, None], 16000, [999]), reference)
    _same(_push_all(tagger, music.astype(np.float64), 16000, [2048]), reference)
    _same(_push_all(tagger, music.astype(">f4"), 16000, [2048]), reference)  # big-endian is converted
    _same(_push_all(tagger, list(map(float, music[:20000])), 16000, [20000]),
          _push_all(tagger, music[:20000].astype(np.float64), 16000, [20000]))

    pcm = np.round(np.clip(music, -1, 1) * 32767).astype(np.int16)
    as_float = _push_all(tagger, (pcm / np.float32(32768)).astype(np.float32), 16000, [3000])
    _same(_push_all(tagger, pcm, 16000, [3000]), as_float)
    _same(_push_all(tagger, np.stack([pcm, pcm], axis=1), 16000, [3000]), as_float)


def test_other_rates_are_resampled_in_the_stream(music: np.ndarray, music_wav: Path, tmp_path: Path, taggers) -> None:
    """44.1 kHz pushed in chunks equals the whole signal resampled at once (soxr), and tag_file on a 44.1 kHz file."""
    tagger = taggers["music-tags"]
    x44 = soxr.resample(music, 16000, 44100, "VHQ").astype(np.float32)
    streamed = _push_all(tagger, x44, 44100, [441, 1024, 7, 10000])
    whole = _push_all(tagger, soxr.resample(x44, 44100, 16000, "HQ").astype(np.float32), 16000, [8000])
    assert len(streamed) == len(whole) > 10
    _same(streamed, whole)
    wav = tmp_path / "music44.wav"
    sf.write(wav, x44, 44100, subtype="FLOAT")
    _same(edgetag.tag_file(wav, model=tagger), whole)
    # stereo int16 at 48 kHz: the tags are those of the 16 kHz original, within resampling and quantisation
    x48 = soxr.resample(music, 16000, 48000, "VHQ")
    pcm = np.round(np.clip(np.stack([x48, x48], axis=1), -1, 1) * 32767).astype(np.int16)
    got = _push_all(tagger, pcm, 48000, [4800])
    ref = edgetag.tag_file(music_wav, model=tagger)
    assert [d.t for d in got] == [d.t for d in ref]
    assert max(float(np.abs(a.scores - b.scores).max()) for a, b in zip(got, ref)) < 0.02


def test_flush_ends_the_stream_and_reset_starts_over(music: np.ndarray, taggers) -> None:
    tagger = taggers["music-tags"]
    x44 = soxr.resample(music, 16000, 44100, "HQ").astype(np.float32)
    held = tagger.push(x44, sample_rate=44100)
    tail = tagger.flush()  # the resampler's last samples complete more decisions
    assert tail and tail[0].t > held[-1].t
    again = tagger.push(x44, sample_rate=44100) + tagger.flush()  # a new stream: t starts over
    _same(again, held + tail)
    tagger.push(music[:5000], sample_rate=16000)
    tagger.reset()
    _same(_push_all(tagger, music, 16000, [1600]), _push_all(tagger, music, 16000, [1600]))
    assert tagger.flush() == []  # at the model's rate nothing is held back


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(("samples", "rate", "message"), [
    (np.array([0.0, np.nan, 0.0], np.float32), 16000, "1 NaN/Inf value.*sample 1"),
    (np.array([[0.0, 0.0], [np.inf, 0.0]]), 16000, "sample 1, channel 0"),
    (np.zeros(100, np.int32), 16000, "float32, float64.*or int16, got int32"),
    (np.zeros(100, np.complex64), 16000, "got complex64"),
    (np.zeros((2, 16000), np.float32), 16000, r"\[n, channels\].*\.T"),
    (np.zeros((10, 2, 2), np.float32), 16000, "3-D"),
    (np.float32(0.5), 16000, "0-D"),
    (np.zeros(100, np.float32), 0, "positive whole number"),
    (np.zeros(100, np.float32), 44100.5, "positive whole number"),
    (np.zeros(100, np.float32), 1, "1 Hz is not an audio sample rate"),  # it resampled 1 Hz to 16 kHz: no end
    (np.zeros(100, np.float32), 44.1, "positive whole number"),
    (np.zeros(100, np.float32), 2_000_000, "1,000 Hz to 1,000,000 Hz"),
    (np.zeros(100, np.float32), "44100", "number of samples per second"),
    (np.zeros(100, np.float32), True, "number of samples per second"),
])
def test_bad_input_is_refused_and_leaves_the_stream_as_it_was(samples, rate, message, music, taggers) -> None:
    tagger = taggers["music-tags"]
    reference = _push_all(tagger, music, 16000, [8000])
    first = tagger.push(music[:8000], sample_rate=16000)
    with pytest.raises(ValueError, match=message):
        tagger.push(samples, sample_rate=rate)
    _same(first + _push_all(tagger, music[8000:], 16000, [8000]), reference)


def test_sample_rate_is_required_and_fixed_within_a_stream(music: np.ndarray, taggers) -> None:
    tagger = taggers["music-tags"]
    with pytest.raises(TypeError, match="sample_rate"):
        tagger.push(music)  # type: ignore[call-arg]
    tagger.push(music[:1000], sample_rate=16000)
    with pytest.raises(ValueError, match="changed from 16000 Hz to 44100 Hz.*flush"):
        tagger.push(music[:1000], sample_rate=44100)
    tagger.reset()
    assert tagger.push(np.zeros(0, np.float32), sample_rate=44100) == []
    tagger.reset()


def test_integer_scale_floats_get_one_warning_per_tagger(music: np.ndarray, music_wav: Path, tmp_path: Path) -> None:
    """int16 data cast to float without /32768 is used as it is, with one AudioWarning naming its peak and where
    it starts in the stream; audio within full scale gets none; tag_file warns once, from the file's check."""
    import warnings

    from edgetag.runtime.audio import AudioWarning

    tagger = edgetag.load("music-tags")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tagger.push(music[:16000], sample_rate=16000)
        tagger.push(music[16000:32000] * 32768, sample_rate=16000)
        tagger.push(music[32000:48000] * 32768, sample_rate=16000)
    loud = [w for w in caught if issubclass(w.category, AudioWarning)]
    assert len(loud) == 1 and "pushed samples: samples reach" in str(loud[0].message), [str(w.message) for w in caught]
    assert " from 1.0" in str(loud[0].message) and loud[0].filename == __file__
    sf.write(tmp_path / "loud.wav", music[:32000] * 32768, 16000, subtype="FLOAT")
    fresh = edgetag.load("music-tags")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        edgetag.tag_file(tmp_path / "loud.wav", fresh)  # the file's check warns (naming it); the pushes do not
        edgetag.tag_file(music_wav, fresh)
        assert len([w for w in caught if issubclass(w.category, AudioWarning)]) == 1, [str(w.message) for w in caught]
        fresh.push(music[:16000] * 32768, sample_rate=16000)  # and the tagger still warns for its own pushes
    loud = [str(w.message) for w in caught if issubclass(w.category, AudioWarning)]
    assert len(loud) == 2 and "loud.wav" in loud[0] and loud[1].startswith("pushed samples"), loud


def test_load_and_tag_file_take_the_level_gate(music_wav: Path, tmp_path: Path) -> None:
    """As `Tagger(...)` and the CLI's --level-gate: a gate above the music's level makes every decision silent."""
    quiet = edgetag.tag_file(music_wav, "music-tags", level_gate=0.0)
    assert quiet and all(not d.active for d in quiet)
    assert any(d.active for d in edgetag.tag_file(music_wav, "music-tags"))
    assert edgetag.load("music-tags", level_gate=-math.inf)._gate == -math.inf


def test_minimum_durations_are_checked_for_every_model() -> None:
    for name in ("music-tags", "pitch"):  # pitch notes take none, but -1 s is a mistake there too
        with pytest.raises(ValueError, match="minimum duration"):
            edgetag.load(name, min_on=-1)


def test_load_errors_say_what_exists(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="built-in models: music-tags"):
        edgetag.load("no-such-model")
    not_a_model = tmp_path / "x.onnx"
    not_a_model.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a valid ONNX model"):
        edgetag.load(not_a_model)
    with pytest.raises(ValueError, match="smoothing length"):
        edgetag.load("music-tags", smooth=0)


# ---------------------------------------------------------------- decisions
def test_decisions_of_a_tagging_model(music_wav: Path, taggers) -> None:
    tagger = taggers["music-tags"]
    assert tagger.labels == tagger.card.labels and len(tagger.labels) == 50
    assert tagger.sample_rate == 16000 and not tagger.is_pitch and tagger.decision_interval_s == pytest.approx(0.1)
    d = edgetag.tag_file(music_wav, model=tagger)[-1]
    assert d.scores.dtype == np.float32 and d.scores.shape == (50,) and not d.scores.flags.writeable
    top = d.top(3)
    assert [label for label, _ in top] == [tagger.labels[i] for i in np.argsort(-d.scores, kind="stable")[:3]]
    assert top[0][1] == d.score(top[0][0]) >= top[1][1] >= top[2][1]
    assert set(d.active) <= set(tagger.labels) and d.pitch is None
    assert "top=[" in repr(d) and len(repr(d)) < 200
    with pytest.raises(KeyError, match="no label"):
        d.score("kazoo")


def test_decisions_of_the_pitch_model(tmp_path: Path, taggers) -> None:
    """A sung-like A3 (220 Hz and harmonics) pushed at 22.05 kHz reads as A3 in every voiced decision."""
    tagger = taggers["pitch"]
    assert tagger.is_pitch and len(tagger.labels) == 360
    t = np.arange(int(22050 * 1.5)) / 22050
    tone = sum(0.3 / k * np.sin(2 * np.pi * 220.0 * k * t) for k in (1, 2, 3)).astype(np.float32)
    decisions = _push_all(tagger, tone, 22050, [2205])
    voiced = [d for d in decisions if d.pitch.voiced]
    assert len(decisions) > 100 and len(voiced) > 0.8 * len(decisions)
    for d in voiced:
        p = d.pitch
        assert p.note == "A3" and abs(p.f0_hz - 220.0) < 4.0 and -50.0 <= p.cents < 50.0
        assert p.confidence >= 0.5 and p.midi == 57
    assert decisions[-1].active == ("A3",)


# ---------------------------------------------------------------- packaging
def test_import_edgetag_loads_nothing_until_used() -> None:
    import subprocess

    probe = ("import sys, edgetag; before = sorted(m for m in sys.modules if m.startswith(('edgetag.', 'numpy')));"
             "edgetag.__version__; print(before)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
