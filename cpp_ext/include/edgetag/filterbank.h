// Triangular filterbanks (HTK mel, Slaney mel, Kaldi mel, log-frequency),
// stored sparsely: each band keeps only its run of non-zero weights. On x86-64
// CPUs with AVX2 (EDGETAG_MULTIVERSION builds) a copy grouped 4 bands to a
// vector is applied instead, with the same roundings as the sparse loop.
#pragma once

#include <vector>

#include "edgetag/aligned_vector.h"
#include "edgetag/frontend_config.h"

namespace edgetag {

double HzToMel(double hz, bool slaney);
double MelToHz(double mel, bool slaney);

class Filterbank {
 public:
  explicit Filterbank(const FrontendConfig& config);

  int num_bands() const { return static_cast<int>(first_bin_.size()); }
  // Band energies: out[m] = sum_k W[m][k] * spectrum[k].
  void Apply(const double* spectrum, double* out) const;
  // Dense weights [num_bands][num_fft_bins], for tests and inspection.
  std::vector<double> Dense(int num_fft_bins) const;
  // Band points in Hz (num_bands + 2): band m spans points m .. m + 2.
  const std::vector<double>& edges_hz() const { return edges_hz_; }

  // Bands 4g .. 4g+3 side by side: for bins first .. first + count - 1, four
  // weights per bin at offset + 4 * i of the grouped weights (0 outside a band,
  // and 0 at the last bin of an odd-length band, whose weight is in last_weight).
  struct Group {
    int first = 0, count = 0, offset = 0;
    int last_bin[4] = {0, 0, 0, 0};
    double last_weight[4] = {0.0, 0.0, 0.0, 0.0};
  };

 private:
  std::vector<int> first_bin_;
  std::vector<int> offset_;    // start of band m's weights in weights_
  std::vector<int> length_;
  std::vector<double> weights_;
  std::vector<double> edges_hz_;

  void ApplySparse(const double* spectrum, double* out) const;
  std::vector<Group> groups_;
  AlignedVector<double> weights_by_group_;
};

}  // namespace edgetag
