// Label selectors (equality and set-based) and field selectors, one
// implementation shared by the API server (list/watch filtering) and the
// agent. Parse once, then match many objects.
#pragma once

#include "api/error.h"
#include "api/object.h"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::api {

struct LabelRequirement {
  enum class Operator { Equals, NotEquals, In, NotIn, Exists, DoesNotExist, GreaterThan, LessThan };
  std::string key;
  Operator op = Operator::Exists;
  std::vector<std::string> values;  // sorted, unique; one value for Equals/NotEquals/Gt/Lt

  // `value` is the label's value, or nullptr when the label is absent.
  bool matches(const std::string* value) const;
};

class LabelSelector {
 public:
  // Matches every object (the empty selector "").
  LabelSelector() = default;
  static LabelSelector everything() { return LabelSelector{}; }
  static LabelSelector nothing();

  // The string form used in ?labelSelector=: "app=web,tier!=db,env in (a,b),!legacy,has,x>3".
  static Result<LabelSelector> parse(std::string_view text);
  // metav1.LabelSelector: {matchLabels:{}, matchExpressions:[{key,operator,values}]}.
  // null matches nothing, {} matches everything (as Kubernetes converts them).
  static Result<LabelSelector> fromJson(const Json& selector);
  // A plain map selector, as in Service.spec.selector (an empty map matches everything).
  static LabelSelector fromMap(const Labels& labels);

  bool matches(const Labels& labels) const;
  // `labels` is a metadata.labels JSON object (or null/absent = no labels).
  bool matchesJson(const Json& labels) const;
  // Convenience: matches obj.metadata.labels.
  bool matchesObject(const Json& obj) const;

  bool matchesEverything() const { return !nothing_ && requirements_.empty(); }
  bool matchesNothing() const { return nothing_; }
  const std::vector<LabelRequirement>& requirements() const { return requirements_; }
  // The string form, requirements sorted by key as Kubernetes prints them.
  std::string toString() const;

 private:
  template <class Lookup>
  bool matchWith(const Lookup& lookup) const;
  Status add(LabelRequirement req, std::string_view term);

  std::vector<LabelRequirement> requirements_;
  bool nothing_ = false;
};

// Field selectors: "metadata.name=web,status.phase!=Failed" (=, ==, !=; `\`
// escapes ',', '=' and '\' in values).
class FieldSelector {
 public:
  struct Term {
    std::string field;
    bool negated = false;  // !=
    std::string value;
  };
  // Returns the field's value as text ("" when absent); must be cheap.
  using Lookup = std::function<std::string(std::string_view field)>;

  FieldSelector() = default;
  static Result<FieldSelector> parse(std::string_view text);

  // Evaluates terms by dotted-path lookup into the object (fieldValue below).
  bool matches(const Json& obj) const;
  bool matches(const Lookup& lookup) const;

  bool empty() const { return terms_.empty(); }
  const std::vector<Term>& terms() const { return terms_; }
  // The value an `=` term requires for `field`, if any (for index lookups).
  std::optional<std::string> exactValue(std::string_view field) const;
  std::string toString() const;

 private:
  std::vector<Term> terms_;
};

// The value at a dotted path ("spec.nodeName", "involvedObject.uid") as a
// field selector compares it: strings as is, numbers and booleans printed,
// absent or null as "".
std::string fieldValue(const Json& obj, std::string_view dottedPath);

}  // namespace ferry::api
