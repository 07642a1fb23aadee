"""`FrontendConfig`: every convention of the spectrogram front end, pinned.

One config describes the features end to end; the C++ streaming and batch
front end, the torch implementation used in training and the float64 numpy
reference all compute the same numbers from it. No field falls back on a
library default: a model file stores the full config, and a config read back
from a file must name every field.

The computation, frame by frame (``i`` counts frames from 0):

1. **Input**: mono float samples in [-1, 1] at ``sample_rate``. int16 input
   is scaled by 1/32768. Other rates must be resampled *before* the front end.
2. **Framing**: frame ``i`` covers samples ``[i*hop_length, i*hop_length +
   win_length)``. No centring, no padding at the start, no dither. A signal of
   ``n`` samples yields ``0`` frames if ``n < win_length``, else
   ``(n - win_length) // hop_length + 1``.
3. **Per-frame conditioning** (off unless set, in this order, Kaldi's order):
   ``remove_dc_offset`` subtracts the frame mean; ``preemphasis`` p applies
   ``x[j] -= p*x[j-1]`` for j = win-1 .. 1 and ``x[0] -= p*x[0]``.
4. **Window**: ``window`` (``hann``, ``hamming`` or ``rectangular``) of length
   ``win_length``; periodic (``w[n] = a - b*cos(2*pi*n/N)``, the DFT-even form
   of scipy's ``fftbins=True``) or symmetric (``.../(N-1)``).
5. **FFT frame**: the windowed frame is placed in a zero frame of ``n_fft``
   samples, at offset 0 (``window_placement="left"``, Kaldi) or at
   ``(n_fft - win_length) // 2`` (``"center"``, librosa's ``pad_center``).
   Real FFT, bins ``k = 0 .. n_fft/2`` at ``k * sample_rate / n_fft`` Hz.
6. **Spectrum**: ``|X|**2`` (``"power"``) or ``|X|`` (``"magnitude"``).
7. **Filterbank** of ``n_bins`` triangular bands (see `filterbank_edges_hz`):

   - ``mel_htk``: n_bins + 2 points equally spaced on the HTK mel scale
     ``2595*log10(1 + f/700)`` from fmin to fmax; triangles linear in Hz
     (librosa ``htk=True``).
   - ``mel_slaney``: the same on the Slaney (Auditory Toolbox) scale, linear
     below 1 kHz (200/3 Hz per mel) and logarithmic above (step ln(6.4)/27);
     triangles linear in Hz (librosa's default mel).
   - ``mel_kaldi``: HTK mel points, triangles linear in *mel* (Kaldi,
     kaldi-native-fbank).
   - ``logfreq``: band m centred at ``fmin * 2**(m / bins_per_octave)`` with
     edges at the neighbouring centres ``c * 2**(-+1/bins_per_octave)``;
     triangles linear in Hz. The top edge must not pass fmax.

   ``filter_norm="slaney"`` scales each band by ``2 / (right_hz - left_hz)``
   (constant area, librosa ``norm="slaney"``); ``"none"`` keeps peak 1.
   Every band must cover at least one FFT bin with non-zero weight.
8. **Compression** (``floor`` is ``log_floor``):

   - ``log``: ``ln(x + floor)``
   - ``log_clamp``: ``ln(max(x, floor))`` (Kaldi's log-fbank with
     floor = float32 epsilon)
   - ``log10_1p``: ``log10(1 + log1p_scale * x)`` (musicnn)
   - ``db``: ``10*log10(max(x, floor) / db_ref)`` with a fixed reference (no
     ``top_db``, nothing that depends on the whole clip)
   - ``none``: the filterbank energies as they are.

9. **Output**: frames x bins, float32.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from typing import Any, Literal

from .filterbank import empty_bands, filterbank_edges_hz

WindowKind = Literal["hann", "hamming", "rectangular"]
WindowPlacement = Literal["left", "center"]
SpectrumKind = Literal["power", "magnitude"]
FilterbankKind = Literal["mel_htk", "mel_slaney", "mel_kaldi", "logfreq"]
FilterNorm = Literal["none", "slaney"]
CompressionKind = Literal["log", "log_clamp", "log10_1p", "db", "none"]

WINDOW_KINDS: tuple[str, ...] = ("hann", "hamming", "rectangular")
WINDOW_PLACEMENTS: tuple[str, ...] = ("left", "center")
SPECTRUM_KINDS: tuple[str, ...] = ("power", "magnitude")
FILTERBANK_KINDS: tuple[str, ...] = ("mel_htk", "mel_slaney", "mel_kaldi", "logfreq")
FILTER_NORMS: tuple[str, ...] = ("none", "slaney")
COMPRESSION_KINDS: tuple[str, ...] = ("log", "log_clamp", "log10_1p", "db", "none")

#: float32 machine epsilon: Kaldi's floor before the log.
FLOAT32_EPS = 1.1920928955078125e-07


class FrontendConfigError(ValueError):
    """A front-end config that cannot describe a valid computation."""


@dataclass(frozen=True)
class FrontendConfig:
    """All conventions of the spectrogram front end (see the module docstring).

    Build one from a preset (`FrontendConfig.preset`), from keywords, or from
    JSON (`from_json`); every instance is validated on creation and is
    immutable, so a config that exists is a config that can be computed.
    """

    sample_rate: int = 16000
    """Samples per second of the input; other rates are resampled before the front end."""
    win_length: int = 400
    """Samples per analysis frame (before zero-padding to ``n_fft``)."""
    hop_length: int = 160
    """Samples between the starts of consecutive frames (1 <= hop <= win_length)."""
    n_fft: int = 512
    """FFT size: a power of two >= win_length."""
    window: WindowKind = "hann"
    """Window shape: hann, hamming or rectangular."""
    window_periodic: bool = True
    """True: periodic (DFT-even) window, as scipy/librosa/torch; False: symmetric, as Kaldi."""
    window_placement: WindowPlacement = "left"
    """Where the window sits in the FFT frame: ``left`` (offset 0) or ``center``."""
    remove_dc_offset: bool = False
    """Subtract each frame's mean before windowing (Kaldi's remove_dc_offset)."""
    preemphasis: float = 0.0
    """Per-frame pre-emphasis coefficient (Kaldi convention); 0 disables it."""
    spectrum: SpectrumKind = "power"
    """``power`` (|X|^2) or ``magnitude`` (|X|)."""
    filterbank: FilterbankKind = "mel_slaney"
    """Band layout: mel_htk, mel_slaney, mel_kaldi or logfreq."""
    filter_norm: FilterNorm = "slaney"
    """``slaney``: scale each band by 2/(right-left) in Hz; ``none``: peak weight 1."""
    n_bins: int = 64
    """Number of output bands."""
    fmin: float = 0.0
    """Lowest band edge in Hz (for logfreq: the centre of the lowest band)."""
    fmax: float = 8000.0
    """Highest band edge in Hz; at most sample_rate / 2."""
    bins_per_octave: int = 12
    """Bands per octave; used by ``logfreq`` only."""
    compression: CompressionKind = "log"
    """log, log_clamp, log10_1p, db or none."""
    log_floor: float = 1e-6
    """Floor of ``log`` (added), ``log_clamp`` and ``db`` (clamped); >= 1e-30."""
    log1p_scale: float = 10000.0
    """k in ``log10(1 + k*x)``; used by ``log10_1p`` only."""
    db_ref: float = 1.0
    """Fixed reference of ``db``; used by ``db`` only."""

    def __post_init__(self) -> None:
        _validate(self)

    # ------------------------------------------------------------------ derived
    @property
    def n_fft_bins(self) -> int:
        """Number of real-FFT bins, n_fft // 2 + 1."""
        return self.n_fft // 2 + 1

    @property
    def window_offset(self) -> int:
        """Index in the FFT frame of the window's first sample."""
        return 0 if self.window_placement == "left" else (self.n_fft - self.win_length) // 2

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        """Frames a whole signal of ``num_samples`` samples yields (no padding)."""
        if num_samples < self.win_length:
            return 0
        return (num_samples - self.win_length) // self.hop_length + 1

    # ----------------------------------------------------------- construction
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> FrontendConfig:
        """A named preset (see `PRESETS`), optionally with fields overridden."""
        try:
            base = PRESETS[name]
        except KeyError:
            raise FrontendConfigError(
                f"unknown front-end preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
            ) from None
        return base.replace(**overrides) if overrides else base

    def replace(self, **changes: Any) -> FrontendConfig:
        """A copy with some fields changed (validated like any config)."""
        unknown = set(changes) - _FIELD_NAMES
        if unknown:
            raise FrontendConfigError(
                f"unknown front-end field(s) {sorted(unknown)}; fields are {sorted(_FIELD_NAMES)}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain JSON-able values."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, partial: bool = False) -> FrontendConfig:
        """Read a config; every field must be present unless ``partial`` is set.

        A model file must carry the full config so that a change of defaults
        can never change its features; ``partial=True`` (for hand-written
        training configs) fills missing fields from the defaults.
        """
        if not isinstance(data, dict):
            raise FrontendConfigError(f"front-end config must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - _FIELD_NAMES
        if unknown:
            raise FrontendConfigError(
                f"unknown front-end field(s) {sorted(unknown)}; fields are {sorted(_FIELD_NAMES)}"
            )
        missing = _FIELD_NAMES - set(data)
        if missing and not partial:
            raise FrontendConfigError(f"front-end config is missing field(s) {sorted(missing)}")
        return cls(**data)

    def to_json(self, indent: int | None = None) -> str:
        """JSON text holding every field, keys sorted (stable for hashing)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, partial: bool = False) -> FrontendConfig:
        """Inverse of `to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FrontendConfigError(f"front-end config is not valid JSON: {exc}") from None
        return cls.from_dict(data, partial=partial)

    def describe(self) -> str:
        """One human-readable line."""
        comp = {
            "log": f"ln(x + {self.log_floor:g})",
            "log_clamp": f"ln(max(x, {self.log_floor:g}))",
            "log10_1p": f"log10(1 + {self.log1p_scale:g}x)",
            "db": f"10log10(max(x, {self.log_floor:g})/{self.db_ref:g}) dB",
            "none": "linear",
        }[self.compression]
        kind = "periodic" if self.window_periodic else "symmetric"
        return (
            f"{self.sample_rate} Hz, win {self.win_length} / hop {self.hop_length} / fft {self.n_fft} "
            f"({kind} {self.window}, {self.window_placement}), {self.spectrum}, "
            f"{self.n_bins} {self.filterbank} bands {self.fmin:g}-{self.fmax:g} Hz "
            f"(norm {self.filter_norm}), {comp}"
        )


_FIELD_NAMES = frozenset(f.name for f in fields(FrontendConfig))


def _validate(c: FrontendConfig) -> None:
    def fail(msg: str) -> None:
        raise FrontendConfigError(f"invalid front-end config: {msg}")

    for name in ("sample_rate", "win_length", "hop_length", "n_fft", "n_bins", "bins_per_octave"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int):
            fail(f"{name} must be an integer, got {value!r}")
    for name in ("fmin", "fmax", "preemphasis", "log_floor", "log1p_scale", "db_ref"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail(f"{name} must be a finite number, got {value!r}")
    for name in ("window_periodic", "remove_dc_offset"):
        if not isinstance(getattr(c, name), bool):
            fail(f"{name} must be true or false, got {getattr(c, name)!r}")
    for name, allowed in (
        ("window", WINDOW_KINDS),
        ("window_placement", WINDOW_PLACEMENTS),
        ("spectrum", SPECTRUM_KINDS),
        ("filterbank", FILTERBANK_KINDS),
        ("filter_norm", FILTER_NORMS),
        ("compression", COMPRESSION_KINDS),
    ):
        if getattr(c, name) not in allowed:
            fail(f"{name} must be one of {', '.join(allowed)}; got {getattr(c, name)!r}")

    if c.sample_rate <= 0:
        fail(f"sample_rate must be positive, got {c.sample_rate}")
    if c.win_length < 2:
        fail(f"win_length must be at least 2 samples, got {c.win_length}")
    if c.hop_length < 1:
        fail(f"hop_length must be at least 1 sample, got {c.hop_length}")
    if c.hop_length > c.win_length:
        fail(f"hop_length ({c.hop_length}) must not exceed win_length ({c.win_length})")
    if c.n_fft < c.win_length:
        fail(f"n_fft ({c.n_fft}) must be at least win_length ({c.win_length})")
    if c.n_fft < 4 or c.n_fft & (c.n_fft - 1):
        fail(f"n_fft must be a power of two >= 4 (the FFT supports only those), got {c.n_fft}")
    if c.n_bins < 1:
        fail(f"n_bins must be at least 1, got {c.n_bins}")
    nyquist = c.sample_rate / 2
    if c.fmin < 0:
        fail(f"fmin must be >= 0 Hz, got {c.fmin}")
    if c.fmax > nyquist:
        fail(f"fmax ({c.fmax} Hz) is above the Nyquist frequency ({nyquist} Hz) of sample_rate {c.sample_rate}")
    if c.fmin >= c.fmax:
        fail(f"fmin ({c.fmin} Hz) must be below fmax ({c.fmax} Hz)")
    if not 0.0 <= c.preemphasis < 1.0:
        fail(f"preemphasis must be in [0, 1), got {c.preemphasis}")
    if c.log_floor < 1e-30:
        fail(f"log_floor must be at least 1e-30, got {c.log_floor}")
    if c.log1p_scale <= 0:
        fail(f"log1p_scale must be positive, got {c.log1p_scale}")
    if not 0 < c.db_ref <= 1e30:
        fail(f"db_ref must be in (0, 1e30], got {c.db_ref}")
    if c.filterbank == "logfreq":
        if c.bins_per_octave < 1:
            fail(f"bins_per_octave must be at least 1, got {c.bins_per_octave}")
        if c.fmin <= 0:
            fail("logfreq bands need fmin > 0 (the centre of the lowest band)")
        top = c.fmin * 2.0 ** ((c.n_bins) / c.bins_per_octave)
        if top > c.fmax * (1 + 1e-9):
            fail(
                f"{c.n_bins} logfreq bands at {c.bins_per_octave} per octave from {c.fmin} Hz reach "
                f"{top:.1f} Hz, above fmax {c.fmax} Hz; use fewer bands or a lower fmin"
            )

    # Every band must catch at least one FFT bin, else it is constant output.
    empty = empty_bands(c)
    if empty:
        edges = filterbank_edges_hz(c)
        m = empty[0]
        fail(
            f"{len(empty)} of {c.n_bins} {c.filterbank} bands cover no FFT bin (first: band {m}, "
            f"{edges[m]:.1f}-{edges[m + 2]:.1f} Hz; FFT bins are {c.sample_rate / c.n_fft:.2f} Hz apart): "
            f"more bands than n_fft={c.n_fft} can support; raise n_fft, lower n_bins or raise fmin"
        )


#: Named presets. ``default`` is edgetag's own; the others reproduce a tool's features exactly.
PRESETS: dict[str, FrontendConfig] = {}


def _register_presets() -> None:
    PRESETS["default"] = FrontendConfig(
        sample_rate=16000, win_length=400, hop_length=160, n_fft=512,
        window="hann", window_periodic=True, window_placement="left",
        spectrum="power", filterbank="mel_slaney", filter_norm="slaney",
        n_bins=64, fmin=50.0, fmax=8000.0, compression="log", log_floor=1e-6,
    )
    # musicnn's extractor: librosa.feature.melspectrogram(sr=16000, n_fft=512,
    # hop_length=256, n_mels=96) then log10(10000 x + 1). musicnn centres its
    # frames (librosa center=True); edgetag never does (causal streams).
    PRESETS["musicnn"] = FrontendConfig(
        sample_rate=16000, win_length=512, hop_length=256, n_fft=512,
        window="hann", window_periodic=True, window_placement="center",
        spectrum="power", filterbank="mel_slaney", filter_norm="slaney",
        n_bins=96, fmin=0.0, fmax=8000.0, compression="log10_1p", log1p_scale=10000.0,
    )
    # librosa.power_to_db(librosa.feature.melspectrogram(y, sr=22050, center=False),
    # ref=1.0, amin=1e-10, top_db=None): n_fft 2048, hop 512, 128 Slaney mel bands.
    PRESETS["librosa"] = FrontendConfig(
        sample_rate=22050, win_length=2048, hop_length=512, n_fft=2048,
        window="hann", window_periodic=True, window_placement="center",
        spectrum="power", filterbank="mel_slaney", filter_norm="slaney",
        n_bins=128, fmin=0.0, fmax=11025.0, compression="db", log_floor=1e-10, db_ref=1.0,
    )
    # Kaldi / kaldi-native-fbank fbank at 16 kHz with dither 0, no DC removal,
    # no pre-emphasis, Hann ("hanning": symmetric) window, 80 bins from 20 Hz,
    # power spectrum, log(max(x, FLT_EPSILON)), snip_edges=true.
    PRESETS["kaldi"] = FrontendConfig(
        sample_rate=16000, win_length=400, hop_length=160, n_fft=512,
        window="hann", window_periodic=False, window_placement="left",
        spectrum="power", filterbank="mel_kaldi", filter_norm="none",
        n_bins=80, fmin=20.0, fmax=8000.0, compression="log_clamp", log_floor=FLOAT32_EPS,
    )


_register_presets()
