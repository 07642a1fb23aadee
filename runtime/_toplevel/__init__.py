"""edgetag: edge audio tagging with a streaming C++ front end and ONNX Runtime.

    import edgetag

    tagger = edgetag.load("music-tags", threads=1)
    for d in tagger.push(samples, sample_rate=44100):
        print(d.t, d.top(3), d.active)
    decisions = edgetag.tag_file("song.ogg", model="pitch")

The public API lives in `edgetag.runtime.api`; this module re-exports it.
It is the installed package's top-level ``edgetag/__init__.py``: pyproject.toml
maps this file there (``wheel.packages``), so the repository keeps its
top-level layout (and leaves its copy, ``edgetag.runtime._toplevel``, out of
the wheel). The re-exports are lazy (PEP 562): ``import edgetag`` costs
nothing, and ``import edgetag.training`` or ``edgetag --help`` do not load the
runtime's numpy, C++ extension or ONNX Runtime through this file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgetag.runtime.api import PitchReading, TagDecision, Tagger, load, tag_file  # noqa: F401

__all__ = ["PitchReading", "TagDecision", "Tagger", "__version__", "load", "tag_file"]

_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from edgetag.runtime.version import package_version

        value: Any = package_version()
    elif name in _API:
        from edgetag.runtime import api

        value = getattr(api, name)
    else:  # also how `from edgetag import _core` falls through to importing the submodule
        raise AttributeError(f"module 'edgetag' has no attribute {name!r}")
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
