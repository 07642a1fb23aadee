// FrontendConfigFromJson: the JSON that runtime/frontend/config.py's to_json() writes, read back exactly.

#include "test_helpers.h"

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgetag/config_json.h"

namespace edgetag_test {

using edgetag::FrontendConfigFromJson;

namespace {

// FrontendConfig.preset(...).to_json(), verbatim (Python 3.11).
const char kDefaultJson[] =
    "{\"bins_per_octave\": 12, \"compression\": \"log\", \"db_ref\": 1.0, \"filter_norm\": \"slaney\", "
    "\"filterbank\": \"mel_slaney\", \"fmax\": 8000.0, \"fmin\": 50.0, \"hop_length\": 160, \"log1p_scale\": "
    "10000.0, \"log_floor\": 1e-06, \"n_bins\": 64, \"n_fft\": 512, \"preemphasis\": 0.0, \"remove_dc_offset\": "
    "false, \"sample_rate\": 16000, \"spectrum\": \"power\", \"win_length\": 400, \"window\": \"hann\", "
    "\"window_periodic\": true, \"window_placement\": \"left\"}";
const char kKaldiJson[] =
    "{\"bins_per_octave\": 12, \"compression\": \"log_clamp\", \"db_ref\": 1.0, \"filter_norm\": \"none\", "
    "\"filterbank\": \"mel_kaldi\", \"fmax\": 8000.0, \"fmin\": 20.0, \"hop_length\": 160, \"log1p_scale\": "
    "10000.0, \"log_floor\": 1.1920928955078125e-07, \"n_bins\": 80, \"n_fft\": 512, \"preemphasis\": 0.0, "
    "\"remove_dc_offset\": false, \"sample_rate\": 16000, \"spectrum\": \"power\", \"win_length\": 400, "
    "\"window\": \"hann\", \"window_periodic\": false, \"window_placement\": \"left\"}";

bool SameConfig(const FrontendConfig& a, const FrontendConfig& b) {
  return a.sample_rate == b.sample_rate && a.win_length == b.win_length && a.hop_length == b.hop_length &&
         a.n_fft == b.n_fft && a.window == b.window && a.window_periodic == b.window_periodic &&
         a.window_placement == b.window_placement && a.remove_dc_offset == b.remove_dc_offset &&
         a.preemphasis == b.preemphasis && a.spectrum == b.spectrum && a.filterbank == b.filterbank &&
         a.filter_norm == b.filter_norm && a.n_bins == b.n_bins && a.fmin == b.fmin && a.fmax == b.fmax &&
         a.bins_per_octave == b.bins_per_octave && a.compression == b.compression && a.log_floor == b.log_floor &&
         a.log1p_scale == b.log1p_scale && a.db_ref == b.db_ref;
}

// kDefaultJson with `from` replaced by `to` (once).
std::string Edited(const char* from, const char* to) {
  std::string s = kDefaultJson;
  const auto at = s.find(from);
  if (at == std::string::npos) return "missing: " + std::string(from);
  return s.replace(at, std::strlen(from), to);
}

}  // namespace

void TestConfigJsonReadsPythonsJson() {
  CHECK(SameConfig(FrontendConfigFromJson(kDefaultJson), DefaultPreset()));
  CHECK(SameConfig(FrontendConfigFromJson(kKaldiJson), KaldiPreset()));  // 1.1920928955078125e-07: every digit
  // An integer in a float field is fine (Python's from_json takes it too); every digit of a double counts.
  CHECK(FrontendConfigFromJson(Edited("\"fmax\": 8000.0", "\"fmax\": 8000")).fmax == 8000.0);
  CHECK(FrontendConfigFromJson(Edited("\"fmin\": 50.0", "\"fmin\": 65.40639132514966")).fmin == 65.40639132514966);
}

void TestConfigJsonRejectsWhatPythonRejects() {
  struct Bad {
    std::string json;
    const char* message;
  };
  const std::vector<Bad> bad = {
      {"{", "invalid JSON"},
      {Edited("\"n_bins\": 64, ", ""), "missing field(s) n_bins"},
      {Edited("\"n_bins\": 64", "\"n_bins\": 64, \"dither\": 1.0"), "unknown field(s) dither"},
      {Edited("\"n_bins\": 64", "\"n_bins\": 64.0"), "n_bins must be an integer, got 64.0"},
      {Edited("\"n_bins\": 64", "\"n_bins\": true"), "n_bins must be an integer, got true/false"},
      {Edited("\"n_bins\": 64", "\"n_bins\": 99999999999"), "n_bins is out of range"},
      {Edited("\"fmax\": 8000.0", "\"fmax\": \"8000\""), "fmax must be a number, got a string"},
      {Edited("\"fmax\": 8000.0", "\"fmax\": 1e999"), "fmax is not a finite double"},
      {Edited("\"window_periodic\": true", "\"window_periodic\": 1"), "window_periodic must be true or false"},
      {Edited("\"window\": \"hann\"", "\"window\": \"hanning\""), "window must be one of hann, hamming, rectangular"},
      {Edited("\"compression\": \"log\"", "\"compression\": null"), "compression must be a string, got null"},
      {Edited("\"fmax\": 8000.0", "\"fmax\": 9000.0"), "fmax is above the Nyquist frequency"},  // Validate()
  };
  for (const Bad& b : bad) {
    std::string message = "(no exception)";
    try {
      FrontendConfigFromJson(b.json);
    } catch (const std::invalid_argument& e) {
      message = e.what();
    }
    CHECK_MSG(message.rfind("invalid front-end config: ", 0) == 0 && message.find(b.message) != std::string::npos,
              "wanted '" << b.message << "', got '" << message << "'");
  }
}

}  // namespace edgetag_test
