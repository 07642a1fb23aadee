"""`edgetag bench` where the model runs: a runtime-only install (no torch, no matplotlib).

The dev environment has torch, so the run happens in a subprocess whose imports of torch and
matplotlib fail as they do on a device (a ``sitecustomize`` on PYTHONPATH blocks them, in the
bench's worker processes too). Never asserts on timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

BLOCKER = '''
import sys

class _NotOnThisDevice:
    """Imports of these packages fail, as on a runtime-only install."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "matplotlib"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, _NotOnThisDevice())
'''


def test_bench_without_torch_measures_the_builtin_models(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "edgetag.runtime.cli", "bench", "--quick", "--no-mic", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "not plotted: matplotlib is not installed" in proc.stdout
    result = json.loads((out / "report.json").read_text())
    students = {s["student"]: s for s in result["models"]["students"]}
    from edgetag.runtime.models import BASE_MODELS

    builtins = sorted(f"onnx {name}" for name in BASE_MODELS)
    assert sorted(students) == builtins  # the built-in models, not random students
    for info in students.values():
        rows = {r["backend"]: r for r in info["rows"]}
        assert rows["ort-fp32"]["status"] == "ok" and rows["ort-int8"]["status"] == "ok"
        assert "torch" in rows["torch"]["status"]  # says what that row needs
        assert info["decision_interval_ms"] > 0
    assert "need torch" in result["teachers"]["status"]
    assert sorted(e["student"] for e in result["engine"]) == builtins
    md = (out / "report.md").read_text()
    assert "Measured on " in md and result["machine"]["cpu"] in md  # the machine it ran on, not a fixed sentence
    assert "other engineers" not in md
