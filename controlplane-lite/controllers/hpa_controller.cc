#include "controlplane-lite/controllers/hpa_controller.h"

#include "api/log.h"
#include "controlplane-lite/controllers/controller_util.h"
#include "controlplane-lite/scheduler/pod_resources.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace ferry::cp {

Result<int> desiredReplicasForCpu(int currentReplicas, const std::vector<PodSample>& pods, int targetUtilization,
                                  int* utilization, double tolerance) {
  if (targetUtilization <= 0) return fail(EINVAL, "target utilization must be positive");
  std::int64_t usage = 0, requests = 0;
  std::vector<const PodSample*> missing, unready;
  int counted = 0;
  for (const auto& pod : pods) {
    if (pod.requestMilli <= 0) return fail(EINVAL, "missing request for cpu");
    if (!pod.usageMilli) {
      missing.push_back(&pod);
    } else if (!pod.ready) {
      unready.push_back(&pod);
    } else {
      usage += *pod.usageMilli;
      requests += pod.requestMilli;
      counted++;
    }
  }
  if (counted == 0 && missing.empty() && unready.empty()) return fail(ENODATA, "no pods match the target's selector");
  if (counted == 0) return fail(ENODATA, "did not receive metrics for any ready pods");
  double current = 100.0 * static_cast<double>(usage) / static_cast<double>(requests);
  if (utilization) *utilization = static_cast<int>(current);
  double ratio = current / targetUtilization;
  bool scaleUp = ratio > 1.0;
  if (missing.empty() && unready.empty()) {
    if (std::abs(ratio - 1.0) <= tolerance) return currentReplicas;
    return static_cast<int>(std::ceil(ratio * counted));
  }
  // Assume the least helpful usage for the pods we know nothing about.
  int included = counted;
  if (!scaleUp) {
    for (const auto* p : missing) {
      usage += p->requestMilli;  // 100% of request
      requests += p->requestMilli;
      included++;
    }
  } else {
    for (const auto* p : missing) {
      requests += p->requestMilli;  // 0 usage
      included++;
    }
    for (const auto* p : unready) {
      requests += p->requestMilli;
      included++;
    }
  }
  double newRatio = (100.0 * static_cast<double>(usage) / static_cast<double>(requests)) / targetUtilization;
  if (std::abs(newRatio - 1.0) <= tolerance || (ratio < 1.0 && newRatio > 1.0) || (ratio > 1.0 && newRatio < 1.0))
    return currentReplicas;
  int desired = static_cast<int>(std::ceil(newRatio * included));
  if ((newRatio < 1.0 && desired > currentReplicas) || (newRatio > 1.0 && desired < currentReplicas))
    return currentReplicas;
  return desired;
}

HpaController::HpaController(ControllerContext& context, PodMetricsSource& metrics, std::chrono::milliseconds period)
    : ctx_(context),
      metrics_(metrics),
      period_(period),
      hpas_(context.informers.get("horizontalpodautoscalers.autoscaling")),
      pods_(context.informers.get("pods")) {}

HpaController::~HpaController() { stop(); }

void HpaController::start() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, period_, [this] { return stop_; });
      if (stop_) break;
      lock.unlock();
      syncAll();
      lock.lock();
    }
  });
}

void HpaController::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void HpaController::syncAll() {
  for (const auto& hpa : hpas_.list()) {
    auto st = syncOne(*hpa);
    if (!st) log::warn("hpa {}: {}", objectKey(*hpa), st.error().message);
  }
}

Status HpaController::syncOne(const api::Json& hpa) {
  const std::string ns = api::namespaceOf(hpa);
  const std::string kind = api::at<std::string>(hpa, {"spec", "scaleTargetRef", "kind"});
  const std::string targetName = api::at<std::string>(hpa, {"spec", "scaleTargetRef", "name"});
  std::string resource = kind == "Deployment" ? "deployments.apps" : kind == "ReplicaSet" ? "replicasets.apps" : "";
  api::Json status = hpa.value("status", api::Json::object());
  api::Json wanted = status;
  wanted["observedGeneration"] = api::at<std::int64_t>(hpa, {"metadata", "generation"}, 1);
  api::Json& conditions = wanted["conditions"];
  auto writeStatus = [&]() -> Status {
    if (wanted == status) return {};
    api::Json updated = hpa;
    updated["status"] = wanted;
    auto written = ctx_.client.updateStatus("horizontalpodautoscalers.autoscaling", updated);
    if (!written && written.error().code != ENOENT) return fail(written.error().wrap("hpa status"));
    if (written) hpas_.assume(*written);
    return {};
  };
  if (resource.empty()) {
    setCondition(conditions, "AbleToScale", "False", "FailedGetScale",
                 fmt::format("the HPA controller was unable to get the target's current scale: unsupported kind {}", kind));
    return writeStatus();
  }
  auto target = ctx_.client.get(resource, ns, targetName);
  if (!target) {
    setCondition(conditions, "AbleToScale", "False", "FailedGetScale",
                 fmt::format("the HPA controller was unable to get the target's current scale: {}", target.error().message));
    return writeStatus();
  }
  const int current = api::at<int>(*target, {"spec", "replicas"}, 1);
  const int minReplicas = api::at<int>(hpa, {"spec", "minReplicas"}, 1);
  const int maxReplicas = api::at<int>(hpa, {"spec", "maxReplicas"}, std::max(minReplicas, 1));
  wanted["currentReplicas"] = current;
  if (current == 0) {
    setCondition(conditions, "ScalingActive", "False", "ScalingDisabled",
                 "scaling is disabled since the replica count of the target is zero");
    wanted["desiredReplicas"] = 0;
    return writeStatus();
  }

  int targetUtilization = 0;
  auto metrics = api::at<api::Json>(hpa, {"spec", "metrics"}, api::Json::array());
  if (metrics.is_array())
    for (const auto& m : metrics)
      if (m.value("type", "") == "Resource" && api::at<std::string>(m, {"resource", "name"}) == "cpu")
        targetUtilization = api::at<int>(m, {"resource", "target", "averageUtilization"}, 0);
  if (targetUtilization <= 0) {
    setCondition(conditions, "ScalingActive", "False", "InvalidMetricSourceType",
                 "the HPA was unable to compute the replica count: only cpu Utilization metrics are supported");
    return writeStatus();
  }

  api::Json selector = api::at<api::Json>(*target, {"spec", "selector"}, api::Json());
  std::vector<PodSample> samples;
  for (const auto& pod : pods_.list(ns)) {
    if (!podIsActive(*pod) || !labelSelectorMatches(selector, api::labelsOf(*pod))) continue;
    PodSample s;
    s.requestMilli = podRequests(*pod).milliCpu;
    s.usageMilli = metrics_.podCpuMilli(ns, api::nameOf(*pod));
    s.ready = podIsReady(*pod);
    samples.push_back(s);
  }
  int utilization = 0;
  auto proposed = desiredReplicasForCpu(current, samples, targetUtilization, &utilization);
  if (!proposed) {
    setCondition(conditions, "ScalingActive", "False", "FailedGetResourceMetric",
                 fmt::format("the HPA was unable to compute the replica count: failed to get cpu utilization: {}",
                             proposed.error().message));
    ctx_.events.record("HorizontalPodAutoscaler", hpa, "Warning", "FailedGetResourceMetric",
                       fmt::format("failed to get cpu utilization: {}", proposed.error().message), kName);
    return writeStatus();
  }
  setCondition(conditions, "ScalingActive", "True", "ValidMetricFound",
               "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)");
  wanted["currentMetrics"] = api::Json::array(
      {{{"type", "Resource"},
        {"resource", {{"name", "cpu"}, {"current", {{"averageUtilization", utilization}}}}}}});

  // Stabilization: scaling down follows the highest recommendation of the window.
  int window = api::at<int>(hpa, {"spec", "behavior", "scaleDown", "stabilizationWindowSeconds"},
                            ctx_.config.hpaDownscaleStabilizationSeconds);
  auto now = std::chrono::steady_clock::now();
  auto& history = recommendations_[api::uidOf(hpa)];
  history.emplace_back(now, *proposed);
  while (!history.empty() && now - history.front().first > std::chrono::seconds(std::max(window, 0))) history.pop_front();
  int desired = *proposed;
  if (desired < current) {
    int highest = desired;
    for (const auto& [when, value] : history) highest = std::max(highest, value);
    desired = std::min(current, highest);
  } else if (desired > current) {
    desired = std::min(desired, std::max(2 * current, current + 4));
  }
  int unclamped = desired;
  desired = std::clamp(desired, minReplicas, std::max(minReplicas, maxReplicas));
  if (desired != unclamped)
    setCondition(conditions, "ScalingLimited", "True", desired == maxReplicas ? "TooManyReplicas" : "TooFewReplicas",
                 fmt::format("the desired replica count is {} than the {} replica count",
                             desired == maxReplicas ? "more" : "less", desired == maxReplicas ? "maximum" : "minimum"));
  else
    setCondition(conditions, "ScalingLimited", "False", "DesiredWithinRange",
                 "the desired count is within the acceptable range");
  wanted["desiredReplicas"] = desired;

  if (desired != current) {
    api::Json scaled = *target;
    scaled["spec"]["replicas"] = desired;
    auto written = ctx_.client.update(resource, scaled);
    if (!written) {
      setCondition(conditions, "AbleToScale", "False", "FailedUpdateScale",
                   fmt::format("the HPA controller was unable to update the target scale: {}", written.error().message));
      writeStatus();
      return fail(written.error().wrap("rescale " + kind + " " + targetName));
    }
    std::string reason = desired > current ? "cpu resource utilization (percentage of request) above target"
                                           : "All metrics below target";
    ctx_.events.record("HorizontalPodAutoscaler", hpa, "Normal", "SuccessfulRescale",
                       fmt::format("New size: {}; reason: {}", desired, reason), kName);
    setCondition(conditions, "AbleToScale", "True", "SucceededRescale",
                 fmt::format("the HPA controller was able to update the target scale to {}", desired));
    wanted["lastScaleTime"] = api::nowRfc3339();
    wanted["currentReplicas"] = current;
  } else {
    setCondition(conditions, "AbleToScale", "True", "ReadyForNewScale",
                 "recommended size matches current size");
  }
  return writeStatus();
}

}  // namespace ferry::cp
