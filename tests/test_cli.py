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


def test_teach_unknown_teacher_and_bad_options_are_one_line(tmp_path: Path, capsys) -> None:
    """`teach --teacher nosuch` and a --teacher-option the teacher does not take: one line each, exit 1."""
    import pytest

    pytest.importorskip("torch")
    (tmp_path / "m.csv").write_text("path,labels,split\na.wav,x,train\n")
    base = ["teach", "--data", str(tmp_path / "m.csv"), "--out", str(tmp_path / "cache"), "--no-progress"]
    cases = [
        (["--teacher", "nosuch"], "--teacher: unknown teacher 'nosuch'; known teachers: crepe-full, crepe-tiny"),
        (["--teacher", "crepe-tiny+nosuch"], "--teacher: unknown teacher 'nosuch'"),
        (["--teacher", "crepe-tiny", "--teacher-option", "bogus=1"],
         "--teacher-option: teacher 'crepe-tiny' does not take these options (bogus=1): "),
    ]
    for args, message in cases:
        assert main(base + args) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "cache").exists()  # refused before anything was written
    with pytest.raises(SystemExit):
        main(base + ["--teacher", "crepe-tiny", "--teacher-option", "no-equals-sign"])
    assert "expected KEY=VALUE, got 'no-equals-sign'" in capsys.readouterr().err


def test_ctrl_c_in_any_command_is_one_line_and_exit_130(monkeypatch, capsys) -> None:
    """Ctrl-C (KeyboardInterrupt) inside tag, listen, features, verify, enroll or info: no traceback, status 130."""
    from edgetag.runtime import commands, enroll_command

    def interrupted(args) -> int:
        raise KeyboardInterrupt

    cases = {"tag": (commands, "cmd_tag", ["tag", "--demo"]), "listen": (commands, "cmd_listen", ["listen"]),
             "features": (commands, "cmd_features", ["features", "--demo"]),
             "verify": (commands, "cmd_verify", ["verify"]), "info": (commands, "cmd_info", ["info"]),
             "enroll": (enroll_command, "cmd_enroll", ["enroll", "--add", "x=a.wav,b.wav,c.wav", "-o", "y.onnx"])}
    for name, (module, function, argv) in cases.items():
        monkeypatch.setattr(module, function, interrupted)  # the parser is built per call: it takes the stand-in
        assert main(argv) == 130, name
        err = capsys.readouterr().err
        assert err == f"edgetag {name}: interrupted (Ctrl-C)\n", (name, err)
