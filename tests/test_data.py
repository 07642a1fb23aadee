"""Tests of edgetag.training.data: manifests, audio loading, labels, hashing.

Every audio file is written by the tests into tmp_path with soundfile.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")
pytest.importorskip("soxr")

from edgetag.runtime.audio import AudioWarning  # noqa: E402
from edgetag.training import data  # noqa: E402
from edgetag.runtime.audio import (  # noqa: E402
    AudioNotFoundError,
    AudioReadError,
    NonFiniteAudioError,
    SegmentRangeError,
    load_audio,
)
from edgetag.training.data import (  # noqa: E402
    SkipReport,
    content_hash,
    iter_audio,
    label_matrix,
    load_manifest,
    write_manifest,
)
from edgetag.training.manifest_entry import UnsafePathError, resolve_under_root  # noqa: E402
from edgetag.training.manifest_format import ManifestError  # noqa: E402


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


@pytest.fixture
def audio_root(tmp_path: Path) -> Path:
    """A root with WAV, FLAC, OGG, stereo and 44.1 kHz files (3 s each)."""
    root = tmp_path / "root"
    (root / "clips").mkdir(parents=True)
    sf.write(root / "clips/a.wav", sine(440, 16000, 3.0), 16000, subtype="PCM_16")
    sf.write(root / "clips/b.flac", sine(660, 16000, 3.0), 16000, format="FLAC")
    sf.write(root / "clips/c.ogg", sine(880, 22050, 3.0), 22050, format="OGG", subtype="VORBIS")
    stereo = np.stack([sine(440, 16000, 3.0, amp=0.6), sine(440, 16000, 3.0, amp=0.2)], axis=1)
    sf.write(root / "clips/stereo.wav", stereo, 16000, subtype="FLOAT")
    sf.write(root / "clips/hi.wav", sine(1000, 44100, 3.0), 44100, subtype="FLOAT")
    return root


CSV_TEXT = """path,start,end,labels,missing,split,note
clips/a.wav,,,dog;cat=0,,train,first
clips/b.flac,0.5,2.5,speech;music=?,,valid,
clips/c.ogg,,,dog,cat,test,
clips/stereo.wav,1,2,bird=0,*,train,
"""

JSONL_ROWS = [
    {"path": "clips/a.wav", "labels": ["dog", "cat=0"], "split": "train", "note": "first"},
    {"path": "clips/b.flac", "start": 0.5, "end": 2.5, "labels": {"speech": 1, "music": None}, "split": "valid", "note": ""},
    {"path": "clips/c.ogg", "labels": "dog", "missing": ["cat"], "split": "test", "note": ""},
    {"path": "clips/stereo.wav", "start": 1, "end": 2, "labels": {"bird": 0}, "missing": "*", "split": "train", "note": ""},
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- manifests


def test_csv_and_jsonl_manifests_agree(audio_root: Path) -> None:
    m_csv = load_manifest(_write(audio_root / "m.csv", CSV_TEXT))
    m_jsonl = load_manifest(write_jsonl(audio_root / "m.jsonl", JSONL_ROWS))
    assert m_csv.labels == m_jsonl.labels == ("bird", "cat", "dog", "music", "speech")
    assert m_csv.splits() == {"train": 2, "valid": 1, "test": 1}
    for a, b in zip(m_csv, m_jsonl, strict=True):
        assert (a.path, a.split, a.start, a.end) == (b.path, b.split, b.start, b.end)
        assert (a.positives, a.negatives, a.missing, a.missing_all) == (
            b.positives, b.negatives, b.missing, b.missing_all)
        assert a.extra["note"] == b.extra["note"]
    e = m_csv[1]
    assert (e.start, e.end, e.line) == (0.5, 2.5, 3)
    assert m_csv.root == audio_root
    # select keeps the whole vocabulary so split matrices share columns.
    assert m_csv.select("train").labels == m_csv.labels
    assert len(m_csv.select(["train", "test"])) == 3


def test_write_manifest_round_trips(audio_root: Path) -> None:
    m = load_manifest(_write(audio_root / "m.csv", CSV_TEXT))
    for name in ("out.csv", "out.jsonl"):
        path = write_manifest(audio_root / name, m.entries, extra_columns=["note"])
        again = load_manifest(path)
        assert [(e.path, e.start, e.end, e.positives, e.negatives, e.missing, e.missing_all, e.split)
                for e in again] == [
            (e.path, e.start, e.end, e.positives, e.negatives, e.missing, e.missing_all, e.split) for e in m]
        np.testing.assert_array_equal(again.label_matrix()[1], m.label_matrix()[1])


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_missing_is_not_negative_and_mask(audio_root: Path) -> None:
    m = load_manifest(_write(audio_root / "m.csv", CSV_TEXT))
    targets, mask = m.label_matrix()
    assert targets.dtype == mask.dtype == np.float32
    assert targets.shape == mask.shape == (4, 5)
    # columns: bird cat dog music speech
    np.testing.assert_array_equal(targets, [
        [0, 0, 1, 0, 0],   # dog positive, cat explicit negative, rest negative by omission
        [0, 0, 0, 0, 1],   # speech positive, music missing
        [0, 0, 1, 0, 0],   # dog positive, cat missing (missing column)
        [0, 0, 0, 0, 0],   # bird=0 and missing: * -> everything else unknown
    ])
    np.testing.assert_array_equal(mask, [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 0, 1],
        [1, 0, 1, 1, 1],
        [1, 0, 0, 0, 0],
    ])
    assert m[0].label_state("cat") == 0 and m[2].label_state("cat") is None
    assert m[0].label_state("bird") == 0 and m[3].label_state("dog") is None
    # A masked loss ignores missing cells whatever the prediction there.
    pred = np.full_like(targets, 0.9)
    loss = -(targets * np.log(pred) + (1 - targets) * np.log(1 - pred))
    assert np.isclose((loss * mask).sum() / mask.sum(), loss[mask == 1].mean())


def test_fixed_vocabulary(audio_root: Path) -> None:
    path = _write(audio_root / "m.csv", CSV_TEXT)
    m = load_manifest(path, labels=["speech", "dog", "cat", "bird", "music", "extra"])
    assert m.labels[0] == "speech" and m.label_matrix()[0].shape == (4, 6)
    with pytest.raises(ManifestError, match=r"m\.csv:2: .*\['cat'\] not in the given vocabulary"):
        load_manifest(path, labels=["dog", "speech", "music", "bird"])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        label_matrix(m.entries, ["dog"])


def test_malformed_csv_lines_are_reported_with_line_numbers(audio_root: Path) -> None:
    text = (
        "path,start,end,labels,split\n"          # 1
        "clips/a.wav,,,dog,train\n"              # 2 ok
        "clips/a.wav,abc,,dog,train\n"           # 3 bad start
        "clips/a.wav,2,1,dog,train\n"            # 4 end <= start
        "clips/a.wav,,,dog\n"                    # 5 too few fields
        "\n"                                     # 6 blank: ignored
        "clips/a.wav,,,dog=maybe,train\n"        # 7 bad label value
        ",,,dog,train\n"                         # 8 empty path
        "clips/a.wav,,,dog,\n"                   # 9 empty split
        "clips/a.wav,-1,,dog,train\n"            # 10 negative start
        "clips/a.wav,,,dog;dog=?,train\n"        # 11 positive and missing
        "clips/a.wav,nan,,dog,train\n"           # 12 NaN start
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(_write(audio_root / "bad.csv", text))
    lines = [ln for ln, _ in info.value.problems]
    assert lines == [3, 4, 5, 7, 8, 9, 10, 11, 12]
    msg = str(info.value)
    assert "bad.csv:3: start must be a number" in msg
    assert "bad.csv:4: end (1.0) must be greater than start (2.0)" in msg
    assert "bad.csv:5: expected 5 fields" in msg
    assert "bad.csv:11: label(s) ['dog'] are both positive and missing" in msg


def test_csv_header_problems(audio_root: Path) -> None:
    with pytest.raises(ManifestError, match=r"h\.csv:1: header lacks required column\(s\) \['split'\]"):
        load_manifest(_write(audio_root / "h.csv", "path,labels\nclips/a.wav,dog\n"))
    with pytest.raises(ValueError, match="cannot tell the manifest format"):
        load_manifest(_write(audio_root / "m.txt", "path\n"))


def test_malformed_jsonl_lines_are_reported_with_line_numbers(audio_root: Path) -> None:
    rows = [
        {"path": "clips/a.wav", "labels": [], "split": "train"},   # 1 ok
        "{not json",                                               # 2
        "[1, 2]",                                                  # 3 not an object
        {"path": "clips/a.wav", "labels": {"dog": 2}, "split": "train"},   # 4 bad value
        {"path": "clips/a.wav", "split": "train"},                 # 5 no labels key
        {"path": "clips/a.wav", "labels": [], "split": "train", "end": True},  # 6 bool end
        "",                                                        # 7 blank
        {"path": 3, "labels": [], "split": "train"},               # 8 path not a string
    ]
    with pytest.raises(ManifestError) as info:
        load_manifest(write_jsonl(audio_root / "bad.jsonl", rows))
    assert [ln for ln, _ in info.value.problems] == [2, 3, 4, 5, 6, 8]
    assert "bad.jsonl:2: invalid JSON" in str(info.value)


# ---------------------------------------------------------------- paths


def test_paths_escaping_the_root_are_refused(tmp_path: Path, audio_root: Path) -> None:
    outside = tmp_path / "secret.wav"
    sf.write(outside, sine(440, 16000, 0.5), 16000)
    (audio_root / "clips/link_out.wav").symlink_to(outside)
    (audio_root / "dir_out").symlink_to(tmp_path)
    (audio_root / "clips/link_in.wav").symlink_to(audio_root / "clips/a.wav")
    text = (
        "path,labels,split\n"
        "clips/a.wav,,train\n"                    # 2 ok
        "../secret.wav,,train\n"                  # 3 ..
        f"{outside},,train\n"                     # 4 absolute
        "clips/link_out.wav,,train\n"             # 5 symlink out of root
        "dir_out/secret.wav,,train\n"             # 6 symlinked directory out of root
        "clips/../../secret.wav,,train\n"         # 7 .. in the middle
        "clips/link_in.wav,,train\n"              # 8 symlink inside the root: fine
        "C:\\\\Windows\\\\x.wav,,train\n"         # 9 Windows absolute
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(_write(audio_root / "m.csv", text))
    problems = dict(info.value.problems)
    assert sorted(problems) == [3, 4, 5, 6, 7, 9]
    assert "contains '..'" in problems[3] and "contains '..'" in problems[7]
    assert "is absolute" in problems[4] and "is absolute" in problems[9]
    assert "outside the root" in problems[5] and "outside the root" in problems[6]
    # The same checks directly, and a symlink inside the root is allowed.
    assert resolve_under_root(audio_root, "clips/link_in.wav") == audio_root / "clips/link_in.wav"
    for bad in ("", "/etc/passwd", "a/../../b", "..\\x", "clips/link_out.wav"):
        with pytest.raises(UnsafePathError):
            resolve_under_root(audio_root, bad)


def test_symlink_swapped_after_loading_is_skipped(tmp_path: Path, audio_root: Path) -> None:
    link = audio_root / "clips/late.wav"
    link.symlink_to(audio_root / "clips/a.wav")
    m = load_manifest(_write(audio_root / "m.csv", "path,labels,split\nclips/late.wav,,train\n"))
    link.unlink()
    sf.write(tmp_path / "outside.wav", sine(440, 16000, 0.5), 16000)
    link.symlink_to(tmp_path / "outside.wav")
    report = SkipReport()
    assert list(iter_audio(m, 16000, report=report)) == []
    assert report.by_reason == {"path escapes root": 1}


# ---------------------------------------------------------------- audio


@pytest.mark.parametrize("name,sr_file", [("a.wav", 16000), ("b.flac", 16000), ("c.ogg", 22050),
                                          ("stereo.wav", 16000), ("hi.wav", 44100)])
def test_load_audio_formats(audio_root: Path, name: str, sr_file: int) -> None:
    info = data.audio_info(audio_root / "clips" / name)
    assert info.sample_rate == sr_file and abs(info.duration - 3.0) < 1e-3
    x = load_audio(audio_root / "clips" / name, 16000)
    assert x.dtype == np.float32 and x.ndim == 1 and x.flags.c_contiguous
    assert len(x) == 48000
    assert np.isfinite(x).all() and 0.15 < np.abs(x).max() < 0.7


def test_segment_read_matches_slice_of_whole_file(audio_root: Path) -> None:
    full = load_audio(audio_root / "clips/a.wav", 16000)
    seg = load_audio(audio_root / "clips/a.wav", 16000, 0.5, 1.25)
    np.testing.assert_array_equal(seg, full[8000:20000])
    # With resampling, at starts that are not on any nice grid.
    for path in ("clips/hi.wav", "clips/c.ogg"):
        full = load_audio(audio_root / path, 16000)
        for start in (0.0, 0.0123, 0.77771, 1.5):
            seg = load_audio(audio_root / path, 16000, start, start + 0.6)
            sr_file = data.audio_info(audio_root / path).sample_rate
            a, b = round(start * sr_file), round((start + 0.6) * sr_file)
            i0, i1 = round(a * 16000 / sr_file), round(b * 16000 / sr_file)
            assert len(seg) == i1 - i0
            np.testing.assert_allclose(seg, full[i0:i1], atol=1e-5)


def test_segment_seeks_instead_of_decoding_everything(audio_root: Path, monkeypatch) -> None:
    from edgetag.runtime import audio

    read_sizes: list[int] = []
    real_read = audio._read_into  # every decode goes through it (one libsndfile read)

    def spy(f, out):
        read_sizes.append(len(out))
        return real_read(f, out)

    monkeypatch.setattr(audio, "_read_into", spy)
    load_audio(audio_root / "clips/hi.wav", 16000, 2.0, 2.1)
    # 0.1 s segment plus at most 2 x 0.05 s of resampler context, never the 3 s file.
    assert len(read_sizes) == 1 and read_sizes[0] <= 0.21 * 44100


def test_resampling_keeps_the_frequency(audio_root: Path, tmp_path: Path) -> None:
    x = load_audio(audio_root / "clips/hi.wav", 16000)   # 1 kHz at 44.1 kHz
    assert len(x) == 48000
    assert abs(peak_hz(x, 16000) - 1000.0) <= 16000 / len(x)
    assert abs(np.sqrt(2 * np.mean(x[1000:-1000] ** 2)) - 0.5) < 0.01  # level kept
    sf.write(tmp_path / "low.wav", sine(3000, 8000, 1.0), 8000)      # upsampling too
    y = load_audio(tmp_path / "low.wav", 16000)
    assert len(y) == 16000 and abs(peak_hz(y, 16000) - 3000.0) <= 1.0
    # Nothing above the 4 kHz band edge of the source appears.
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert spec[np.fft.rfftfreq(len(y), 1 / 16000) > 4200].max() < 1e-3 * spec.max()


def test_downmix_averages_channels(audio_root: Path, tmp_path: Path) -> None:
    x = load_audio(audio_root / "clips/stereo.wav", 16000)
    np.testing.assert_allclose(x, sine(440, 16000, 3.0, amp=0.4), atol=1e-6)   # (0.6 + 0.2) / 2
    s = sine(440, 16000, 0.5)
    sf.write(tmp_path / "anti.wav", np.stack([s, -s], axis=1), 16000, subtype="FLOAT")
    with pytest.warns(AudioWarning, match=r"channels cancel when averaged to mono \(the mix is silent"):
        assert np.abs(load_audio(tmp_path / "anti.wav", 16000)).max() == 0.0


def test_load_audio_errors(audio_root: Path, tmp_path: Path) -> None:
    wav = audio_root / "clips/a.wav"
    with pytest.raises(SegmentRangeError, match="at or past the end"):
        load_audio(wav, 16000, 3.5, 4.0)
    with pytest.raises(SegmentRangeError, match="past the end"):
        load_audio(wav, 16000, 1.0, 3.5)
    with pytest.raises(SegmentRangeError, match="greater than start"):
        load_audio(wav, 16000, 2.0, 1.0)
    with pytest.raises(SegmentRangeError, match="finite"):
        load_audio(wav, 16000, float("nan"))
    assert len(load_audio(wav, 16000, 2.0, 3.005)) == 16000  # within end_tolerance: clamped
    with pytest.raises(AudioNotFoundError):
        load_audio(tmp_path / "nope.wav", 16000)
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError, for callers that expect one
        load_audio(tmp_path / "nope.wav", 16000)
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk" + os.urandom(200))
    with pytest.raises(AudioReadError, match="cannot decode"):
        load_audio(tmp_path / "junk.wav", 16000)
    x = sine(440, 16000, 1.0)
    x[8000] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match=r"1 NaN/Inf sample\(s\), the first at 0\.500 s"):
        load_audio(tmp_path / "nan.wav", 16000)
    assert np.isfinite(load_audio(tmp_path / "nan.wav", 16000, 0.0, 0.4)).all()  # NaN outside: fine
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(wav, 16000.0)  # type: ignore[arg-type]


def test_float_audio_at_integer_scale_gets_one_warning(tmp_path: Path) -> None:
    """A float file saved at ±32768 is read as it is, with one warning naming its peak and when it is
    reached (whole-file and block reads alike); a float file just past ±1 (a decoder's overshoot) gets none."""
    from edgetag.runtime.audio import stream_audio

    x = sine(440, 16000, 2.0)
    x[16000:] *= 32768.0
    for name, read in (("a.wav", lambda p, warn: load_audio(p, 16000, warn=warn)),
                       ("b.wav", lambda p, warn: np.concatenate(list(stream_audio(p, 16000, block_frames=4000,
                                                                                  warn=warn))))):
        sf.write(tmp_path / name, x, 16000, subtype="FLOAT")
        said: list[str] = []
        y = read(tmp_path / name, said.append)
        assert len(said) == 1 and "samples reach 1.64e+04 from 1.000 s, 84 dB above full scale" in said[0], said
        np.testing.assert_array_equal(y, x.astype(np.float32))  # not clipped, not rescaled
        for start in (0.0, 1.0, 1.5):  # read again a segment at a time (a training loop): no more warnings
            load_audio(tmp_path / name, 16000, start, start + 0.5, warn=said.append)
        assert len(said) == 1, said
    sf.write(tmp_path / "hot.wav", 1.5 * x[:16000], 16000, subtype="FLOAT")
    said = []
    load_audio(tmp_path / "hot.wav", 16000, warn=said.append)
    assert said == []


def _subtype_available(fmt: str, subtype: str) -> bool:
    return subtype in sf.available_subtypes(fmt)


@pytest.mark.parametrize("fmt,subtype,sr", [("MP3", "MPEG_LAYER_III", 22050), ("OGG", "OPUS", 48000)])
def test_lossy_segments_match_whole_file(tmp_path: Path, fmt: str, subtype: str, sr: int) -> None:
    """MP3 decoded after a seek is wrong for a few frames (bit reservoir) unless
    load_audio decodes a lead-in; a quiet sine makes LAME use the reservoir."""
    if not _subtype_available(fmt, subtype):
        pytest.skip(f"libsndfile here cannot write {fmt}/{subtype}")
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, sine(440, sr, 4.0, amp=0.3), sr, format=fmt, subtype=subtype)
    full = load_audio(path, sr)
    for start in (0.9, 1.7, 2.95):
        seg = load_audio(path, sr, start, start + 0.5)
        i0 = round(start * sr)
        np.testing.assert_allclose(seg, full[i0:i0 + len(seg)], atol=1e-6)


# ---------------------------------------------------------------- skipping


def test_iter_audio_counts_and_skips_bad_files(audio_root: Path, caplog) -> None:
    clips = audio_root / "clips"
    (clips / "corrupt.flac").write_bytes(b"fLaC" + os.urandom(300))
    (clips / "empty.wav").write_bytes(b"")
    x = sine(440, 16000, 1.0)
    x[10] = np.inf
    sf.write(clips / "inf.wav", x, 16000, subtype="FLOAT")
    text = (
        "path,start,end,labels,split\n"
        "clips/a.wav,,,dog,train\n"
        "clips/corrupt.flac,,,dog,train\n"
        "clips/empty.wav,,,dog,train\n"
        "clips/gone.wav,,,dog,train\n"
        "clips/inf.wav,,,dog,train\n"
        "clips/b.flac,5,6,dog,train\n"
        "clips/hi.wav,1,2,dog,test\n"
    )
    m = load_manifest(_write(audio_root / "m.csv", text))
    report = SkipReport()
    with caplog.at_level(logging.WARNING, logger="edgetag.training.data"):
        got = [(e.path, len(a)) for e, a in iter_audio(m, 16000, report=report)]
    assert got == [("clips/a.wav", 48000), ("clips/hi.wav", 16000)]
    assert report.n_ok == 2 and report.n_skipped == 5
    assert report.by_reason == {"unreadable": 2, "missing file": 1, "non-finite samples": 1,
                                "segment out of range": 1}
    summary = report.summary()
    assert summary.startswith("read 2 of 7 entries, skipped 5")
    assert "unreadable: 2 (e.g. clips/corrupt.flac (line 3)" in summary
    assert any("skipping clips/gone.wav" in r.getMessage() for r in caplog.records)
    assert any("skipped 5" in r.getMessage() for r in caplog.records)   # summary logged at the end
    # One split only.
    assert [e.path for e, _ in iter_audio(m, 16000, split="test")] == ["clips/hi.wav"]


# ---------------------------------------------------------------- hashing


def test_content_hash_is_stable_and_sensitive(audio_root: Path) -> None:
    wav = audio_root / "clips/hi.wav"
    a = load_audio(wav, 16000, 1.0, 2.0)
    h = content_hash(a, 16000, 1.0, 2.0)
    assert len(h) == 64 and h == content_hash(load_audio(wav, 16000, 1.0, 2.0), 16000, 1.0, 2.0)
    assert h == content_hash(a.astype(np.float64), 16000, 1.0, 2.0)  # hashed as float32 bytes
    others = {
        content_hash(load_audio(wav, 16000, 1.5, 2.5), 16000, 1.5, 2.5),  # other segment
        content_hash(a, 16000, 1.0, 2.5),           # same samples, other segment bounds
        content_hash(a, 16000, None, None),         # whole-file key
        content_hash(a, 22050, 1.0, 2.0),           # other rate
        content_hash(np.concatenate([a[:-1], a[-1:] + 1e-7]), 16000, 1.0, 2.0),  # one sample off
    }
    assert h not in others and len(others) == 5
    with pytest.raises(ValueError, match="mono"):
        content_hash(np.zeros((2, 10), np.float32), 16000)


# ---------------------------------------------------------------- prepare_audio


def test_prepare_audio_needs_apt_get(monkeypatch, tmp_path: Path, capsys) -> None:
    from edgetag.training import prepare_audio

    monkeypatch.setattr(prepare_audio.shutil, "which", lambda name: None)
    assert prepare_audio.main(["--out", str(tmp_path), "--packages", "asc-music"]) == 2
    assert "apt-get, dpkg, apt-cache not found" in capsys.readouterr().err


def test_prepare_audio_labels_and_splits() -> None:
    from edgetag.training.prepare_audio import MUSIC, SOUND_EFFECT, SPEECH, _hash_split, _rule_for

    assert _rule_for("colobot-common-sounds", "/usr/share/games/colobot/music/a.ogg") == (True, MUSIC)
    assert _rule_for("colobot-common-sounds", "/usr/share/games/colobot/sounds/s.wav") == (True, SOUND_EFFECT)
    assert _rule_for("asterisk-core-sounds-en-wav", "/x/en/silence/1.wav") == (True, None)
    assert _rule_for("asterisk-core-sounds-en-wav", "/x/en/hello.wav") == (True, SPEECH)
    assert _rule_for("some-other-package", "/a.ogg") == (False, {})
    splits = [_hash_split(f"p/{i}.wav") for i in range(2000)]
    assert splits == [_hash_split(f"p/{i}.wav") for i in range(2000)]   # stable
    assert 0.05 < splits.count("test") / 2000 < 0.15 and 0.7 < splits.count("train") / 2000 < 0.9
