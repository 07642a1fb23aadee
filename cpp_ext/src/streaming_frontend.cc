#include "edgetag/streaming_frontend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "edgetag/simd.h"

namespace edgetag {

namespace {
inline double ToDouble(float v) { return v; }
inline double ToDouble(double v) { return v; }
inline double ToDouble(std::int16_t v) { return v * (1.0 / 32768.0); }

// True when no sample is NaN or infinite: a branch-free test of the exponent
// bits (all ones only for Inf/NaN) that vectorises, run on every push.
template <typename T, typename Bits>
EDGETAG_HOT bool AllFinite(const T* samples, std::size_t n) {
  static_assert(sizeof(T) == sizeof(Bits));
  constexpr Bits kExponent = static_cast<Bits>(sizeof(T) == 4 ? 0x7f800000ull : 0x7ff0000000000000ull);
  Bits bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    Bits bits;
    std::memcpy(&bits, samples + i, sizeof bits);
    bad |= static_cast<Bits>((bits & kExponent) == kExponent);
  }
  return bad == 0;
}

template <typename T>
void CheckFinite(const T* samples, std::size_t n) {
  if constexpr (!std::is_integral_v<T>) {
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    if (AllFinite<T, Bits>(samples, n)) return;
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isfinite(samples[i])) {
        throw std::invalid_argument("sample " + std::to_string(i) + " of the pushed chunk is " +
                                    (std::isnan(samples[i]) ? "NaN" : "infinite") +
                                    "; the stream was left unchanged");
      }
    }
  }
}

template <typename T>
void Convert(const T* src, std::size_t n, double* dst) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = ToDouble(src[i]);
}
}  // namespace

// New samples a push converts at a time (beyond the pending ones): large enough
// that moving the pending samples down after each block costs little.
constexpr std::size_t kBlockSamples = 2048;

StreamingFrontend::StreamingFrontend(const FrontendConfig& config)
    : processor_(config),
      samples_(static_cast<std::size_t>(config.win_length) + std::max<std::size_t>(
                   kBlockSamples, static_cast<std::size_t>(config.hop_length)), 0.0) {}

std::size_t StreamingFrontend::NumFramesForPush(std::size_t num_samples) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return config().NumFrames(pending_ + num_samples);
}

std::size_t StreamingFrontend::num_pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pending_;
}

std::uint64_t StreamingFrontend::frames_emitted() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return frames_emitted_;
}

template <typename T>
std::size_t StreamingFrontend::PushImpl(const T* samples, std::size_t n, float* out,
                                        std::size_t capacity) {
  std::lock_guard<std::mutex> lock(mutex_);
  CheckFinite(samples, n);  // before any state changes
  const FrontendConfig& c = config();
  const std::size_t hop = static_cast<std::size_t>(c.hop_length);
  const std::size_t total = pending_ + n;
  const std::size_t frames = c.NumFrames(total);
  if (frames > capacity) {
    throw std::invalid_argument("output holds " + std::to_string(capacity) + " frames but the push yields " +
                                std::to_string(frames));
  }
  const std::size_t bins = static_cast<std::size_t>(c.n_bins);
  // Block by block: append new samples after the pending ones, compute every
  // frame that is complete, keep what the next frame needs (fewer than win).
  std::size_t done = 0;
  std::size_t written = 0;
  while (done < n) {
    const std::size_t take = std::min(n - done, samples_.size() - pending_);
    Convert(samples + done, take, samples_.data() + pending_);
    done += take;
    const std::size_t held = pending_ + take;
    const std::size_t block_frames = c.NumFrames(held);
    for (std::size_t f = 0; f < block_frames; ++f) {
      processor_.ProcessConst(samples_.data() + f * hop, out + (written + f) * bins);
    }
    written += block_frames;
    const std::size_t keep_from = block_frames * hop;
    pending_ = held - keep_from;
    if (keep_from > 0) std::memmove(samples_.data(), samples_.data() + keep_from, pending_ * sizeof(double));
  }
  frames_emitted_ += frames;
  return frames;
}

std::size_t StreamingFrontend::Push(const float* s, std::size_t n, float* out, std::size_t cap) {
  return PushImpl(s, n, out, cap);
}
std::size_t StreamingFrontend::Push(const double* s, std::size_t n, float* out, std::size_t cap) {
  return PushImpl(s, n, out, cap);
}
std::size_t StreamingFrontend::Push(const std::int16_t* s, std::size_t n, float* out, std::size_t cap) {
  return PushImpl(s, n, out, cap);
}

void StreamingFrontend::Reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  pending_ = 0;
  frames_emitted_ = 0;
}

namespace {
template <typename T>
void ComputeFeaturesImpl(const FrontendConfig& config, const T* samples, std::size_t n, float* out) {
  CheckFinite(samples, n);  // this error before a config error, as always
  StreamingFrontend stream(config);
  stream.Push(samples, n, out, config.NumFrames(n));
}
}  // namespace

void ComputeFeatures(const FrontendConfig& c, const float* s, std::size_t n, float* out) {
  ComputeFeaturesImpl(c, s, n, out);
}
void ComputeFeatures(const FrontendConfig& c, const double* s, std::size_t n, float* out) {
  ComputeFeaturesImpl(c, s, n, out);
}
void ComputeFeatures(const FrontendConfig& c, const std::int16_t* s, std::size_t n, float* out) {
  ComputeFeaturesImpl(c, s, n, out);
}

}  // namespace edgetag
