#include "controlplane-lite/selectors.h"

#include <algorithm>

namespace ferry::cp {

namespace {

std::string trim(std::string s) {
  auto notSpace = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), notSpace));
  s.erase(std::find_if(s.rbegin(), s.rend(), notSpace).base(), s.end());
  return s;
}

// Splits at commas that are not inside parentheses.
std::vector<std::string> splitTerms(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;
  for (char c : text) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c == ',' && depth == 0) {
      out.push_back(trim(cur));
      cur.clear();
      continue;
    }
    cur += c;
  }
  if (!trim(cur).empty() || !out.empty()) out.push_back(trim(cur));
  return out;
}

std::string fieldValue(const api::Json& obj, const std::vector<std::string>& path) {
  const api::Json* cur = &obj;
  for (const auto& key : path) {
    if (!cur->is_object()) return "";
    auto it = cur->find(key);
    if (it == cur->end()) return "";
    cur = &*it;
  }
  if (cur->is_string()) return cur->get<std::string>();
  if (cur->is_null()) return "";
  return cur->dump();
}

}  // namespace

Result<LabelSelector> LabelSelector::parse(const std::string& text) {
  LabelSelector sel;
  for (const auto& raw : splitTerms(text)) {
    if (raw.empty()) return fail(EINVAL, "labelSelector: empty term in \"" + text + "\"");
    Term t;
    auto setIn = [&](std::size_t keyEnd, std::size_t opEnd, Term::Op op) -> Status {
      t.key = trim(raw.substr(0, keyEnd));
      std::string rest = trim(raw.substr(opEnd));
      if (rest.size() < 2 || rest.front() != '(' || rest.back() != ')')
        return fail(EINVAL, "labelSelector: want a parenthesised value list in \"" + raw + "\"");
      for (const auto& v : splitTerms(rest.substr(1, rest.size() - 2))) t.values.push_back(v);
      t.op = op;
      return {};
    };
    std::size_t pos;
    if (raw[0] == '!') {
      t.key = trim(raw.substr(1));
      t.op = Term::Op::NotExists;
    } else if ((pos = raw.find(" notin ")) != std::string::npos) {
      if (auto st = setIn(pos, pos + 7, Term::Op::NotIn); !st) return fail(st.error());
    } else if ((pos = raw.find(" in ")) != std::string::npos) {
      if (auto st = setIn(pos, pos + 4, Term::Op::In); !st) return fail(st.error());
    } else if ((pos = raw.find("!=")) != std::string::npos) {
      t.key = trim(raw.substr(0, pos));
      t.values = {trim(raw.substr(pos + 2))};
      t.op = Term::Op::NotEquals;
    } else if ((pos = raw.find("==")) != std::string::npos) {
      t.key = trim(raw.substr(0, pos));
      t.values = {trim(raw.substr(pos + 2))};
      t.op = Term::Op::Equals;
    } else if ((pos = raw.find('=')) != std::string::npos) {
      t.key = trim(raw.substr(0, pos));
      t.values = {trim(raw.substr(pos + 1))};
      t.op = Term::Op::Equals;
    } else {
      t.key = trim(raw);
      t.op = Term::Op::Exists;
    }
    if (t.key.empty() || t.key.find_first_of(" ()!=") != std::string::npos)
      return fail(EINVAL, "labelSelector: bad key in \"" + raw + "\"");
    sel.terms_.push_back(std::move(t));
  }
  return sel;
}

bool LabelSelector::matches(const api::Labels& labels) const {
  for (const auto& t : terms_) {
    auto it = labels.find(t.key);
    bool has = it != labels.end();
    auto in = [&] { return has && std::find(t.values.begin(), t.values.end(), it->second) != t.values.end(); };
    switch (t.op) {
      case Term::Op::Equals:
      case Term::Op::In:
        if (!in()) return false;
        break;
      case Term::Op::NotEquals:
      case Term::Op::NotIn:
        if (in()) return false;
        break;
      case Term::Op::Exists:
        if (!has) return false;
        break;
      case Term::Op::NotExists:
        if (has) return false;
        break;
    }
  }
  return true;
}

Result<FieldSelector> FieldSelector::parse(const std::string& text) {
  FieldSelector sel;
  for (const auto& raw : splitTerms(text)) {
    if (raw.empty()) return fail(EINVAL, "fieldSelector: empty term in \"" + text + "\"");
    Term t;
    std::size_t pos;
    if ((pos = raw.find("!=")) != std::string::npos) {
      t.field = trim(raw.substr(0, pos));
      t.value = trim(raw.substr(pos + 2));
      t.negate = true;
    } else if ((pos = raw.find("==")) != std::string::npos) {
      t.field = trim(raw.substr(0, pos));
      t.value = trim(raw.substr(pos + 2));
    } else if ((pos = raw.find('=')) != std::string::npos) {
      t.field = trim(raw.substr(0, pos));
      t.value = trim(raw.substr(pos + 1));
    } else {
      return fail(EINVAL, "fieldSelector: want field=value in \"" + raw + "\"");
    }
    if (t.field.empty()) return fail(EINVAL, "fieldSelector: empty field in \"" + raw + "\"");
    std::string part;
    for (char c : t.field) {
      if (c == '.') {
        t.path.push_back(part);
        part.clear();
      } else {
        part += c;
      }
    }
    t.path.push_back(part);
    sel.terms_.push_back(std::move(t));
  }
  return sel;
}

bool FieldSelector::matches(const api::Json& object) const {
  for (const auto& t : terms_) {
    bool equal = fieldValue(object, t.path) == t.value;
    if (equal == t.negate) return false;
  }
  return true;
}

std::string FieldSelector::requiredValue(const std::string& field) const {
  for (const auto& t : terms_)
    if (t.field == field && !t.negate) return t.value;
  return "";
}

bool labelSelectorObjectMatches(const api::Json& selector, const api::Labels& labels) {
  if (!selector.is_object()) return false;
  if (auto ml = selector.find("matchLabels"); ml != selector.end() && ml->is_object()) {
    for (const auto& [k, v] : ml->items()) {
      auto it = labels.find(k);
      if (it == labels.end() || !v.is_string() || it->second != v.get<std::string>()) return false;
    }
  }
  if (auto me = selector.find("matchExpressions"); me != selector.end() && me->is_array()) {
    for (const auto& e : *me) {
      std::string key = api::at<std::string>(e, {"key"});
      std::string op = api::at<std::string>(e, {"operator"});
      auto values = api::at<std::vector<std::string>>(e, {"values"});
      auto it = labels.find(key);
      bool has = it != labels.end();
      bool in = has && std::find(values.begin(), values.end(), it->second) != values.end();
      if (op == "In" && !in) return false;
      if (op == "NotIn" && in) return false;
      if (op == "Exists" && !has) return false;
      if (op == "DoesNotExist" && has) return false;
    }
  }
  return true;
}

}  // namespace ferry::cp
