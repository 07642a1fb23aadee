#include "edgetag/filterbank.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "edgetag/simd.h"

#if EDGETAG_MULTIVERSION
#include <immintrin.h>
#endif

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
    // only bins strictly inside (left, right) can weigh anything: start at the first one past left
    const int begin = static_cast<int>(std::upper_bound(axis.begin(), axis.end(), left) - axis.begin());
    for (int k = begin; k < num_fft_bins && axis[k] < right; ++k) {
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
  for (int g = 0; g * 4 < c.n_bins; ++g) {
    Group group;
    int end = 0;
    group.first = first_bin_[4 * g];
    for (int b = 0; b < 4 && 4 * g + b < c.n_bins; ++b) {
      const int m = 4 * g + b;
      group.first = std::min(group.first, first_bin_[m]);
      end = std::max(end, first_bin_[m] + length_[m]);
    }
    group.count = end - group.first;
    group.offset = static_cast<int>(weights_by_group_.size());
    weights_by_group_.resize(weights_by_group_.size() + 4 * static_cast<std::size_t>(group.count), 0.0);
    for (int b = 0; b < 4; ++b) {
      const int m = 4 * g + b;
      group.last_bin[b] = group.first;  // a zero weight on a bin that exists
      if (m >= c.n_bins) continue;
      int length = length_[m];
      if (length % 2 == 1) {
        --length;
        group.last_bin[b] = first_bin_[m] + length;
        group.last_weight[b] = weights_[offset_[m] + length];
      }
      for (int k = 0; k < length; ++k) {
        weights_by_group_[group.offset + 4 * (first_bin_[m] - group.first + k) + b] = weights_[offset_[m] + k];
      }
    }
    groups_.push_back(group);
  }
}

#if EDGETAG_MULTIVERSION
namespace {
// The grouped filterbank, bit-identical to ApplySparse's AVX2 clone, whose
// roundings GCC fixes by how it vectorises that loop: each band is a sequential
// sum of rounded products (vector multiplies, in-order adds), except that the
// last bin of an odd-length band is added with an FMA (the scalar epilogue,
// contracted). The extra zero products leave every sum as it was (a sum that
// starts at +0 never becomes -0); only a non-finite bin (0 * inf) can differ,
// and it shows as a NaN: the caller then uses the sparse loop. False if a band
// is NaN (and, on a CPU without AVX2, always: there the sparse loop is faster).
__attribute__((target("arch=x86-64-v3"))) bool GroupedBands(const Filterbank::Group* groups, int num_groups,
                                                            const double* weights, const double* s,
                                                            double* out, int bands) {
  __m256d nan = _mm256_setzero_pd();
  for (int g = 0; g < num_groups; ++g) {
    const Filterbank::Group& grp = groups[g];
    const double* w = weights + grp.offset;
    const double* sp = s + grp.first;
    const double* const sp_end = sp + grp.count;
    __m256d acc = _mm256_setzero_pd();
    // No FMA in the steps (the asm hides the product from contraction): the
    // sparse loop rounds each product before adding it.
#define EDGETAG_BAND_STEP(i)                                                                 \
  {                                                                                          \
    __m256d p = _mm256_mul_pd(_mm256_broadcast_sd(sp + (i)), _mm256_loadu_pd(w + 4 * (i))); \
    asm("" : "+x"(p));                                                                       \
    acc = _mm256_add_pd(acc, p);                                                             \
  }
    for (; sp + 4 <= sp_end; sp += 4, w += 16) {
      EDGETAG_BAND_STEP(0) EDGETAG_BAND_STEP(1) EDGETAG_BAND_STEP(2) EDGETAG_BAND_STEP(3)
    }
    for (; sp < sp_end; ++sp, w += 4) EDGETAG_BAND_STEP(0)
#undef EDGETAG_BAND_STEP
    // The sparse loop's FMA on an odd band's last bin (a zero weight elsewhere).
    const __m256d last =
        _mm256_set_pd(s[grp.last_bin[3]], s[grp.last_bin[2]], s[grp.last_bin[1]], s[grp.last_bin[0]]);
    acc = _mm256_fmadd_pd(_mm256_loadu_pd(grp.last_weight), last, acc);
    nan = _mm256_or_pd(nan, _mm256_cmp_pd(acc, acc, _CMP_UNORD_Q));
    if (4 * g + 4 <= bands) {
      _mm256_storeu_pd(out + 4 * g, acc);
    } else {
      double tail[4];
      _mm256_storeu_pd(tail, acc);
      for (int b = 0; 4 * g + b < bands; ++b) out[4 * g + b] = tail[b];
    }
  }
  return _mm256_movemask_pd(nan) == 0;
}

__attribute__((target("default"))) bool GroupedBands(const Filterbank::Group*, int, const double*, const double*,
                                                     double*, int) {
  return false;
}
}  // namespace
#endif

void Filterbank::Apply(const double* spectrum, double* out) const {
#if EDGETAG_MULTIVERSION
  if (GroupedBands(groups_.data(), static_cast<int>(groups_.size()), weights_by_group_.data(), spectrum, out,
                   num_bands())) {
    return;
  }
#endif
  ApplySparse(spectrum, out);
}

EDGETAG_HOT void Filterbank::ApplySparse(const double* spectrum, double* out) const {
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
