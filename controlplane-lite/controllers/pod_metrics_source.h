// Where the HPA reads pod CPU usage. The agents report usage; the API server
// serves it as metrics.k8s.io PodMetrics ("pods.metrics.k8s.io"), which
// ApiPodMetricsSource reads through the ObjectClient. Tests feed
// FixedPodMetrics directly.
#pragma once

#include "controlplane-lite/object_client.h"

#include <cstdint>
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

class ApiPodMetricsSource : public PodMetricsSource {
 public:
  explicit ApiPodMetricsSource(ObjectClient& client) : client_(client) {}
  std::optional<std::int64_t> podCpuMilli(const std::string& ns, const std::string& pod) override;

 private:
  ObjectClient& client_;
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
