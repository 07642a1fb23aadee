// ParseFlatJsonObject: the strict JSON reader of flat objects (what json.dumps writes of a config).

#include "test_helpers.h"

#include <stdexcept>
#include <string>

#include "edgetag/flat_json.h"

namespace edgetag_test {

using edgetag::JsonScalar;
using edgetag::ParseFlatJsonObject;

void TestFlatJsonReadsScalars() {
  const auto f = ParseFlatJsonObject(
      " {\"a\": 12, \"b\": -0.5e-3, \"c\": \"h\\u00e9\\\"\\n\", \"d\": true,\n\"e\": false, \"f\": null,"
      " \"g\": \"\\ud83c\\udfb5\"}\t");
  CHECK(f.size() == 7);
  CHECK(f.at("a").kind == JsonScalar::Kind::kNumber && f.at("a").text == "12");
  CHECK(f.at("b").kind == JsonScalar::Kind::kNumber && f.at("b").text == "-0.5e-3");
  CHECK(f.at("c").kind == JsonScalar::Kind::kString && f.at("c").text == "h\xc3\xa9\"\n");
  CHECK(f.at("d").kind == JsonScalar::Kind::kBool && f.at("d").boolean);
  CHECK(f.at("e").kind == JsonScalar::Kind::kBool && !f.at("e").boolean);
  CHECK(f.at("f").kind == JsonScalar::Kind::kNull);
  CHECK(f.at("g").text == "\xf0\x9f\x8e\xb5");  // a surrogate pair is one code point (U+1F3B5)
  CHECK(ParseFlatJsonObject("{}").empty());
}

void TestFlatJsonRejectsWhatIsNotStrictJson() {
  const char* bad[] = {
      "",                     // no object
      "[1, 2]",               // not an object
      "{\"a\": 1,}",          // trailing comma
      "{\"a\": 1} x",         // text after the object
      "{\"a\": 1, \"a\": 2}", // repeated key
      "{a: 1}",               // unquoted key
      "{\"a\": NaN}",         // not JSON
      "{\"a\": Infinity}",
      "{\"a\": 01}",          // leading zero
      "{\"a\": 1.}",          // no digits after the point
      "{\"a\": .5}",
      "{\"a\": 1e}",
      "{\"a\": +1}",
      "{\"a\": {\"b\": 1}}",  // nested object
      "{\"a\": [1]}",         // array
      "{\"a\": \"x}",         // unterminated string
      "{\"a\": \"\\x\"}",     // unknown escape
      "{\"a\": \"\\ud800\"}", // lone surrogate
      "{\"a\": \"tab\there\"}",
      "{\"a\" 1}",
      "{\"a\": tru}",
  };
  for (const char* text : bad) {
    bool threw = false;
    try {
      ParseFlatJsonObject(text);
    } catch (const std::invalid_argument& e) {
      threw = std::string(e.what()).find("invalid JSON at byte") != std::string::npos;
    }
    CHECK_MSG(threw, "accepted or wrong message: " << text);
  }
}

}  // namespace edgetag_test
