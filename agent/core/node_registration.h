// Registers this node (Node object with capacity, allocatable, addresses,
// conditions, nodeInfo), waits for its podCIDR and keeps its Lease renewed.
#pragma once

#include "agent/agent_config.h"
#include "agent/core/api_client.h"

#include <atomic>
#include <string>

namespace ferry::agent {

struct NodeFacts {
  std::string name;
  std::string internalIP;
  std::string hostname;
  int cpuCores = 1;
  std::int64_t memoryBytes = 0;
  std::string kernelVersion;
  std::string osImage;
};

// Reads cores, memory, kernel and addresses of the machine (or network namespace) we run in.
NodeFacts discoverNodeFacts(const AgentConfig& config);

// The pods this node can hold: --max-pods, but never more than the pod CIDR has
// addresses for (a /24 gives 253), so the scheduler never binds a pod that could get
// no IP. An empty or unparsable CIDR leaves --max-pods.
int podCapacity(int maxPods, const std::string& podCIDR);

// Builds the Node object the agent registers (pure: tested without a server). The pods
// capacity and allocatable are podCapacity(config.maxPods, podCIDR).
api::Json buildNodeObject(const NodeFacts& facts, const AgentConfig& config, const std::string& podCIDR = "");

class NodeRegistration {
 public:
  NodeRegistration(ApiClient& client, NodeFacts facts, const AgentConfig& config);

  // Creates or updates the Node; returns its podCIDR once the control plane
  // has assigned one (waits up to `timeoutSeconds`, retrying while the server
  // cannot be reached).
  Result<std::string> registerAndWaitForPodCIDR(int timeoutSeconds, const std::atomic<bool>& stop);
  // Renews the Lease in kube-node-lease (creates it first time).
  Status renewLease();
  // Sets the Ready condition (and the others) when it changes.
  Status reportReady(bool ready, const std::string& reason, const std::string& message);

 private:
  // One create-or-refresh of the Node object.
  Status registerOnce();
  // Writes the pods capacity the node's podCIDR allows, when --max-pods is more.
  Status capPodsToCidr(const std::string& podCIDR);
  ApiClient& client_;
  NodeFacts facts_;
  const AgentConfig& config_;
  std::string leaseResourceVersion_;
};

}  // namespace ferry::agent
