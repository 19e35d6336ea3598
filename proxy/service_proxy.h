// The node's Service proxy: keeps the kernel in step with Services and
// EndpointSlices so that a connect()/sendmsg() to a Service address reaches one
// of its endpoints.
//
// Two modes:
//  - "ebpf" (default): cgroup sock_addr programs (bpf/service_lb.bpf.c) rewrite
//    the destination once, at connect()/sendmsg(), so no packet is translated
//    afterwards. Round-robin is exact (one atomic counter per Service port).
//    NodePort traffic that arrives from other nodes is DNAT-ed by nftables (table
//    `ip ferry`), because packets from outside never pass a local socket hook and
//    their replies need connection tracking, which the kernel's conntrack already
//    does well.
//  - "nftables": the same Services as a kube-proxy-nftables-style ruleset
//    (verdict maps, `numgen inc` round-robin, DNAT + masquerade) in `ip ferry`,
//    and IPv6 Services in its twin `ip6 ferry`.
//
// Pod egress masquerade (ensureMasquerade) lives in nftables in both modes, in
// its own table `ip ferry-nat`.
//
// Kernel state outlives the object: maps and links are pinned under
// ProxyConfig::bpffsDir and the nft tables stay, so an agent restart drops no
// connection. start() re-adopts what is pinned; resync() then reconciles it with
// the API. uninstall() removes everything (for `ferry` purge and tests).
//
// Not thread-safe: call from one thread (the agent's watch loop).
#pragma once

#include "api/error.h"
#include "api/types.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

namespace ferry::proxy {

struct ProxyConfig {
  std::string mode = "ebpf";   // ebpf | nftables
  std::string cgroupV2Path;    // ebpf: where the programs attach (the agent's cgroup root in the v2 hierarchy)
  std::string bpffsDir = "/sys/fs/bpf/ferry";  // ebpf: pins of maps and links; bpffs is mounted at /sys/fs/bpf when absent
  std::string nodeIP;          // NodePort frontends listen on this address
  std::string clusterCIDR;     // pod addresses, e.g. 10.42.0.0/16 (masquerade decisions)
  std::string serviceCIDR;     // e.g. 10.43.0.0/16
  std::string nodeName;        // endpoints with this nodeName are local (traffic policy Local)
  std::string nftTable = "ferry";         // Service rules (nftables mode; NodePort in both modes)
  std::string nftNatTable = "ferry-nat";  // pod egress masquerade
};

// A backend the node-local DNS (or another node-local service) puts in place of
// a Service's EndpointSlices.
struct OverrideBackend {
  std::string servicePort;  // the Service port's name, or its number as text
  std::string address;      // IPv4 or IPv6 address
  int port = 0;
};

// One Service frontend (address, port, protocol) as programmed in the kernel,
// in a form tests and `ferry` diagnostics can compare.
struct FrontendKey {
  std::string address;
  int port = 0;
  std::string protocol;  // TCP | UDP
  auto operator<=>(const FrontendKey&) const = default;
};
struct FrontendState {
  bool clientIPAffinity = false;
  int affinityTimeoutSeconds = 0;
  std::vector<std::string> backends;  // "addr:port", sorted
  bool operator==(const FrontendState&) const = default;
};
using ProgrammedState = std::map<FrontendKey, FrontendState>;

class ServiceProxy {
 public:
  // Loads the programs, mounts bpffs when absent, re-adopts pinned maps and
  // links (or creates and pins them), attaches to cgroupV2Path; in nftables mode
  // checks that libnftables works. Nothing already programmed is removed here:
  // call resync() with the full API state to drop what is stale.
  static Result<std::unique_ptr<ServiceProxy>> start(const ProxyConfig& config);

  // Incremental updates from the watch stream. Each leaves the kernel in a
  // consistent state: backends are written before the slots that name them and
  // slots before the count that exposes them; removal runs in reverse.
  Status upsertService(const api::Service& service);
  Status deleteService(const std::string& ns, const std::string& name);
  Status upsertEndpointSlice(const api::EndpointSlice& slice);
  Status deleteEndpointSlice(const std::string& ns, const std::string& name);

  // Steers a Service (e.g. kube-system/kube-dns) to node-local addresses
  // instead of its EndpointSlices, until cleared.
  Status setLocalOverride(const std::string& ns, const std::string& name, std::vector<OverrideBackend> backends);
  Status clearLocalOverride(const std::string& ns, const std::string& name);

  // Replaces the whole desired state (after a restart or a relist) and
  // reconciles the kernel with it: adds what is missing, rewrites what
  // differs, removes what the API no longer has. Live connections are kept.
  Status resync(const std::vector<api::Service>& services, const std::vector<api::EndpointSlice>& slices);

  // nftables table `ip <nftNatTable>`: masquerade traffic from clusterCIDR to
  // destinations outside it. Idempotent; this is the only writer of that table.
  Status ensureMasquerade();

  // What the kernel holds now (read back from the maps or, in nftables mode, the
  // state last written), and what it should hold for the current desired state.
  Result<ProgrammedState> programmedState() const;
  ProgrammedState desiredState() const;

  // Kernel memory of the BPF maps (ebpf mode; 0 in nftables mode).
  Result<uint64_t> mapMemoryBytes() const;

  // Removes pins, links, maps and nft tables this proxy owns (purge, tests).
  Status uninstall();

  // Does NOT detach: pinned state keeps serving connections until the next start().
  ~ServiceProxy();

  ServiceProxy(const ServiceProxy&) = delete;
  ServiceProxy& operator=(const ServiceProxy&) = delete;

  struct Impl;

 private:
  explicit ServiceProxy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::proxy
