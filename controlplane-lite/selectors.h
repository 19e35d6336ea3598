// Label and field selectors as the list and watch query parameters spell them.
#pragma once

#include "api/error.h"
#include "api/object.h"

#include <string>
#include <vector>

namespace ferry::cp {

// `app=web,tier!=db,env in (a,b),!legacy,release` (=, ==, !=, in, notin, exists, !exists).
class LabelSelector {
 public:
  static Result<LabelSelector> parse(const std::string& text);
  bool matches(const api::Labels& labels) const;
  bool empty() const { return terms_.empty(); }

 private:
  struct Term {
    std::string key;
    enum class Op { Equals, NotEquals, In, NotIn, Exists, NotExists } op = Op::Exists;
    std::vector<std::string> values;
  };
  std::vector<Term> terms_;
};

// `metadata.name=x,spec.nodeName=n,status.phase!=Failed`: any dotted path of the
// object compared as a string (a missing field reads as "").
class FieldSelector {
 public:
  static Result<FieldSelector> parse(const std::string& text);
  bool matches(const api::Json& object) const;
  bool empty() const { return terms_.empty(); }
  // The value required for `field` by an equality term, if any (used to narrow a lookup).
  std::string requiredValue(const std::string& field) const;

 private:
  struct Term {
    std::vector<std::string> path;
    std::string field;
    bool negate = false;
    std::string value;
  };
  std::vector<Term> terms_;
};

// Matches a label map against a metav1.LabelSelector object (matchLabels, matchExpressions).
bool labelSelectorObjectMatches(const api::Json& selector, const api::Labels& labels);

}  // namespace ferry::cp
