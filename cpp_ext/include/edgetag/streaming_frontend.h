// StreamingFrontend: push samples in any chunking, get every completed frame.
//
// The stream keeps only the samples a future frame needs (fewer than
// win_length). Pushing the same samples in any partition yields bit-identical
// frames, equal to ComputeFeatures on the whole signal. Bad input throws
// before any state changes. Push() is serialised by a mutex, so one stream
// shared between threads stays consistent; steady-state pushes allocate nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "edgetag/spectrogram.h"

namespace edgetag {

class StreamingFrontend {
 public:
  explicit StreamingFrontend(const FrontendConfig& config);

  const FrontendConfig& config() const { return processor_.config(); }
  int num_bins() const { return processor_.config().n_bins; }

  // Frames the next Push of num_samples samples will yield.
  std::size_t NumFramesForPush(std::size_t num_samples) const;
  // Samples held for frames not yet complete.
  std::size_t num_pending() const;
  // Frames emitted since construction or the last Reset().
  std::uint64_t frames_emitted() const;

  // Appends samples; writes each completed frame (n_bins floats) to out.
  // out_capacity_frames: rows available in out; too few throws. int16 input is
  // scaled by 1/32768. Non-finite samples throw std::invalid_argument.
  // Returns the number of frames written.
  std::size_t Push(const float* samples, std::size_t n, float* out, std::size_t out_capacity_frames);
  std::size_t Push(const double* samples, std::size_t n, float* out, std::size_t out_capacity_frames);
  std::size_t Push(const std::int16_t* samples, std::size_t n, float* out, std::size_t out_capacity_frames);

  // Forget pending samples; the next push starts a new signal.
  void Reset();

 private:
  template <typename T>
  std::size_t PushImpl(const T* samples, std::size_t n, float* out, std::size_t capacity);

  FrameProcessor processor_;
  // The pending samples (fewer than win_length) at the start, then room for a
  // block of new ones: each sample is converted once and frames are read in place.
  AlignedVector<double> samples_;
  std::size_t pending_ = 0;
  std::uint64_t frames_emitted_ = 0;
  mutable std::mutex mutex_;  // guards the stream state for every method
};

// Features of a whole signal: out has config.NumFrames(n) * n_bins floats.
void ComputeFeatures(const FrontendConfig& config, const float* samples, std::size_t n, float* out);
void ComputeFeatures(const FrontendConfig& config, const double* samples, std::size_t n, float* out);
void ComputeFeatures(const FrontendConfig& config, const std::int16_t* samples, std::size_t n, float* out);

}  // namespace edgetag
