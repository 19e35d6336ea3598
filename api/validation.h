// Validation with Kubernetes' rules, field paths and messages, collected as
// causes for a 422 Invalid Status. Run after defaulting (api/defaulting.h).
#pragma once

#include "api/object.h"

#include <string>
#include <string_view>
#include <vector>

namespace ferry::api {

// One problem with one field, as a Status cause:
//   {"reason": "FieldValueInvalid", "field": "metadata.name", "message": "Invalid value: \"Web\": ..."}
// kubectl prints "* <field>: <message>".
struct Cause {
  std::string field;    // as Kubernetes prints it: "spec.containers[0].name"
  std::string message;  // "Required value", "Invalid value: 70000: must be between 1 and 65535, inclusive", ...
  std::string reason;   // one of the reasons below

  static constexpr const char* kRequired = "FieldValueRequired";
  static constexpr const char* kInvalid = "FieldValueInvalid";
  static constexpr const char* kDuplicate = "FieldValueDuplicate";
  static constexpr const char* kNotSupported = "FieldValueNotSupported";
  static constexpr const char* kForbidden = "FieldValueForbidden";
  static constexpr const char* kNotFound = "FieldValueNotFound";
  static constexpr const char* kTooLong = "FieldValueTooLong";
  static constexpr const char* kTooMany = "FieldValueTooMany";

  // "<field>: <message>", one line of kubectl's output.
  std::string toString() const { return field.empty() ? message : field + ": " + message; }
};

// Checks `obj` (already defaulted) for `resource` ("pods", "deployments.apps",
// ... as in defaulting.h). `old` is the stored object on update (immutable
// fields are checked against it), nullptr on create.
std::vector<Cause> validate(std::string_view resource, const Json& obj, const Json* old);

// The Status message Kubernetes writes for a 422:
//   Pod "web" is invalid: spec.containers[0].image: Required value
//   Deployment.apps "web" is invalid: [cause, cause]
// `qualifiedKind` is "Pod", "Deployment.apps", ...
std::string invalidMessage(std::string_view qualifiedKind, std::string_view name, const std::vector<Cause>& causes);

// Fields that Ferry accepts and stores but does not act on, as text for
// `Warning: 299 - "<text>"` response headers (e.g. a persistentVolumeClaim
// volume). Empty when everything in `obj` is implemented.
std::vector<std::string> unsupportedFieldWarnings(std::string_view resource, const Json& obj);

// On update, Kubernetes keeps values the server allocated when the new object
// leaves them empty (Service clusterIP/clusterIPs/nodePorts/healthCheckNodePort,
// so `kubectl replace` of the original manifest works; Ferry also keeps a
// Node's podCIDR/podCIDRs). Call before validate().
void carryOverAllocatedFields(std::string_view resource, Json& obj, const Json& old);

}  // namespace ferry::api
