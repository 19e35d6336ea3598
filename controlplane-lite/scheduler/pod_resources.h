// What a pod asks for and what a node offers, in the units the scheduler adds
// up: every quantity in milli-units (cpu 500m = 500, memory 1Ki = 1,024,000),
// so cpu, memory, pods and extended resources share one arithmetic.
#pragma once

#include "api/object.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace ferry::cp {

struct ResourceList {
  std::int64_t milliCpu = 0;
  std::int64_t memoryMilli = 0;  // bytes * 1000
  std::int64_t podsMilli = 0;    // pod count * 1000
  std::map<std::string, std::int64_t> extended;  // other names (nvidia.com/gpu, ephemeral-storage...), milli-units

  std::int64_t value(const std::string& name) const;
  void add(const ResourceList& other);
  void subtract(const ResourceList& other);
  void maxWith(const ResourceList& other);
};

// A Kubernetes quantity ("500m", "128Mi", "1.5", "2e3", "1G") in milli-units.
std::optional<std::int64_t> parseQuantityMilli(const std::string& text);
// Reads a {name: quantity} map; unparseable values count as 0.
ResourceList parseResourceList(const api::Json& resources);

// max(sum over containers, max over init containers) + overhead. Where a
// container has limits and no request, the limit is the request (API defaulting).
ResourceList podRequests(const api::Json& pod);
// status.allocatable, falling back to status.capacity.
ResourceList nodeAllocatable(const api::Json& node);

}  // namespace ferry::cp
