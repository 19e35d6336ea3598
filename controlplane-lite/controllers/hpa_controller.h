// HorizontalPodAutoscaler (autoscaling/v2) on CPU utilization, with
// Kubernetes' algorithm: desired = ceil(current * usage/target), no change
// within 10% of the target, missing metrics counted against the direction of
// the change, unready pods ignored when scaling down and counted as idle when
// scaling up; scale-up limited to max(2x, +4) per sync; scale-down stabilized
// over a window (highest recommendation of the window wins), from
// behavior.scaleDown.stabilizationWindowSeconds or the server default.
#pragma once

#include "controlplane-lite/controllers/controller_context.h"
#include "controlplane-lite/controllers/pod_metrics_source.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

namespace ferry::cp {

// The replica count Kubernetes' replica calculator proposes (before limits,
// stabilization and min/max). `utilization` is set to the observed average
// utilization in percent of requests. Errors name what is missing.
struct PodSample {
  std::int64_t requestMilli = 0;
  std::optional<std::int64_t> usageMilli;
  bool ready = true;
};
Result<int> desiredReplicasForCpu(int currentReplicas, const std::vector<PodSample>& pods, int targetUtilization,
                                  int* utilization, double tolerance = 0.1);

class HpaController : public ControlLoop {
 public:
  static constexpr const char* kName = "horizontal-pod-autoscaler";

  HpaController(ControllerContext& context, PodMetricsSource& metrics, std::chrono::milliseconds period);
  ~HpaController() override;
  void start() override;
  void stop() override;

  // One pass over every HPA (exposed for tests).
  void syncAll();

 private:
  Status syncOne(const api::Json& hpa);

  ControllerContext& ctx_;
  PodMetricsSource& metrics_;
  std::chrono::milliseconds period_;
  Informer& hpas_;
  Informer& pods_;
  // HPA uid → (time, recommendation), newest last.
  std::map<std::string, std::deque<std::pair<std::chrono::steady_clock::time_point, int>>> recommendations_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace ferry::cp
