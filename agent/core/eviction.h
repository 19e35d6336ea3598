// Eviction under node pressure, as the kubelet does it.
//
// Every monitoring interval the agent observes the eviction signals, compares
// them with the hard thresholds (`--eviction-hard`, the kubelet's syntax and
// defaults), sets the MemoryPressure / DiskPressure node conditions (kept True
// for --eviction-pressure-transition-period after the last time a threshold
// was met, so the condition does not flap) and, while a threshold is met, evicts
// one pod per interval in the kubelet's order. The evicted pod ends Failed with
// reason Evicted and the kubelet's message; its object stays for its owner to
// replace it.
//
// Signals (the kubelet's definitions):
//  - memory.available = node capacity - node working set. Capacity is MemTotal;
//    the working set is the root cgroup's usage minus its inactive file pages.
//    The root cgroup's usage is not readable on every hierarchy (cgroup v2 has no
//    memory.current at the root), so it is taken from /proc/meminfo as
//    MemTotal - MemFree: available = MemFree + Inactive(file). This is NOT
//    MemAvailable, which also counts reclaimable slab and part of active file.
//  - allocatableMemory.available = node allocatable (capacity - reserved) - the
//    working set of the pods (the sum of the pod cgroups). As in the kubelet, every
//    memory.available threshold is also applied to it (node allocatable enforced
//    for pods).
//  - nodefs.available / nodefs.inodesFree: the filesystem of the agent's data dir
//    (pods' writable layers, emptyDirs, logs and images all live there, so there is
//    no separate imagefs).
//
// Ranking (the kubelet's rankMemoryPressure / rankDiskPressureFunc): pods whose
// usage exceeds their requests first (so BestEffort pods, which request nothing,
// come first whenever they use anything), then lower priority first, then the
// larger usage above requests first. Critical pods (priority >= 2000000000) are
// never evicted.
#pragma once

#include "agent/core/api_client.h"
#include "api/error.h"
#include "api/object.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace ferry::agent {

class PodManager;
class SandboxManager;

enum class EvictionSignal { MemoryAvailable, AllocatableMemoryAvailable, NodeFsAvailable, NodeFsInodesFree };
std::string signalName(EvictionSignal signal);

// The resource a signal is about: what the message names and what pods are ranked by.
enum class EvictionResource { Memory, EphemeralStorage };
EvictionResource resourceOf(EvictionSignal signal);
std::string resourceName(EvictionResource resource);  // "memory", "ephemeral-storage"

struct EvictionThreshold {
  EvictionSignal signal = EvictionSignal::MemoryAvailable;
  std::int64_t quantity = 0;  // bytes (or inodes) when percentage == 0
  double percentage = 0;      // fraction of capacity, in (0, 1]
};

// "memory.available<100Mi,nodefs.available<10%": signal '<' quantity or percentage
// (AgentConfig::evictionHard holds the kubelet's Linux defaults).
// An empty spec means no hard thresholds. Errors name the bad statement. As in the
// kubelet, memory.available thresholds are copied to allocatableMemory.available.
Result<std::vector<EvictionThreshold>> parseEvictionThresholds(const std::string& spec);

// The memory= part of a --system-reserved / --kube-reserved list ("cpu=100m,memory=256Mi"), in bytes.
std::int64_t reservedMemoryBytes(const std::string& spec);

// "5m", "30s", "1m30s", "2h" -> seconds.
Result<std::chrono::seconds> parseDurationSeconds(const std::string& text);

// What the node looks like at one moment (from the kernel, or fake in tests).
struct NodeObservation {
  std::int64_t memoryCapacityBytes = 0;
  std::int64_t memoryWorkingSetBytes = 0;  // node: capacity - (MemFree + Inactive(file))
  std::int64_t allocatableMemoryBytes = 0;
  std::int64_t podsWorkingSetBytes = 0;
  std::int64_t fsCapacityBytes = 0;
  std::int64_t fsAvailableBytes = 0;  // for unprivileged users (f_bavail)
  std::int64_t inodes = 0;
  std::int64_t inodesFree = 0;
};

// /proc/meminfo text -> capacity and working set of the node.
struct NodeMemory {
  std::int64_t capacityBytes = 0;
  std::int64_t workingSetBytes = 0;
};
Result<NodeMemory> nodeMemoryFromMeminfo(const std::string& meminfoText);

struct SignalValue {
  std::int64_t available = 0;
  std::int64_t capacity = 0;
};
std::map<EvictionSignal, SignalValue> signalsOf(const NodeObservation& observation);

struct ThresholdMet {
  EvictionThreshold threshold;
  std::int64_t thresholdValue = 0;  // the threshold in absolute units for this capacity
  std::int64_t available = 0;
};
// Thresholds whose signal is below them now (memory signals first, as the kubelet
// reclaims memory before disk).
std::vector<ThresholdMet> thresholdsMet(const std::vector<EvictionThreshold>& thresholds,
                                        const std::map<EvictionSignal, SignalValue>& signals);

struct ContainerUsage {
  std::string name;
  std::int64_t memoryRequest = 0, memoryUsage = 0;
  std::int64_t storageRequest = 0, storageUsage = 0;
};

struct PodUsage {
  std::string uid, ns, name;
  std::int64_t priority = 0;
  std::int64_t memoryRequest = 0, memoryUsage = 0;    // working set
  std::int64_t storageRequest = 0, storageUsage = 0;  // writable layers, emptyDirs, logs
  std::vector<ContainerUsage> containers;
};

// Identity, priority and requests of a pod from its object (usage left at 0).
PodUsage podUsageSkeleton(const api::Json& pod);

// Priority at or above this is system-critical: the kubelet never evicts such a pod.
inline constexpr std::int64_t kSystemCriticalPriority = 2000000000;

// The pods in the order the kubelet evicts them for `resource` (critical pods left out).
std::vector<PodUsage> rankForEviction(std::vector<PodUsage> pods, EvictionResource resource);

// The kubelet's message: "The node was low on resource: memory. Threshold quantity:
// 100Mi, available: 51200Ki. Container hog was using 300Mi, request is 0, has larger
// consumption of memory. "
std::string evictionMessage(const ThresholdMet& met, const PodUsage& pod);

// The node conditions a set of met thresholds implies.
struct PressureConditions {
  bool memory = false;
  bool disk = false;
  bool operator==(const PressureConditions&) const = default;
};

struct EvictionConfig {
  std::vector<EvictionThreshold> hard;
  std::chrono::seconds pressureTransitionPeriod{300};
  std::chrono::milliseconds monitoringInterval{10000};
  std::string nodeName;
  std::string dataDir;  // nodefs
  std::int64_t allocatableMemoryBytes = 0;
  // This node's object as the agent's watch last saw it (none: read it from the API).
  std::function<std::optional<api::Json>()> currentNode;
};

class EvictionManager {
 public:
  EvictionManager(ApiClient& client, PodManager& pods, SandboxManager& sandboxes, EvictionConfig config);

  // Observes, updates conditions, evicts; every monitoringInterval until `stop`.
  void run(const std::atomic<bool>& stop);
  // One pass (public for tests and the first pass at start).
  void synchronize();

  // The kubelet's admission under pressure: BestEffort pods are refused under
  // MemoryPressure, every pod under DiskPressure (critical pods and pods that
  // tolerate the taint excepted). Returns the rejection message, or empty.
  std::string admissionRejection(const api::Json& pod) const;

  PressureConditions conditions() const;

 private:
  Result<NodeObservation> observe(std::vector<PodUsage>& pods);
  Status writeNodeConditions(const PressureConditions& wanted);

  ApiClient& client_;
  PodManager& pods_;
  SandboxManager& sandboxes_;
  EvictionConfig config_;

  mutable std::mutex mu_;
  PressureConditions conditions_;  // as last observed (what admission uses)
  std::optional<std::chrono::steady_clock::time_point> memoryLastMet_, diskLastMet_;
};

}  // namespace ferry::agent
