// The node side of pod networking, in one network namespace (the "node"; in tests a
// namespace the test made, in production the agent's own): the pod bridge, one veth
// pair per pod, host-gw routes to other nodes' pod CIDRs.
// This module is the only one in Ferry that speaks rtnetlink (libnl-route-3); its
// errors are translated from NLE_* codes into ferry::Error here.
#pragma once

#include "api/error.h"
#include "netns/namespace_pins.h"

#include <memory>
#include <string>
#include <vector>

namespace ferry::netns {

struct PodLinkSpec {
  std::string podNetnsPath{};  // pinned pod network namespace (see namespace_pins.h)
  std::string hostIfName{};    // host end of the veth, <= 15 chars, e.g. "fv1a2b3c4d5e6f"
  std::string bridgeName{};    // node bridge the host end joins, e.g. "ferry0"
  std::string podAddress{};    // pod IP with the pod CIDR prefix, e.g. "10.42.1.7/24"
  std::string gateway{};       // default route of the pod, e.g. "10.42.1.1"
  int mtu = 1500;
};

struct RouteEntry {
  std::string destination{};   // "10.42.2.0/24"; "default" for 0.0.0.0/0
  std::string via{};           // gateway, empty when directly connected
  std::string device{};        // output interface name, may be empty
  bool ownedByFerry = false; // added by ensureRoute (marked with Ferry's route protocol)
};

struct AddressEntry {
  std::string device{};        // interface name
  std::string address{};       // "10.42.1.1/24"
};

class NodeNetwork {
 public:
  // Opens rtnetlink inside the network namespace at `nodeNetnsPath`; an empty path
  // means the namespace of the calling thread.
  static Result<std::unique_ptr<NodeNetwork>> open(const std::string& nodeNetnsPath = "");
  ~NodeNetwork();
  NodeNetwork(const NodeNetwork&) = delete;
  NodeNetwork& operator=(const NodeNetwork&) = delete;

  // Creates the bridge if missing, gives it `gatewayCidr` (e.g. "10.42.1.1/24") if it
  // lacks it, and sets it up. Idempotent.
  Status ensureBridge(const std::string& name, const std::string& gatewayCidr);

  // Turns on IPv4 forwarding in the node namespace (net.ipv4.ip_forward = 1).
  Status enableIpForwarding();

  // Veth pair: the pod end is created directly inside the pod namespace as `eth0`
  // with the pod address and a default route via the gateway, `lo` is set up there;
  // the host end joins the bridge (with hairpin on) and is set up. Fails with EEXIST if the host end
  // already exists (callers remove it first when recovering).
  Status createPodLink(const PodLinkSpec& spec);

  // A pod's whole network side in one pass: createPodNamespaces(podDir, hostname) and, on
  // the same thread while inside the new network namespace, the veth (eth0 created there,
  // host end sent to the node), lo and eth0 up, address and default route; then the host
  // end joins the bridge and goes up. `spec.podNetnsPath` is ignored. Fewer thread
  // hand-offs than createPinnedNamespaces + createPodLink, which matters under CPU pressure.
  Result<NamespacePins> createPodNamespacesAndLink(const std::string& podDir, const std::string& hostname,
                                                   const PodLinkSpec& spec);

  // Deletes the veth pair by its host end (the pod end goes with it). A missing
  // link is not an error.
  Status removePodLink(const std::string& hostIfName);

  // host-gw: route `destinationCidr` via `via` (another node's IP). Replaces a
  // different existing route to the same destination. Idempotent.
  Status ensureRoute(const std::string& destinationCidr, const std::string& via);
  Status removeRoute(const std::string& destinationCidr);  // missing is not an error

  // Observations, for reconciliation and for tests that count what is left.
  Result<std::vector<std::string>> listLinks();                   // interface names
  Result<std::vector<AddressEntry>> listAddresses();              // IPv4, all links
  Result<std::vector<RouteEntry>> listRoutes();                   // IPv4 main table
  Result<int> linkIndex(const std::string& name);                 // ENODEV when missing
  Result<bool> hairpinEnabled(const std::string& bridgePortName);  // pod veths have it on

 private:
  struct Impl;
  explicit NodeNetwork(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Lists links/addresses/routes as seen from inside another namespace (e.g. a pod's),
// for tests and diagnostics.
Result<std::vector<AddressEntry>> listAddressesIn(const std::string& netnsPath);
Result<std::vector<RouteEntry>> listRoutesIn(const std::string& netnsPath);

}  // namespace ferry::netns
