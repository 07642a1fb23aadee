// FrameProcessor: one frame of samples in, one row of compressed band energies out.
#pragma once

#include <vector>

#include "edgetag/aligned_vector.h"
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
  // The same for a frame that is read, not modified (no copy unless DC removal
  // or pre-emphasis needs one).
  void ProcessConst(const double* frame, float* out);

 private:
  void Finish(float* out);  // fft_frame_ holds the windowed frame

  FrontendConfig config_;
  AlignedVector<double> window_;
  RealFft fft_;
  Filterbank filterbank_;
  AlignedVector<double> fft_frame_;  // n_fft, zero outside the window
  AlignedVector<double> spectrum_;   // n_fft / 2 + 1
  AlignedVector<double> energies_;   // n_bins
  AlignedVector<double> scratch_;    // win_length, for ProcessConst with conditioning
};

}  // namespace edgetag
