#include "controlplane-lite/controllers/pod_metrics_source.h"

#include "controlplane-lite/scheduler/pod_resources.h"

namespace ferry::cp {

std::optional<std::int64_t> ApiPodMetricsSource::podCpuMilli(const std::string& ns, const std::string& pod) {
  if (!lookup_) return std::nullopt;
  auto metrics = lookup_(ns, pod);
  if (!metrics) return std::nullopt;
  auto containers = metrics->value("containers", api::Json::array());
  if (!containers.is_array() || containers.empty()) return std::nullopt;
  std::int64_t total = 0;
  for (const auto& c : containers) {
    auto cpu = api::at<std::string>(c, {"usage", "cpu"});
    auto milli = parseQuantityMilli(cpu);
    if (!milli) return std::nullopt;
    total += *milli;
  }
  return total;
}

void FixedPodMetrics::set(const std::string& ns, const std::string& pod, std::int64_t milliCpu) {
  std::lock_guard lock(mu_);
  usage_[ns + "/" + pod] = milliCpu;
}

void FixedPodMetrics::clear() {
  std::lock_guard lock(mu_);
  usage_.clear();
}

std::optional<std::int64_t> FixedPodMetrics::podCpuMilli(const std::string& ns, const std::string& pod) {
  std::lock_guard lock(mu_);
  auto it = usage_.find(ns + "/" + pod);
  if (it == usage_.end()) return std::nullopt;
  return it->second;
}

}  // namespace ferry::cp
