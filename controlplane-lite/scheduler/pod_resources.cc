#include "controlplane-lite/scheduler/pod_resources.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace ferry::cp {

std::int64_t ResourceList::value(const std::string& name) const {
  if (name == "cpu") return milliCpu;
  if (name == "memory") return memoryMilli;
  if (name == "pods") return podsMilli;
  auto it = extended.find(name);
  return it == extended.end() ? 0 : it->second;
}

void ResourceList::add(const ResourceList& other) {
  milliCpu += other.milliCpu;
  memoryMilli += other.memoryMilli;
  podsMilli += other.podsMilli;
  for (const auto& [name, v] : other.extended) extended[name] += v;
}

void ResourceList::subtract(const ResourceList& other) {
  milliCpu -= other.milliCpu;
  memoryMilli -= other.memoryMilli;
  podsMilli -= other.podsMilli;
  for (const auto& [name, v] : other.extended) extended[name] -= v;
}

void ResourceList::maxWith(const ResourceList& other) {
  milliCpu = std::max(milliCpu, other.milliCpu);
  memoryMilli = std::max(memoryMilli, other.memoryMilli);
  podsMilli = std::max(podsMilli, other.podsMilli);
  for (const auto& [name, v] : other.extended) extended[name] = std::max(extended[name], v);
}

std::optional<std::int64_t> parseQuantityMilli(const std::string& text) {
  if (text.empty()) return std::nullopt;
  const char* begin = text.c_str();
  char* end = nullptr;
  long double number = std::strtold(begin, &end);
  if (end == begin) return std::nullopt;
  std::string suffix(end);
  long double multiplier = 1;
  static const std::pair<const char*, long double> suffixes[] = {
      {"", 1},        {"m", 1e-3},          {"k", 1e3},           {"M", 1e6},           {"G", 1e9},
      {"T", 1e12},    {"P", 1e15},          {"E", 1e18},          {"Ki", 1024.0L},      {"Mi", 1048576.0L},
      {"Gi", 1073741824.0L},                {"Ti", 1099511627776.0L}, {"Pi", 1125899906842624.0L},
      {"Ei", 1152921504606846976.0L},       {"u", 1e-6},          {"n", 1e-9}};
  bool known = false;
  for (const auto& [s, m] : suffixes) {
    if (suffix == s) {
      multiplier = m;
      known = true;
      break;
    }
  }
  // strtold already consumed a decimal exponent ("2e3"); anything else is malformed.
  if (!known) return std::nullopt;
  long double milli = number * multiplier * 1000.0L;
  if (!std::isfinite(milli) || milli < 0 || milli > 9.2e18L) return std::nullopt;
  // Kubernetes rounds fractional milli-units up.
  return static_cast<std::int64_t>(std::ceil(milli - 1e-9L));
}

ResourceList parseResourceList(const api::Json& resources) {
  ResourceList out;
  if (!resources.is_object()) return out;
  for (const auto& [name, value] : resources.items()) {
    std::optional<std::int64_t> milli;
    if (value.is_string()) milli = parseQuantityMilli(value.get<std::string>());
    else if (value.is_number()) milli = static_cast<std::int64_t>(std::ceil(value.get<double>() * 1000.0));
    std::int64_t v = milli.value_or(0);
    if (name == "cpu") out.milliCpu = v;
    else if (name == "memory") out.memoryMilli = v;
    else if (name == "pods") out.podsMilli = v;
    else out.extended[name] = v;
  }
  return out;
}

namespace {

ResourceList containerRequests(const api::Json& container) {
  api::Json resources = container.value("resources", api::Json::object());
  api::Json requests = resources.value("requests", api::Json::object());
  api::Json limits = resources.value("limits", api::Json::object());
  if (requests.is_object() && limits.is_object()) {
    for (const auto& [name, value] : limits.items())
      if (!requests.contains(name)) requests[name] = value;
  }
  return parseResourceList(requests);
}

}  // namespace

ResourceList podRequests(const api::Json& pod) {
  ResourceList sum;
  const api::Json spec = pod.value("spec", api::Json::object());
  if (spec.contains("containers") && spec["containers"].is_array())
    for (const auto& c : spec["containers"]) sum.add(containerRequests(c));
  if (spec.contains("initContainers") && spec["initContainers"].is_array())
    for (const auto& c : spec["initContainers"]) sum.maxWith(containerRequests(c));
  if (spec.contains("overhead")) sum.add(parseResourceList(spec["overhead"]));
  sum.podsMilli = 1000;
  return sum;
}

ResourceList nodeAllocatable(const api::Json& node) {
  const api::Json status = node.value("status", api::Json::object());
  if (status.contains("allocatable") && status["allocatable"].is_object() && !status["allocatable"].empty())
    return parseResourceList(status["allocatable"]);
  return parseResourceList(status.value("capacity", api::Json::object()));
}

}  // namespace ferry::cp
