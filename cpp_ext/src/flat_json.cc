#include "edgetag/flat_json.h"

#include <cstdint>
#include <stdexcept>
#include <string>

namespace edgetag {

namespace {

class Reader {
 public:
  explicit Reader(std::string_view text) : s_(text) {}

  std::map<std::string, JsonScalar> Object() {
    std::map<std::string, JsonScalar> out;
    SkipSpace();
    Expect('{', "a JSON object");
    SkipSpace();
    if (Peek() == '}') {
      ++pos_;
    } else {
      for (;;) {
        SkipSpace();
        const std::size_t key_at = pos_;
        if (Peek() != '"') Fail("expected a key (a string)");
        std::string key = String();
        SkipSpace();
        Expect(':', "':' after a key");
        SkipSpace();
        JsonScalar value = Value(key);
        if (!out.emplace(std::move(key), std::move(value)).second) {
          pos_ = key_at;
          Fail("repeated key");
        }
        SkipSpace();
        if (Peek() == ',') {
          ++pos_;
          continue;
        }
        Expect('}', "',' or '}'");
        break;
      }
    }
    SkipSpace();
    if (pos_ != s_.size()) Fail("text after the object");
    return out;
  }

 private:
  [[noreturn]] void Fail(const std::string& what) const {
    throw std::invalid_argument("invalid JSON at byte " + std::to_string(pos_) + ": " + what);
  }
  char Peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  bool AtEnd() const { return pos_ >= s_.size(); }
  void Expect(char c, const char* what) {
    if (AtEnd() || s_[pos_] != c) Fail(std::string("expected ") + what);
    ++pos_;
  }
  void SkipSpace() {
    while (!AtEnd() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool Literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  JsonScalar Value(const std::string& key) {
    JsonScalar v;
    const char c = Peek();
    if (c == '"') {
      v.kind = JsonScalar::Kind::kString;
      v.text = String();
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = JsonScalar::Kind::kNumber;
      v.text = Number();
    } else if (Literal("true")) {
      v.kind = JsonScalar::Kind::kBool;
      v.boolean = true;
    } else if (Literal("false")) {
      v.kind = JsonScalar::Kind::kBool;
    } else if (Literal("null")) {
      v.kind = JsonScalar::Kind::kNull;
    } else if (c == '{' || c == '[') {
      Fail("the value of '" + key + "' is an object or array; only a flat object of scalars is read here");
    } else {
      Fail("the value of '" + key + "' is not a JSON value (NaN and Infinity are not JSON)");
    }
    return v;
  }

  // -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, returned as written.
  std::string Number() {
    const std::size_t start = pos_;
    auto digits = [this] {
      const std::size_t from = pos_;
      while (!AtEnd() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ - from;
    };
    if (Peek() == '-') ++pos_;
    if (Peek() == '0') {
      ++pos_;
    } else if (digits() == 0) {
      Fail("a number needs digits");
    }
    if (Peek() == '.') {
      ++pos_;
      if (digits() == 0) Fail("a number needs digits after '.'");
    }
    if (Peek() == 'e' || Peek() == 'E') {
      ++pos_;
      if (Peek() == '+' || Peek() == '-') ++pos_;
      if (digits() == 0) Fail("a number needs digits in its exponent");
    }
    return std::string(s_.substr(start, pos_ - start));
  }

  unsigned Hex4() {
    unsigned v = 0;
    for (int i = 0; i < 4; ++i, ++pos_) {
      const char c = Peek();
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        Fail("\\u needs four hex digits");
      }
    }
    return v;
  }

  static void AppendUtf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string String() {
    Expect('"', "'\"'");
    std::string out;
    for (;;) {
      if (AtEnd()) Fail("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) {
        --pos_;
        Fail("control character in a string");
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      const char e = Peek();
      ++pos_;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = Hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // a UTF-16 surrogate pair encodes one code point
            if (!Literal("\\u")) Fail("unpaired UTF-16 surrogate");
            const std::uint32_t low = Hex4();
            if (low < 0xDC00 || low >= 0xE000) Fail("unpaired UTF-16 surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            Fail("unpaired UTF-16 surrogate");
          }
          AppendUtf8(out, cp);
          break;
        }
        default:
          --pos_;
          Fail("unknown escape in a string");
      }
    }
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

}  // namespace

std::map<std::string, JsonScalar> ParseFlatJsonObject(std::string_view text) { return Reader(text).Object(); }

}  // namespace edgetag
