// Defaulting and validation the API server applies on create and update.
// Kept to what kubectl users notice and what the agent and controllers rely on;
// api/ may grow fuller versions, which this file then calls.
#pragma once

#include "api/error.h"
#include "api/object.h"
#include "controlplane-lite/resources.h"

#include <string>
#include <vector>

namespace ferry::cp {

struct FieldCause {
  std::string field;    // metadata.name, spec.template.spec.containers[0].image
  std::string reason;   // FieldValueRequired | FieldValueInvalid | FieldValueNotSupported | FieldValueDuplicate | FieldValueForbidden
  std::string message;  // "Required value", `Invalid value: "x": must be ...`
};

void applyDefaults(const Resource& resource, api::Json& object);
std::vector<FieldCause> validateObject(const Resource& resource, const api::Json& object);

// An EINVAL error carrying the causes one per line as "field: message", the form
// ObjectClient promises; `kindAndName` is e.g. `Deployment.apps "web"`.
Error invalidError(const std::string& kindAndName, const std::vector<FieldCause>& causes);
// Parses what invalidError wrote (first line is the summary).
std::vector<FieldCause> causesFromInvalidError(const std::string& message, std::string* summary);

bool isDns1123Subdomain(const std::string& s);
bool isDns1123Label(const std::string& s);

}  // namespace ferry::cp
