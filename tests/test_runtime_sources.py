"""Sources and the live runner, with a fake sounddevice: ring buffer, NaN, overflows, a device that vanishes."""

from __future__ import annotations

import io
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from edgetag.runtime.sources import (
    FileSource,
    MicSource,
    RingBuffer,
    SourceError,
    StdinSource,
    resolve_input_device,
)


class FakeSD:
    """Enough of the sounddevice module for MicSource: devices, settings check, default device."""

    def __init__(self, devices=None, rates=(16000,)) -> None:
        self.devices = devices if devices is not None else [
            {"name": "Fake Speakers", "max_input_channels": 0, "max_output_channels": 2, "default_samplerate": 48000.0},
            {"name": "Fake Mic", "max_input_channels": 2, "max_output_channels": 0, "default_samplerate": 48000.0},
        ]
        self.rates = rates
        self.default = SimpleNamespace(device=[1, 0])

    def query_devices(self):
        return self.devices

    def check_input_settings(self, device, channels, dtype, samplerate):
        if samplerate not in self.rates:
            raise ValueError(f"Invalid sample rate {samplerate}")
        if channels != 2:  # a stereo-only device: the source must downmix
            raise ValueError(f"Invalid number of channels {channels}")


class FakeStream:
    """Calls the callback from its own thread with the given blocks, like PortAudio would."""

    def __init__(self, blocks, statuses=None, then="stop", **kwargs) -> None:
        self.blocks, self.statuses, self.then = blocks, statuses or {}, then
        self.callback, self.finished = kwargs["callback"], kwargs["finished_callback"]
        self.kwargs = kwargs
        self.active = False
        self._halt = threading.Event()

    def start(self):
        self.active = True
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        time_info = SimpleNamespace(currentTime=0.0, inputBufferAdcTime=0.0)
        for i, block in enumerate(self.blocks):
            if self._halt.is_set():
                return
            status = SimpleNamespace(input_overflow=self.statuses.get(i, False))
            self.callback(block, len(block), time_info, status)
            time.sleep(0.001)
        if self.then == "stop":  # the device went away: PortAudio stops the stream
            self.active = False
            self.finished()
        # "stall": stays active but delivers nothing more

    def abort(self):
        self._halt.set()
        self.active = False

    def close(self):
        pass


def _stereo_blocks(x: np.ndarray, block: int = 480):
    return [np.stack([x[i : i + block], x[i : i + block]], axis=1) for i in range(0, len(x), block)]


def test_ring_buffer_drops_whole_blocks_when_full_and_counts_them() -> None:
    ring = RingBuffer(1000, 1)
    assert ring.write(np.ones((600, 1), np.float32), 1.0)
    assert not ring.write(np.ones((600, 1), np.float32), 2.0)  # would overflow: dropped whole
    assert ring.dropped_frames == 600 and ring.dropped_blocks == 1
    data, capture = ring.read(timeout=0.1)
    assert data.shape == (600, 1) and capture == 1.0
    assert ring.read(timeout=0.01) is None
    # wrap-around keeps order
    ring.write(np.arange(700, dtype=np.float32)[:, None], 3.0)
    data, capture = ring.read(timeout=0.1)
    np.testing.assert_array_equal(data[:, 0], np.arange(700))
    assert capture == 3.0


def test_device_selection_by_index_name_and_errors() -> None:
    sd = FakeSD()
    assert resolve_input_device(sd, None)[0] == 1
    assert resolve_input_device(sd, "1")[0] == 1
    assert resolve_input_device(sd, "fake mic")[0] == 1
    with pytest.raises(SourceError, match=r"(?s)audio device 7 does not exist.*Fake Mic.*--file"):
        resolve_input_device(sd, "7")
    with pytest.raises(SourceError, match="is not an input device"):
        resolve_input_device(sd, 0)
    with pytest.raises(SourceError, match="no input device named 'usb'"):
        resolve_input_device(sd, "usb")
    with pytest.raises(SourceError, match=r"(?s)no audio input device found.*Fake Speakers.*--file"):
        resolve_input_device(FakeSD(devices=[sd.devices[0]]), None)


def _mic(blocks, rates=(16000,), **kw):
    streams = []

    def factory(**kwargs):
        streams.append(FakeStream(blocks, **kw, **kwargs))
        return streams[-1]

    messages = []
    mic = MicSource(16000, "Fake", sd=FakeSD(rates=rates), stream_factory=factory, stall_timeout=0.5,
                    log=messages.append)
    return mic, streams, messages


def test_mic_nan_blocks_are_counted_skipped_and_warned(window_model) -> None:
    from edgetag.runtime.engine import Engine, StreamRunner
    from edgetag.runtime.model import load_model

    x = (0.1 * np.sin(np.arange(32000) * 0.05)).astype(np.float32)
    blocks = _stereo_blocks(x, 160)
    for i in (10, 11, 50):
        blocks[i] = blocks[i].copy()
        blocks[i][3:5] = np.nan
    mic, streams, _ = _mic(blocks, statuses={5: True, 6: True})
    mic.open()
    assert streams[0].kwargs["channels"] == 2 and streams[0].kwargs["samplerate"] == 16000
    warnings = []
    runner = StreamRunner(Engine(load_model(window_model, threads=1)), mic, warn=warnings.append)
    decisions = []
    with pytest.raises(SourceError, match="stopped delivering audio"):
        runner.run(decisions.append)
    assert mic.stats.nonfinite_samples == 6  # 2 per block after the stereo downmix, 3 blocks
    assert mic.stats.skipped_samples >= 3 * 160
    assert mic.stats.overflows == 2
    assert warnings and "NaN/Inf" in warnings[0]
    assert decisions and all(np.isfinite(d.scores).all() for d in decisions)
    assert all(d.latency_s is not None and 0 <= d.latency_s < 5 for d in decisions)
    # time keeps running across a skipped block: the last decision ends near the end of the audio
    assert decisions[-1].t == pytest.approx(2.0, abs=0.06)


def test_mic_resamples_when_the_device_refuses_the_model_rate() -> None:
    pytest.importorskip("soxr")
    x = (0.1 * np.sin(np.arange(48000) * 0.05)).astype(np.float32)
    mic, streams, messages = _mic(_stereo_blocks(x), rates=(48000,))
    mic.open()
    assert streams[0].kwargs["samplerate"] == 48000 and "resampling" in messages[0]
    total = 0
    with pytest.raises(SourceError):
        for chunk in mic.chunks():
            total += len(chunk.samples)
    assert 15000 < total <= 16000  # less the resampler's delay
    mic.close()


def test_mic_that_stalls_ends_with_a_message_not_a_hang() -> None:
    mic, _, _ = _mic(_stereo_blocks(np.zeros(1600, np.float32)), then="stall")
    mic.open()
    start = time.monotonic()
    with pytest.raises(SourceError, match="no audio from input device"):
        for _ in mic.chunks():
            pass
    assert time.monotonic() - start < 15  # a hang guard (the stall timeout is 2 s), not a timing test
    mic.close()


def test_stdin_source_converts_and_resamples() -> None:
    x = (0.5 * np.sin(np.arange(8000) * 0.1)).astype(np.float32)
    raw = (x * 32767).astype("<i2").tobytes() + b"\x01"  # a stray trailing byte
    src = StdinSource(16000, 16000, "s16le", stream=io.BytesIO(raw))
    got = np.concatenate([c.samples for c in src.chunks()])
    np.testing.assert_allclose(got, x, atol=2 / 32768)
    assert src.eof and src.leftover_bytes == 1
    src = StdinSource(16000, 8000, "f32le", stream=io.BytesIO(x.astype("<f4").tobytes()))
    got = np.concatenate([c.samples for c in src.chunks()])
    assert abs(len(got) - 16000) <= 2
    with pytest.raises(ValueError, match="--rate"):
        StdinSource(16000, 0)


def test_file_source_realtime_paces(tone_wav) -> None:
    src = FileSource(str(tone_wav), 16000, realtime=True, chunk_ms=100)
    start = time.monotonic()
    it = src.chunks()
    chunks = [next(it) for _ in range(3)]
    assert time.monotonic() - start >= 0.25
    assert all(c.capture_end is not None for c in chunks)
    src.stop()


def test_runner_request_stop_ends_the_run_cleanly(window_model, tone_wav) -> None:
    """What Ctrl-C does in `edgetag listen`: a flag, then a clean stop at the next wake-up, no exception."""
    from edgetag.runtime.engine import Engine, StreamRunner
    from edgetag.runtime.model import load_model

    source = FileSource(str(tone_wav), 16000, realtime=True)  # 5 s paced in real time
    source.open()
    runner = StreamRunner(Engine(load_model(window_model, threads=1)), source)
    decisions = []

    def on_decision(d) -> None:
        decisions.append(d)
        if len(decisions) == 3:
            runner.request_stop()

    t0 = time.monotonic()
    runner.run(on_decision)
    assert runner.stop_requested and len(decisions) == 3
    assert time.monotonic() - t0 < 3.0  # well before the file's 5 s end
    assert not runner._thread.is_alive()  # the worker was stopped and joined


def test_listen_with_stdin_closed_says_so_in_one_line() -> None:
    """`edgetag listen --stdin <&-`: one line naming the problem, exit 1, no traceback."""
    import os
    import subprocess
    import sys

    pytest.importorskip("onnxruntime")
    done = subprocess.run(
        [sys.executable, "-m", "edgetag.runtime.cli", "listen", "--stdin", "--rate", "16000", "--format", "jsonl"],
        capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.close(0),
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "standard input is closed" in done.stderr


def _lying_flac(path, seconds: float = 3.0):
    """A real 3 s FLAC whose STREAMINFO claims 2^36 - 1 frames (the most its 36 bits hold)."""
    import numpy as np
    import soundfile as sf

    sf.write(path, (0.1 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * seconds)) / 16000)).astype(np.float32), 16000)
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC"
    data[21] |= 0x0F  # total samples: the low 4 bits of byte 21 and bytes 22..25 of the file
    data[22:26] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    return path


def test_a_header_that_lies_about_its_length_is_refused(tmp_path) -> None:
    """No 256 GiB allocation: load_audio and `edgetag tag` say the header is corrupt, in one line."""
    import subprocess
    import sys

    pytest.importorskip("soundfile")
    from edgetag.runtime.audio import AudioReadError, load_audio

    path = _lying_flac(tmp_path / "lie.flac")
    with pytest.raises(AudioReadError, match="header claims 68,719,476,735 frames .* a corrupt or crafted header"):
        load_audio(path, 16000)
    done = subprocess.run([sys.executable, "-m", "edgetag.runtime.cli", "tag", str(path), "--format", "summary"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1 and "crafted header" in done.stderr


def test_audio_is_read_in_blocks(tmp_path, monkeypatch) -> None:
    """A read larger than one block comes back whole and the same (blocks are joined, nothing lost)."""
    import numpy as np
    import soundfile as sf

    from edgetag.runtime import audio

    x = (0.1 * np.random.default_rng(0).standard_normal(40_000)).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    whole = audio.load_audio(tmp_path / "a.wav", 16000)
    monkeypatch.setattr(audio, "_READ_BLOCK", 4096)
    np.testing.assert_array_equal(audio.load_audio(tmp_path / "a.wav", 16000), whole)
    np.testing.assert_array_equal(whole, x)


def test_a_flac_cut_short_gives_every_frame_before_the_damage(tmp_path) -> None:
    """A FLAC cut mid-stream loses sync part-way through a block: the frames libsndfile decoded before it
    come out (bit-identical to the whole file's), then the error naming where; no frame is lost with it."""
    import soundfile as sf

    from edgetag.runtime import audio

    t = np.arange(16000 * 5) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(3 * t))).astype(np.float32)
    whole, cut = tmp_path / "whole.flac", tmp_path / "cut.flac"
    sf.write(whole, x, 16000, format="FLAC")
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    reference = audio.load_audio(whole, 16000)
    for block_frames in (audio.STREAM_BLOCK, 10_000):  # the damage in the first block, and in a later one
        got = []
        with pytest.raises(audio.AudioReadError, match="cannot decode .* at .* s: .*truncated or damaged") as caught:
            for block in audio.stream_audio(cut, 16000, block_frames=block_frames):
                got.append(block)
        samples = np.concatenate(got)
        at = float(str(caught.value).split(" at ", 1)[1].split(" s:", 1)[0])
        assert 2.0 < at < 3.5 and len(samples) == round(at * 16000), (at, len(samples))
        np.testing.assert_array_equal(samples, reference[: len(samples)])


def test_a_lying_header_is_refused_by_listen_and_skipped_in_training(tmp_path) -> None:
    """The same file through `listen --file` (one line, exit 1) and a training manifest (skipped and counted)."""
    import subprocess
    import sys

    pytest.importorskip("soundfile")
    pytest.importorskip("onnxruntime")
    from edgetag.training.data import SkipReport, iter_audio, load_manifest

    path = _lying_flac(tmp_path / "lie.flac")
    done = subprocess.run([sys.executable, "-m", "edgetag.runtime.cli", "listen", "--file", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1 and "crafted header" in done.stderr
    good = tmp_path / "good.wav"
    import soundfile as sf

    sf.write(good, np.zeros(16000, np.float32), 16000)
    (tmp_path / "m.csv").write_text("path,labels,split\nlie.flac,x,train\ngood.wav,x,train\n")
    report = SkipReport()
    read = [entry.path for entry, _ in iter_audio(load_manifest(tmp_path / "m.csv"), 16000, report=report)]
    assert read == ["good.wav"] and report.n_skipped == 1 and "crafted header" in report.summary()


def _stereo_44k(path, seconds: float) -> None:
    """44.1 kHz stereo, float: noise and a sweep, different in each channel (nothing a decoder rounds away)."""
    import soundfile as sf

    rng = np.random.default_rng(7)
    t = np.arange(int(44100 * seconds)) / 44100
    left = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(len(t))
    right = 0.2 * np.sin(2 * np.pi * 3000 * t) + 0.05 * rng.standard_normal(len(t))
    sf.write(path, np.stack([left, right], axis=1).astype(np.float32), 44100, subtype="FLOAT")


def test_file_source_decodes_in_blocks_and_decides_as_the_whole_file_did(window_model, tmp_path, monkeypatch) -> None:
    """`listen --file` no longer holds the file: libsndfile reads stay one block (memory bounded whatever the
    length), and samples and decisions are bit-identical to decoding and resampling the whole file at once."""
    from edgetag.runtime import audio
    from edgetag.runtime.engine import Engine, StreamRunner
    from edgetag.runtime.model import load_model

    path = tmp_path / "long.wav"
    _stereo_44k(path, 20.0)  # 882,000 frames: 14 blocks
    model = load_model(window_model, threads=1)
    rate = model.card.frontend.sample_rate
    whole = audio.load_audio(path, rate)

    reads: list[int] = []
    real_read = audio._read_into
    monkeypatch.setattr(audio, "_read_into", lambda f, out: (reads.append(len(out)), real_read(f, out))[1])
    source = FileSource(str(path), rate)
    streamed = [c.samples for c in source.chunks()]
    assert max(reads) <= audio.STREAM_BLOCK and len(reads) >= 14
    assert max(len(c) for c in streamed) == source.chunk  # re-cut to 100 ms chunks, as before
    joined = np.concatenate(streamed)
    assert joined.dtype == whole.dtype and np.array_equal(joined, whole)

    runner = StreamRunner(Engine(model), FileSource(str(path), rate))
    got = []
    runner.run(got.append)
    engine = Engine(model)  # what listen did before: the whole array, pushed in the same 100 ms chunks
    want = [d for offset in range(0, len(whole), source.chunk) for d in engine.push(whole[offset : offset + source.chunk])]
    assert len(got) == len(want) > 300
    assert all(a.t == b.t and np.array_equal(a.scores, b.scores) for a, b in zip(got, want))


def test_mp3_read_in_blocks_equals_one_read(tmp_path) -> None:
    """SoundFile.read seeks after every read, and a seek makes libsndfile's MP3 decoder decode the next frames
    wrong; the block reads must not: blocks of any size give what one read of the whole file gives."""
    import soundfile as sf

    from edgetag.runtime import audio

    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile writes no MP3")
    t = np.arange(44100 * 4) / 44100
    sf.write(tmp_path / "a.mp3", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 44100, format="MP3")
    with sf.SoundFile(tmp_path / "a.mp3") as f:
        one = f.read(dtype="float32", always_2d=True)
    for block in (1000, 4096, 1 << 16):
        with sf.SoundFile(tmp_path / "a.mp3") as f:
            parts = []
            while True:
                out = np.empty((block, 1), np.float32)
                n = audio._read_into(f, out)
                parts.append(out[:n])
                if n < block:
                    break
        assert np.array_equal(np.concatenate(parts), one), block
    streamed = np.concatenate(list(audio.stream_audio(tmp_path / "a.mp3", 16000, block_frames=4096)))
    assert np.array_equal(streamed, audio.load_audio(tmp_path / "a.mp3", 16000))


def test_stdin_with_channels_that_cancel_warns() -> None:
    x = (0.3 * np.sin(np.arange(32000) * 0.05)).astype(np.float32)
    warnings: list[str] = []
    anti = np.stack([x, -x], axis=1).astype("<f4").tobytes()
    src = StdinSource(16000, 16000, "f32le", channels=2, stream=io.BytesIO(anti), warn=warnings.append)
    assert np.abs(np.concatenate([c.samples for c in src.chunks()])).max() == 0.0
    assert len(warnings) == 1 and "stdin: its channels cancel when averaged to mono" in warnings[0]
    warnings.clear()
    same = np.stack([x, 0.5 * x], axis=1).astype("<f4").tobytes()
    src = StdinSource(16000, 16000, "f32le", channels=2, stream=io.BytesIO(same), warn=warnings.append)
    list(src.chunks())
    assert warnings == []


# ------------------------------------------------------------------ ffmpeg (issue 24)
def _ffmpeg_or_skip() -> str:
    """ffmpeg, or a skip (a failure where EDGETAG_REQUIRE_FFMPEG=1: CI installs it, so these tests must run)."""
    import os
    import shutil

    binary = shutil.which("ffmpeg")
    if binary is None:
        if os.environ.get("EDGETAG_REQUIRE_FFMPEG") == "1":
            pytest.fail("ffmpeg is not installed, and EDGETAG_REQUIRE_FFMPEG=1 says the m4a/webm tests must run")
        pytest.skip("ffmpeg is not installed (.ci/run installs it)")
    return binary


def _encode(src, dst, *codec: str) -> None:
    """``src`` re-encoded by the real ffmpeg into the container ``dst`` names."""
    import subprocess

    subprocess.run([_ffmpeg_or_skip(), "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *codec, str(dst)],
                   check=True, timeout=120)


@pytest.fixture(scope="module")
def containers(tmp_path_factory) -> dict:
    """The tone WAV of the CLI tests (44.1 kHz stereo) as m4a (AAC) and webm (Opus), made by ffmpeg."""
    sf = pytest.importorskip("soundfile")
    _ffmpeg_or_skip()
    from conftest import tone_signal

    folder = tmp_path_factory.mktemp("containers")
    x = tone_signal(44100)
    wav = folder / "tones.wav"
    sf.write(wav, np.stack([x, x], axis=1), 44100, subtype="FLOAT")
    out = {"wav": wav, "m4a": folder / "tones.m4a", "webm": folder / "tones.webm"}
    _encode(wav, out["m4a"], "-c:a", "aac", "-b:a", "128k")
    _encode(wav, out["webm"], "-c:a", "libopus", "-b:a", "96k")
    return out


@pytest.mark.parametrize("kind", ["m4a", "webm"])
def test_containers_libsndfile_cannot_read_are_decoded_through_ffmpeg(kind, containers) -> None:
    """Mono at the model's rate, in bounded blocks, the same samples whole, in blocks and as a segment."""
    import soundfile as sf

    from edgetag.runtime import audio

    path = containers[kind]
    with pytest.raises(RuntimeError):  # the premise: libsndfile itself refuses the container
        sf.SoundFile(str(path))
    whole = audio.load_audio(path, 16000)
    reference = audio.load_audio(containers["wav"], 16000)
    assert whole.dtype == np.float32 and whole.ndim == 1
    assert abs(len(whole) - len(reference)) < 0.1 * 16000  # codec padding at most
    # lossy, and the codec may shift it by its priming samples: compare the envelopes per 50 ms
    n = min(len(whole), len(reference)) // 800 * 800
    env = lambda v: np.sqrt((v[:n].reshape(-1, 800) ** 2).mean(axis=1))  # noqa: E731
    assert np.corrcoef(env(whole), env(reference))[0, 1] > 0.98
    blocks = list(audio.stream_audio(path, 16000, block_frames=4000))
    assert max(len(b) for b in blocks) <= 4000 and len(blocks) > 10  # memory bounded by the block
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    np.testing.assert_array_equal(audio.load_audio(path, 16000, start=1.0, end=2.5), whole[16000:40000])


def test_tag_and_listen_read_an_m4a_and_a_webm(containers, window_model) -> None:
    """The CLI tags them as it tags the WAV: the same tones, on at the same times."""
    import json
    import subprocess
    import sys

    def onsets(*args: str) -> list[tuple[str, str, float]]:
        done = subprocess.run([sys.executable, "-m", "edgetag.runtime.cli", *args, "--model", str(window_model),
                               "--events", "--format", "jsonl"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        return [(e["event"], e["label"], e["t"]) for e in map(json.loads, done.stdout.splitlines()) if "event" in e]

    want = onsets("tag", str(containers["wav"]))
    assert len(want) == 6
    for got in (onsets("tag", str(containers["m4a"])), onsets("tag", str(containers["webm"])),
                onsets("listen", "--file", str(containers["webm"]))):
        assert [g[:2] for g in got] == [w[:2] for w in want]
        assert max(abs(g[2] - w[2]) for g, w in zip(got, want)) <= 0.1  # two decisions of the window model


def test_a_container_without_ffmpeg_says_to_install_it(tmp_path, monkeypatch, window_model) -> None:
    """No ffmpeg: one line that names the container and how to get ffmpeg (no ffmpeg needed for this test)."""
    import subprocess
    import sys

    from edgetag.runtime.audio import AudioReadError, load_audio, stream_audio

    fake = tmp_path / "song.m4a"  # an MP4 header: libsndfile refuses it, the first bytes say MP4
    fake.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A isommp42" + bytes(200))
    monkeypatch.delenv("EDGETAG_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # as on a machine without ffmpeg
    for read in (lambda: load_audio(fake, 16000), lambda: next(stream_audio(fake, 16000))):
        with pytest.raises(AudioReadError, match=r"it is MP4/M4A audio, which libsndfile cannot read: install ffmpeg"):
            read()
    done = subprocess.run([sys.executable, "-m", "edgetag.runtime.cli", "tag", str(fake), "--model", str(window_model)],
                          capture_output=True, text=True, timeout=120)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(err) == 1 and "apt install ffmpeg" in err[0] and "Traceback" not in done.stderr
    monkeypatch.setenv("EDGETAG_FFMPEG", "")  # ffmpeg turned off on purpose: say so, not "install it"
    with pytest.raises(AudioReadError, match=r"EDGETAG_FFMPEG is empty, which turns ffmpeg off: unset it"):
        load_audio(fake, 16000)


def test_a_damaged_container_is_one_line_through_ffmpeg(containers, tmp_path, window_model) -> None:
    import subprocess
    import sys

    cut = tmp_path / "cut.m4a"
    cut.write_bytes(containers["m4a"].read_bytes()[:3000])  # the header survives, the index (moov) does not
    done = subprocess.run([sys.executable, "-m", "edgetag.runtime.cli", "tag", str(cut), "--model", str(window_model)],
                          capture_output=True, text=True, timeout=120)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(err) == 1 and f"cannot decode {cut} through ffmpeg" in err[0], done.stderr


def test_ffmpeg_stops_when_the_reader_does(containers) -> None:
    """Closing the block stream early (an error downstream, Ctrl-C, a segment read) ends the ffmpeg process."""
    import os

    from edgetag.runtime.audio import stream_audio

    if not os.path.isdir("/proc"):
        pytest.skip("needs /proc to list child processes")

    def ffmpeg_children() -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = open(f"/proc/{entry}/stat").read()
                except OSError:
                    continue
                name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
                if name == "ffmpeg" and int(rest[1]) == os.getpid() and rest[0] != "Z":
                    pids.append(int(entry))
        return pids

    blocks = stream_audio(containers["m4a"], 16000, block_frames=1000)
    next(blocks)
    assert ffmpeg_children()
    blocks.close()
    assert not ffmpeg_children()
