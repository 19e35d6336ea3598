#include "api/yaml.h"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>
#include <sstream>

namespace ferry::api {
namespace {

constexpr int kMaxDepth = 256;
// Aliases can expand a small file into a huge tree ("billion laughs").
constexpr std::size_t kMaxNodes = 2'000'000;

bool isOneOf(std::string_view s, std::initializer_list<std::string_view> options) {
  for (auto o : options) {
    if (s == o) return true;
  }
  return false;
}

std::optional<bool> resolveBool(std::string_view s) {
  if (isOneOf(s, {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})) return true;
  if (isOneOf(s, {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"})) return false;
  return std::nullopt;
}

bool isNullText(std::string_view s) { return isOneOf(s, {"", "~", "null", "Null", "NULL"}); }

int digitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return 99;
}

// Go's strconv.ParseInt(s, 0, 64) / ParseUint: sign, base prefixes, leading-0 octal.
std::optional<Json> resolveInteger(std::string_view s) {
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return std::nullopt;
  int base = 10;
  if (s.size() >= 2 && s[0] == '0') {
    char p = s[1];
    if (p == 'x' || p == 'X') base = 16, s.remove_prefix(2);
    else if (p == 'b' || p == 'B') base = 2, s.remove_prefix(2);
    else if (p == 'o' || p == 'O') base = 8, s.remove_prefix(2);
    else base = 8, s.remove_prefix(1);
  }
  if (s.empty()) return std::nullopt;
  unsigned __int128 v = 0;
  for (char c : s) {
    int d = digitValue(c);
    if (d >= base) return std::nullopt;
    v = v * base + d;
    if (v > std::numeric_limits<std::uint64_t>::max()) return std::nullopt;
  }
  if (negative) {
    if (v > static_cast<unsigned __int128>(std::numeric_limits<std::int64_t>::max()) + 1) return std::nullopt;
    return Json(static_cast<std::int64_t>(-static_cast<__int128>(v)));
  }
  if (v <= static_cast<unsigned __int128>(std::numeric_limits<std::int64_t>::max())) {
    return Json(static_cast<std::int64_t>(v));
  }
  return Json(static_cast<std::uint64_t>(v));
}

// go-yaml's float syntax: ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
bool looksLikeFloat(std::string_view s) {
  std::size_t i = 0;
  auto digits = [&] {
    std::size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i - start;
  };
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (digits() == 0) return false;
  } else {
    if (digits() == 0) return false;
    if (i < s.size() && s[i] == '.') {
      ++i;
      digits();
    }
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (digits() == 0) return false;
  }
  return i == s.size();
}

// A JSON number for a float, integral values as integers (Go's encoding/json
// prints float64(3) as 3, and Kubernetes then reads it as an integer).
Json numberFromDouble(double d) {
  if (std::isfinite(d) && d == std::trunc(d) && std::fabs(d) < 9.2e18) return Json(static_cast<std::int64_t>(d));
  return Json(d);
}

std::optional<Json> resolveNumber(std::string_view text) {
  std::string plain;
  plain.reserve(text.size());
  for (char c : text) {
    if (c != '_') plain.push_back(c);
  }
  if (auto i = resolveInteger(plain)) return i;
  if (looksLikeFloat(plain)) return numberFromDouble(std::strtod(plain.c_str(), nullptr));
  return std::nullopt;
}

bool isSpecialFloat(std::string_view s) {
  return isOneOf(s, {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN",
                     ".NAN"});
}

std::string where(const YAML::Node& node) {
  auto m = node.Mark();
  if (m.is_null()) return "yaml";
  return fmt::format("yaml: line {}", m.line + 1);
}

// Offset of the first byte that is not valid UTF-8 text, or npos. go-yaml
// rejects such input too; letting it through would put strings into the JSON
// that cannot be serialized again.
std::size_t invalidUtf8At(std::string_view s, bool allowControl = false) {
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    // YAML allows no control characters but tab and line breaks (and NULs
    // would make yaml-cpp guess UTF-16/32).
    if (!allowControl && c < 0x20 && c != '\t' && c != '\n' && c != '\r') return i;
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return i;
    std::uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (std::size_t k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 0x2) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    bool overlong = (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string_view::npos;
}

class Converter {
 public:
  Result<Json> convert(const YAML::Node& node, int depth) {
    if (depth > kMaxDepth) return fail(Error::invalid(where(node) + ": nesting deeper than 256 levels"));
    if (++nodes_ > kMaxNodes) return fail(Error::invalid(where(node) + ": document expands to too many nodes"));
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        return Json();
      case YAML::NodeType::Scalar:
        return scalar(node);
      case YAML::NodeType::Sequence: {
        Json out = Json::array();
        for (const auto& item : node) {
          auto v = convert(item, depth + 1);
          if (!v) return v;
          out.push_back(std::move(*v));
        }
        return out;
      }
      case YAML::NodeType::Map: {
        Json out = Json::object();
        for (const auto& kv : node) {
          auto key = keyText(kv.first);
          if (!key) return fail(key.error());
          if (out.contains(*key)) {
            return fail(Error::invalid(fmt::format("{}: mapping key \"{}\" already defined", where(kv.first), *key)));
          }
          auto v = convert(kv.second, depth + 1);
          if (!v) return v;
          out.emplace(std::move(*key), std::move(*v));
        }
        return out;
      }
    }
    return Json();
  }

 private:
  Result<Json> scalar(const YAML::Node& node) {
    const std::string& text = node.Scalar();
    if (invalidUtf8At(text, /*allowControl=*/true) != std::string_view::npos) {
      // Escapes such as "\x80" or "\U00110000" can produce bytes JSON cannot hold.
      return fail(Error::invalid(where(node) + ": string is not valid UTF-8"));
    }
    const std::string& tag = node.Tag();
    if (tag == "!" || tag == "tag:yaml.org,2002:str" || tag == "tag:yaml.org,2002:binary") return Json(text);
    if (tag == "?" || tag.empty()) return plain(node, text);
    if (tag == "tag:yaml.org,2002:null") return Json();
    if (tag == "tag:yaml.org,2002:bool") {
      if (auto b = resolveBool(text)) return Json(*b);
      return fail(Error::invalid(fmt::format("{}: cannot decode \"{}\" as a !!bool", where(node), text)));
    }
    if (tag == "tag:yaml.org,2002:int" || tag == "tag:yaml.org,2002:float") {
      if (auto n = resolveNumber(text)) return finiteNumber(node, text, std::move(*n));
      return fail(Error::invalid(fmt::format("{}: cannot decode \"{}\" as a number", where(node), text)));
    }
    // Unknown tags: keep the value as written.
    return plain(node, text);
  }

  // A float past the double range (1e999) reads as infinity, which JSON cannot hold
  // (found by yaml_fuzz: it was written back as null); refused as .inf is.
  Result<Json> finiteNumber(const YAML::Node& node, const std::string& text, Json n) {
    if (n.is_number_float() && !std::isfinite(n.get<double>()))
      return fail(Error::invalid(fmt::format("{}: {} is out of range (no JSON representation)", where(node), text)));
    return n;
  }

  Result<Json> plain(const YAML::Node& node, const std::string& text) {
    if (isNullText(text)) return Json();
    if (auto b = resolveBool(text)) return Json(*b);
    char c = text[0];
    if ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.') {
      if (auto n = resolveNumber(text)) return finiteNumber(node, text, std::move(*n));
      if (isSpecialFloat(text)) {
        return fail(Error::invalid(fmt::format("{}: {} has no JSON representation", where(node), text)));
      }
    }
    return Json(text);
  }

  // JSON object keys are strings: scalar keys are printed as Go would.
  Result<std::string> keyText(const YAML::Node& key) {
    if (key.IsNull()) return std::string("null");
    if (!key.IsScalar()) return fail(Error::invalid(where(key) + ": mapping keys must be scalars"));
    auto v = scalar(key);
    if (!v) return fail(v.error());
    if (v->is_string()) return v->get<std::string>();
    if (v->is_null()) return std::string("null");
    return v->dump();
  }

  std::size_t nodes_ = 0;
};

Error yamlError(const YAML::Exception& e) {
  if (e.mark.is_null()) return Error::invalid(fmt::format("yaml: {}", e.msg));
  return Error::invalid(fmt::format("yaml: line {}: {}", e.mark.line + 1, e.msg));
}

// Would a plain scalar with this text be read back as the same string?
bool readsBackAsString(const std::string& s) {
  if (s.empty() || isNullText(s) || resolveBool(s)) return false;
  // A document marker ("--- x", "...") at the start of a line would end the document when
  // written plain (found by yaml_fuzz: a top-level "--- a000*" read back as "a000*").
  if ((s.rfind("---", 0) == 0 || s.rfind("...", 0) == 0) &&
      (s.size() == 3 || s[3] == ' ' || s[3] == '\t' || s[3] == '\n'))
    return false;
  char c = s[0];
  if ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.') {
    if (resolveNumber(s) || isSpecialFloat(s)) return false;
  }
  return true;
}

// A "|" block reads back exactly only for ordinary multi-line text: one
// final newline, no leading or trailing blanks on lines.
bool usableAsLiteralBlock(const std::string& s) {
  if (s.size() < 2 || s.back() != '\n' || s[s.size() - 2] == '\n') return false;
  if (s.front() == ' ' || s.front() == '\n') return false;
  return s.find(" \n") == std::string::npos && s.find("\n ") == std::string::npos;
}

void emit(YAML::Emitter& out, const Json& j) {
  switch (j.type()) {
    case Json::value_t::object:
      if (j.empty()) {
        out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        return;
      }
      out << YAML::BeginMap;
      for (auto it = j.begin(); it != j.end(); ++it) {
        out << YAML::Key;
        if (readsBackAsString(it.key())) out << it.key();
        else out << YAML::DoubleQuoted << it.key();
        out << YAML::Value;
        emit(out, it.value());
      }
      out << YAML::EndMap;
      return;
    case Json::value_t::array:
      if (j.empty()) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        return;
      }
      out << YAML::BeginSeq;
      for (const auto& item : j) emit(out, item);
      out << YAML::EndSeq;
      return;
    case Json::value_t::string: {
      const auto& s = j.get_ref<const std::string&>();
      bool control = std::any_of(s.begin(), s.end(), [](char c) {
        return (static_cast<unsigned char>(c) < 0x20 && c != '\n') || c == 0x7f;
      });
      if (!control && usableAsLiteralBlock(s)) {
        out << YAML::Literal << s;
      } else if (!control && s.find('\n') == std::string::npos && readsBackAsString(s)) {
        out << s;
      } else {
        out << YAML::DoubleQuoted << s;
      }
      return;
    }
    case Json::value_t::null:
      out << YAML::Null;
      return;
    case Json::value_t::boolean:
      out << (j.get<bool>() ? "true" : "false");
      return;
    default:  // numbers: JSON's shortest round-trip spelling is valid YAML
      out << j.dump();
      return;
  }
}

// yaml-cpp 0.7's LoadAll never returns on some malformed streams (a lone ",",
// jbeder/yaml-cpp#1040): the parser reports an empty document again and again
// without consuming input, and LoadAll collects them until memory runs out.
// Walking the documents first with a handler that keeps nothing lets us stop
// that: every real document takes at least one byte of the text.
class DiscardEvents : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// An error when the parser does not get to the end of `text` (throws YAML::Exception
// for ordinary syntax errors, as LoadAll would).
std::optional<Error> parserRunsAway(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DiscardEvents discard;
  std::size_t documents = 0;
  while (parser.HandleNextDocument(discard))
    if (++documents > text.size() + 1)
      return Error::invalid(fmt::format("yaml: malformed stream: the parser made no progress after {} documents",
                                        documents - 1));
  return std::nullopt;
}

}  // namespace

Result<Json> parseJson(std::string_view text) {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {  // parse_error, and out_of_range for numbers like 8e888
    return fail(Error::invalid(fmt::format("json: {}", e.what())));
  }
}

Result<std::vector<Json>> parseYamlDocuments(std::string_view text) {
  std::vector<Json> docs;
  if (std::size_t bad = invalidUtf8At(text); bad != std::string_view::npos) {
    std::size_t line = 1 + static_cast<std::size_t>(std::count(text.begin(), text.begin() + bad, '\n'));
    return fail(Error::invalid(fmt::format("yaml: line {}: invalid UTF-8 or control character at byte offset {}", line, bad)));
  }
  try {
    std::string owned(text);
    if (auto runaway = parserRunsAway(owned)) return fail(*runaway);
    std::vector<YAML::Node> nodes = YAML::LoadAll(owned);
    docs.reserve(nodes.size());
    for (const auto& node : nodes) {
      Converter converter;
      auto doc = converter.convert(node, 0);
      if (!doc) return fail(doc.error());
      if (doc->is_null()) continue;  // empty documents between separators
      docs.push_back(std::move(*doc));
    }
  } catch (const YAML::Exception& e) {
    return fail(yamlError(e));
  } catch (const std::exception& e) {
    return fail(Error::invalid(fmt::format("yaml: {}", e.what())));
  }
  return docs;
}

Result<Json> parseYaml(std::string_view text) {
  auto docs = parseYamlDocuments(text);
  if (!docs) return fail(docs.error());
  if (docs->empty()) return Json();
  if (docs->size() > 1) return fail(Error::invalid(fmt::format("yaml: expected one document, found {}", docs->size())));
  return std::move(docs->front());
}

std::string toYaml(const Json& doc) {
  YAML::Emitter out;
  out.SetIndent(2);
  emit(out, doc);
  std::string text = out.c_str();
  text.push_back('\n');
  return text;
}

std::string toYamlDocuments(const std::vector<Json>& docs) {
  std::string text;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    if (i) text += "---\n";
    text += toYaml(docs[i]);
  }
  return text;
}

}  // namespace ferry::api
