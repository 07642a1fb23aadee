// FrameProcessor: one frame of samples in, one row of compressed band energies out.
#pragma once

#include <vector>

#include "edgetag/fft.h"
#include "edgetag/filterbank.h"
#include "edgetag/frontend_config.h"

namespace edgetag {

class FrameProcessor {
 public:
  explicit FrameProcessor(const FrontendConfig& config);  // validates config

  const FrontendConfig& config() const { return config_; }
  const Filterbank& filterbank() const { return filterbank_; }

  // frame: win_length samples (modified in place: DC removal, pre-emphasis).
  // out: n_bins float32 values. Allocates nothing.
  void Process(double* frame, float* out);

 private:
  FrontendConfig config_;
  std::vector<double> window_;
  RealFft fft_;
  Filterbank filterbank_;
  std::vector<double> fft_frame_;  // n_fft, zero outside the window
  std::vector<double> spectrum_;   // n_fft / 2 + 1
  std::vector<double> energies_;   // n_bins
};

}  // namespace edgetag
