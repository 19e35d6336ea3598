// Pod quality-of-service class, computed as Kubernetes' GetPodQOS does.
#pragma once

#include "api/object.h"

#include <string>

namespace ferry::api {

// "Guaranteed", "Burstable" or "BestEffort" for a pod spec. Only cpu and
// memory count; init containers are included; a limit without a request
// counts as that request (Kubernetes' defaulting); pod-level
// spec.resources, when present, decide alone. Unparseable quantities are
// ignored (validation reports them).
std::string qosClass(const Json& podSpec);

}  // namespace ferry::api
