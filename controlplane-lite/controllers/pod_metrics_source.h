// Where the HPA reads pod CPU usage. The agents report usage; the API server
// serves it as metrics.k8s.io PodMetrics (controlplane-lite/metrics_api.h), a
// virtual resource the Registry does not store, so ApiPodMetricsSource reads
// PodMetrics objects through a lookup the server hands it. Tests feed
// FixedPodMetrics directly.
#pragma once

#include "controlplane-lite/object_client.h"

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace ferry::cp {

class PodMetricsSource {
 public:
  virtual ~PodMetricsSource() = default;
  // CPU used by the whole pod, in millicores; nullopt when no sample is known.
  virtual std::optional<std::int64_t> podCpuMilli(const std::string& ns, const std::string& pod) = 0;
};

// A PodMetrics object (metrics.k8s.io/v1beta1) of one pod, or nullopt when none is known.
using PodMetricsLookup = std::function<std::optional<api::Json>(const std::string& ns, const std::string& pod)>;

class ApiPodMetricsSource : public PodMetricsSource {
 public:
  explicit ApiPodMetricsSource(PodMetricsLookup lookup) : lookup_(std::move(lookup)) {}
  std::optional<std::int64_t> podCpuMilli(const std::string& ns, const std::string& pod) override;

 private:
  PodMetricsLookup lookup_;
};

class FixedPodMetrics : public PodMetricsSource {
 public:
  void set(const std::string& ns, const std::string& pod, std::int64_t milliCpu);
  void clear();
  std::optional<std::int64_t> podCpuMilli(const std::string& ns, const std::string& pod) override;

 private:
  std::mutex mu_;
  std::map<std::string, std::int64_t> usage_;
};

}  // namespace ferry::cp
