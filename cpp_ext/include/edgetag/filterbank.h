// Triangular filterbanks (HTK mel, Slaney mel, Kaldi mel, log-frequency),
// stored sparsely: each band keeps only its run of non-zero weights.
#pragma once

#include <vector>

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

 private:
  std::vector<int> first_bin_;
  std::vector<int> offset_;    // start of band m's weights in weights_
  std::vector<int> length_;
  std::vector<double> weights_;
  std::vector<double> edges_hz_;
};

}  // namespace edgetag
