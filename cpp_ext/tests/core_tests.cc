// Unit tests of the edgetag C++ core, with no third-party framework.
//
// Build: cmake -S . -B build -DEDGETAG_BUILD_PYTHON=OFF -DEDGETAG_BUILD_TESTS=ON
//        cmake --build build && build/cpp_ext/edgetag_core_tests [name-filter]
// Prints one line per test and "N passed, N failed" last; exits non-zero on failure.
//
// This program replaces the global operator new/delete (every variant) with
// counting versions so that it can assert that steady-state pushes allocate
// nothing.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgetag/fft.h"
#include "edgetag/filterbank.h"
#include "edgetag/frontend_config.h"
#include "edgetag/spectrogram.h"
#include "edgetag/streaming_frontend.h"
#include "edgetag/window.h"

// ---------------------------------------------------------------------------
// Counting global allocation functions (all replaceable variants).
// ---------------------------------------------------------------------------
namespace alloc_count {
std::atomic<long long> g_allocations{0};
}  // namespace alloc_count

namespace {

void* CountedAlloc(std::size_t size) {
  alloc_count::g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}

void* CountedAlignedAlloc(std::size_t size, std::align_val_t al) {
  alloc_count::g_allocations.fetch_add(1, std::memory_order_relaxed);
  std::size_t alignment = static_cast<std::size_t>(al);
  if (alignment < sizeof(void*)) alignment = sizeof(void*);
  if (size == 0) size = 1;
#if defined(_WIN32)
  return _aligned_malloc(size, alignment);
#else
  void* p = nullptr;
  if (posix_memalign(&p, alignment, size) != 0) return nullptr;
  return p;
#endif
}

void CountedAlignedFree(void* p) {
#if defined(_WIN32)
  _aligned_free(p);
#else
  std::free(p);
#endif
}

}  // namespace

void* operator new(std::size_t size) {
  if (void* p = CountedAlloc(size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
  if (void* p = CountedAlloc(size)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return CountedAlloc(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return CountedAlloc(size); }
void* operator new(std::size_t size, std::align_val_t al) {
  if (void* p = CountedAlignedAlloc(size, al)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size, std::align_val_t al) {
  if (void* p = CountedAlignedAlloc(size, al)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, std::align_val_t al, const std::nothrow_t&) noexcept {
  return CountedAlignedAlloc(size, al);
}
void* operator new[](std::size_t size, std::align_val_t al, const std::nothrow_t&) noexcept {
  return CountedAlignedAlloc(size, al);
}

void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { CountedAlignedFree(p); }
void operator delete[](void* p, std::align_val_t) noexcept { CountedAlignedFree(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { CountedAlignedFree(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { CountedAlignedFree(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { CountedAlignedFree(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { CountedAlignedFree(p); }

// ---------------------------------------------------------------------------
// A tiny test harness.
// ---------------------------------------------------------------------------
namespace {

int g_check_failures = 0;  // failures in the current test

void ReportFailure(const char* file, int line, const std::string& what) {
  ++g_check_failures;
  if (g_check_failures <= 20) std::printf("    %s:%d: CHECK failed: %s\n", file, line, what.c_str());
  if (g_check_failures == 21) std::printf("    (further failures of this test not shown)\n");
}

#define CHECK(cond)                                            \
  do {                                                         \
    if (!(cond)) ReportFailure(__FILE__, __LINE__, #cond);     \
  } while (0)

// CHECK with a message built by streaming: CHECK_MSG(a == b, "a=" << a).
#define CHECK_MSG(cond, msg)                                   \
  do {                                                         \
    if (!(cond)) {                                             \
      std::ostringstream check_msg_os_;                        \
      check_msg_os_ << #cond << " -- " << msg;                 \
      ReportFailure(__FILE__, __LINE__, check_msg_os_.str());  \
    }                                                          \
  } while (0)

#define CHECK_THROWS(ExceptionType, expr)                                              \
  do {                                                                                 \
    bool check_threw_ = false;                                                         \
    try {                                                                              \
      (void)(expr);                                                                    \
    } catch (const ExceptionType&) {                                                   \
      check_threw_ = true;                                                             \
    } catch (const std::exception& e) {                                                \
      ReportFailure(__FILE__, __LINE__,                                                \
                    std::string(#expr " threw the wrong exception type: ") + e.what()); \
      check_threw_ = true;                                                             \
    }                                                                                  \
    if (!check_threw_) ReportFailure(__FILE__, __LINE__, #expr " did not throw " #ExceptionType); \
  } while (0)

struct TestCase {
  const char* name;
  void (*fn)();
};

using edgetag::ComputeFeatures;
using edgetag::Filterbank;
using edgetag::FilterbankKind;
using edgetag::FilterNorm;
using edgetag::FrontendConfig;
using edgetag::MakeWindow;
using edgetag::RealFft;
using edgetag::StreamingFrontend;
using edgetag::WindowKind;

constexpr double kPi = 3.14159265358979323846;

// ------------------------------------------------------------------ configs
FrontendConfig DefaultPreset() {  // runtime/frontend/config.py PRESETS["default"]
  FrontendConfig c;
  c.fmin = 50.0;
  return c;
}

FrontendConfig KaldiPreset() {  // PRESETS["kaldi"]
  FrontendConfig c;
  c.window_periodic = false;
  c.filterbank = FilterbankKind::kMelKaldi;
  c.filter_norm = FilterNorm::kNone;
  c.n_bins = 80;
  c.fmin = 20.0;
  c.compression = edgetag::CompressionKind::kLogClamp;
  c.log_floor = 1.1920928955078125e-07;
  return c;
}

FrontendConfig MusicnnPreset() {  // PRESETS["musicnn"]
  FrontendConfig c;
  c.win_length = 512;
  c.hop_length = 256;
  c.window_placement = edgetag::WindowPlacement::kCenter;
  c.n_bins = 96;
  c.compression = edgetag::CompressionKind::kLog10Plus1;
  return c;
}

FrontendConfig LibrosaPreset() {  // PRESETS["librosa"]
  FrontendConfig c;
  c.sample_rate = 22050;
  c.win_length = 2048;
  c.hop_length = 512;
  c.n_fft = 2048;
  c.window_placement = edgetag::WindowPlacement::kCenter;
  c.n_bins = 128;
  c.fmax = 11025.0;
  c.compression = edgetag::CompressionKind::kDb;
  c.log_floor = 1e-10;
  return c;
}

// Exercises the optional paths: DC removal, pre-emphasis, Hamming, centre
// placement with win < n_fft, magnitude spectrum, logfreq bands, hop == win.
FrontendConfig ExoticConfig() {
  FrontendConfig c;
  c.win_length = 300;
  c.hop_length = 300;
  c.n_fft = 1024;
  c.window = WindowKind::kHamming;
  c.window_periodic = false;
  c.window_placement = edgetag::WindowPlacement::kCenter;
  c.remove_dc_offset = true;
  c.preemphasis = 0.97;
  c.spectrum = edgetag::SpectrumKind::kMagnitude;
  c.filterbank = FilterbankKind::kLogFreq;
  c.filter_norm = FilterNorm::kSlaney;
  c.n_bins = 30;  // 250 Hz * 2^(30/6) = 8000 Hz: the top edge sits exactly at fmax
  c.fmin = 250.0;
  c.bins_per_octave = 6;
  c.fmax = 8000.0;
  c.compression = edgetag::CompressionKind::kNone;
  return c;
}

FrontendConfig SmallHopConfig() {  // hop 1, tiny window: many frames per push
  FrontendConfig c;
  c.win_length = 16;
  c.hop_length = 1;
  c.n_fft = 16;
  c.window = WindowKind::kRectangular;
  c.filterbank = FilterbankKind::kMelHtk;
  c.filter_norm = FilterNorm::kNone;
  c.n_bins = 4;
  c.compression = edgetag::CompressionKind::kLog;
  return c;
}

struct NamedConfig {
  const char* name;
  FrontendConfig config;
};

std::vector<NamedConfig> AllConfigs() {
  return {{"default", DefaultPreset()}, {"kaldi", KaldiPreset()},     {"musicnn", MusicnnPreset()},
          {"librosa", LibrosaPreset()}, {"exotic", ExoticConfig()}, {"small_hop", SmallHopConfig()}};
}

// ------------------------------------------------------------------ signals
template <typename T>
std::vector<T> RandomSignal(std::size_t n, std::uint32_t seed);

template <>
std::vector<double> RandomSignal<double>(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> x(n);
  // A tone plus noise plus a DC offset, so every conditioning step matters.
  for (std::size_t i = 0; i < n; ++i) x[i] = 0.1 + 0.4 * std::sin(0.05 * i) + 0.4 * u(rng);
  return x;
}

template <>
std::vector<float> RandomSignal<float>(std::size_t n, std::uint32_t seed) {
  const auto d = RandomSignal<double>(n, seed);
  return std::vector<float>(d.begin(), d.end());
}

template <>
std::vector<std::int16_t> RandomSignal<std::int16_t>(std::size_t n, std::uint32_t seed) {
  const auto d = RandomSignal<double>(n, seed);
  std::vector<std::int16_t> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<std::int16_t>(std::lround(d[i] * 32767.0 * 0.9));
  return x;
}

template <typename T>
std::vector<float> BatchFeatures(const FrontendConfig& c, const std::vector<T>& x) {
  std::vector<float> out(c.NumFrames(x.size()) * static_cast<std::size_t>(c.n_bins));
  ComputeFeatures(c, x.data(), x.size(), out.data());
  return out;
}

bool BitIdentical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Pushes x in the given chunk sizes, checking NumFramesForPush and the
// counters at every step; returns all frames.
template <typename T>
std::vector<float> StreamFeatures(StreamingFrontend& s, const std::vector<T>& x,
                                  const std::vector<std::size_t>& chunks, bool* ok) {
  const std::size_t bins = static_cast<std::size_t>(s.num_bins());
  std::vector<float> all;
  std::size_t pos = 0;
  for (std::size_t n : chunks) {
    const std::size_t predicted = s.NumFramesForPush(n);
    const std::uint64_t emitted_before = s.frames_emitted();
    // Exactly the predicted capacity (plus a canary row that must stay untouched).
    std::vector<float> out((predicted + 1) * bins, -12345.0f);
    const std::size_t got = s.Push(x.data() + pos, n, out.data(), predicted);
    pos += n;
    if (got != predicted) {
      std::printf("    Push(%zu) returned %zu frames, NumFramesForPush said %zu\n", n, got, predicted);
      *ok = false;
    }
    if (s.frames_emitted() != emitted_before + got) *ok = false;
    if (s.num_pending() >= static_cast<std::size_t>(s.config().win_length)) *ok = false;
    for (std::size_t i = 0; i < bins; ++i) {
      if (out[predicted * bins + i] != -12345.0f) *ok = false;  // wrote past capacity
    }
    all.insert(all.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(got * bins));
  }
  return all;
}

// Random partition of n samples; about a third of the chunks are 0 or 1 samples.
std::vector<std::size_t> RandomPartition(std::size_t n, std::size_t max_chunk, std::mt19937& rng) {
  std::vector<std::size_t> chunks;
  std::uniform_int_distribution<int> kind(0, 5);
  std::uniform_int_distribution<std::size_t> size(2, max_chunk);
  std::size_t left = n;
  while (left > 0) {
    std::size_t c;
    switch (kind(rng)) {
      case 0: c = 0; break;
      case 1: c = 1; break;
      default: c = size(rng); break;
    }
    c = std::min(c, left);
    chunks.push_back(c);
    left -= c;
  }
  chunks.push_back(0);
  return chunks;
}

// ===========================================================================
// (a) RealFft
// ===========================================================================
void NaiveDft(const std::vector<double>& x, std::vector<double>& re, std::vector<double>& im) {
  const std::size_t n = x.size();
  std::vector<double> c(n), s(n);
  for (std::size_t j = 0; j < n; ++j) {
    c[j] = std::cos(2.0 * kPi * static_cast<double>(j) / static_cast<double>(n));
    s[j] = std::sin(2.0 * kPi * static_cast<double>(j) / static_cast<double>(n));
  }
  re.assign(n / 2 + 1, 0.0);
  im.assign(n / 2 + 1, 0.0);
  for (std::size_t k = 0; k <= n / 2; ++k) {
    double ar = 0.0, ai = 0.0;
    for (std::size_t t = 0; t < n; ++t) {
      const std::size_t idx = (k * t) % n;  // exact argument reduction
      ar += x[t] * c[idx];
      ai -= x[t] * s[idx];
    }
    re[k] = ar;
    im[k] = ai;
  }
}

void TestFftMatchesNaiveDft() {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (int n = 4; n <= 4096; n *= 2) {
    RealFft fft(n);
    CHECK(fft.size() == n);
    CHECK(fft.num_bins() == n / 2 + 1);
    for (int trial = 0; trial < 3; ++trial) {
      std::vector<double> x(static_cast<std::size_t>(n));
      for (double& v : x) v = u(rng);
      if (trial == 2) {  // large DC + Nyquist components
        for (int i = 0; i < n; ++i) x[i] += 3.0 + ((i & 1) ? -2.0 : 2.0);
      }
      std::vector<double> ref_re, ref_im;
      NaiveDft(x, ref_re, ref_im);
      std::vector<double> re(fft.num_bins(), NAN), im(fft.num_bins(), NAN);
      const std::vector<double> x_copy = x;
      fft.Forward(x.data(), re.data(), im.data());
      CHECK_MSG(x == x_copy, "Forward modified its input, n=" << n);
      double err2 = 0.0, norm2 = 0.0;
      for (int k = 0; k < fft.num_bins(); ++k) {
        const double dr = re[k] - ref_re[k], di = im[k] - ref_im[k];
        err2 += dr * dr + di * di;
        norm2 += ref_re[k] * ref_re[k] + ref_im[k] * ref_im[k];
      }
      const double rel = std::sqrt(err2 / norm2);
      CHECK_MSG(rel <= 1e-12, "n=" << n << " trial=" << trial << " relative error " << rel);
      CHECK_MSG(im[0] == 0.0 && im[n / 2] == 0.0, "n=" << n << " DC/Nyquist imaginary parts not zero");

      // A second call on the same object gives the same result (no stale state).
      std::vector<double> re2(fft.num_bins()), im2(fft.num_bins());
      fft.Forward(x.data(), re2.data(), im2.data());
      CHECK_MSG(re2 == re && im2 == im, "n=" << n << " repeated Forward differs");
    }
  }
}

void TestFftRejectsBadSizes() {
  for (int n : {0, 3, 6, 100, 400, 1, 2, -4, -8, 12, 4095, 4097}) {
    CHECK_THROWS(std::invalid_argument, RealFft(n));
  }
  for (int n : {4, 8, 16, 1024, 1 << 16}) {
    bool ok = true;
    try {
      RealFft fft(n);
    } catch (...) {
      ok = false;
    }
    CHECK_MSG(ok, "RealFft(" << n << ") threw");
  }
}

void TestPowerSpectrumMatchesForward() {
  std::mt19937 rng(99);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (int n = 4; n <= 4096; n *= 2) {
    RealFft fft(n);
    std::vector<double> x(static_cast<std::size_t>(n));
    for (double& v : x) v = u(rng) + 0.25;
    std::vector<double> re(fft.num_bins()), im(fft.num_bins()), power(fft.num_bins(), NAN);
    fft.Forward(x.data(), re.data(), im.data());
    fft.PowerSpectrum(x.data(), power.data());
    double max_p = 0.0;
    for (int k = 0; k < fft.num_bins(); ++k) max_p = std::max(max_p, re[k] * re[k] + im[k] * im[k]);
    for (int k = 0; k < fft.num_bins(); ++k) {
      const double expect = re[k] * re[k] + im[k] * im[k];
      // Same arithmetic; allow for FMA contraction on targets that have it.
      CHECK_MSG(std::abs(power[k] - expect) <= 1e-13 * max_p,
                "n=" << n << " k=" << k << " power " << power[k] << " vs " << expect);
    }
  }
}

// ===========================================================================
// (b) Windows
// ===========================================================================
void TestWindows() {
  const double tol = 1e-15;
  // Periodic Hann, N = 8: D = 8.
  {
    const auto w = MakeWindow(WindowKind::kHann, 8, true);
    CHECK(w.size() == 8u);
    CHECK(std::abs(w[0] - 0.0) <= tol);
    CHECK(std::abs(w[2] - 0.5) <= tol);
    CHECK(std::abs(w[4] - 1.0) <= tol);
    CHECK(std::abs(w[6] - 0.5) <= tol);
    CHECK(std::abs(w[1] - (0.5 - 0.5 * std::cos(2 * kPi / 8))) <= tol);
    CHECK(std::abs(w[1] - w[7]) <= tol);  // DFT-even: w[n] == w[N - n]
  }
  // Symmetric Hann, N = 9: D = 8, both ends zero, peak in the middle.
  {
    const auto w = MakeWindow(WindowKind::kHann, 9, false);
    CHECK(w.size() == 9u);
    CHECK(std::abs(w[0]) <= tol);
    CHECK(std::abs(w[8]) <= tol);
    CHECK(std::abs(w[4] - 1.0) <= tol);
    CHECK(std::abs(w[2] - 0.5) <= tol);
    for (int i = 0; i < 9; ++i) CHECK(std::abs(w[i] - w[8 - i]) <= tol);
  }
  // Periodic Hamming, N = 8.
  {
    const auto w = MakeWindow(WindowKind::kHamming, 8, true);
    CHECK(std::abs(w[0] - 0.08) <= tol);
    CHECK(std::abs(w[2] - 0.54) <= tol);
    CHECK(std::abs(w[4] - 1.0) <= tol);
    CHECK(std::abs(w[3] - (0.54 - 0.46 * std::cos(2 * kPi * 3 / 8))) <= tol);
  }
  // Symmetric Hamming, N = 5: D = 4.
  {
    const auto w = MakeWindow(WindowKind::kHamming, 5, false);
    CHECK(std::abs(w[0] - 0.08) <= tol);
    CHECK(std::abs(w[1] - 0.54) <= tol);
    CHECK(std::abs(w[2] - 1.0) <= tol);
    CHECK(std::abs(w[3] - 0.54) <= tol);
    CHECK(std::abs(w[4] - 0.08) <= tol);
  }
  // Full formula check for typical lengths.
  for (int length : {2, 3, 400, 512, 2048}) {
    for (bool periodic : {true, false}) {
      for (WindowKind kind : {WindowKind::kHann, WindowKind::kHamming, WindowKind::kRectangular}) {
        const auto w = MakeWindow(kind, length, periodic);
        CHECK(static_cast<int>(w.size()) == length);
        const double a = kind == WindowKind::kHann ? 0.5 : 0.54;
        const double b = kind == WindowKind::kHann ? 0.5 : 0.46;
        const double d = periodic ? length : length - 1;
        double max_err = 0.0;
        for (int i = 0; i < length; ++i) {
          const double expect = kind == WindowKind::kRectangular ? 1.0 : a - b * std::cos(2 * kPi * i / d);
          max_err = std::max(max_err, std::abs(w[i] - expect));
        }
        CHECK_MSG(max_err <= 1e-14, "length " << length << " periodic " << periodic << " kind "
                                              << static_cast<int>(kind) << " max error " << max_err);
      }
    }
  }
  // Periodic window of N == first N points of the symmetric window of N + 1.
  {
    const auto p = MakeWindow(WindowKind::kHann, 400, true);
    const auto s = MakeWindow(WindowKind::kHann, 401, false);
    double max_err = 0.0;
    for (int i = 0; i < 400; ++i) max_err = std::max(max_err, std::abs(p[i] - s[i]));
    CHECK(max_err <= 1e-15);
  }
}

// ===========================================================================
// (c) Filterbank
// ===========================================================================
std::vector<FrontendConfig> FilterbankConfigs() {
  std::vector<FrontendConfig> out;
  for (const auto& nc : AllConfigs()) out.push_back(nc.config);
  FrontendConfig htk = DefaultPreset();
  htk.filterbank = FilterbankKind::kMelHtk;
  out.push_back(htk);
  FrontendConfig htk_none = htk;
  htk_none.filter_norm = FilterNorm::kNone;
  out.push_back(htk_none);
  FrontendConfig logf = ExoticConfig();
  logf.filter_norm = FilterNorm::kNone;
  out.push_back(logf);
  return out;
}

void TestFilterbankEveryBandNonEmpty() {
  for (const auto& c : FilterbankConfigs()) {
    Filterbank fb(c);
    const int bins = c.NumFftBins();
    CHECK(fb.num_bands() == c.n_bins);
    CHECK(static_cast<int>(fb.edges_hz().size()) == c.n_bins + 2);
    const auto dense = fb.Dense(bins);
    CHECK(dense.size() == static_cast<std::size_t>(c.n_bins) * bins);
    for (int m = 0; m < c.n_bins; ++m) {
      double mx = 0.0, mn = 0.0;
      for (int k = 0; k < bins; ++k) {
        mx = std::max(mx, dense[m * bins + k]);
        mn = std::min(mn, dense[m * bins + k]);
      }
      CHECK_MSG(mx > 0.0, c.ToString() << " band " << m << " is empty");
      CHECK_MSG(mn >= 0.0, c.ToString() << " band " << m << " has a negative weight");
    }
    // Edges increase, first/last as configured (mel kinds).
    const auto& e = fb.edges_hz();
    for (std::size_t i = 1; i < e.size(); ++i) CHECK(e[i] > e[i - 1]);
    if (c.filterbank != FilterbankKind::kLogFreq) {
      CHECK_MSG(std::abs(e.front() - c.fmin) <= 1e-9 * std::max(1.0, c.fmin), "first edge " << e.front());
      CHECK_MSG(std::abs(e.back() - c.fmax) <= 1e-9 * c.fmax, "last edge " << e.back());
    }
    // Apply == dense matrix-vector product.
    std::mt19937 rng(5);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::vector<double> spec(bins);
    for (double& v : spec) v = u(rng);
    std::vector<double> got(c.n_bins);
    fb.Apply(spec.data(), got.data());
    for (int m = 0; m < c.n_bins; ++m) {
      double expect = 0.0;
      for (int k = 0; k < bins; ++k) expect += dense[m * bins + k] * spec[k];
      CHECK_MSG(std::abs(got[m] - expect) <= 1e-12 * std::max(1e-30, std::abs(expect)),
                "band " << m << " Apply " << got[m] << " vs dense " << expect);
    }
  }
}

void TestFilterbankMelScales() {
  // HTK: 1000 Hz -> 999.99 mel; Slaney: linear to 1 kHz (15 mel), log above.
  CHECK(std::abs(edgetag::HzToMel(1000.0, false) - 2595.0 * std::log10(1.0 + 1000.0 / 700.0)) <= 1e-9);
  CHECK(std::abs(edgetag::HzToMel(1000.0, true) - 15.0) <= 1e-12);
  CHECK(std::abs(edgetag::HzToMel(500.0, true) - 7.5) <= 1e-12);
  CHECK(std::abs(edgetag::HzToMel(6400.0, true) - 42.0) <= 1e-9);  // 15 + 27
  for (double hz : {0.0, 20.0, 440.0, 999.0, 1000.0, 1001.0, 4000.0, 11025.0}) {
    for (bool slaney : {false, true}) {
      const double back = edgetag::MelToHz(edgetag::HzToMel(hz, slaney), slaney);
      CHECK_MSG(std::abs(back - hz) <= 1e-9 * std::max(1.0, hz), "round trip " << hz << " -> " << back);
    }
  }
}

void TestFilterbankSlaneyConstantArea() {
  // Fine FFT resolution so that the Riemann sum approximates the triangle area.
  for (FilterbankKind kind : {FilterbankKind::kMelSlaney, FilterbankKind::kMelHtk, FilterbankKind::kLogFreq}) {
    FrontendConfig c = DefaultPreset();
    c.filterbank = kind;
    c.filter_norm = FilterNorm::kSlaney;
    c.n_fft = 8192;
    if (kind == FilterbankKind::kLogFreq) {
      c.fmin = 220.0;
      c.n_bins = 60;
    }
    Filterbank fb(c);
    const int bins = c.NumFftBins();
    const double df = static_cast<double>(c.sample_rate) / c.n_fft;
    const auto dense = fb.Dense(bins);
    const auto& e = fb.edges_hz();
    for (int m = 0; m < c.n_bins; ++m) {
      double area = 0.0, peak = 0.0;
      for (int k = 0; k < bins; ++k) {
        area += dense[m * bins + k] * df;
        peak = std::max(peak, dense[m * bins + k]);
      }
      // Area of a triangle of height 2/(right-left) over (right-left) is 1.
      CHECK_MSG(std::abs(area - 1.0) <= 0.02, "kind " << static_cast<int>(kind) << " band " << m << " area " << area);
      CHECK_MSG(peak <= 2.0 / (e[m + 2] - e[m]) * (1 + 1e-12), "band " << m << " peak " << peak);
    }
  }
}

void TestFilterbankKaldiPeaksAtOne() {
  for (int n_fft : {512, 4096}) {
    FrontendConfig c = KaldiPreset();
    c.n_fft = n_fft;
    Filterbank fb(c);
    const int bins = c.NumFftBins();
    const auto dense = fb.Dense(bins);
    const auto& e = fb.edges_hz();
    double best_peak = 0.0;
    for (int m = 0; m < c.n_bins; ++m) {
      // Triangles are linear in mel: recompute every weight independently.
      const double left = edgetag::HzToMel(e[m], false), centre = edgetag::HzToMel(e[m + 1], false),
                   right = edgetag::HzToMel(e[m + 2], false);
      double peak = 0.0, expected_peak = 0.0, max_err = 0.0;
      for (int k = 0; k < bins; ++k) {
        const double mel = edgetag::HzToMel(static_cast<double>(k) * c.sample_rate / c.n_fft, false);
        const double w = std::max(0.0, std::min((mel - left) / (centre - left), (right - mel) / (right - centre)));
        max_err = std::max(max_err, std::abs(dense[m * bins + k] - w));
        expected_peak = std::max(expected_peak, w);
        peak = std::max(peak, dense[m * bins + k]);
      }
      CHECK_MSG(max_err <= 1e-12, "n_fft " << n_fft << " band " << m << " weight error " << max_err);
      CHECK_MSG(peak <= 1.0 + 1e-12, "n_fft " << n_fft << " band " << m << " peak " << peak << " > 1");
      CHECK_MSG(std::abs(peak - expected_peak) <= 1e-12, "band " << m << " peak " << peak);
      if (n_fft == 4096) {
        // Bins are ~4 Hz apart; the lowest band is ~22 Hz wide per side, so the
        // nearest bin to every centre has weight above 0.9.
        CHECK_MSG(peak >= 0.9, "n_fft 4096 band " << m << " peak " << peak);
      }
      best_peak = std::max(best_peak, peak);
    }
    CHECK_MSG(best_peak >= 0.99, "n_fft " << n_fft << " highest peak " << best_peak);
  }
  // A bin that lands exactly on a centre gets weight exactly 1 (linear-in-Hz
  // triangles, norm none): fmin 0, fmax 8000, n_bins 1 -> centre at 4000 Hz,
  // which is FFT bin 128 of 512 at 16 kHz... for HTK the centre is the mel
  // midpoint, so use logfreq: centre = fmin = 1000 Hz = bin 32 at 16 kHz/512.
  {
    FrontendConfig c = DefaultPreset();
    c.filterbank = FilterbankKind::kLogFreq;
    c.filter_norm = FilterNorm::kNone;
    c.fmin = 1000.0;
    c.n_bins = 12;
    c.bins_per_octave = 12;
    Filterbank fb(c);
    const auto dense = fb.Dense(c.NumFftBins());
    CHECK_MSG(std::abs(dense[32] - 1.0) <= 1e-12, "logfreq band 0 weight at 1000 Hz is " << dense[32]);
  }
}

// ===========================================================================
// The whole per-frame pipeline against a naive double-precision reference.
// ===========================================================================
// Frames of x through the documented recipe (runtime/frontend/config.py), with
// the window formula, a naive DFT and std::log/log10; only the filterbank
// weights come from the library (tested on their own above).
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

// ===========================================================================
// (d) StreamingFrontend
// ===========================================================================
template <typename T>
void CheckChunkInvariance(const NamedConfig& nc, std::uint32_t seed) {
  const FrontendConfig& c = nc.config;
  const std::size_t n = static_cast<std::size_t>(c.win_length) * 6 + 3 * c.hop_length + 17;
  const auto x = RandomSignal<T>(n, seed);
  const auto batch = BatchFeatures(c, x);
  CHECK_MSG(batch.size() == c.NumFrames(n) * c.n_bins, nc.name);
  std::mt19937 rng(seed);
  // Whole signal at once, one sample at a time, and random partitions.
  std::vector<std::vector<std::size_t>> partitions;
  partitions.push_back({n});
  partitions.push_back(std::vector<std::size_t>(n, 1));
  for (std::size_t max_chunk : {std::size_t{3}, std::size_t{50}, static_cast<std::size_t>(c.win_length) + 7, std::size_t{3000}}) {
    partitions.push_back(RandomPartition(n, max_chunk, rng));
  }
  for (const auto& chunks : partitions) {
    StreamingFrontend s(c);
    bool ok = true;
    const auto streamed = StreamFeatures(s, x, chunks, &ok);
    CHECK_MSG(ok, nc.name << ": NumFramesForPush / counters / capacity mismatch (" << chunks.size() << " chunks)");
    CHECK_MSG(BitIdentical(streamed, batch),
              nc.name << ": streamed frames (" << streamed.size() / c.n_bins << ") differ from ComputeFeatures ("
                      << batch.size() / c.n_bins << "), " << chunks.size() << " chunks");
    CHECK(s.frames_emitted() == c.NumFrames(n));
    CHECK(s.num_pending() == n - c.NumFrames(n) * static_cast<std::size_t>(c.hop_length));
  }
}

void TestStreamingChunkInvariance() {
  std::uint32_t seed = 17;
  for (const auto& nc : AllConfigs()) {
    CheckChunkInvariance<float>(nc, seed++);
    CheckChunkInvariance<double>(nc, seed++);
    CheckChunkInvariance<std::int16_t>(nc, seed++);
  }
}

void TestInputTypesAgree() {
  // int16 is scaled by 1/32768; float widens to double exactly.
  for (const auto& nc : AllConfigs()) {
    const FrontendConfig& c = nc.config;
    const std::size_t n = static_cast<std::size_t>(c.win_length) * 4;
    const auto xi = RandomSignal<std::int16_t>(n, 3);
    std::vector<double> xd(n);
    for (std::size_t i = 0; i < n; ++i) xd[i] = xi[i] / 32768.0;
    CHECK_MSG(BitIdentical(BatchFeatures(c, xi), BatchFeatures(c, xd)), nc.name << ": int16 != double/32768");
    const auto xf = RandomSignal<float>(n, 4);
    const std::vector<double> xfd(xf.begin(), xf.end());
    CHECK_MSG(BitIdentical(BatchFeatures(c, xf), BatchFeatures(c, xfd)), nc.name << ": float != double(float)");
  }
}

void TestNumFramesForPushSequence() {
  StreamingFrontend s(DefaultPreset());  // win 400, hop 160
  std::vector<float> x(2000, 0.25f);
  std::vector<float> out(20 * 64);
  struct Step {
    std::size_t push, frames, pending_after;
  };
  const Step steps[] = {{0, 0, 0},     {399, 0, 399}, {1, 1, 240},   {159, 0, 399}, {1, 1, 240},
                        {0, 0, 240},   {480, 3, 240}, {800, 5, 240}, {1, 0, 241},   {3, 0, 244}};
  for (const Step& st : steps) {
    CHECK_MSG(s.NumFramesForPush(st.push) == st.frames,
              "NumFramesForPush(" << st.push << ") = " << s.NumFramesForPush(st.push) << ", want " << st.frames);
    const std::size_t got = s.Push(x.data(), st.push, out.data(), 20);
    CHECK_MSG(got == st.frames, "Push(" << st.push << ") = " << got << ", want " << st.frames);
    CHECK_MSG(s.num_pending() == st.pending_after, "pending " << s.num_pending() << ", want " << st.pending_after);
  }
  CHECK(s.frames_emitted() == 10u);
  // Large pushes: the prediction holds for sizes far beyond one window.
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{159}, std::size_t{160}, std::size_t{1999}}) {
    const std::size_t predicted = s.NumFramesForPush(n);
    CHECK(predicted == DefaultPreset().NumFrames(s.num_pending() + n));
    CHECK(s.Push(x.data(), n, out.data(), 20) == predicted);
  }
}

void TestCapacityTooSmallLeavesStreamUnchanged() {
  const FrontendConfig c = DefaultPreset();
  const auto x = RandomSignal<float>(4000, 8);
  const auto batch = BatchFeatures(c, x);
  StreamingFrontend s(c);
  std::vector<float> out(64 * 64);
  std::vector<float> streamed;
  std::size_t f = s.Push(x.data(), 700, out.data(), 64);
  streamed.insert(streamed.end(), out.begin(), out.begin() + f * 64);
  const std::size_t pending = s.num_pending();
  const std::uint64_t emitted = s.frames_emitted();
  const std::size_t need = s.NumFramesForPush(1000);
  CHECK(need >= 2);
  CHECK_THROWS(std::invalid_argument, s.Push(x.data() + 700, 1000, out.data(), need - 1));
  CHECK(s.num_pending() == pending);
  CHECK(s.frames_emitted() == emitted);
  f = s.Push(x.data() + 700, 3300, out.data(), 64);
  streamed.insert(streamed.end(), out.begin(), out.begin() + f * 64);
  CHECK(BitIdentical(streamed, batch));
}

template <typename T>
void CheckNonFiniteRejected(T bad) {
  const FrontendConfig c = DefaultPreset();
  auto x = RandomSignal<T>(3000, 21);
  const auto batch = BatchFeatures(c, x);
  StreamingFrontend s(c);
  std::vector<float> out(64 * 64);
  std::vector<float> streamed;
  std::size_t f = s.Push(x.data(), 555, out.data(), 64);
  streamed.insert(streamed.end(), out.begin(), out.begin() + f * 64);
  const std::size_t pending = s.num_pending();
  const std::uint64_t emitted = s.frames_emitted();
  // Bad sample in the middle (after samples that would complete frames), and at the very end.
  for (std::size_t bad_at : {std::size_t{500}, std::size_t{0}, std::size_t{999}}) {
    std::vector<T> chunk(x.begin() + 555, x.begin() + 1555);
    chunk[bad_at] = bad;
    std::vector<float> sentinel(out.size(), 7.0f);
    CHECK_THROWS(std::invalid_argument, s.Push(chunk.data(), chunk.size(), sentinel.data(), 64));
    CHECK(s.num_pending() == pending);
    CHECK(s.frames_emitted() == emitted);
  }
  // ComputeFeatures rejects it as well.
  {
    std::vector<T> bad_signal = x;
    bad_signal[1234] = bad;
    std::vector<float> o(c.NumFrames(bad_signal.size()) * 64);
    CHECK_THROWS(std::invalid_argument, ComputeFeatures(c, bad_signal.data(), bad_signal.size(), o.data()));
  }
  // The stream continues as if the bad pushes never happened.
  f = s.Push(x.data() + 555, x.size() - 555, out.data(), 64);
  streamed.insert(streamed.end(), out.begin(), out.begin() + f * 64);
  CHECK(BitIdentical(streamed, batch));
}

void TestNonFiniteSamplesThrow() {
  CheckNonFiniteRejected<float>(std::numeric_limits<float>::quiet_NaN());
  CheckNonFiniteRejected<float>(std::numeric_limits<float>::infinity());
  CheckNonFiniteRejected<float>(-std::numeric_limits<float>::infinity());
  CheckNonFiniteRejected<double>(std::numeric_limits<double>::quiet_NaN());
  CheckNonFiniteRejected<double>(std::numeric_limits<double>::infinity());
  CheckNonFiniteRejected<double>(-std::numeric_limits<double>::infinity());
  CheckNonFiniteRejected<double>(std::numeric_limits<double>::signaling_NaN());
}

void TestReset() {
  for (const auto& nc : AllConfigs()) {
    const FrontendConfig& c = nc.config;
    const std::size_t n = static_cast<std::size_t>(c.win_length) * 3 + 11;
    const auto x = RandomSignal<double>(n, 31);
    const auto y = RandomSignal<double>(n, 32);
    StreamingFrontend s(c);
    std::vector<float> out(c.NumFrames(n) * c.n_bins + c.n_bins);
    // Half of x, then Reset: the next push starts a new signal.
    s.Push(x.data(), n / 2 + 1, out.data(), c.NumFrames(n) + 1);
    s.Reset();
    CHECK_MSG(s.num_pending() == 0u, nc.name);
    CHECK_MSG(s.frames_emitted() == 0u, nc.name);
    CHECK(s.NumFramesForPush(static_cast<std::size_t>(c.win_length) - 1) == 0u);
    const std::size_t f = s.Push(y.data(), n, out.data(), c.NumFrames(n));
    CHECK(f == c.NumFrames(n));
    out.resize(f * c.n_bins);
    CHECK_MSG(BitIdentical(out, BatchFeatures(c, y)), nc.name << ": frames after Reset differ from a fresh signal");
    CHECK(s.frames_emitted() == f);
    // Reset of a fresh stream and double Reset are harmless.
    StreamingFrontend fresh(c);
    fresh.Reset();
    fresh.Reset();
    CHECK(fresh.num_pending() == 0u);
  }
}

void TestPreallocatedAccessors() {
  const FrontendConfig c = KaldiPreset();
  StreamingFrontend s(c);
  CHECK(s.num_bins() == 80);
  CHECK(s.config().n_bins == 80);
  CHECK(s.config().filterbank == FilterbankKind::kMelKaldi);
  CHECK(s.num_pending() == 0u);
  CHECK(s.frames_emitted() == 0u);
  // Pushing nothing (even with a null output) is a no-op.
  CHECK(s.Push(static_cast<const float*>(nullptr), 0, nullptr, 0) == 0u);
  CHECK(s.num_pending() == 0u);
}

// ===========================================================================
// (e) Allocation-free steady state
// ===========================================================================
template <typename T>
long long AllocationsDuringPushes(std::size_t chunk, int pushes, bool* frames_ok) {
  const FrontendConfig c = DefaultPreset();
  StreamingFrontend s(c);  // construction allocates; not measured
  const auto x = RandomSignal<T>(chunk * 64, 77);
  const std::size_t max_frames = s.config().NumFrames(chunk + static_cast<std::size_t>(c.win_length)) + 1;
  std::vector<float> out(max_frames * static_cast<std::size_t>(c.n_bins));
  // Warm-up push.
  s.Push(x.data(), chunk, out.data(), max_frames);
  std::size_t total_frames = 0;
  const long long before = alloc_count::g_allocations.load();
  for (int i = 0; i < pushes; ++i) {
    const T* src = x.data() + (static_cast<std::size_t>(i) % 64) * chunk;
    total_frames += s.Push(src, chunk, out.data(), max_frames);
  }
  const long long after = alloc_count::g_allocations.load();
  // Sanity: the pushes really ran and produced the expected number of frames.
  const std::size_t expected = c.NumFrames(chunk * (static_cast<std::size_t>(pushes) + 1)) -
                               c.NumFrames(chunk);
  *frames_ok = total_frames == expected && total_frames > 0;
  return after - before;
}

void TestAllocationCounterWorks() {
  // The volatile sink keeps the compiler from eliding new/delete pairs.
  static void* volatile sink = nullptr;
  (void)sink;
  const long long before = alloc_count::g_allocations.load();
  {
    auto* p = new int(3);
    sink = p;
    delete p;
    auto* a = new double[7];
    sink = a;
    delete[] a;
    auto* q = new (std::nothrow) char[5];
    sink = q;
    delete[] q;
    struct alignas(64) Wide {
      double v[8];
    };
    auto* w = new Wide;  // aligned operator new
    sink = w;
    CHECK(reinterpret_cast<std::uintptr_t>(w) % 64 == 0);
    delete w;
    std::vector<double> v(10);
    sink = v.data();
  }
  (void)sink;
  const long long after = alloc_count::g_allocations.load();
  CHECK_MSG(after - before == 5, "counted " << (after - before) << " allocations, want 5");
}

void TestSteadyStatePushesAllocateNothing() {
  struct Result {
    const char* type;
    std::size_t chunk;
    long long allocations;
    bool frames_ok;
  };
  std::vector<Result> results;
  results.reserve(6);
  for (std::size_t chunk : {std::size_t{160}, std::size_t{512}}) {
    bool ok = false;
    long long a = AllocationsDuringPushes<float>(chunk, 10000, &ok);
    results.push_back({"float", chunk, a, ok});
    a = AllocationsDuringPushes<double>(chunk, 10000, &ok);
    results.push_back({"double", chunk, a, ok});
    a = AllocationsDuringPushes<std::int16_t>(chunk, 10000, &ok);
    results.push_back({"int16", chunk, a, ok});
  }
  for (const Result& r : results) {
    CHECK_MSG(r.allocations == 0,
              r.type << " pushes of " << r.chunk << ": " << r.allocations << " heap allocations in 10000 pushes");
    CHECK_MSG(r.frames_ok, r.type << " pushes of " << r.chunk << ": unexpected frame count");
  }
}

// ===========================================================================
// (f) Invalid configs
// ===========================================================================
void TestInvalidConfigsThrow() {
  struct Bad {
    const char* what;
    FrontendConfig config;
  };
  std::vector<Bad> bad;
  auto add = [&bad](const char* what, auto mutate) {
    FrontendConfig c = DefaultPreset();
    mutate(c);
    bad.push_back({what, c});
  };
  add("fmax above Nyquist", [](FrontendConfig& c) { c.fmax = 8000.5; });
  add("fmax above Nyquist (22.05 kHz)", [](FrontendConfig& c) { c.sample_rate = 22050; c.fmax = 11100.0; });
  add("hop 0", [](FrontendConfig& c) { c.hop_length = 0; });
  add("hop negative", [](FrontendConfig& c) { c.hop_length = -160; });
  add("n_fft 500 (not a power of two)", [](FrontendConfig& c) { c.n_fft = 500; });
  add("n_fft 600 (not a power of two)", [](FrontendConfig& c) { c.n_fft = 600; });
  add("n_fft below win_length", [](FrontendConfig& c) { c.n_fft = 256; });
  add("hop above win", [](FrontendConfig& c) { c.hop_length = 401; });
  add("win_length 1", [](FrontendConfig& c) { c.win_length = 1; c.hop_length = 1; });
  add("sample_rate 0", [](FrontendConfig& c) { c.sample_rate = 0; });
  add("n_bins 0", [](FrontendConfig& c) { c.n_bins = 0; });
  add("fmin negative", [](FrontendConfig& c) { c.fmin = -1.0; });
  add("fmin == fmax", [](FrontendConfig& c) { c.fmin = 8000.0; });
  add("fmin NaN", [](FrontendConfig& c) { c.fmin = std::numeric_limits<double>::quiet_NaN(); });
  add("fmax inf", [](FrontendConfig& c) { c.fmax = std::numeric_limits<double>::infinity(); });
  add("preemphasis 1", [](FrontendConfig& c) { c.preemphasis = 1.0; });
  add("preemphasis NaN", [](FrontendConfig& c) { c.preemphasis = std::numeric_limits<double>::quiet_NaN(); });
  add("log_floor 0", [](FrontendConfig& c) { c.log_floor = 0.0; });
  add("log1p_scale -1", [](FrontendConfig& c) { c.log1p_scale = -1.0; });
  add("db_ref 0", [](FrontendConfig& c) { c.db_ref = 0.0; });
  add("logfreq fmin 0", [](FrontendConfig& c) { c.filterbank = FilterbankKind::kLogFreq; c.fmin = 0.0; });
  add("logfreq past fmax", [](FrontendConfig& c) {
    c.filterbank = FilterbankKind::kLogFreq; c.fmin = 1000.0; c.n_bins = 64; c.bins_per_octave = 12;
  });
  add("logfreq bins_per_octave 0", [](FrontendConfig& c) {
    c.filterbank = FilterbankKind::kLogFreq; c.fmin = 100.0; c.bins_per_octave = 0;
  });

  for (const Bad& b : bad) {
    bool validate_threw = false;
    try {
      b.config.Validate();
    } catch (const std::invalid_argument&) {
      validate_threw = true;
    }
    CHECK_MSG(validate_threw, "Validate accepted: " << b.what);
    bool stream_threw = false;
    try {
      StreamingFrontend s(b.config);
    } catch (const std::invalid_argument&) {
      stream_threw = true;
    } catch (const std::exception& e) {
      ReportFailure(__FILE__, __LINE__, std::string(b.what) + ": wrong exception type: " + e.what());
      stream_threw = true;
    }
    CHECK_MSG(stream_threw, "StreamingFrontend accepted: " << b.what);
    std::vector<float> x(4000, 0.1f), out(64 * 64);
    bool batch_threw = false;
    try {
      ComputeFeatures(b.config, x.data(), 0, out.data());
    } catch (const std::invalid_argument&) {
      batch_threw = true;
    } catch (const std::exception&) {
    }
    CHECK_MSG(batch_threw, "ComputeFeatures accepted: " << b.what);
  }

  // More bands than n_fft can resolve: some band covers no FFT bin.
  {
    FrontendConfig c = DefaultPreset();
    c.fmin = 0.0;
    c.n_bins = 256;
    CHECK_THROWS(std::invalid_argument, StreamingFrontend(c));
  }
  // The presets themselves are valid.
  for (const auto& nc : AllConfigs()) {
    bool ok = true;
    try {
      nc.config.Validate();
      StreamingFrontend s(nc.config);
    } catch (const std::exception& e) {
      ok = false;
      std::printf("    %s: %s\n", nc.name, e.what());
    }
    CHECK_MSG(ok, nc.name << " rejected");
  }
}

// ===========================================================================
const TestCase kTests[] = {
    {"fft_matches_naive_dft", TestFftMatchesNaiveDft},
    {"fft_rejects_bad_sizes", TestFftRejectsBadSizes},
    {"power_spectrum_matches_forward", TestPowerSpectrumMatchesForward},
    {"windows", TestWindows},
    {"filterbank_every_band_non_empty", TestFilterbankEveryBandNonEmpty},
    {"filterbank_mel_scales", TestFilterbankMelScales},
    {"filterbank_slaney_constant_area", TestFilterbankSlaneyConstantArea},
    {"filterbank_kaldi_peaks_at_one", TestFilterbankKaldiPeaksAtOne},
    {"streaming_chunk_invariance", TestStreamingChunkInvariance},
    {"input_types_agree", TestInputTypesAgree},
    {"num_frames_for_push_sequence", TestNumFramesForPushSequence},
    {"capacity_too_small_leaves_stream_unchanged", TestCapacityTooSmallLeavesStreamUnchanged},
    {"non_finite_samples_throw", TestNonFiniteSamplesThrow},
    {"reset", TestReset},
    {"accessors_and_empty_push", TestPreallocatedAccessors},
    {"allocation_counter_works", TestAllocationCounterWorks},
    {"steady_state_pushes_allocate_nothing", TestSteadyStatePushesAllocateNothing},
    {"invalid_configs_throw", TestInvalidConfigsThrow},
    {"features_match_double_reference", TestFeaturesMatchDoubleReference},
};

}  // namespace

int main(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : nullptr;  // optional substring of test names
  int passed = 0, failed = 0;
  for (const TestCase& t : kTests) {
    if (filter != nullptr && std::strstr(t.name, filter) == nullptr) continue;
    g_check_failures = 0;
    std::printf("[ RUN  ] %s\n", t.name);
    std::fflush(stdout);
    try {
      t.fn();
    } catch (const std::exception& e) {
      ReportFailure(__FILE__, __LINE__, std::string("uncaught exception: ") + e.what());
    } catch (...) {
      ReportFailure(__FILE__, __LINE__, "uncaught non-standard exception");
    }
    if (g_check_failures == 0) {
      ++passed;
      std::printf("[  OK  ] %s\n", t.name);
    } else {
      ++failed;
      std::printf("[ FAIL ] %s (%d checks failed)\n", t.name, g_check_failures);
    }
    std::fflush(stdout);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
