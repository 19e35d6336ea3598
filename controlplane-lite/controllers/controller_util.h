// Small helpers every control loop shares: label selectors, controller
// ownerReferences, pod readiness, status conditions.
#pragma once

#include "api/object.h"

#include <cstdint>
#include <string>

namespace ferry::cp {

// metav1.LabelSelector (matchLabels + matchExpressions In/NotIn/Exists/DoesNotExist).
// An empty selector matches everything; a null/missing one matches nothing.
bool labelSelectorMatches(const api::Json& selector, const api::Labels& labels);
// A Service-style map selector: every pair must be present. Empty matches nothing.
bool mapSelectorMatches(const api::Labels& selector, const api::Labels& labels);

// The ownerReference with controller=true, or nullptr.
const api::Json* controllerRefOf(const api::Json& object);
api::Json makeControllerRef(const std::string& kind, const api::Json& owner);

std::int64_t nowSeconds();

// Pod helpers.
bool podIsActive(const api::Json& pod);  // not Succeeded/Failed and not being deleted
bool podIsReady(const api::Json& pod);
// Ready for at least minReadySeconds (by the Ready condition's lastTransitionTime).
bool podIsAvailable(const api::Json& pod, int minReadySeconds, std::int64_t now);

// Status conditions ({type, status, reason, message, lastTransitionTime, ...}).
const api::Json* findCondition(const api::Json& conditions, const std::string& type);
const api::Json* findCondition(api::Json&& conditions, const std::string& type) = delete;  // would dangle
// The condition `type` of object.status.conditions (a copy), or an empty object.
api::Json conditionOf(const api::Json& object, const std::string& type);
// Sets or replaces the condition; lastTransitionTime changes only when status does.
// Returns true when anything changed. `updateTimeField` (e.g. lastUpdateTime) is
// refreshed on any change when not empty.
bool setCondition(api::Json& conditions, const std::string& type, const std::string& status,
                  const std::string& reason, const std::string& message, const std::string& updateTimeField = "");

}  // namespace ferry::cp
