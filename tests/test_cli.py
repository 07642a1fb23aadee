"""The edgetag command: help, the front-end demo, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from edgetag.runtime.cli import main


def test_help_lists_commands(capsys) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("presets", "features", "teach"):
        assert command in out


def test_help_does_not_import_torch() -> None:
    code = "import sys; from edgetag.runtime.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_features_demo_saves_frames(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo.npy"
    assert main(["features", "--demo", "--seconds", "1", "-o", str(out)]) == 0
    frames = np.load(out)
    assert frames.shape == (98, 64) and frames.dtype == np.float32
    assert "98 x 64 bins" in capsys.readouterr().out


def test_errors_are_one_clear_line(tmp_path: Path, capsys) -> None:
    assert main(["features", str(tmp_path / "missing.wav")]) == 1
    err = capsys.readouterr().err
    assert "audio file not found" in err and "Traceback" not in err
    assert main(["features", "--demo", "--preset", "nope"]) == 1
    assert "known presets: default, kaldi, librosa, musicnn" in capsys.readouterr().err
