"""int8 files compute the same on an AVX2-only CPU as on this one (see tests/emulated_cpu.py).

The shipped int8 models' test vectors pass under the emulated AVX2 CPU, and
their scores there equal this CPU's to float rounding, as the runtime runs
them. Two things make that so: the files keep int8 weights in 7 bits (checked
on the file alone, without the runtime, in tests/test_export.py), and the
runtime sets ONNX Runtime's ``session.x64quantprecision``, which also keeps an
older 8-bit file exact (the old pitch-int8 moved by 0.195 under AVX2 without it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from emulated_cpu import run_emulated

from edgetag.runtime.models import BUILTIN_MODELS

INT8_MODELS = sorted(name for name in BUILTIN_MODELS if name.endswith("-int8"))

_SCORES = """
import json, sys
import numpy as np
from edgetag.runtime.demo import demo_music
from edgetag.runtime.engine import offline_decisions
from edgetag.runtime.model import load_model
from edgetag.runtime.models import resolve_model
out = {}
for name in sys.argv[1:]:
    model = load_model(resolve_model(name), threads=1)
    audio = demo_music(model.card.frontend.sample_rate, seconds=2.0)
    out[name] = np.stack([d.scores for d in offline_decisions(model, audio)]).tolist()
print(json.dumps(out))
"""


def _scores(names: list[str], emulated: bool, tmp_path: Path) -> dict[str, np.ndarray]:
    import subprocess
    import sys

    script = tmp_path / "scores.py"
    script.write_text(_SCORES)
    if emulated:
        done = run_emulated([str(script), *names])
    else:
        done = subprocess.run([sys.executable, str(script), *names], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return {k: np.asarray(v, np.float32) for k, v in json.loads(done.stdout).items()}


def test_builtin_int8_models_verify_on_an_avx2_only_cpu() -> None:
    done = run_emulated(["-m", "edgetag.runtime.cli", "verify", *INT8_MODELS])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("\nok  ") == len(INT8_MODELS), done.stdout


def test_int8_scores_are_the_same_on_avx2_and_here(tmp_path: Path) -> None:
    here = _scores(INT8_MODELS, emulated=False, tmp_path=tmp_path)
    avx2 = _scores(INT8_MODELS, emulated=True, tmp_path=tmp_path)
    for name in INT8_MODELS:
        assert here[name].shape == avx2[name].shape and len(here[name]) > 5
        # exact integer arithmetic on both: only float rounding of the float layers differs
        assert np.abs(here[name] - avx2[name]).max() <= 1e-4, name
