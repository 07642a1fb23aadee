"""The runtime stands alone: importing every runtime module loads nothing of training, export, benchmarks or torch.

Edge devices carry the runtime only (`pip install edgetag[runtime]`). The
other parts plug in through entry points (pyproject.toml: ``edgetag.commands``
and ``edgetag.model_loaders``), never by an import from the runtime.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import importlib, pkgutil, sys
import edgetag.runtime
names = sorted(m.name for m in pkgutil.walk_packages(edgetag.runtime.__path__, "edgetag.runtime."))
for name in names:
    importlib.import_module(name)
from edgetag.runtime.cli import build_parser  # the module only: parts load when the parser is built
leaked = sorted(m for m in sys.modules
                if m.split(".")[0] == "torch" or m.startswith(("edgetag.training", "edgetag.export", "edgetag.benchmarks")))
print(len(names))
print("\\n".join(leaked))
"""


def test_runtime_modules_import_no_other_part_and_no_torch() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    count, *leaked = done.stdout.strip().split("\n")
    assert int(count) >= 15  # every runtime module was imported (frontend, engine, model, verify, ...)
    assert leaked == [], f"runtime modules imported {leaked}"


_API_PROBE = """
import sys
import numpy as np
import edgetag
tagger = edgetag.load("music-tags", threads=1)  # the public API, used as a device would
tagger.push(np.zeros(48000, np.float32), sample_rate=48000)
tagger.flush()
edgetag.__version__
leaked = sorted(m for m in sys.modules
                if m.split(".")[0] == "torch" or m.startswith(("edgetag.training", "edgetag.export", "edgetag.benchmarks")))
print("\\n".join(leaked))
"""


def test_the_public_api_imports_no_other_part_and_no_torch() -> None:
    """`import edgetag` and its API (the package's top-level __init__) stay inside the runtime."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("soxr")
    done = subprocess.run([sys.executable, "-c", _API_PROBE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"the public API imported {done.stdout.split()}"
