#include "edgetag/spectrogram.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "edgetag/simd.h"
#include "edgetag/window.h"

namespace edgetag {

namespace {
constexpr double kLn2 = 0.69314718055994530942;
constexpr double kLn10 = 2.30258509299404568402;
constexpr std::uint64_t kSqrt2Bits = 0x3ff6a09e667f3bcdull;  // the double nearest sqrt(2)

// Natural log of n positive, normal (>= 2^-1022), finite doubles, in place,
// without a libm call per value so the loop vectorises (callers check the range,
// see LogOf). x = 2^e m with
// m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716,
// summed to s^13: truncation below 1e-12 relative, far under float32 rounding.
EDGETAG_HOT void LogInPlace(double* x, int n) {
  for (int i = 0; i < n; ++i) {
    std::uint64_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    // The exponent becomes a double without an int64->double conversion (AVX2
    // has none): put the field in the mantissa of 2^52, subtract 2^52 + bias.
    std::uint64_t mantissa_bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
    // For m > sqrt(2) use m/2 and exponent + 1, in integer arithmetic (positive
    // doubles order like their bits): a floating-point select would keep a branch.
    const std::uint64_t high = mantissa_bits > kSqrt2Bits;
    mantissa_bits -= high << 52;
    const std::uint64_t exponent_bits = 0x4330000000000000ull | ((bits >> 52) + high);
    double exponent, m;
    std::memcpy(&exponent, &exponent_bits, sizeof exponent);
    std::memcpy(&m, &mantissa_bits, sizeof m);
    exponent -= 4503599627370496.0 + 1023.0;
    const double s = (m - 1.0) / (m + 1.0), s2 = s * s;
    const double series =
        1.0 + s2 * (1.0 / 3 + s2 * (1.0 / 5 + s2 * (1.0 / 7 + s2 * (1.0 / 9 + s2 * (1.0 / 11 + s2 / 13)))));
    x[i] = exponent * kLn2 + 2.0 * s * series;
  }
}

// ln of each value in place: the vectorised kernel when every value is a
// positive normal double (always, for valid configs and finite input), else
// std::log, which gives the exact answer for subnormals, 0, inf and NaN.
EDGETAG_HOT bool AllPositiveNormal(const double* x, int n) {
  // Positive normal doubles are exactly the bit patterns in [2^52, 0x7ff << 52):
  // one unsigned compare per value, which vectorises (negatives, inf, NaN fall outside).
  constexpr std::uint64_t kLow = 0x0010000000000000ull, kSpan = 0x7ff0000000000000ull - kLow;
  std::uint64_t outside = 0;
  for (int i = 0; i < n; ++i) {
    std::uint64_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    outside |= static_cast<std::uint64_t>(bits - kLow >= kSpan);
  }
  return outside == 0;
}

void LogOf(double* x, int n) {
  if (AllPositiveNormal(x, n)) {
    LogInPlace(x, n);
  } else {
    for (int i = 0; i < n; ++i) x[i] = std::log(x[i]);
  }
}

EDGETAG_HOT void WindowInto(const double* __restrict frame, const double* __restrict w, int win,
                            double* __restrict dst) {
  for (int j = 0; j < win; ++j) dst[j] = frame[j] * w[j];
}

AlignedVector<double> ToAligned(const std::vector<double>& v) { return AlignedVector<double>(v.begin(), v.end()); }

const FrontendConfig& Validated(const FrontendConfig& config) {
  config.Validate();
  return config;
}
}  // namespace

FrameProcessor::FrameProcessor(const FrontendConfig& config)
    : config_(Validated(config)),
      window_(ToAligned(MakeWindow(config.window, config.win_length, config.window_periodic))),
      fft_(config.n_fft),
      filterbank_(config),
      fft_frame_(static_cast<std::size_t>(config.n_fft), 0.0),
      spectrum_(static_cast<std::size_t>(config.NumFftBins()), 0.0),
      energies_(static_cast<std::size_t>(config.n_bins), 0.0),
      scratch_(config.remove_dc_offset || config.preemphasis != 0.0 ? static_cast<std::size_t>(config.win_length) : 0,
               0.0) {}

EDGETAG_HOT void FrameProcessor::Process(double* frame, float* out) {
  const int win = config_.win_length;
  if (config_.remove_dc_offset) {
    double mean = 0.0;
    for (int j = 0; j < win; ++j) mean += frame[j];
    mean /= win;
    for (int j = 0; j < win; ++j) frame[j] -= mean;
  }
  if (config_.preemphasis != 0.0) {
    const double p = config_.preemphasis;
    for (int j = win - 1; j > 0; --j) frame[j] -= p * frame[j - 1];
    frame[0] -= p * frame[0];
  }
  double* __restrict dst = fft_frame_.data() + config_.WindowOffset();
  const double* __restrict w = window_.data();
  for (int j = 0; j < win; ++j) dst[j] = frame[j] * w[j];
  Finish(out);
}

void FrameProcessor::ProcessConst(const double* frame, float* out) {
  if (!scratch_.empty()) {
    std::copy(frame, frame + config_.win_length, scratch_.begin());
    Process(scratch_.data(), out);
    return;
  }
  WindowInto(frame, window_.data(), config_.win_length, fft_frame_.data() + config_.WindowOffset());
  Finish(out);
}

EDGETAG_HOT void FrameProcessor::Finish(float* out) {
  fft_.PowerSpectrum(fft_frame_.data(), spectrum_.data());
  if (config_.spectrum == SpectrumKind::kMagnitude) {
    for (double& s : spectrum_) s = std::sqrt(s);
  }
  filterbank_.Apply(spectrum_.data(), energies_.data());

  // Compression: form each log's argument in double, take all the logs in one
  // vectorised pass, then scale (ln, log10 or dB) and round to float32.
  const int bands = config_.n_bins;
  const double floor = config_.log_floor;
  double* e = energies_.data();
  double scale = 1.0;
  switch (config_.compression) {
    case CompressionKind::kLog:
      for (int m = 0; m < bands; ++m) e[m] += floor;
      break;
    case CompressionKind::kLogClamp:
      for (int m = 0; m < bands; ++m) e[m] = std::max(e[m], floor);
      break;
    case CompressionKind::kLog10Plus1:
      for (int m = 0; m < bands; ++m) e[m] = 1.0 + config_.log1p_scale * e[m];
      scale = 1.0 / kLn10;
      break;
    case CompressionKind::kDb:
      for (int m = 0; m < bands; ++m) e[m] = std::max(e[m], floor) / config_.db_ref;
      scale = 10.0 / kLn10;
      break;
    case CompressionKind::kNone:
      for (int m = 0; m < bands; ++m) out[m] = static_cast<float>(e[m]);
      return;
  }
  LogOf(e, bands);
  for (int m = 0; m < bands; ++m) out[m] = static_cast<float>(scale * e[m]);
}

}  // namespace edgetag
