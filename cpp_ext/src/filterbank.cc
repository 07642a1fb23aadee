#include "edgetag/filterbank.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "edgetag/simd.h"

namespace edgetag {

namespace {
// Slaney (Auditory Toolbox) scale: linear below 1 kHz, logarithmic above.
constexpr double kSlaneyHzPerMel = 200.0 / 3.0;
constexpr double kSlaneyMinLogHz = 1000.0;
constexpr double kSlaneyMinLogMel = kSlaneyMinLogHz / kSlaneyHzPerMel;
const double kSlaneyLogStep = std::log(6.4) / 27.0;

std::vector<double> BandEdgesHz(const FrontendConfig& c) {
  std::vector<double> edges(static_cast<std::size_t>(c.n_bins) + 2);
  if (c.filterbank == FilterbankKind::kLogFreq) {
    for (int i = 0; i < c.n_bins + 2; ++i) {
      edges[i] = c.fmin * std::exp2(static_cast<double>(i - 1) / c.bins_per_octave);
    }
    return edges;
  }
  const bool slaney = c.filterbank == FilterbankKind::kMelSlaney;
  const double lo = HzToMel(c.fmin, slaney), hi = HzToMel(c.fmax, slaney);
  const int last = c.n_bins + 1;
  for (int i = 0; i <= last; ++i) {
    // Same points as numpy.linspace(lo, hi, n_bins + 2).
    const double mel = i == last ? hi : lo + (hi - lo) * (static_cast<double>(i) / last);
    edges[i] = MelToHz(mel, slaney);
  }
  return edges;
}
}  // namespace

double HzToMel(double hz, bool slaney) {
  if (!slaney) return 2595.0 * std::log10(1.0 + hz / 700.0);
  if (hz < kSlaneyMinLogHz) return hz / kSlaneyHzPerMel;
  return kSlaneyMinLogMel + std::log(hz / kSlaneyMinLogHz) / kSlaneyLogStep;
}

double MelToHz(double mel, bool slaney) {
  if (!slaney) return 700.0 * (std::pow(10.0, mel / 2595.0) - 1.0);
  if (mel < kSlaneyMinLogMel) return mel * kSlaneyHzPerMel;
  return kSlaneyMinLogHz * std::exp(kSlaneyLogStep * (mel - kSlaneyMinLogMel));
}

Filterbank::Filterbank(const FrontendConfig& c) : edges_hz_(BandEdgesHz(c)) {
  const int num_fft_bins = c.NumFftBins();
  const bool mel_axis = c.filterbank == FilterbankKind::kMelKaldi;  // Kaldi: triangles linear in mel
  std::vector<double> axis(num_fft_bins), points(edges_hz_.size());
  for (int k = 0; k < num_fft_bins; ++k) {
    const double hz = static_cast<double>(k) * c.sample_rate / c.n_fft;
    axis[k] = mel_axis ? HzToMel(hz, false) : hz;
  }
  for (std::size_t i = 0; i < points.size(); ++i) {
    points[i] = mel_axis ? HzToMel(edges_hz_[i], false) : edges_hz_[i];
  }
  std::vector<double> row(num_fft_bins);
  for (int m = 0; m < c.n_bins; ++m) {
    const double left = points[m], centre = points[m + 1], right = points[m + 2];
    const double scale =
        c.filter_norm == FilterNorm::kSlaney ? 2.0 / (edges_hz_[m + 2] - edges_hz_[m]) : 1.0;
    int first = -1, last = -1;
    for (int k = 0; k < num_fft_bins; ++k) {
      const double rising = (axis[k] - left) / (centre - left);
      const double falling = (right - axis[k]) / (right - centre);
      row[k] = std::max(0.0, std::min(rising, falling)) * scale;
      if (row[k] > 0.0) {
        if (first < 0) first = k;
        last = k;
      }
    }
    if (first < 0) {
      throw std::invalid_argument("filterbank band " + std::to_string(m) +
                                  " covers no FFT bin: more bands than n_fft can support");
    }
    first_bin_.push_back(first);
    offset_.push_back(static_cast<int>(weights_.size()));
    length_.push_back(last - first + 1);
    weights_.insert(weights_.end(), row.begin() + first, row.begin() + last + 1);
  }
}

EDGETAG_HOT void Filterbank::Apply(const double* spectrum, double* out) const {
  const int bands = num_bands();
  for (int m = 0; m < bands; ++m) {
    const double* __restrict w = weights_.data() + offset_[m];
    const double* __restrict s = spectrum + first_bin_[m];
    double acc = 0.0;
    for (int k = 0; k < length_[m]; ++k) acc += w[k] * s[k];
    out[m] = acc;
  }
}

std::vector<double> Filterbank::Dense(int num_fft_bins) const {
  std::vector<double> dense(static_cast<std::size_t>(num_bands()) * num_fft_bins, 0.0);
  for (int m = 0; m < num_bands(); ++m) {
    for (int k = 0; k < length_[m]; ++k) {
      dense[static_cast<std::size_t>(m) * num_fft_bins + first_bin_[m] + k] = weights_[offset_[m] + k];
    }
  }
  return dense;
}

}  // namespace edgetag
