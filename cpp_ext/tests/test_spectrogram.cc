// The whole per-frame pipeline (ComputeFeatures) against a naive
// double-precision reference, for every preset and compression.

#include "test_helpers.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "edgetag/filterbank.h"

namespace edgetag_test {

using edgetag::Filterbank;
using edgetag::WindowKind;

namespace {

// Frames of x through the documented recipe (runtime/frontend/config.py), with
// the window formula, a naive DFT and std::log/log10; only the filterbank
// weights come from the library (tested on their own in test_filterbank.cc).
std::vector<double> ReferenceFeatures(const FrontendConfig& c, const std::vector<double>& x) {
  const int win = c.win_length, n_fft = c.n_fft, bins = c.NumFftBins();
  const double a = c.window == WindowKind::kHann ? 0.5 : 0.54;
  const double b = c.window == WindowKind::kHann ? 0.5 : 0.46;
  const double d = c.window_periodic ? win : win - 1;
  const auto dense = Filterbank(c).Dense(bins);
  const std::size_t frames = c.NumFrames(x.size());
  std::vector<double> out;
  std::vector<double> frame(win), fft_frame(n_fft), re, im;
  for (std::size_t f = 0; f < frames; ++f) {
    for (int j = 0; j < win; ++j) frame[j] = x[f * c.hop_length + j];
    if (c.remove_dc_offset) {
      double mean = 0.0;
      for (double v : frame) mean += v;
      mean /= win;
      for (double& v : frame) v -= mean;
    }
    for (int j = win - 1; j > 0; --j) frame[j] -= c.preemphasis * frame[j - 1];
    frame[0] -= c.preemphasis * frame[0];
    std::fill(fft_frame.begin(), fft_frame.end(), 0.0);
    const int offset = c.window_placement == edgetag::WindowPlacement::kLeft ? 0 : (n_fft - win) / 2;
    for (int j = 0; j < win; ++j) {
      const double w = c.window == WindowKind::kRectangular ? 1.0 : a - b * std::cos(2 * kPi * j / d);
      fft_frame[offset + j] = frame[j] * w;
    }
    NaiveDft(fft_frame, re, im);
    std::vector<double> spec(bins);
    for (int k = 0; k < bins; ++k) {
      spec[k] = re[k] * re[k] + im[k] * im[k];
      if (c.spectrum == edgetag::SpectrumKind::kMagnitude) spec[k] = std::sqrt(spec[k]);
    }
    for (int m = 0; m < c.n_bins; ++m) {
      double e = 0.0;
      for (int k = 0; k < bins; ++k) e += dense[static_cast<std::size_t>(m) * bins + k] * spec[k];
      switch (c.compression) {
        case edgetag::CompressionKind::kLog: e = std::log(e + c.log_floor); break;
        case edgetag::CompressionKind::kLogClamp: e = std::log(std::max(e, c.log_floor)); break;
        case edgetag::CompressionKind::kLog10Plus1: e = std::log10(1.0 + c.log1p_scale * e); break;
        case edgetag::CompressionKind::kDb: e = 10.0 * std::log10(std::max(e, c.log_floor) / c.db_ref); break;
        case edgetag::CompressionKind::kNone: break;
      }
      out.push_back(e);
    }
  }
  return out;
}

void CheckAgainstReference(const char* name, const FrontendConfig& c, const std::vector<double>& x) {
  const auto got = BatchFeatures(c, x);
  const auto ref = ReferenceFeatures(c, x);
  CHECK_MSG(got.size() == ref.size(), name << ": " << got.size() << " values, reference " << ref.size());
  if (got.size() != ref.size()) return;
  double ref_max = 0.0;
  for (double v : ref) ref_max = std::max(ref_max, std::abs(v));
  double worst = 0.0;
  std::size_t worst_at = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    // Linear output: relative to the largest energy (FFT rounding is absolute);
    // logs: float32 rounding (6e-8 relative) of the value plus a little.
    const double tol = c.compression == edgetag::CompressionKind::kNone
                           ? 1e-6 * ref_max + 1e-7 * std::abs(ref[i])
                           : 2.5e-7 * std::max(1.0, std::abs(ref[i]));
    const double diff = std::abs(static_cast<double>(got[i]) - ref[i]);
    const double excess = diff == 0.0 ? 0.0 : diff / tol;
    if (!(excess <= worst)) {  // also catches NaN
      worst = std::isnan(excess) ? INFINITY : excess;
      worst_at = i;
    }
  }
  CHECK_MSG(worst <= 1.0, name << ": value " << worst_at << " (frame " << worst_at / c.n_bins << ", band "
                               << worst_at % c.n_bins << ") is " << got[worst_at] << ", reference "
                               << ref[worst_at] << " (" << worst << "x the tolerance)");
}

}  // namespace

void TestFeaturesMatchDoubleReference() {
  for (const auto& nc : AllConfigs()) {
    const auto x = RandomSignal<double>(static_cast<std::size_t>(nc.config.win_length) * 3 + 50, 41);
    CheckAgainstReference(nc.name, nc.config, x);
  }
  // Every compression on the default layout, for a loud, a quiet and a silent signal.
  const struct {
    const char* name;
    edgetag::CompressionKind kind;
  } kinds[] = {{"log", edgetag::CompressionKind::kLog},
               {"log_clamp", edgetag::CompressionKind::kLogClamp},
               {"log10_1p", edgetag::CompressionKind::kLog10Plus1},
               {"db", edgetag::CompressionKind::kDb},
               {"none", edgetag::CompressionKind::kNone}};
  for (const auto& k : kinds) {
    for (double gain : {1.0, 1e-4, 0.0}) {
      FrontendConfig c = DefaultPreset();
      c.compression = k.kind;
      c.log_floor = k.kind == edgetag::CompressionKind::kDb ? 1e-10 : 1e-6;
      auto x = RandomSignal<double>(1200, 43);
      for (double& v : x) v *= gain;
      const std::string name = std::string(k.name) + " gain " + std::to_string(gain);
      CheckAgainstReference(name.c_str(), c, x);
    }
  }
  // Smallest allowed floor, non-unit db_ref and log1p_scale.
  {
    FrontendConfig c = DefaultPreset();
    c.compression = edgetag::CompressionKind::kLogClamp;
    c.log_floor = 1e-30;
    CheckAgainstReference("log_clamp floor 1e-30, silence", c, std::vector<double>(1200, 0.0));
    c.compression = edgetag::CompressionKind::kDb;
    c.db_ref = 1e-3;
    CheckAgainstReference("db ref 1e-3", c, RandomSignal<double>(1200, 44));
    c.compression = edgetag::CompressionKind::kLog10Plus1;
    c.log1p_scale = 1.0;
    CheckAgainstReference("log10_1p scale 1", c, RandomSignal<double>(1200, 45));
  }
}

}  // namespace edgetag_test
