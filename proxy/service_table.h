// The proxy's desired state: Services, their EndpointSlices and local
// overrides, turned into what each Service port should balance over. Pure
// logic (no kernel), shared by the BPF and the nftables back ends.
#pragma once

#include "api/types.h"
#include "proxy/service_proxy.h"

#include <map>
#include <set>
#include <string>
#include <vector>

namespace ferry::proxy {

struct Backend {
  std::string address;  // IPv4, or IPv6 in canonical (inet_ntop) form
  int port = 0;
  auto operator<=>(const Backend&) const = default;
  // "addr:port", or "[addr]:port" for IPv6.
  std::string text() const {
    return address.find(':') == std::string::npos ? address + ":" + std::to_string(port)
                                                  : "[" + address + "]:" + std::to_string(port);
  }
};

// One port of one Service in one IP family, with the backends each kind of
// traffic may use. A dual-stack Service (spec.clusterIPs with an IPv4 and an
// IPv6 address) has a plan per port per family; each takes the endpoints of
// the EndpointSlices of its addressType only.
struct ServicePortPlan {
  std::string serviceKey;  // ns/name
  std::string portName;
  std::string protocol;    // TCP | UDP
  bool ipv6 = false;       // the family of clusterIP and of every backend
  std::string clusterIP;   // IPv6 in canonical (inet_ntop) form
  int port = 0;
  int nodePort = 0;        // 0: not exposed on the node
  bool clientIPAffinity = false;
  int affinityTimeoutSeconds = 0;
  // Traffic to the ClusterIP from this node (internalTrafficPolicy applied).
  std::vector<Backend> internalBackends;
  // Traffic to nodeIP:nodePort from elsewhere (externalTrafficPolicy applied).
  std::vector<Backend> externalBackends;
  bool externalPolicyLocal = false;  // keep the client address: no masquerade
  // Traffic to nodeIP:nodePort from a local socket: every usable endpoint, as
  // kube-proxy treats locally originated NodePort traffic.
  std::vector<Backend> allBackends;
};

class ServiceTable {
 public:
  explicit ServiceTable(std::string nodeName) : nodeName_(std::move(nodeName)) {}

  void upsertService(const api::Service& service);
  void deleteService(const std::string& key);
  // Returns the key (ns/name) of the Service the slice belonged to before ("" if new).
  std::string upsertEndpointSlice(const api::EndpointSlice& slice);
  std::string deleteEndpointSlice(const std::string& ns, const std::string& name);
  void setOverride(const std::string& key, std::vector<OverrideBackend> backends);
  void clearOverride(const std::string& key);
  // Replaces Services and slices; overrides stay.
  void replaceAll(const std::vector<api::Service>& services, const std::vector<api::EndpointSlice>& slices);

  std::vector<ServicePortPlan> plan(const std::string& serviceKey) const;
  std::vector<ServicePortPlan> planAll() const;
  std::vector<std::string> serviceKeys() const;

  static std::string keyOf(const std::string& ns, const std::string& name) { return ns + "/" + name; }

 private:
  std::string nodeName_;
  std::map<std::string, api::Service> services_;             // by ns/name
  std::map<std::string, api::EndpointSlice> slices_;         // by ns/slice-name
  std::map<std::string, std::set<std::string>> slicesByService_;  // ns/service -> slice keys
  std::map<std::string, std::vector<OverrideBackend>> overrides_;  // by ns/name
};

// The frontends a plan programs on a node: the ClusterIP one and, when
// nodeIP is known and of the plan's family, the NodePort one (local sockets);
// backends sorted.
std::map<FrontendKey, FrontendState> frontendsOf(const ServicePortPlan& plan, const std::string& nodeIP);

}  // namespace ferry::proxy
