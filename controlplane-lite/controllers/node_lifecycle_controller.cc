#include "controlplane-lite/controllers/node_lifecycle_controller.h"

#include "api/log.h"
#include "controlplane-lite/controllers/controller_util.h"

#include <fmt/format.h>

#include <algorithm>

namespace ferry::cp {

NodeLifecycleController::NodeLifecycleController(ControllerContext& context, std::chrono::milliseconds period)
    : ctx_(context),
      nodes_(context.informers.get("nodes")),
      leases_(context.informers.get("leases.coordination.k8s.io")),
      pods_(context.informers.get("pods")),
      period_(period) {}

NodeLifecycleController::~NodeLifecycleController() { stop(); }

void NodeLifecycleController::start() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stop_) {
      lock.unlock();
      checkAll();
      lock.lock();
      cv_.wait_for(lock, period_, [this] { return stop_; });
    }
  });
}

void NodeLifecycleController::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void NodeLifecycleController::checkAll() {
  auto nodes = nodes_.list();
  std::unordered_map<std::string, bool> present;
  for (const auto& node : nodes) {
    present[api::nameOf(*node)] = true;
    checkNode(*node);
  }
  for (auto it = heartbeats_.begin(); it != heartbeats_.end();)
    it = present.count(it->first) ? std::next(it) : heartbeats_.erase(it);
}

void NodeLifecycleController::checkNode(const api::Json& node) {
  const std::string name = api::nameOf(node);
  const auto now = std::chrono::steady_clock::now();
  // Heartbeats are judged by when we saw them change, not by the node's clock.
  std::string renew;
  if (ObjectPtr lease = leases_.get("kube-node-lease", name))
    renew = api::at<std::string>(*lease, {"spec", "renewTime"});
  api::Json ready = conditionOf(node, "Ready");
  std::string readyHeartbeat = ready.is_object() ? ready.value("lastHeartbeatTime", "") : "";
  auto [it, inserted] = heartbeats_.try_emplace(name, Heartbeat{renew, readyHeartbeat, now});
  Heartbeat& hb = it->second;
  if (hb.leaseRenewTime != renew || hb.readyHeartbeat != readyHeartbeat) {
    hb = Heartbeat{renew, readyHeartbeat, now};
  }
  bool stale = now - hb.observedAt > std::chrono::seconds(ctx_.config.nodeMonitorGracePeriodSeconds);
  std::string readyStatus = ready.is_object() ? ready.value("status", "Unknown") : "Unknown";

  if (stale && readyStatus != "Unknown") {
    markUnknown(node);
    return;  // the node's update comes back through the informer; taints on the next pass
  }
  bool unreachable = stale;
  bool notReady = !stale && readyStatus == "False";
  setTaints(node, unreachable, notReady);
  if (unreachable || notReady) evictPods(node);
}

void NodeLifecycleController::markUnknown(const api::Json& node) {
  api::Json updated = node;
  api::Json& conditions = updated["status"]["conditions"];
  if (!conditions.is_array()) conditions = api::Json::array();
  bool hasReady = false;
  for (auto& c : conditions) {
    std::string type = c.value("type", "");
    if (type == "Ready") hasReady = true;
    if (c.value("status", "") == "Unknown") continue;
    c["status"] = "Unknown";
    c["reason"] = "NodeStatusUnknown";
    c["message"] = "Kubelet stopped posting node status.";
    c["lastTransitionTime"] = api::nowRfc3339();
  }
  if (!hasReady)
    conditions.push_back({{"type", "Ready"},
                          {"status", "Unknown"},
                          {"reason", "NodeStatusNeverUpdated"},
                          {"message", "Kubelet never posted node status."},
                          {"lastTransitionTime", api::nowRfc3339()}});
  auto written = ctx_.client.updateStatus("nodes", updated);
  if (!written) {
    log::warn("node-controller: mark {} unknown: {}", api::nameOf(node), written.error().message);
    return;
  }
  nodes_.assume(*written);
  ctx_.events.record("Node", node, "Normal", "NodeNotReady",
                     fmt::format("Node {} status is now: NodeNotReady", api::nameOf(node)), kName);
  // Its pods are no longer known to be ready.
  for (const auto& podPtr : pods_.list()) {
    const api::Json& pod = *podPtr;
    if (api::at<std::string>(pod, {"spec", "nodeName"}) != api::nameOf(node)) continue;
    std::string phase = api::at<std::string>(pod, {"status", "phase"});
    if (phase == "Succeeded" || phase == "Failed") continue;
    api::Json p = pod;
    if (!p["status"].is_object()) p["status"] = api::Json::object();
    setCondition(p["status"]["conditions"], "Ready", "False", "NodeLost", "Node is not reachable");
    p["status"]["phase"] = "Unknown";
    auto st = ctx_.client.updateStatus("pods", p);
    if (st) pods_.assume(*st);
    else log::debug("node-controller: pod {} not ready: {}", objectKey(pod), st.error().message);
  }
}

void NodeLifecycleController::setTaints(const api::Json& node, bool unreachable, bool notReady) {
  api::Json taints = api::at<api::Json>(node, {"spec", "taints"}, api::Json::array());
  if (!taints.is_array()) taints = api::Json::array();
  api::Json wanted = api::Json::array();
  std::string now = api::nowRfc3339();
  auto keep = [&](const std::string& key, const std::string& effect, bool want) {
    for (const auto& t : taints)
      if (t.value("key", "") == key && t.value("effect", "") == effect) {
        if (want) wanted.push_back(t);
        return;
      }
    if (want) wanted.push_back({{"key", key}, {"effect", effect}, {"timeAdded", now}});
  };
  // TaintNodesByCondition: a pressure condition the node reports becomes a NoSchedule
  // taint (only while the node's own reports are current).
  static const std::pair<const char*, const char*> kConditionTaints[] = {
      {"MemoryPressure", "node.kubernetes.io/memory-pressure"},
      {"DiskPressure", "node.kubernetes.io/disk-pressure"},
      {"PIDPressure", "node.kubernetes.io/pid-pressure"}};
  auto isConditionTaint = [](const std::string& key) {
    for (const auto& [condition, taint] : kConditionTaints)
      if (key == taint) return true;
    return false;
  };
  for (const auto& t : taints) {
    std::string key = t.value("key", "");
    if (key != kUnreachableTaint && key != kNotReadyTaint && !isConditionTaint(key)) wanted.push_back(t);
  }
  for (const auto& [condition, taint] : kConditionTaints) {
    api::Json c = conditionOf(node, condition);
    keep(taint, "NoSchedule", !unreachable && c.is_object() && c.value("status", "") == "True");
  }
  keep(kUnreachableTaint, "NoSchedule", unreachable);
  keep(kUnreachableTaint, "NoExecute", unreachable);
  keep(kNotReadyTaint, "NoSchedule", notReady);
  keep(kNotReadyTaint, "NoExecute", notReady);
  auto sortKey = [](const api::Json& t) { return t.value("key", "") + "/" + t.value("effect", ""); };
  auto a = taints, b = wanted;
  std::sort(a.begin(), a.end(), [&](const auto& x, const auto& y) { return sortKey(x) < sortKey(y); });
  std::sort(b.begin(), b.end(), [&](const auto& x, const auto& y) { return sortKey(x) < sortKey(y); });
  if (a == b) return;
  api::Json updated = node;
  if (wanted.empty()) updated["spec"].erase("taints");
  else updated["spec"]["taints"] = wanted;
  auto written = ctx_.client.update("nodes", updated);
  if (!written) {
    log::debug("node-controller: taints of {}: {}", api::nameOf(node), written.error().message);
    return;
  }
  nodes_.assume(*written);
}

void NodeLifecycleController::evictPods(const api::Json& node) {
  api::Json taints = api::at<api::Json>(node, {"spec", "taints"}, api::Json::array());
  if (!taints.is_array()) return;
  std::int64_t now = nowSeconds();
  for (const auto& taint : taints) {
    if (taint.value("effect", "") != "NoExecute") continue;
    std::string key = taint.value("key", "");
    if (key != kUnreachableTaint && key != kNotReadyTaint) continue;
    std::int64_t added = api::parseRfc3339(taint.value("timeAdded", ""));
    if (added < 0) added = now;
    for (const auto& podPtr : pods_.list()) {
      const api::Json& pod = *podPtr;
      if (api::at<std::string>(pod, {"spec", "nodeName"}) != api::nameOf(node) || api::isTerminating(pod)) continue;
      // The toleration that matches: no tolerationSeconds tolerates forever.
      std::int64_t tolerated = ctx_.config.podEvictionTimeoutSeconds;
      auto tolerations = api::at<api::Json>(pod, {"spec", "tolerations"}, api::Json::array());
      if (tolerations.is_array())
        for (const auto& t : tolerations) {
          std::string tkey = t.value("key", ""), op = t.value("operator", std::string("Equal"));
          std::string effect = t.value("effect", "");
          bool matches = (effect.empty() || effect == "NoExecute") &&
                         ((op == "Exists" && (tkey.empty() || tkey == key)) || (tkey == key && t.value("value", "") == ""));
          if (!matches) continue;
          tolerated = t.contains("tolerationSeconds") && t["tolerationSeconds"].is_number()
                          ? t["tolerationSeconds"].get<std::int64_t>()
                          : -1;
          break;
        }
      if (tolerated < 0 || now < added + tolerated) continue;
      auto removed = ctx_.client.remove("pods", api::namespaceOf(pod), api::nameOf(pod));
      if (!removed) {
        if (removed.error().code != ENOENT)
          log::warn("node-controller: evict {}: {}", objectKey(pod), removed.error().message);
        continue;
      }
      if (api::isTerminating(*removed)) pods_.assume(*removed);
      else pods_.assumeDeleted(objectKey(pod));
      ctx_.events.record("Pod", pod, "Normal", "TaintManagerEviction",
                         fmt::format("Marking for deletion Pod {}", objectKey(pod)), kName);
    }
  }
}

}  // namespace ferry::cp
