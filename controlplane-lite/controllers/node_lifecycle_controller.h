// Node lifecycle: a node whose Lease (kube-node-lease/<node>) and Ready
// heartbeat have not been renewed for nodeMonitorGracePeriodSeconds becomes
// Ready=Unknown, gets the node.kubernetes.io/unreachable taints (NoSchedule and
// NoExecute) and its pods Ready=False with phase Unknown. Pods that do not
// tolerate the NoExecute taint are deleted once their toleration runs out
// (tolerationSeconds, else podEvictionTimeoutSeconds, the default Kubernetes'
// admission adds); their owners replace them, a standalone pod is gone. A node
// that heartbeats again loses the taints.
#pragma once

#include "controlplane-lite/controllers/controller_context.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace ferry::cp {

class NodeLifecycleController : public ControlLoop {
 public:
  static constexpr const char* kName = "node-controller";
  static constexpr const char* kUnreachableTaint = "node.kubernetes.io/unreachable";
  static constexpr const char* kNotReadyTaint = "node.kubernetes.io/not-ready";

  explicit NodeLifecycleController(ControllerContext& context,
                                   std::chrono::milliseconds period = std::chrono::milliseconds(1000));
  ~NodeLifecycleController() override;
  void start() override;
  void stop() override;

  // One pass over every node (exposed for tests).
  void checkAll();

 private:
  struct Heartbeat {
    std::string leaseRenewTime;
    std::string readyHeartbeat;
    std::chrono::steady_clock::time_point observedAt;
  };
  void checkNode(const api::Json& node);
  void markUnknown(const api::Json& node);
  void setTaints(const api::Json& node, bool unreachable, bool notReady);
  void evictPods(const api::Json& node);

  ControllerContext& ctx_;
  Informer& nodes_;
  Informer& leases_;
  Informer& pods_;
  std::chrono::milliseconds period_;
  std::unordered_map<std::string, Heartbeat> heartbeats_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace ferry::cp
