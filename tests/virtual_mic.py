"""The virtual microphone used by the tests; it lives in `edgetag.benchmarks.virtual_mic`.

``edgetag bench`` measures capture-to-decision latency through the same
PulseAudio null sink, so the helper is part of the package; this module keeps
the tests' ``from virtual_mic import ...`` working.
"""

from edgetag.benchmarks.virtual_mic import (
    SINK,
    VirtualMic,
    VirtualMicUnavailable,
    missing_tools,
)

__all__ = ["SINK", "VirtualMic", "VirtualMicUnavailable", "missing_tools"]
