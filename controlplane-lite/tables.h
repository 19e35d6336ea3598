// meta.k8s.io/v1 Table output for `kubectl get`, with the columns kubectl
// shows for Kubernetes' own printers (priority 1 columns only with -o wide).
#pragma once

#include "api/object.h"
#include "controlplane-lite/resources.h"

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::cp {

inline constexpr const char* kTableContentType = "application/json;as=Table;v=v1;g=meta.k8s.io";

enum class TableObjects { None, Metadata, Full };

api::Json toTable(const Resource& resource, const std::vector<api::Json>& objects, const std::string& resourceVersion,
                  const std::string& continueToken, bool withHeaders, TableObjects include, std::int64_t now);

// Kubernetes' duration.HumanDuration: 45s, 3m20s, 5h, 2d3h, 400d, 3y.
std::string humanDuration(std::int64_t seconds);

// The pod STATUS column (Running, Pending, ContainerCreating, CrashLoopBackOff, Completed, Terminating, Init:0/1...).
std::string podStatusColumn(const api::Json& pod);

}  // namespace ferry::cp
