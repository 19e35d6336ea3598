#include "api/qos.h"

#include "api/quantity.h"

#include <map>

namespace ferry::api {
namespace {

using Totals = std::map<std::string, Quantity>;

bool isQosResource(const std::string& name) { return name == "cpu" || name == "memory"; }

// Adds the positive cpu/memory quantities of `list` to `totals`; returns the
// names seen with a positive value.
std::map<std::string, Quantity> positive(const Json& list) {
  std::map<std::string, Quantity> out;
  if (!list.is_object()) return out;
  for (auto& [name, value] : list.items()) {
    if (!isQosResource(name)) continue;
    auto q = Quantity::fromJson(value);
    if (q && q->sign() > 0) out.emplace(name, *q);
  }
  return out;
}

void accumulate(Totals& totals, const std::map<std::string, Quantity>& add) {
  for (const auto& [name, q] : add) {
    auto it = totals.find(name);
    if (it == totals.end()) {
      totals.emplace(name, q);
    } else if (auto sum = it->second.add(q)) {
      it->second = *sum;
    }
  }
}

struct Usage {
  std::map<std::string, Quantity> requests, limits;
};

Usage usageOf(const Json& resources) {
  Usage u;
  if (!resources.is_object()) return u;
  u.limits = positive(resources.value("limits", Json()));
  u.requests = positive(resources.value("requests", Json()));
  // Requests default to limits when unset (SetDefaults_Pod).
  const Json* requests = resources.contains("requests") ? &resources["requests"] : nullptr;
  for (const auto& [name, q] : u.limits) {
    bool requestSet = requests && requests->is_object() && requests->contains(name);
    if (!requestSet) u.requests.emplace(name, q);
  }
  return u;
}

std::string classify(const Totals& requests, const Totals& limits, bool allHaveBothLimits) {
  if (requests.empty() && limits.empty()) return "BestEffort";
  bool guaranteed = allHaveBothLimits;
  if (guaranteed) {
    for (const auto& [name, req] : requests) {
      auto lim = limits.find(name);
      if (lim == limits.end() || lim->second != req) {
        guaranteed = false;
        break;
      }
    }
  }
  return guaranteed && requests.size() == limits.size() ? "Guaranteed" : "Burstable";
}

}  // namespace

std::string qosClass(const Json& podSpec) {
  if (!podSpec.is_object()) return "BestEffort";
  if (auto it = podSpec.find("resources"); it != podSpec.end() && it->is_object() && !it->empty()) {
    Usage pod = usageOf(*it);
    Totals requests(pod.requests.begin(), pod.requests.end());
    Totals limits(pod.limits.begin(), pod.limits.end());
    bool both = limits.contains("cpu") && limits.contains("memory");
    return classify(requests, limits, both);
  }
  Totals requests, limits;
  bool allHaveBothLimits = true;
  for (const char* list : {"containers", "initContainers"}) {
    auto it = podSpec.find(list);
    if (it == podSpec.end() || !it->is_array()) continue;
    for (const auto& c : *it) {
      Usage u = c.is_object() ? usageOf(c.value("resources", Json())) : Usage{};
      accumulate(requests, u.requests);
      accumulate(limits, u.limits);
      if (!u.limits.contains("cpu") || !u.limits.contains("memory")) allHaveBothLimits = false;
    }
  }
  return classify(requests, limits, allHaveBothLimits);
}

}  // namespace ferry::api
