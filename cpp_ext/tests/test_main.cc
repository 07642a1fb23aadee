// Unit tests of the edgetag C++ core, with no third-party framework: the
// harness, the list of tests and main. The tests live in one file per unit
// (test_fft.cc, test_window.cc, ...), their shared helpers in test_helpers.h.
//
// Build: cmake -S . -B build -DEDGETAG_BUILD_PYTHON=OFF -DEDGETAG_BUILD_TESTS=ON
//        cmake --build build && build/cpp_ext/edgetag_core_tests [name-filter]
// Prints one line per test and "N passed, N failed" last; exits non-zero on failure.

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "test_helpers.h"

namespace edgetag_test {

namespace {

int g_check_failures = 0;  // failures in the current test

struct TestCase {
  const char* name;
  void (*fn)();
};

const TestCase kTests[] = {
    {"fft_matches_naive_dft", TestFftMatchesNaiveDft},
    {"fft_rejects_bad_sizes", TestFftRejectsBadSizes},
    {"power_spectrum_matches_forward", TestPowerSpectrumMatchesForward},
    {"windows", TestWindows},
    {"filterbank_every_band_non_empty", TestFilterbankEveryBandNonEmpty},
    {"filterbank_mel_scales", TestFilterbankMelScales},
    {"filterbank_slaney_constant_area", TestFilterbankSlaneyConstantArea},
    {"filterbank_kaldi_peaks_at_one", TestFilterbankKaldiPeaksAtOne},
    {"filterbank_infinite_bin_stays_in_its_bands", TestFilterbankInfiniteBinStaysInItsBands},
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
    {"flat_json_reads_scalars", TestFlatJsonReadsScalars},
    {"flat_json_rejects_what_is_not_strict_json", TestFlatJsonRejectsWhatIsNotStrictJson},
    {"config_json_reads_pythons_json", TestConfigJsonReadsPythonsJson},
    {"config_json_rejects_what_python_rejects", TestConfigJsonRejectsWhatPythonRejects},
    {"c_api_frames_equal_the_core", TestCApiFramesEqualTheCore},
    {"c_api_create_errors", TestCApiCreateErrors},
    {"c_api_failed_push_leaves_the_stream_unchanged", TestCApiFailedPushLeavesTheStreamUnchanged},
    {"c_api_last_error_is_per_thread", TestCApiLastErrorIsPerThread},
    {"nsdf_matches_its_definition", TestNsdfMatchesItsDefinition},
    {"period_of_a_steady_tone_and_of_silence", TestPeriodOfASteadyToneAndOfSilence},
    {"periodicity_bad_settings_and_no_allocation", TestPeriodicityRejectsBadSettingsAndAllocatesNothingPerFrame},
    {"pitch_frame_reader_decodes_the_bins", TestPitchFrameReaderDecodesTheBins},
    {"pitch_frame_reader_reads_a_steady_tones_period", TestPitchFrameReaderReadsASteadyTonesPeriod},
    {"pitch_frame_reader_hysteresis", TestPitchFrameReaderHysteresis},
    {"pitch_frame_reader_holds_the_last_sure_f0", TestPitchFrameReaderHoldsTheLastSureF0},
    {"pitch_frame_reader_bad_settings_and_no_allocation", TestPitchFrameReaderRejectsBadSettingsAndAllocatesNothingPerFrame},
};

// Runs the tests whose names contain `filter` (all if null); returns the exit status.
int RunTests(const char* filter) {
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

}  // namespace

void ReportFailure(const char* file, int line, const std::string& what) {
  ++g_check_failures;
  if (g_check_failures <= 20) std::printf("    %s:%d: CHECK failed: %s\n", file, line, what.c_str());
  if (g_check_failures == 21) std::printf("    (further failures of this test not shown)\n");
}

}  // namespace edgetag_test

int main(int argc, char** argv) {
  return edgetag_test::RunTests(argc > 1 ? argv[1] : nullptr);  // optional substring of test names
}
