"""edgetag's version, read from the installed package's metadata.

pyproject.toml's ``version`` is the single source: the wheel's metadata
carries it, and ``edgetag.__version__``, ``edgetag --version`` and the C
library's CMake package and pkg-config file all read it from there (CMake
parses pyproject.toml). Standard library only, so the CLI can ask cheaply.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

#: Distribution name in pyproject.toml.
DISTRIBUTION = "edgetag"


def package_version() -> str:
    """The installed distribution's version; ``0+unknown`` when edgetag runs from a tree that was never installed."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
