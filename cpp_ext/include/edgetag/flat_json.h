// ParseFlatJsonObject: a strict reader for one JSON object whose values are
// scalars (string, number, true/false, null).
//
// That is all a front-end config is (runtime/frontend/config.py writes it with
// json.dumps), so the C API needs no JSON library. The grammar is RFC 8259's:
// no comments, no trailing commas, no NaN/Infinity; nested objects and arrays
// and repeated keys are errors. Numbers are kept as their JSON text, so the
// reader of a field decides whether it must be an integer.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace edgetag {

struct JsonScalar {
  enum class Kind { kString, kNumber, kBool, kNull };
  Kind kind = Kind::kNull;
  std::string text;  // kString: the decoded string (UTF-8); kNumber: the number as written
  bool boolean = false;
};

// Throws std::invalid_argument naming the problem and its byte offset.
std::map<std::string, JsonScalar> ParseFlatJsonObject(std::string_view text);

}  // namespace edgetag
