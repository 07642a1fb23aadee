"""End to end through a real capture device: PulseAudio's null sink, recorded through sounddevice.

`edgetag listen --format jsonl` records a known WAV played into the virtual
microphone (tests/virtual_mic.py); its decisions must match `edgetag tag`
on the same WAV once aligned in time (the offset is found by
cross-correlating the score tracks), with no overflow and no drop.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from conftest import LABELS, build_model  # noqa: E402
from edgetag.runtime.cli import main  # noqa: E402
from virtual_mic import VirtualMic  # noqa: E402

EDGETAG = [sys.executable, "-m", "edgetag.runtime.cli"]
# the `virtual_mic` fixture (conftest.py) starts the PulseAudio daemon, or skips (fails where required)


def _decisions(text: str) -> list[dict]:
    return [o for o in map(json.loads, filter(str.strip, text.splitlines())) if "t" in o and "scores" in o]


def _track(decisions: list[dict]) -> np.ndarray:
    return np.array([[d["scores"][label] for label in LABELS] for d in decisions])


def _best_lag(live: np.ndarray, ref: np.ndarray) -> int:
    """Index offset of ref's start in live, maximising the correlation of the summed score tracks."""
    a = live.sum(axis=1) - live.sum(axis=1).mean()
    b = ref.sum(axis=1) - ref.sum(axis=1).mean()
    corr = np.correlate(a, b, mode="full")  # lag k at index k + len(b) - 1
    lags = np.arange(-len(b) + 1, len(a))
    return int(lags[np.argmax(corr)])


@pytest.mark.slow
def test_listen_through_the_virtual_mic_matches_tag(virtual_mic, tmp_path, tone_wav, capsys) -> None:
    # hop of one frame (10 ms): the live stream's unknown phase costs at most 5 ms of misalignment
    model = build_model(tmp_path / "hop1.onnx", "window", hop_frames=1)
    proc = subprocess.Popen(
        EDGETAG + ["listen", "--model", str(model), "--device", "pulse", "--format", "jsonl",
                   "--duration", "7.5", "--threads", "1"],
        env=virtual_mic.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stderr.readline()
        assert "listening on" in first, first + proc.stderr.read()
        time.sleep(0.5)
        player = virtual_mic.play(tone_wav)
        out, err = proc.communicate(timeout=60)
        player.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, first + err
    stats = json.loads(next(line for line in err.splitlines() if " stats " in line).split(" stats ", 1)[1])
    assert stats["overflows"] == 0 and stats["dropped_samples"] == 0 and stats["nonfinite_samples"] == 0, stats
    live = _decisions(out)
    assert len(live) == stats["decisions"] > 600

    assert main(["tag", str(tone_wav), "--model", str(model)]) == 0
    ref = _decisions(capsys.readouterr().out)
    live_track, ref_track = _track(live), _track(ref)
    lag = _best_lag(live_track, ref_track)
    assert 0 <= lag and lag + len(ref) <= len(live), f"the WAV is not inside the recording (lag {lag})"
    aligned = live_track[lag : lag + len(ref)]
    diff = np.abs(aligned - ref_track)
    corr = np.corrcoef(aligned.ravel(), ref_track.ravel())[0, 1]
    assert corr > 0.99, corr
    assert np.median(diff) < 0.01 and np.percentile(diff, 99) < 0.15 and diff.max() < 0.3, (
        np.median(diff), np.percentile(diff, 99), diff.max())
    # every label fires in the live stream where it fires in the file
    for k, label in enumerate(LABELS):
        assert (aligned[:, k] > 0.5).sum() == pytest.approx((ref_track[:, k] > 0.5).sum(), abs=3)
    # latency is measured and reported, never asserted on a time budget (shared machines stall)
    assert all(np.isfinite(d["latency_ms"]) and d["latency_ms"] >= 0 for d in live)


@pytest.mark.slow
def test_a_device_that_disappears_ends_listen_with_a_message(virtual_mic, window_model) -> None:
    import os
    import signal

    with VirtualMic() as doomed:  # a second daemon of our own, killed mid-stream
        proc = subprocess.Popen(
            EDGETAG + ["listen", "--model", str(window_model), "--device", "pulse", "--format", "jsonl",
                       "--duration", "30", "-o", os.devnull],
            env=doomed.env, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert "listening on" in proc.stderr.readline()
            time.sleep(1.0)
            os.kill(doomed.daemon_pid, signal.SIGKILL)
            doomed.daemon_pid = None
            start = time.monotonic()
            _, err = proc.communicate(timeout=20)
            assert time.monotonic() - start < 15  # a hang guard, not a timing test
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1
    assert "edgetag listen: error:" in err and ("stopped delivering audio" in err or "no audio from" in err), err
    assert "Traceback" not in err
