// The scheduler's picture of the cluster: every node with what its pods already
// request, and the placement decision for one pod against that picture
// (filters, then scores). Pure logic, no API access; not thread-safe (the
// Scheduler serializes access).
#pragma once

#include "api/object.h"
#include "controlplane-lite/scheduler/pod_resources.h"

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace ferry::cp {

struct Taint {
  std::string key, value, effect;
};

struct PlacedPod {
  ResourceList requests;
  ResourceList scoringRequests;  // requests with Kubernetes' non-zero defaults for scoring
  std::vector<std::string> hostPorts;  // "protocol/ip/port"
  int ownerId = -1;                    // interned controller uid, -1: standalone
};

struct NodeInfo {
  std::string name;
  api::Json labels = api::Json::object();
  std::vector<Taint> taints;  // including the implicit not-ready/unreachable taint
  bool unschedulable = false;
  ResourceList allocatable;
  ResourceList requested;
  ResourceList scoringRequested;
  std::unordered_map<std::string, PlacedPod> pods;  // by pod key
  std::unordered_map<int, int> ownerCounts;
  std::set<std::string> usedHostPorts;
};

// The parts of a pod the filters read (pointers into the pod, which must outlive
// this; a missing part points at a null Json).
struct PodTerms {
  const api::Json* tolerations;
  const api::Json* nodeSelector;
  const api::Json* required;  // spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution
  static PodTerms of(const api::Json& pod);
};

struct PlacementResult {
  std::string nodeName;  // empty: unschedulable
  std::string message;   // "0/3 nodes are available: ..." when unschedulable
  // What the pod requests, as schedule() described it: placeScheduled() accounts
  // it without parsing the pod's quantities a second time.
  PlacedPod placed;
  std::string ownerUid;  // the pod's controller uid, "" when standalone
};

class ClusterState {
 public:
  void upsertNode(const api::Json& node);
  void removeNode(const std::string& name);
  // Accounts a pod on `nodeName` (replacing an earlier placement of the same key).
  void placePod(const std::string& podKey, const api::Json& pod, const std::string& nodeName);
  void removePod(const std::string& podKey);
  // placePod() for the result of schedule(pod) on the same state (result.nodeName set).
  void placeScheduled(const std::string& podKey, PlacementResult& result);
  // Node the pod is accounted on, or "".
  std::string nodeOfPod(const std::string& podKey) const;

  // Chooses a node for `pod`. Deterministic for a given state.
  PlacementResult schedule(const api::Json& pod);

  std::size_t nodeCount() const { return nodes_.size(); }
  const NodeInfo* node(const std::string& name) const;

 private:
  int internOwner(const std::string& uid);
  void account(const std::string& podKey, PlacedPod placed, const std::string& nodeName);
  // Empty when the node passes every filter, else the reasons it failed the first failing filter.
  std::vector<std::string> filter(const NodeInfo& node, const PodTerms& pod, const PlacedPod& placed) const;
  std::size_t nodesToFind() const;

  std::vector<NodeInfo> nodes_;  // sorted by name
  std::unordered_map<std::string, std::size_t> nodeIndex_;
  std::unordered_map<std::string, std::string> podNode_;
  std::unordered_map<std::string, int> ownerIds_;
  // Per owner: how many nodes hold 1, 2, ... of its pods, to know the least any node holds.
  std::unordered_map<int, std::map<int, int>> ownerHistogram_;
  int leastOwnerCount(int ownerId) const;
  void countOwner(int ownerId, int before, int after);
  std::size_t nextStartIndex_ = 0;
};

// Helpers shared with tests.
bool tolerates(const api::Json& tolerations, const Taint& taint);
bool nodeMatchesPodAffinity(const api::Json& pod, const std::string& nodeName, const api::Json& nodeLabels);
bool nodeMatchesPodTerms(const PodTerms& pod, const std::string& nodeName, const api::Json& nodeLabels);

}  // namespace ferry::cp
