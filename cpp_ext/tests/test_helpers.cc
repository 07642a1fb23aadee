// Definitions of the shared test helpers declared in test_helpers.h: the
// preset configs, the seeded signals and the naive DFT.

#include "test_helpers.h"

#include <cmath>
#include <cstring>
#include <random>

namespace edgetag_test {

using edgetag::FilterbankKind;
using edgetag::FilterNorm;
using edgetag::WindowKind;

// ------------------------------------------------------------------ configs
FrontendConfig DefaultPreset() {  // runtime/frontend/config.py PRESETS["default"]
  FrontendConfig c;
  c.fmin = 50.0;
  return c;
}

FrontendConfig KaldiPreset() {  // PRESETS["kaldi"]
  FrontendConfig c;
  c.window_periodic = false;
  c.filterbank = FilterbankKind::kMelKaldi;
  c.filter_norm = FilterNorm::kNone;
  c.n_bins = 80;
  c.fmin = 20.0;
  c.compression = edgetag::CompressionKind::kLogClamp;
  c.log_floor = 1.1920928955078125e-07;
  return c;
}

FrontendConfig MusicnnPreset() {  // PRESETS["musicnn"]
  FrontendConfig c;
  c.win_length = 512;
  c.hop_length = 256;
  c.window_placement = edgetag::WindowPlacement::kCenter;
  c.n_bins = 96;
  c.compression = edgetag::CompressionKind::kLog10Plus1;
  return c;
}

FrontendConfig LibrosaPreset() {  // PRESETS["librosa"]
  FrontendConfig c;
  c.sample_rate = 22050;
  c.win_length = 2048;
  c.hop_length = 512;
  c.n_fft = 2048;
  c.window_placement = edgetag::WindowPlacement::kCenter;
  c.n_bins = 128;
  c.fmax = 11025.0;
  c.compression = edgetag::CompressionKind::kDb;
  c.log_floor = 1e-10;
  return c;
}

// Exercises the optional paths: DC removal, pre-emphasis, Hamming, centre
// placement with win < n_fft, magnitude spectrum, logfreq bands, hop == win.
FrontendConfig ExoticConfig() {
  FrontendConfig c;
  c.win_length = 300;
  c.hop_length = 300;
  c.n_fft = 1024;
  c.window = WindowKind::kHamming;
  c.window_periodic = false;
  c.window_placement = edgetag::WindowPlacement::kCenter;
  c.remove_dc_offset = true;
  c.preemphasis = 0.97;
  c.spectrum = edgetag::SpectrumKind::kMagnitude;
  c.filterbank = FilterbankKind::kLogFreq;
  c.filter_norm = FilterNorm::kSlaney;
  c.n_bins = 30;  // 250 Hz * 2^(30/6) = 8000 Hz: the top edge sits exactly at fmax
  c.fmin = 250.0;
  c.bins_per_octave = 6;
  c.fmax = 8000.0;
  c.compression = edgetag::CompressionKind::kNone;
  return c;
}

FrontendConfig SmallHopConfig() {  // hop 1, tiny window: many frames per push
  FrontendConfig c;
  c.win_length = 16;
  c.hop_length = 1;
  c.n_fft = 16;
  c.window = WindowKind::kRectangular;
  c.filterbank = FilterbankKind::kMelHtk;
  c.filter_norm = FilterNorm::kNone;
  c.n_bins = 4;
  c.compression = edgetag::CompressionKind::kLog;
  return c;
}

std::vector<NamedConfig> AllConfigs() {
  return {{"default", DefaultPreset()}, {"kaldi", KaldiPreset()},     {"musicnn", MusicnnPreset()},
          {"librosa", LibrosaPreset()}, {"exotic", ExoticConfig()}, {"small_hop", SmallHopConfig()}};
}

// ------------------------------------------------------------------ signals
template <>
std::vector<double> RandomSignal<double>(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> x(n);
  // A tone plus noise plus a DC offset, so every conditioning step matters.
  for (std::size_t i = 0; i < n; ++i) x[i] = 0.1 + 0.4 * std::sin(0.05 * i) + 0.4 * u(rng);
  return x;
}

template <>
std::vector<float> RandomSignal<float>(std::size_t n, std::uint32_t seed) {
  const auto d = RandomSignal<double>(n, seed);
  return std::vector<float>(d.begin(), d.end());
}

template <>
std::vector<std::int16_t> RandomSignal<std::int16_t>(std::size_t n, std::uint32_t seed) {
  const auto d = RandomSignal<double>(n, seed);
  std::vector<std::int16_t> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<std::int16_t>(std::lround(d[i] * 32767.0 * 0.9));
  return x;
}

bool BitIdentical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

void NaiveDft(const std::vector<double>& x, std::vector<double>& re, std::vector<double>& im) {
  const std::size_t n = x.size();
  std::vector<double> c(n), s(n);
  for (std::size_t j = 0; j < n; ++j) {
    c[j] = std::cos(2.0 * kPi * static_cast<double>(j) / static_cast<double>(n));
    s[j] = std::sin(2.0 * kPi * static_cast<double>(j) / static_cast<double>(n));
  }
  re.assign(n / 2 + 1, 0.0);
  im.assign(n / 2 + 1, 0.0);
  for (std::size_t k = 0; k <= n / 2; ++k) {
    double ar = 0.0, ai = 0.0;
    for (std::size_t t = 0; t < n; ++t) {
      const std::size_t idx = (k * t) % n;  // exact argument reduction
      ar += x[t] * c[idx];
      ai -= x[t] * s[idx];
    }
    re[k] = ar;
    im[k] = ai;
  }
}

}  // namespace edgetag_test
