"""The spectrogram front end: one config, the same numbers everywhere.

- `FrontendConfig` pins every convention (see `edgetag.runtime.frontend.config`).
- `StreamingFrontend` and `compute_features` run the C++ core.
- `reference_features` is the float64 numpy yardstick used by the tests.
- The torch implementation for training lives in `edgetag.training.frontend`.
"""

from .config import PRESETS, FrontendConfig, FrontendConfigError
from .filterbank import filterbank_matrix
from .reference import reference_features
from .streaming import StreamingFrontend, compute_features

__all__ = [
    "PRESETS",
    "FrontendConfig",
    "FrontendConfigError",
    "StreamingFrontend",
    "compute_features",
    "filterbank_matrix",
    "reference_features",
]
