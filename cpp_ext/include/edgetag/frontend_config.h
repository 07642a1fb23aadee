// FrontendConfig: the conventions of the spectrogram front end, as plain data.
//
// The full recipe (framing, window, FFT placement, filterbank, compression) is
// documented once, in runtime/frontend/config.py; the fields here mean the same.
#pragma once

#include <cstddef>
#include <string>

namespace edgetag {

enum class WindowKind { kHann, kHamming, kRectangular };
enum class WindowPlacement { kLeft, kCenter };
enum class SpectrumKind { kPower, kMagnitude };
enum class FilterbankKind { kMelHtk, kMelSlaney, kMelKaldi, kLogFreq };
enum class FilterNorm { kNone, kSlaney };
enum class CompressionKind { kLog, kLogClamp, kLog10Plus1, kDb, kNone };

struct FrontendConfig {
  int sample_rate = 16000;
  int win_length = 400;
  int hop_length = 160;
  int n_fft = 512;
  WindowKind window = WindowKind::kHann;
  bool window_periodic = true;
  WindowPlacement window_placement = WindowPlacement::kLeft;
  bool remove_dc_offset = false;
  double preemphasis = 0.0;
  SpectrumKind spectrum = SpectrumKind::kPower;
  FilterbankKind filterbank = FilterbankKind::kMelSlaney;
  FilterNorm filter_norm = FilterNorm::kSlaney;
  int n_bins = 64;
  double fmin = 0.0;
  double fmax = 8000.0;
  int bins_per_octave = 12;
  CompressionKind compression = CompressionKind::kLog;
  double log_floor = 1e-6;
  double log1p_scale = 10000.0;
  double db_ref = 1.0;

  // Throws std::invalid_argument naming the first problem found.
  void Validate() const;

  int NumFftBins() const { return n_fft / 2 + 1; }
  int WindowOffset() const {
    return window_placement == WindowPlacement::kLeft ? 0 : (n_fft - win_length) / 2;
  }
  // Frames a whole signal of num_samples yields: frame i covers [i*hop, i*hop + win).
  std::size_t NumFrames(std::size_t num_samples) const {
    const auto win = static_cast<std::size_t>(win_length);
    return num_samples < win ? 0 : (num_samples - win) / static_cast<std::size_t>(hop_length) + 1;
  }
  std::string ToString() const;
};

}  // namespace edgetag
