// Shared pieces of the C++ core unit tests: the CHECK macros of the tiny
// harness (test_main.cc), the allocation counter (alloc_count.cc), the preset
// configs, seeded signals and the helpers that run the front end on them.
// Every test function is declared here and listed in test_main.cc.

#ifndef EDGETAG_TESTS_TEST_HELPERS_H_
#define EDGETAG_TESTS_TEST_HELPERS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include "edgetag/frontend_config.h"
#include "edgetag/streaming_frontend.h"

// Heap allocations so far, counted by the replaced operator new (alloc_count.cc).
namespace alloc_count {
extern std::atomic<long long> g_allocations;
}  // namespace alloc_count

namespace edgetag_test {

// ------------------------------------------------------------------ harness
// Counts a failure of the current test and prints it (test_main.cc).
void ReportFailure(const char* file, int line, const std::string& what);

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) ::edgetag_test::ReportFailure(__FILE__, __LINE__, #cond); \
  } while (0)

// CHECK with a message built by streaming: CHECK_MSG(a == b, "a=" << a).
#define CHECK_MSG(cond, msg)                                                  \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::ostringstream check_msg_os_;                                       \
      check_msg_os_ << #cond << " -- " << msg;                                \
      ::edgetag_test::ReportFailure(__FILE__, __LINE__, check_msg_os_.str()); \
    }                                                                         \
  } while (0)

#define CHECK_THROWS(ExceptionType, expr)                                                               \
  do {                                                                                                  \
    bool check_threw_ = false;                                                                          \
    try {                                                                                               \
      (void)(expr);                                                                                     \
    } catch (const ExceptionType&) {                                                                    \
      check_threw_ = true;                                                                              \
    } catch (const std::exception& e) {                                                                 \
      ::edgetag_test::ReportFailure(__FILE__, __LINE__,                                                 \
                                    std::string(#expr " threw the wrong exception type: ") + e.what()); \
      check_threw_ = true;                                                                              \
    }                                                                                                   \
    if (!check_threw_) ::edgetag_test::ReportFailure(__FILE__, __LINE__, #expr " did not throw " #ExceptionType); \
  } while (0)

using edgetag::ComputeFeatures;
using edgetag::FrontendConfig;
using edgetag::StreamingFrontend;

constexpr double kPi = 3.14159265358979323846;

// ------------------------------------------------------------------ configs
FrontendConfig DefaultPreset();  // runtime/frontend/config.py PRESETS["default"]
FrontendConfig KaldiPreset();    // PRESETS["kaldi"]
FrontendConfig MusicnnPreset();  // PRESETS["musicnn"]
FrontendConfig LibrosaPreset();  // PRESETS["librosa"]
// Exercises the optional paths: DC removal, pre-emphasis, Hamming, centre
// placement with win < n_fft, magnitude spectrum, logfreq bands, hop == win.
FrontendConfig ExoticConfig();
FrontendConfig SmallHopConfig();  // hop 1, tiny window: many frames per push

struct NamedConfig {
  const char* name;
  FrontendConfig config;
};

// The four presets plus ExoticConfig and SmallHopConfig.
std::vector<NamedConfig> AllConfigs();

// ------------------------------------------------------------------ signals
// A seeded tone plus noise plus a DC offset (double, float, or int16 at 0.9 of full scale).
template <typename T>
std::vector<T> RandomSignal(std::size_t n, std::uint32_t seed);

template <>
std::vector<double> RandomSignal<double>(std::size_t n, std::uint32_t seed);
template <>
std::vector<float> RandomSignal<float>(std::size_t n, std::uint32_t seed);
template <>
std::vector<std::int16_t> RandomSignal<std::int16_t>(std::size_t n, std::uint32_t seed);

template <typename T>
std::vector<float> BatchFeatures(const FrontendConfig& c, const std::vector<T>& x) {
  std::vector<float> out(c.NumFrames(x.size()) * static_cast<std::size_t>(c.n_bins));
  ComputeFeatures(c, x.data(), x.size(), out.data());
  return out;
}

bool BitIdentical(const std::vector<float>& a, const std::vector<float>& b);

// Naive real DFT of x in double precision: bins 0 .. n/2 of the real and imaginary parts.
void NaiveDft(const std::vector<double>& x, std::vector<double>& re, std::vector<double>& im);

// ------------------------------------------------------------------ tests (one group per file)
// test_fft.cc
void TestFftMatchesNaiveDft();
void TestFftRejectsBadSizes();
void TestPowerSpectrumMatchesForward();
// test_window.cc
void TestWindows();
// test_filterbank.cc
void TestFilterbankEveryBandNonEmpty();
void TestFilterbankMelScales();
void TestFilterbankSlaneyConstantArea();
void TestFilterbankKaldiPeaksAtOne();
void TestFilterbankInfiniteBinStaysInItsBands();
// test_spectrogram.cc
void TestFeaturesMatchDoubleReference();
// test_streaming_frontend.cc
void TestStreamingChunkInvariance();
void TestInputTypesAgree();
void TestNumFramesForPushSequence();
void TestCapacityTooSmallLeavesStreamUnchanged();
void TestNonFiniteSamplesThrow();
void TestReset();
void TestPreallocatedAccessors();
void TestAllocationCounterWorks();
void TestSteadyStatePushesAllocateNothing();
// test_frontend_config.cc
void TestInvalidConfigsThrow();
// test_flat_json.cc
void TestFlatJsonReadsScalars();
void TestFlatJsonRejectsWhatIsNotStrictJson();
// test_config_json.cc
void TestConfigJsonReadsPythonsJson();
void TestConfigJsonRejectsWhatPythonRejects();
// test_c_api.cc
void TestCApiFramesEqualTheCore();
void TestCApiCreateErrors();
void TestCApiFailedPushLeavesTheStreamUnchanged();
void TestCApiLastErrorIsPerThread();
void TestNsdfMatchesItsDefinition();
void TestPeriodOfASteadyToneAndOfSilence();
void TestPeriodicityRejectsBadSettingsAndAllocatesNothingPerFrame();

// test_pitch_frame_reader.cc
void TestPitchFrameReaderDecodesTheBins();
void TestPitchFrameReaderReadsASteadyTonesPeriod();
void TestPitchFrameReaderHysteresis();
void TestPitchFrameReaderHoldsTheLastSureF0();
void TestPitchFrameReaderRejectsBadSettingsAndAllocatesNothingPerFrame();

}  // namespace edgetag_test

#endif  // EDGETAG_TESTS_TEST_HELPERS_H_
