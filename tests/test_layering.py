"""The runtime stands alone: importing every runtime module loads nothing of training, export, benchmarks or torch.

Edge devices carry the runtime only (`pip install edgetag[runtime]`). The
other parts plug in through entry points (pyproject.toml: ``edgetag.commands``
and ``edgetag.model_loaders``), never by an import from the runtime.
"""

from __future__ import annotations

import subprocess
import sys

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
