#include "edgetag/config_json.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <locale>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "edgetag/flat_json.h"

namespace edgetag {

namespace {

using Fields = std::map<std::string, JsonScalar>;

[[noreturn]] void Fail(const std::string& message) {
  throw std::invalid_argument("invalid front-end config: " + message);
}

const char* KindName(JsonScalar::Kind kind) {
  switch (kind) {
    case JsonScalar::Kind::kString: return "a string";
    case JsonScalar::Kind::kNumber: return "a number";
    case JsonScalar::Kind::kBool: return "true/false";
    case JsonScalar::Kind::kNull: return "null";
  }
  return "?";
}

const JsonScalar& Get(const Fields& f, const char* name, JsonScalar::Kind kind, const char* wanted) {
  const JsonScalar& v = f.at(name);  // presence is checked first, for every field at once
  if (v.kind != kind) Fail(std::string(name) + " must be " + wanted + ", got " + KindName(v.kind));
  return v;
}

int Int(const Fields& f, const char* name) {
  const std::string& text = Get(f, name, JsonScalar::Kind::kNumber, "an integer").text;
  long long value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec == std::errc::result_out_of_range || (ec == std::errc() && ptr == end &&
      (value < std::numeric_limits<int>::min() || value > std::numeric_limits<int>::max()))) {
    Fail(std::string(name) + " is out of range: " + text);
  }
  if (ec != std::errc() || ptr != end) Fail(std::string(name) + " must be an integer, got " + text);
  return static_cast<int>(value);
}

double Double(const Fields& f, const char* name) {
  const std::string& text = Get(f, name, JsonScalar::Kind::kNumber, "a number").text;
  // The classic locale: a decimal point whatever the program's locale says (strtod would follow it).
  std::istringstream in(text);
  in.imbue(std::locale::classic());
  double value = 0.0;
  in >> value;
  if (in.fail() || in.peek() != std::char_traits<char>::eof() || !std::isfinite(value)) {
    Fail(std::string(name) + " is not a finite double: " + text);
  }
  return value;
}

bool Bool(const Fields& f, const char* name) { return Get(f, name, JsonScalar::Kind::kBool, "true or false").boolean; }

template <typename Enum>
Enum Named(const Fields& f, const char* name, std::initializer_list<std::pair<const char*, Enum>> table) {
  const std::string& value = Get(f, name, JsonScalar::Kind::kString, "a string").text;
  std::string known;
  for (const auto& [text, e] : table) {
    if (value == text) return e;
    known += known.empty() ? text : std::string(", ") + text;
  }
  Fail(std::string(name) + " must be one of " + known + "; got '" + value + "'");
}

}  // namespace

FrontendConfig FrontendConfigFromJson(std::string_view json) {
  Fields f;
  try {
    f = ParseFlatJsonObject(json);
  } catch (const std::invalid_argument& e) {
    Fail(e.what());
  }
  static const std::set<std::string> kFields = {
      "sample_rate", "win_length", "hop_length", "n_fft", "window", "window_periodic", "window_placement",
      "remove_dc_offset", "preemphasis", "spectrum", "filterbank", "filter_norm", "n_bins", "fmin", "fmax",
      "bins_per_octave", "compression", "log_floor", "log1p_scale", "db_ref"};
  // A model file carries the full config, so that a change of defaults never changes its features.
  std::string unknown, missing;
  for (const auto& [key, value] : f) {
    if (!kFields.count(key)) unknown += (unknown.empty() ? "" : ", ") + key;
  }
  for (const auto& key : kFields) {
    if (!f.count(key)) missing += (missing.empty() ? "" : ", ") + key;
  }
  if (!unknown.empty()) Fail("unknown field(s) " + unknown);
  if (!missing.empty()) Fail("missing field(s) " + missing);

  FrontendConfig c;
  c.sample_rate = Int(f, "sample_rate");
  c.win_length = Int(f, "win_length");
  c.hop_length = Int(f, "hop_length");
  c.n_fft = Int(f, "n_fft");
  c.window = Named<WindowKind>(f, "window", {{"hann", WindowKind::kHann},
                                             {"hamming", WindowKind::kHamming},
                                             {"rectangular", WindowKind::kRectangular}});
  c.window_periodic = Bool(f, "window_periodic");
  c.window_placement = Named<WindowPlacement>(
      f, "window_placement", {{"left", WindowPlacement::kLeft}, {"center", WindowPlacement::kCenter}});
  c.remove_dc_offset = Bool(f, "remove_dc_offset");
  c.preemphasis = Double(f, "preemphasis");
  c.spectrum = Named<SpectrumKind>(f, "spectrum", {{"power", SpectrumKind::kPower},
                                                   {"magnitude", SpectrumKind::kMagnitude}});
  c.filterbank = Named<FilterbankKind>(f, "filterbank", {{"mel_htk", FilterbankKind::kMelHtk},
                                                         {"mel_slaney", FilterbankKind::kMelSlaney},
                                                         {"mel_kaldi", FilterbankKind::kMelKaldi},
                                                         {"logfreq", FilterbankKind::kLogFreq}});
  c.filter_norm = Named<FilterNorm>(f, "filter_norm", {{"none", FilterNorm::kNone}, {"slaney", FilterNorm::kSlaney}});
  c.n_bins = Int(f, "n_bins");
  c.fmin = Double(f, "fmin");
  c.fmax = Double(f, "fmax");
  c.bins_per_octave = Int(f, "bins_per_octave");
  c.compression = Named<CompressionKind>(f, "compression", {{"log", CompressionKind::kLog},
                                                            {"log_clamp", CompressionKind::kLogClamp},
                                                            {"log10_1p", CompressionKind::kLog10Plus1},
                                                            {"db", CompressionKind::kDb},
                                                            {"none", CompressionKind::kNone}});
  c.log_floor = Double(f, "log_floor");
  c.log1p_scale = Double(f, "log1p_scale");
  c.db_ref = Double(f, "db_ref");
  c.Validate();
  return c;
}

}  // namespace edgetag
