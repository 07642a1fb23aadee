"""The rows of the front-end benchmark (`edgetag.benchmarks.frontend`): one `Row` per measured
implementation -- edgetag streaming (``push``, ``push_into``) and offline, kaldi-native-fbank
streaming and whole-signal, librosa and torch.stft offline -- each computing the same features as
`compute_features` for one `FrontendConfig`, and `build_rows`, which makes every row whose library
imports. Imported by `edgetag.benchmarks.frontend` after it has pinned the native thread pools.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgetag.runtime.frontend import FrontendConfig, StreamingFrontend, compute_features
from edgetag.runtime.frontend.filterbank import filterbank_matrix

#: Push sizes of the streaming rows, in samples (10 ms and 32 ms at 16 kHz).
PUSH_SIZES: tuple[int, ...] = (160, 512)
#: The push size of the streaming reference row and of the front end's streaming targets.
REFERENCE_PUSH = 512
#: The streaming row every streaming row is compared with.
STREAMING_REFERENCE = f"edgetag_push_{REFERENCE_PUSH}"
#: The offline row every offline row is compared with.
OFFLINE_REFERENCE = "edgetag_offline"


@dataclass
class Row:
    """One measured implementation.

    ``run`` processes the whole signal once and returns the number of frames
    it produced (that is what gets timed); ``setup`` runs untimed before each
    ``run`` (a fresh or reset stream); ``features`` does the same work untimed
    and returns frames x bins float32, for the agreement check.
    """

    key: str
    label: str
    impl: str
    mode: str  # "streaming" or "offline"
    push: int | None
    n_fft: int
    run: Callable[[], int]
    features: Callable[[], np.ndarray]
    setup: Callable[[], None] = lambda: None
    note: str = ""


def split_chunks(signal: np.ndarray, push: int) -> list[np.ndarray]:
    """The signal as a list of contiguous chunks of ``push`` samples (the last may be shorter).

    Chunks are made before timing: a microphone hands the user ready buffers.
    """
    return [np.ascontiguousarray(signal[i : i + push]) for i in range(0, len(signal), push)]


def edgetag_push_row(config: FrontendConfig, chunks: list[np.ndarray], push: int) -> Row:
    """edgetag streaming through ``push()``: a new float32 [n, bins] array per push."""
    fe = StreamingFrontend(config)

    def run() -> int:
        frames = 0
        for chunk in chunks:
            frames += fe.push(chunk).shape[0]
        return frames

    def features() -> np.ndarray:
        fe.reset()
        return np.concatenate([fe.push(chunk) for chunk in chunks])

    return Row(f"edgetag_push_{push}", f"edgetag push({push})", "edgetag", "streaming", push,
               config.n_fft, run, features, setup=fe.reset)


def edgetag_push_into_row(config: FrontendConfig, chunks: list[np.ndarray], push: int) -> Row:
    """edgetag streaming through ``push_into()``: frames written into one reused buffer."""
    fe = StreamingFrontend(config)
    # A push of P samples completes at most ceil(P / hop) frames.
    out = np.empty((-(-push // config.hop_length), config.n_bins), dtype=np.float32)

    def run() -> int:
        frames = 0
        for chunk in chunks:
            frames += fe.push_into(chunk, out)
        return frames

    def features() -> np.ndarray:
        fe.reset()
        return np.concatenate([out[: fe.push_into(chunk, out)].copy() for chunk in chunks])

    return Row(f"edgetag_push_into_{push}", f"edgetag push_into({push})", "edgetag", "streaming",
               push, config.n_fft, run, features, setup=fe.reset)


def edgetag_offline_row(config: FrontendConfig, signal: np.ndarray) -> Row:
    """edgetag offline: ``compute_features`` on the whole signal."""

    def features() -> np.ndarray:
        return compute_features(signal, config)

    return Row(OFFLINE_REFERENCE, "edgetag compute_features", "edgetag", "offline", None,
               config.n_fft, lambda: features().shape[0], features)


def _require_mel_slaney_log(config: FrontendConfig, who: str) -> None:
    """Raise unless ``config`` is what the librosa / torch rows reproduce."""
    if not (config.window == "hann" and config.window_periodic and config.spectrum == "power"
            and config.filterbank == "mel_slaney" and config.filter_norm == "slaney"
            and config.compression == "log" and not config.remove_dc_offset and config.preemphasis == 0):
        raise ValueError(f"{who} row supports the default preset's conventions only, not {config.describe()}")


def knf_options(config: FrontendConfig) -> Any:
    """kaldi-native-fbank options that compute ``config``'s features as exactly as knf allows.

    Kaldi's own style (symmetric "hanning" window, Kaldi mel bands linear in
    mel, log(max(x, eps))) gives different numbers (up to ~8 nats apart on the
    default preset). knf's librosa mode matches edgetag's default preset:
    periodic Hann ("hann"), Slaney mel with Slaney area norm (``is_librosa``),
    ln(x + eps) (``use_log_floor=False``, eps = log_floor); with it the check
    against compute_features shows float32 rounding only. knf always pads the
    frame to the next power of two (512 for 400 samples): with --n-fft 1024 its
    rows still use 512 (marked in the table).
    """
    import kaldi_native_fbank as knf

    _require_mel_slaney_log(config, "knf")
    opts = knf.FbankOptions()
    frame = opts.frame_opts
    frame.samp_freq = float(config.sample_rate)
    frame.frame_length_ms = 1000.0 * config.win_length / config.sample_rate
    frame.frame_shift_ms = 1000.0 * config.hop_length / config.sample_rate
    frame.dither = 0.0
    frame.snip_edges = True
    frame.remove_dc_offset = False
    frame.preemph_coeff = 0.0
    frame.window_type = "hann"
    frame.round_to_power_of_two = True
    mel = opts.mel_opts
    mel.num_bins = config.n_bins
    mel.low_freq = float(config.fmin)
    mel.high_freq = float(config.fmax)
    mel.is_librosa = True
    mel.use_slaney_mel_scale = True
    mel.norm = "slaney"
    opts.use_energy = False
    opts.use_power = True
    opts.use_log_fbank = True
    opts.use_log_floor = False
    opts.eps = float(config.log_floor)
    return opts


def _knf_fft_size(config: FrontendConfig) -> int:
    """The FFT size knf uses: win_length rounded up to a power of two."""
    return 1 << (config.win_length - 1).bit_length()


def knf_stream_row(config: FrontendConfig, chunks: list[np.ndarray], push: int, as_list: bool) -> Row:
    """knf ``OnlineFbank`` streaming: accept each chunk, pull every ready frame, pop it.

    knf's ``accept_waveform`` takes a Sequence[float]. Given a numpy array,
    pybind11 converts it element by element; ``chunk.tolist()`` first is
    faster, so the main knf rows pass lists (the conversion is timed: audio
    arrives as numpy), and one row passes the numpy chunk as it is.
    """
    import kaldi_native_fbank as knf

    opts = knf_options(config)
    rate = float(config.sample_rate)
    convert: Callable[[np.ndarray], Any] = np.ndarray.tolist if as_list else (lambda chunk: chunk)
    stream = knf.OnlineFbank(opts)

    def setup() -> None:
        nonlocal stream
        stream = knf.OnlineFbank(opts)  # knf has no reset

    def run() -> int:
        done = 0
        for chunk in chunks:
            stream.accept_waveform(rate, convert(chunk))
            ready = stream.num_frames_ready
            for i in range(done, ready):
                stream.get_frame(i)
            if ready > done:
                stream.pop(ready - done)
            done = ready
        return done

    def features() -> np.ndarray:
        setup()
        frames = []
        for chunk in chunks:
            stream.accept_waveform(rate, convert(chunk))
            ready = stream.num_frames_ready
            # get_frame's buffer is owned by the extractor: copy before it is dropped.
            frames.extend(np.array(stream.get_frame(i), dtype=np.float32) for i in range(len(frames), ready))
        return np.stack(frames)

    kind = "list" if as_list else "numpy"
    key = f"knf_stream_{push}" + ("" if as_list else "_numpy")
    return Row(key, f"knf OnlineFbank {push} ({kind} in)", "kaldi-native-fbank", "streaming", push,
               _knf_fft_size(config), run, features, setup=setup,
               note="" if as_list else "numpy chunk passed as is (pybind11 converts per element)")


def knf_offline_row(config: FrontendConfig, signal: np.ndarray) -> Row:
    """knf fed the whole signal in one ``accept_waveform`` call (list in), every frame pulled."""
    import kaldi_native_fbank as knf

    opts = knf_options(config)

    def features() -> np.ndarray:
        stream = knf.OnlineFbank(opts)
        stream.accept_waveform(float(config.sample_rate), signal.tolist())
        return np.stack([np.array(stream.get_frame(i), dtype=np.float32)
                         for i in range(stream.num_frames_ready)])

    def run() -> int:
        stream = knf.OnlineFbank(opts)
        stream.accept_waveform(float(config.sample_rate), signal.tolist())
        ready = stream.num_frames_ready
        for i in range(ready):
            stream.get_frame(i)
        return ready

    return Row("knf_offline", "knf whole signal (list in)", "kaldi-native-fbank", "offline", None,
               _knf_fft_size(config), run, features)


def pad_for_centred_window(config: FrontendConfig, signal: np.ndarray) -> np.ndarray:
    """The signal with (n_fft - win_length) / 2 zeros on each side, for librosa and torch.stft.

    With ``center=False`` both frame ``n_fft`` samples at a time and centre the
    shorter window inside that frame, so their frame i windows samples
    ``[i*hop + pad, i*hop + pad + win)`` and they yield one frame per
    ``n_fft`` rather than per ``win_length`` samples. Padding both sides by
    ``pad`` lines their frames up with edgetag's (``[i*hop, i*hop + win)``,
    same frame count). The padding is done once, untimed; where the window
    sits inside the FFT frame changes only the phase, not the power spectrum.
    """
    pad = (config.n_fft - config.win_length) // 2
    return np.pad(signal, (pad, pad)) if pad else signal


def librosa_row(config: FrontendConfig, signal: np.ndarray) -> Row:
    """librosa offline: melspectrogram(center=False) on float32 input, then ln(x + floor).

    Every argument is pinned; the signal is padded by `pad_for_centred_window`.
    """
    import librosa

    _require_mel_slaney_log(config, "librosa")
    c = config
    signal = pad_for_centred_window(config, signal)

    def features_bins_first() -> np.ndarray:
        mel = librosa.feature.melspectrogram(
            y=signal, sr=c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
            window="hann", center=False, power=2.0, n_mels=c.n_bins, fmin=c.fmin, fmax=c.fmax,
            htk=False, norm="slaney",
        )
        return np.log(mel + np.float32(c.log_floor))

    return Row("librosa_offline", "librosa melspectrogram", "librosa", "offline", None, c.n_fft,
               lambda: features_bins_first().shape[1], lambda: features_bins_first().T)


def torch_row(config: FrontendConfig, signal: np.ndarray) -> Row:
    """torch offline: torch.stft(center=False, periodic Hann) -> power -> mel matmul -> ln(x + floor).

    The filterbank is edgetag's own Slaney matrix in float32; the signal is
    padded by `pad_for_centred_window`. Runs with one thread (set by
    `edgetag.benchmarks.frontend.run_frontend_benchmark`) and under ``inference_mode``.
    """
    import torch

    _require_mel_slaney_log(config, "torch")
    c = config
    signal = pad_for_centred_window(config, signal)
    window = torch.hann_window(c.win_length, periodic=True, dtype=torch.float32)
    weights = torch.from_numpy(filterbank_matrix(c).astype(np.float32))

    def features_bins_first() -> Any:
        with torch.inference_mode():
            spec = torch.stft(torch.from_numpy(signal), c.n_fft, hop_length=c.hop_length,
                              win_length=c.win_length, window=window, center=False, return_complex=True)
            power = torch.view_as_real(spec).square().sum(-1)
            return torch.log(weights @ power + c.log_floor)

    return Row("torch_offline", "torch.stft + mel matmul", "torch", "offline", None, c.n_fft,
               lambda: features_bins_first().shape[1], lambda: features_bins_first().T.numpy())


def build_rows(config: FrontendConfig, signal: np.ndarray) -> tuple[list[Row], dict[str, str]]:
    """All rows whose library imports, and for each skipped group the reason."""
    chunks = {push: split_chunks(signal, push) for push in PUSH_SIZES}
    rows: list[Row] = []
    for push in PUSH_SIZES:
        rows.append(edgetag_push_row(config, chunks[push], push))
    for push in PUSH_SIZES:
        rows.append(edgetag_push_into_row(config, chunks[push], push))
    rows.append(edgetag_offline_row(config, signal))

    skipped: dict[str, str] = {}
    optional: list[tuple[str, Callable[[], list[Row]]]] = [
        ("kaldi-native-fbank", lambda: [
            *(knf_stream_row(config, chunks[push], push, as_list=True) for push in PUSH_SIZES),
            knf_stream_row(config, chunks[REFERENCE_PUSH], REFERENCE_PUSH, as_list=False),
            knf_offline_row(config, signal),
        ]),
        ("librosa", lambda: [librosa_row(config, signal)]),
        ("torch", lambda: [torch_row(config, signal)]),
    ]
    for name, make in optional:
        try:
            rows.extend(make())
        except ImportError as exc:
            skipped[name] = f"not installed ({exc})"
    return rows, skipped
