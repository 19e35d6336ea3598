// Pod sandboxes: what a pod's containers share. Per pod: pinned network, IPC and UTS
// namespaces (no pause process), a veth to the node bridge with the pod's own IP, and
// a pod cgroup under the QoS tree carrying the pod-level limits.
//
// The container runtime enters `netnsPath`/`ipcnsPath`/`utsnsPath` with setns() and puts
// container processes into cgroups through `cgroups()` (createContainer + attach).
// Thread-safe: create/remove are serialised; find/list do not wait for them.
#pragma once

#include "api/error.h"
#include "cgroup/cgroup_tree.h"
#include "cgroup/limits.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ferry::agent {

struct SandboxManagerConfig {
  std::string runDir{};          // pins under <runDir>/pods/<uid>/{net,ipc,uts}
  std::string dataDir{};         // IPAM and sandbox records: <dataDir>/sandboxes.json
  std::string cgroupRoot{};      // --cgroup-root, e.g. "ferry"
  std::string cgroupMountRoot = "/sys/fs/cgroup";
  std::string nodeNetnsPath{};   // "" = the agent's own network namespace (tests pass their "node")
  std::string bridgeName = "ferry0";
  std::string podCIDR{};         // this node's pod CIDR, e.g. "10.42.1.0/24"; gateway = first address
  int mtu = 1500;
  int64_t podPidsLimit = 4096; // pids.max of every pod cgroup (node-wide); <= 0: unlimited
};

struct PodSandboxSpec {
  std::string uid{};             // metadata.uid (required)
  std::string name{};            // metadata.name
  std::string namespace_{};      // metadata.namespace
  std::string hostname{};        // UTS hostname; default: name
  cgroup::QosClass qos = cgroup::QosClass::BestEffort;
  cgroup::Limits limits{};       // pod-level (sum of containers); pidsMax defaults to podPidsLimit
};

struct PodSandbox {
  std::string uid{}, name{}, namespace_{};
  std::string podIP{};           // "10.42.1.7"
  int prefixLength = 0;        // of the pod CIDR
  std::string gateway{};         // "10.42.1.1"
  std::string netnsPath{}, ipcnsPath{}, utsnsPath{};  // pinned namespaces to setns() into
  std::string cgroupPath{};      // pod cgroup, relative to the cgroup root ("burstable/pod<uid>")
  std::string hostVeth{};        // host end of the pod's veth
  cgroup::QosClass qos = cgroup::QosClass::BestEffort;
};

struct PeerNodeRoute {
  std::string podCIDR{};         // another node's pod CIDR
  std::string nodeIP{};          // that node's IP, reachable from this node's namespace
};

class SandboxManager {
 public:
  // Node setup: bridge with the gateway address, IPv4 forwarding, cgroup root, IPAM
  // state loaded; sandboxes recorded by a previous run are kept, half-made ones removed.
  static Result<std::unique_ptr<SandboxManager>> open(const SandboxManagerConfig& config);
  ~SandboxManager();
  SandboxManager(const SandboxManager&) = delete;
  SandboxManager& operator=(const SandboxManager&) = delete;

  // Creates the sandbox, or returns the existing one for `spec.uid`. On failure,
  // everything made so far is undone.
  Result<PodSandbox> create(const PodSandboxSpec& spec);

  // Removes the sandbox: kills what is left in its cgroup, removes the cgroup, unpins
  // the namespaces, releases the IP. The veth goes with the pod's network namespace,
  // which the kernel destroys in the background once nothing holds it (so it may be
  // listed for a few ms after this returns). A missing sandbox is not an error.
  Status remove(const std::string& podUid);

  std::vector<PodSandbox> list() const;
  std::optional<PodSandbox> find(const std::string& podUid) const;

  // host-gw: makes the node's routes to other nodes' pod CIDRs exactly `peers`
  // (routes this manager added earlier and no longer listed are removed).
  Status setPeerRoutes(const std::vector<PeerNodeRoute>& peers);

  // The cgroup tree, for container cgroups (createContainer, attach, stats, ...).
  cgroup::CgroupTree& cgroups();

  const SandboxManagerConfig& config() const;

 private:
  struct Impl;
  explicit SandboxManager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::agent
