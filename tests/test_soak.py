"""benchmarks/soak.py on a short span: stdin runs lose no decision, the report carries RSS samples and a slope."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")


def test_expected_decisions_follow_the_engine(window_model, stateful_model) -> None:
    """The count the soak checks against is the engine's own, for window and stateful models."""
    from conftest import tone_signal
    from edgetag.benchmarks.soak import _expected_decisions
    from edgetag.runtime.engine import Engine
    from edgetag.runtime.model import load_model

    x = tone_signal()
    for path in (window_model, stateful_model):
        model = load_model(path, threads=1)
        for n in (0, 399, 400, 4321, len(x)):
            engine = Engine(model)
            got = sum(len(engine.push(x[i : i + 1000])) for i in range(0, n, 1000)) if n else 0
            assert _expected_decisions(model.card, n) == got, (path.name, n)


def test_tape_loops_without_repeating_exactly() -> None:
    from edgetag.benchmarks.soak import Tape

    tape = Tape(16000, seconds=2.0)
    first = np.frombuffer(tape.next_block(len(tape.samples)), "<i2")
    second = np.frombuffer(tape.next_block(len(tape.samples)), "<i2")
    assert len(first) == len(second) and not np.array_equal(first, second)  # another gain on the next pass
    assert np.corrcoef(first.astype(float), second.astype(float))[0, 1] > 0.99


def test_a_short_soak_through_stdin_loses_nothing(tmp_path: Path, capsys) -> None:
    from edgetag.benchmarks.soak import main
    from edgetag.runtime.models import BUILTIN_MODELS, MODELS_DIR

    if not (MODELS_DIR / BUILTIN_MODELS["music-tags"]).is_file():
        pytest.skip("the built-in music-tags model is not in this installation")
    report = tmp_path / "soak.json"
    assert main(["--models", "music-tags", "--hours", "0.01", "--live-minutes", "0", "--sample-every", "0.2",
                 "--warmup", "0", "--json", str(report)]) == 0
    (row,) = json.loads(report.read_text())["rows"]
    assert row["path"] == "stdin" and row["decisions_lost"] == 0 and row["dropped_decisions"] == 0
    assert row["decisions_read"] == row["decisions_reported"] == row["decisions_expected"] > 300
    assert row["rss_samples"] >= 1 and row["exit_code"] == 0
    assert "slope MB/h" in capsys.readouterr().out


def test_the_summary_line_is_not_a_decision(tmp_path: Path) -> None:
    """listen's jsonl ends with a summary line; the soak's reader counts decisions only, in whatever
    chunks the pipe gives them."""
    import os
    import threading

    from edgetag.benchmarks.soak import SoakRun, _count_lines

    lines = [json.dumps({"t": 0.1 * i, "scores": {"a": 0.5}}) for i in range(1000)]
    lines.append(json.dumps({"summary": {"decisions": 1000, "stream": {"status": "done"}}}))
    data = ("\n".join(lines) + "\n").encode()
    read_fd, write_fd = os.pipe()
    run = SoakRun(model="m", path="stdin")
    with os.fdopen(read_fd, "rb") as stream:
        reader = threading.Thread(target=_count_lines, args=(stream, run))
        reader.start()
        with os.fdopen(write_fd, "wb") as pipe:
            for i in range(0, len(data), 777):  # cut mid-line, and mid-summary
                pipe.write(data[i : i + 777])
                pipe.flush()
        reader.join(timeout=10)
    assert run.decisions_read == 1000

