// Kubernetes' defaulting (the SetDefaults_* functions) for the kinds Ferry
// serves, applied in place to a decoded object before validation.
#pragma once

#include "api/object.h"

#include <string>
#include <string_view>

namespace ferry::api {

// `resource` is the plural resource, optionally with its group, as kubectl
// names it: "pods", "services", "deployments.apps", "replicasets.apps",
// "endpointslices.discovery.k8s.io", "configmaps", "secrets", "namespaces",
// "nodes", "events", "leases.coordination.k8s.io",
// "horizontalpodautoscalers.autoscaling", "endpoints". Unknown resources are
// left untouched. Fields the user set are never changed.
void applyDefaults(std::string_view resource, Json& obj);

// The pieces, for callers holding a bare spec (e.g. a pod template).
void applyPodSpecDefaults(Json& podSpec);
void applyContainerDefaults(Json& container);
// "Always" for ":latest" or no tag, else "IfNotPresent" (digests included).
std::string defaultImagePullPolicy(std::string_view image);

// "deployments.apps" -> "deployments".
std::string_view resourceBaseName(std::string_view resource);

}  // namespace ferry::api
