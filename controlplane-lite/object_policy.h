// Defaulting and validation the API server applies on create and update:
// api/'s (Kubernetes' SetDefaults_* and validation rules), plus what
// Kubernetes' admission and registry add on the server side; and the error
// form that carries validation causes from the registry to the HTTP layer.
#pragma once

#include "api/error.h"
#include "api/object.h"
#include "api/validation.h"
#include "controlplane-lite/resources.h"

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::cp {

// api::applyDefaults, then the server's admission defaults: a Pod's
// serviceAccountName, priority and the not-ready/unreachable tolerations for
// `tolerationSeconds` (the server's --pod-eviction-timeout) where the pod does
// not already tolerate them (ServiceAccount, Priority and DefaultTolerationSeconds
// admission); a Service's IP family fields and empty load-balancer status (its registry).
void applyDefaults(const Resource& resource, api::Json& object, std::int64_t tolerationSeconds = 300);

// api::validate; `old` is the stored object on update, nullptr on create.
// One Ferry leniency: a Pod's spec.nodeName may go from unset to set by an
// update (the scheduler binds that way where an ObjectClient has no bindings).
std::vector<api::Cause> validateObject(const Resource& resource, const api::Json& object, const api::Json* old);

// An EINVAL error carrying the causes one per line as "field: message", the form
// ObjectClient promises; `summary` is e.g. `Deployment.apps "web" is invalid`.
Error invalidError(const std::string& summary, const std::vector<api::Cause>& causes);
// Parses what invalidError wrote (first line is the summary); reasons are
// recovered from the message ("Required value" -> FieldValueRequired, ...).
std::vector<api::Cause> causesFromInvalidError(const std::string& message, std::string* summary);

}  // namespace ferry::cp
