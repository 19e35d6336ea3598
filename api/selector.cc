#include "api/selector.h"

#include "api/names.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace ferry::api {
namespace {

using Op = LabelRequirement::Operator;

const char* opText(Op op) {
  switch (op) {
    case Op::Equals: return "=";
    case Op::NotEquals: return "!=";
    case Op::In: return " in ";
    case Op::NotIn: return " notin ";
    case Op::Exists: return "";
    case Op::DoesNotExist: return "!";
    case Op::GreaterThan: return ">";
    case Op::LessThan: return "<";
  }
  return "";
}

bool parseInt(std::string_view text, long long& out) {
  if (text.empty()) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && ptr == text.data() + text.size();
}

// The lexer of Kubernetes' selector grammar.
enum class Token { End, Identifier, Not, NotEquals, OpenParen, CloseParen, Comma, Equals, DoubleEquals, Greater, Less, In, NotIn };

bool isSpecial(char c) { return c == '=' || c == '!' || c == '(' || c == ')' || c == ',' || c == '>' || c == '<'; }
bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}
  // Reads the next token; identifier text goes to `text`.
  Token next(std::string_view& text) {
    while (pos_ < s_.size() && isSpace(s_[pos_])) ++pos_;
    if (pos_ >= s_.size()) {
      text = {};
      return Token::End;
    }
    std::size_t start = pos_;
    char c = s_[pos_];
    if (isSpecial(c)) {
      ++pos_;
      if (c == '!' && pos_ < s_.size() && s_[pos_] == '=') {
        ++pos_;
        text = s_.substr(start, 2);
        return Token::NotEquals;
      }
      if (c == '=' && pos_ < s_.size() && s_[pos_] == '=') {
        ++pos_;
        text = s_.substr(start, 2);
        return Token::DoubleEquals;
      }
      text = s_.substr(start, 1);
      switch (c) {
        case '!': return Token::Not;
        case '(': return Token::OpenParen;
        case ')': return Token::CloseParen;
        case ',': return Token::Comma;
        case '=': return Token::Equals;
        case '>': return Token::Greater;
        default: return Token::Less;
      }
    }
    while (pos_ < s_.size() && !isSpace(s_[pos_]) && !isSpecial(s_[pos_])) ++pos_;
    text = s_.substr(start, pos_ - start);
    if (text == "in") return Token::In;
    if (text == "notin") return Token::NotIn;
    return Token::Identifier;
  }
  Token peek() {
    std::size_t saved = pos_;
    std::string_view ignored;
    Token t = next(ignored);
    pos_ = saved;
    return t;
  }
  std::size_t position() const { return pos_; }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

}  // namespace

bool LabelRequirement::matches(const std::string* value) const {
  switch (op) {
    case Op::Equals:
    case Op::In:
      return value && std::binary_search(values.begin(), values.end(), *value);
    case Op::NotEquals:
    case Op::NotIn:
      return !value || !std::binary_search(values.begin(), values.end(), *value);
    case Op::Exists:
      return value != nullptr;
    case Op::DoesNotExist:
      return value == nullptr;
    case Op::GreaterThan:
    case Op::LessThan: {
      long long have = 0, want = 0;
      if (!value || values.size() != 1 || !parseInt(*value, have) || !parseInt(values[0], want)) return false;
      return op == Op::GreaterThan ? have > want : have < want;
    }
  }
  return false;
}

LabelSelector LabelSelector::nothing() {
  LabelSelector s;
  s.nothing_ = true;
  return s;
}

Status LabelSelector::add(LabelRequirement req, std::string_view term) {
  auto keyErrors = qualifiedNameErrors(req.key);
  if (!keyErrors.empty()) {
    return fail(Error::invalid(fmt::format("label selector term \"{}\": key \"{}\": {}", term, req.key, keyErrors[0])));
  }
  for (const auto& v : req.values) {
    auto valueErrors = labelValueErrors(v);
    if (!valueErrors.empty()) {
      return fail(Error::invalid(fmt::format("label selector term \"{}\": value \"{}\": {}", term, v, valueErrors[0])));
    }
  }
  if ((req.op == Op::GreaterThan || req.op == Op::LessThan)) {
    long long ignored = 0;
    if (req.values.size() != 1 || !parseInt(req.values[0], ignored)) {
      return fail(Error::invalid(fmt::format("label selector term \"{}\": for '>' and '<' the value must be an integer", term)));
    }
  }
  std::sort(req.values.begin(), req.values.end());
  req.values.erase(std::unique(req.values.begin(), req.values.end()), req.values.end());
  // Kubernetes keeps requirements sorted by key (stable for equal keys).
  auto pos = std::upper_bound(requirements_.begin(), requirements_.end(), req.key,
                              [](const std::string& k, const LabelRequirement& r) { return k < r.key; });
  requirements_.insert(pos, std::move(req));
  return {};
}

Result<LabelSelector> LabelSelector::parse(std::string_view text) {
  LabelSelector sel;
  Lexer lex(text);
  auto error = [&](std::string_view why) {
    return fail(Error::invalid(fmt::format("label selector \"{}\": {} at offset {}", text, why, lex.position())));
  };
  std::string_view tok;
  while (true) {
    std::size_t termStart = lex.position();
    while (termStart < text.size() && isSpace(text[termStart])) ++termStart;
    Token t = lex.next(tok);
    if (t == Token::End) {
      if (sel.requirements_.empty()) return sel;  // "" selects everything
      return error("expected a requirement after ','");
    }
    LabelRequirement req;
    if (t == Token::Not) {
      if (lex.next(tok) != Token::Identifier) return error("expected a label key after '!'");
      req.key = tok;
      req.op = Op::DoesNotExist;
    } else if (t == Token::Identifier) {
      req.key = tok;
      Token op = lex.peek();
      if (op == Token::End || op == Token::Comma) {
        req.op = Op::Exists;
      } else {
        lex.next(tok);
        switch (op) {
          case Token::Equals:
          case Token::DoubleEquals:
          case Token::NotEquals:
          case Token::Greater:
          case Token::Less: {
            req.op = op == Token::NotEquals ? Op::NotEquals
                     : op == Token::Greater ? Op::GreaterThan
                     : op == Token::Less    ? Op::LessThan
                                            : Op::Equals;
            Token v = lex.peek();
            if (v == Token::Identifier || v == Token::In || v == Token::NotIn) {
              lex.next(tok);
              req.values.emplace_back(tok);
            } else if (v == Token::End || v == Token::Comma) {
              req.values.emplace_back();  // "key=" selects an empty value
            } else {
              return error(fmt::format("expected a value after '{}' for key \"{}\"", opText(req.op), req.key));
            }
            break;
          }
          case Token::In:
          case Token::NotIn: {
            req.op = op == Token::In ? Op::In : Op::NotIn;
            if (lex.next(tok) != Token::OpenParen) {
              return error(fmt::format("expected '(' after '{}' for key \"{}\"", op == Token::In ? "in" : "notin", req.key));
            }
            // Values separated by commas; empty entries are empty strings.
            bool expectValue = true;
            while (true) {
              Token v = lex.next(tok);
              if (v == Token::CloseParen) {
                if (expectValue) req.values.emplace_back();
                break;
              }
              if (v == Token::Comma) {
                if (expectValue) req.values.emplace_back();
                expectValue = true;
                continue;
              }
              if ((v == Token::Identifier || v == Token::In || v == Token::NotIn) && expectValue) {
                req.values.emplace_back(tok);
                expectValue = false;
                continue;
              }
              return error(fmt::format("unterminated value list for key \"{}\"", req.key));
            }
            break;
          }
          default:
            return error(fmt::format("unexpected \"{}\" after key \"{}\" (expected =, ==, !=, in, notin, >, < or ',')",
                                     tok, req.key));
        }
      }
    } else {
      return error(fmt::format("unexpected \"{}\" where a label key was expected", tok));
    }
    std::string_view term = text.substr(termStart, lex.position() - termStart);
    if (auto st = sel.add(std::move(req), term); !st) return fail(st.error());
    Token after = lex.next(tok);
    if (after == Token::End) return sel;
    if (after != Token::Comma) return error(fmt::format("expected ',' before \"{}\"", tok));
  }
}

Result<LabelSelector> LabelSelector::fromJson(const Json& selector) {
  if (selector.is_null()) return nothing();
  if (!selector.is_object()) return fail(Error::invalid("selector: must be an object"));
  LabelSelector sel;
  if (auto it = selector.find("matchLabels"); it != selector.end() && !it->is_null()) {
    if (!it->is_object()) return fail(Error::invalid("selector.matchLabels: must be an object"));
    for (auto& [key, value] : it->items()) {
      if (!value.is_string()) {
        return fail(Error::invalid(fmt::format("selector.matchLabels.{}: must be a string", key)));
      }
      LabelRequirement req{key, Op::Equals, {value.get<std::string>()}};
      if (auto st = sel.add(std::move(req), fmt::format("matchLabels {}={}", key, value.get<std::string>())); !st) {
        return fail(st.error());
      }
    }
  }
  if (auto it = selector.find("matchExpressions"); it != selector.end() && !it->is_null()) {
    if (!it->is_array()) return fail(Error::invalid("selector.matchExpressions: must be a list"));
    for (std::size_t i = 0; i < it->size(); ++i) {
      const Json& e = (*it)[i];
      std::string where = fmt::format("selector.matchExpressions[{}]", i);
      if (!e.is_object()) return fail(Error::invalid(where + ": must be an object"));
      LabelRequirement req;
      req.key = at<std::string>(e, {"key"});
      std::string op = at<std::string>(e, {"operator"});
      if (op == "In") req.op = Op::In;
      else if (op == "NotIn") req.op = Op::NotIn;
      else if (op == "Exists") req.op = Op::Exists;
      else if (op == "DoesNotExist") req.op = Op::DoesNotExist;
      else {
        return fail(Error::invalid(fmt::format("{}.operator: Unsupported value: \"{}\": supported values: \"In\", "
                                               "\"NotIn\", \"Exists\", \"DoesNotExist\"",
                                               where, op)));
      }
      if (auto v = e.find("values"); v != e.end() && !v->is_null()) {
        if (!v->is_array()) return fail(Error::invalid(where + ".values: must be a list"));
        for (const auto& item : *v) {
          if (!item.is_string()) return fail(Error::invalid(where + ".values: must be strings"));
          req.values.push_back(item.get<std::string>());
        }
      }
      bool setOp = req.op == Op::In || req.op == Op::NotIn;
      if (setOp && req.values.empty()) {
        return fail(Error::invalid(where + ".values: Required value: must be specified when `operator` is 'In' or 'NotIn'"));
      }
      if (!setOp && !req.values.empty()) {
        return fail(Error::invalid(where +
                                   ".values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"));
      }
      if (auto st = sel.add(std::move(req), where); !st) return fail(st.error());
    }
  }
  return sel;
}

LabelSelector LabelSelector::fromMap(const Labels& labels) {
  LabelSelector sel;
  sel.requirements_.reserve(labels.size());
  for (const auto& [k, v] : labels) sel.requirements_.push_back(LabelRequirement{k, Op::Equals, {v}});
  return sel;  // std::map iteration is already sorted by key
}

template <class Lookup>
bool LabelSelector::matchWith(const Lookup& lookup) const {
  if (nothing_) return false;
  for (const auto& req : requirements_) {
    if (!req.matches(lookup(req.key))) return false;
  }
  return true;
}

bool LabelSelector::matches(const Labels& labels) const {
  return matchWith([&](const std::string& key) -> const std::string* {
    auto it = labels.find(key);
    return it == labels.end() ? nullptr : &it->second;
  });
}

bool LabelSelector::matchesJson(const Json& labels) const {
  return matchWith([&](const std::string& key) -> const std::string* {
    if (!labels.is_object()) return nullptr;
    auto it = labels.find(key);
    if (it == labels.end() || !it->is_string()) return nullptr;
    return &it->get_ref<const std::string&>();
  });
}

bool LabelSelector::matchesObject(const Json& obj) const {
  static const Json empty = Json::object();
  if (!obj.is_object()) return matchesJson(empty);
  auto md = obj.find("metadata");
  if (md == obj.end() || !md->is_object()) return matchesJson(empty);
  auto labels = md->find("labels");
  return matchesJson(labels == md->end() ? empty : *labels);
}

std::string LabelSelector::toString() const {
  std::vector<std::string> parts;
  for (const auto& r : requirements_) {
    switch (r.op) {
      case Op::Exists: parts.push_back(r.key); break;
      case Op::DoesNotExist: parts.push_back("!" + r.key); break;
      case Op::In:
      case Op::NotIn: parts.push_back(r.key + opText(r.op) + "(" + join(r.values, ",") + ")"); break;
      default: parts.push_back(r.key + opText(r.op) + (r.values.empty() ? "" : r.values[0])); break;
    }
  }
  return join(parts, ",");
}

// ---- field selectors ----

Result<FieldSelector> FieldSelector::parse(std::string_view text) {
  FieldSelector sel;
  auto bad = [&](std::string_view term, std::string_view why) {
    return fail(Error::invalid(fmt::format("field selector \"{}\": term \"{}\": {}", text, term, why)));
  };
  std::size_t start = 0;
  while (start <= text.size()) {
    // Split on the next unescaped comma.
    std::size_t end = start;
    while (end < text.size() && text[end] != ',') end += text[end] == '\\' ? 2 : 1;
    end = std::min(end, text.size());
    std::string_view term = text.substr(start, end - start);
    start = end + 1;
    if (term.empty()) {
      if (end >= text.size()) break;
      continue;
    }
    // Find the first operator, skipping escaped characters.
    std::size_t opPos = std::string_view::npos, opLen = 0;
    bool negated = false;
    for (std::size_t i = 0; i < term.size(); ++i) {
      if (term[i] == '\\') {
        ++i;
        continue;
      }
      if (term.substr(i, 2) == "!=") {
        opPos = i, opLen = 2, negated = true;
        break;
      }
      if (term.substr(i, 2) == "==") {
        opPos = i, opLen = 2;
        break;
      }
      if (term[i] == '=') {
        opPos = i, opLen = 1;
        break;
      }
    }
    if (opPos == std::string_view::npos) return bad(term, "expected field=value, field==value or field!=value");
    Term t;
    t.field = std::string(term.substr(0, opPos));
    t.negated = negated;
    if (t.field.empty()) return bad(term, "missing field name");
    std::string_view raw = term.substr(opPos + opLen);
    for (std::size_t i = 0; i < raw.size(); ++i) {
      char c = raw[i];
      if (c == '\\') {
        if (i + 1 >= raw.size() || (raw[i + 1] != '\\' && raw[i + 1] != ',' && raw[i + 1] != '=')) {
          return bad(term, "invalid escape sequence (only \\\\, \\, and \\= are allowed)");
        }
        t.value.push_back(raw[++i]);
      } else if (c == '=' || c == ',') {
        return bad(term, fmt::format("unescaped '{}' in value", c));
      } else {
        t.value.push_back(c);
      }
    }
    sel.terms_.push_back(std::move(t));
    if (end >= text.size()) break;
  }
  return sel;
}

bool FieldSelector::matches(const Json& obj) const {
  for (const auto& t : terms_) {
    if ((fieldValue(obj, t.field) == t.value) == t.negated) return false;
  }
  return true;
}

bool FieldSelector::matches(const Lookup& lookup) const {
  for (const auto& t : terms_) {
    if ((lookup(t.field) == t.value) == t.negated) return false;
  }
  return true;
}

std::optional<std::string> FieldSelector::exactValue(std::string_view field) const {
  for (const auto& t : terms_) {
    if (!t.negated && t.field == field) return t.value;
  }
  return std::nullopt;
}

std::string FieldSelector::toString() const {
  std::string out;
  for (const auto& t : terms_) {
    if (!out.empty()) out += ',';
    out += t.field;
    out += t.negated ? "!=" : "=";
    for (char c : t.value) {
      if (c == '\\' || c == ',' || c == '=') out += '\\';
      out += c;
    }
  }
  return out;
}

std::string fieldValue(const Json& obj, std::string_view dottedPath) {
  const Json* cur = &obj;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = dottedPath.find('.', start);
    std::string_view key = dottedPath.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (!cur->is_object()) return "";
    auto it = cur->find(key);
    if (it == cur->end()) return "";
    cur = &*it;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (cur->is_string()) return cur->get<std::string>();
  if (cur->is_null() || cur->is_object() || cur->is_array()) return "";
  return cur->dump();  // numbers and booleans as Kubernetes prints them
}

}  // namespace ferry::api
