// FrontendConfig validation: invalid configs are rejected by Validate, StreamingFrontend and
// ComputeFeatures; the presets pass.

#include "test_helpers.h"

#include <cstdio>
#include <exception>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace edgetag_test {

using edgetag::FilterbankKind;

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

}  // namespace edgetag_test
