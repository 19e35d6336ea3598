// The agent's pods: for each pod bound to this node, a sandbox (agent/sandbox)
// and a PodWorker (agent/runtime) that runs its containers; status and Events
// go back to the API server; a terminated pod's sandbox is removed and its
// object finally deleted (the node has the last word on a graceful delete).
#pragma once

#include "agent/agent_config.h"
#include "agent/core/api_client.h"
#include "agent/images/image_store.h"
#include "agent/runtime/container.h"
#include "agent/runtime/pod_worker.h"
#include "agent/sandbox/sandbox_manager.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

namespace ferry::agent {

// Pod-level cgroup settings and QoS from a pod spec (sum of containers, init max).
struct PodResources {
  cgroup::QosClass qos = cgroup::QosClass::BestEffort;
  cgroup::Limits podLimits;
  std::map<std::string, cgroup::Limits> containerLimits;  // by container name
};
PodResources podResourcesOf(const api::Json& pod);

class PodManager {
 public:
  PodManager(ApiClient& client, SandboxManager& sandboxes, images::ImageStore& images,
             runtime::ContainerRuntime& runtime, const AgentConfig& config, std::string nodeName, std::string nodeIP);
  ~PodManager();  // stops the workers; containers keep running

  // From the watch of pods bound to this node.
  void onPodUpsert(const api::Json& pod);
  void onPodDelete(const api::Json& pod);
  // After each (re)list: sandboxes of pods the API no longer has are removed.
  void onPodsSynced(const std::vector<api::Json>& pods);

  // Where the Services for containers' service link variables come from (the agent's
  // watch cache); without it containers get none. Set before pods arrive.
  void setServiceLister(std::function<std::vector<api::Json>()> lister) { serviceLister_ = std::move(lister); }

  // For the agent API (logs, exec). Shared: a log stream keeps the worker it reads
  // alive after the pod is finalized (the worker is stopped then, its logs stay readable
  // until the directory goes).
  std::shared_ptr<runtime::PodWorker> worker(const std::string& ns, const std::string& name);
  size_t runningPods() const;

  // Pods whose containers run here and that are neither terminating nor evicted
  // (what the eviction manager may rank), with their pod cgroup (relative path).
  struct ActivePod {
    std::string uid;
    api::Json pod;
    std::string cgroupPath;
  };
  std::vector<ActivePod> activePods() const;
  // Node-pressure eviction (agent/core/eviction.h): the containers are killed after a
  // 1 s grace (the kubelet's hard eviction), the sandbox is removed, and the pod is
  // reported Failed with reason Evicted and `message`; the object stays for its owner.
  // False when the pod is not active here.
  bool evict(const std::string& uid, const std::string& message);
  // Admission of a new pod: a non-empty answer rejects it (Failed, reason Evicted, that
  // message), as the kubelet refuses pods under node pressure.
  void setAdmission(std::function<std::string(const api::Json& pod)> admit);
  // The node's pods capacity (agent/core/node_registration.h podCapacity): a new pod
  // beyond it is rejected as the kubelet does (Failed, reason OutOfpods). Default --max-pods.
  void setPodCapacity(int pods);

 private:
  struct PodEntry {
    api::Json pod;
    std::shared_ptr<runtime::PodWorker> worker;
    std::string cgroupPath;
    bool finalizing = false;
    std::string evictionMessage;  // set by evict(): report Failed/Evicted once the containers stopped
    bool evictionReported = false;
    bool terminal = false;  // Failed or Succeeded before this agent saw it, nothing runs: never started
    int sandboxFailures = 0;  // failed sandbox creations in a row (the retry back-off)
    std::chrono::steady_clock::time_point firstSeen = std::chrono::steady_clock::now();  // pod start latency
    // Set by evict(): the worker's own status reports stop, so the pod goes straight to Failed/Evicted.
    std::shared_ptr<std::atomic<bool>> statusFrozen = std::make_shared<std::atomic<bool>>(false);
  };

  // Makes the sandbox and starts the worker; when the sandbox fails, the delay after
  // which to try again.
  std::optional<std::chrono::seconds> startPod(const std::string& uid);
  // Pods admitted here that still hold or will hold resources (all but `except`).
  size_t admittedPodsLocked(const std::string& except) const;
  runtime::PodDeps depsFor(const std::string& uid, const api::Json& pod, const std::string& podCgroup);
  void housekeepingLoop();
  // Images of this node's pods (spec references) and of containers the runtime still
  // has: what image GC must keep.
  std::set<std::string> imagesInUse() const;
  void collectImageGarbage();
  void statusLoop();
  void eventLoop();
  void queueStatus(const api::Json& pod, const api::Json& status);
  void queueEvent(const api::Json& pod, const std::string& reason, const std::string& message, const std::string& type);
  Status finalize(const std::string& uid);
  void finishEviction(const std::string& uid);
  Result<std::string> writeVolume(const api::Json& pod, const api::Json& volume);
  Result<std::vector<std::string>> resolveEnv(const api::Json& pod, const std::string& podIP, const api::Json& container);

  ApiClient& client_;
  SandboxManager& sandboxes_;
  images::ImageStore& images_;
  runtime::ContainerRuntime& runtime_;
  const AgentConfig& config_;
  std::string nodeName_;
  std::string nodeIP_;

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<PodEntry>> pods_;  // by uid
  std::set<std::string> starting_;
  std::set<std::string> removing_;  // uids whose finalize() is scheduled or running
  std::function<std::string(const api::Json&)> admit_;
  int podCapacity_;

  // Status writes and Events, coalesced per pod and sent off the watch thread.
  std::mutex outMu_;
  std::condition_variable outCv_;
  struct PendingStatus {
    api::Json pod;  // the pod, or only its identity (podIdentity)
    api::Json status;
    std::chrono::steady_clock::time_point queuedAt;
    std::chrono::steady_clock::time_point notBefore;  // a retry after a failed write waits
  };
  static constexpr std::chrono::seconds kStatusRetryDelay{1};
  std::map<std::string, PendingStatus> pendingStatus_;  // by uid
  std::set<std::string> statusInFlight_;  // uids whose status a writer is sending
  std::deque<api::Json> pendingEvents_;

  std::function<std::vector<api::Json>()> serviceLister_;
  std::atomic<bool> stop_{false};
  std::thread housekeeping_;
  static constexpr int kStatusWriters = 4;
  std::vector<std::thread> statusWriters_;
  std::thread eventWriter_;
  // Pod starts (sandbox, adopt) and every worker's sync run here: a few threads for all
  // pods, more only while tasks block (see TaskPool). Declared last: destroyed first,
  // after ~PodManager stopped the workers, waiting for runs in progress.
  runtime::TaskPool pool_;
};

}  // namespace ferry::agent
