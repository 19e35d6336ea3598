#include "proxy/service_table.h"

#include <arpa/inet.h>

#include <algorithm>
#include <set>

namespace ferry::proxy {

namespace {

bool programmable(const api::Service& s) {
  if (s.type == "ExternalName") return false;
  return !s.clusterIP.empty() && !s.headless();  // headless: DNS only, no VIP
}

bool isIPv6(const std::string& address) { return address.find(':') != std::string::npos; }

// IPv6 text as inet_ntop writes it, so that what the maps read back compares
// equal; anything unparsable is left as is for the back end to reject by name.
std::string canonicalIP(const std::string& address) {
  if (!isIPv6(address)) return address;
  in6_addr a{};
  if (inet_pton(AF_INET6, address.c_str(), &a) != 1) return address;
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, &a, buf, sizeof buf);
  return buf;
}

// The Service's virtual addresses: spec.clusterIPs (one per family, primary
// first) when set, else spec.clusterIP.
std::vector<std::string> clusterIPsOf(const api::Service& s) {
  std::vector<std::string> ips;
  for (const std::string& ip : s.clusterIPs.empty() ? std::vector<std::string>{s.clusterIP} : s.clusterIPs) {
    if (ip.empty() || ip == "None") continue;
    std::string canonical = canonicalIP(ip);
    if (std::find(ips.begin(), ips.end(), canonical) == ips.end()) ips.push_back(canonical);
  }
  return ips;
}

void sortUnique(std::vector<Backend>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

}  // namespace

void ServiceTable::upsertService(const api::Service& service) {
  services_[keyOf(service.ns, service.name)] = service;
}

void ServiceTable::deleteService(const std::string& key) { services_.erase(key); }

std::string ServiceTable::upsertEndpointSlice(const api::EndpointSlice& slice) {
  std::string key = keyOf(slice.ns, slice.name);
  std::string previousService;
  if (auto it = slices_.find(key); it != slices_.end()) {
    previousService = it->second.serviceName;
    slicesByService_[keyOf(slice.ns, previousService)].erase(key);
  }
  slices_[key] = slice;
  slicesByService_[keyOf(slice.ns, slice.serviceName)].insert(key);
  return previousService.empty() ? "" : keyOf(slice.ns, previousService);
}

std::string ServiceTable::deleteEndpointSlice(const std::string& ns, const std::string& name) {
  auto it = slices_.find(keyOf(ns, name));
  if (it == slices_.end()) return "";
  std::string service = keyOf(ns, it->second.serviceName);
  slicesByService_[service].erase(it->first);
  slices_.erase(it);
  return service;
}

void ServiceTable::setOverride(const std::string& key, std::vector<OverrideBackend> backends) {
  overrides_[key] = std::move(backends);
}

void ServiceTable::clearOverride(const std::string& key) { overrides_.erase(key); }

void ServiceTable::replaceAll(const std::vector<api::Service>& services,
                              const std::vector<api::EndpointSlice>& slices) {
  services_.clear();
  slices_.clear();
  slicesByService_.clear();
  for (const auto& s : services) upsertService(s);
  for (const auto& s : slices) upsertEndpointSlice(s);
}

std::vector<std::string> ServiceTable::serviceKeys() const {
  std::vector<std::string> keys;
  for (const auto& [key, _] : services_) keys.push_back(key);
  return keys;
}

std::vector<ServicePortPlan> ServiceTable::plan(const std::string& serviceKey) const {
  std::vector<ServicePortPlan> plans;
  auto sit = services_.find(serviceKey);
  if (sit == services_.end() || !programmable(sit->second)) return plans;
  const api::Service& svc = sit->second;
  const auto override = overrides_.find(serviceKey);

  const std::vector<std::string> clusterIPs = clusterIPsOf(svc);
  for (const api::ServicePort& sp : svc.ports) {
    if (sp.protocol != "TCP" && sp.protocol != "UDP") continue;
    for (const std::string& clusterIP : clusterIPs) {
      ServicePortPlan p;
      p.serviceKey = serviceKey;
      p.portName = sp.name;
      p.protocol = sp.protocol;
      p.ipv6 = isIPv6(clusterIP);
      p.clusterIP = clusterIP;
      p.port = sp.port;
      p.nodePort = (svc.type == "NodePort" || svc.type == "LoadBalancer") ? sp.nodePort : 0;
      p.clientIPAffinity = svc.sessionAffinity == "ClientIP";
      p.affinityTimeoutSeconds = p.clientIPAffinity ? svc.affinityTimeoutSeconds : 0;
      p.externalPolicyLocal = svc.externalTrafficPolicy == "Local";

      if (override != overrides_.end()) {
        for (const OverrideBackend& b : override->second) {
          if ((b.servicePort == sp.name || b.servicePort == std::to_string(sp.port)) && isIPv6(b.address) == p.ipv6)
            p.allBackends.push_back({canonicalIP(b.address), b.port});
        }
        sortUnique(p.allBackends);
        p.internalBackends = p.externalBackends = p.allBackends;
        plans.push_back(std::move(p));
        continue;
      }

      // Endpoints of this port: the slice port carries the Service port's name,
      // with the target port already resolved per pod (named targetPorts).
      struct Candidate {
        Backend backend;
        bool ready, servingTerminating, local;
      };
      std::vector<Candidate> candidates;
      static const std::set<std::string> kNone;
      auto owned = slicesByService_.find(serviceKey);
      for (const std::string& sliceKey : owned == slicesByService_.end() ? kNone : owned->second) {
        const api::EndpointSlice& slice = slices_.at(sliceKey);
        if (slice.addressType != (p.ipv6 ? "IPv6" : "IPv4")) continue;  // FQDN slices are never balanced
        int port = 0;
        for (const api::EndpointPort& ep : slice.ports) {
          if (ep.name == sp.name && ep.protocol == sp.protocol) port = ep.port;
        }
        if (port <= 0 || port > 65535) continue;
        for (const api::Endpoint& e : slice.endpoints) {
          if (e.addresses.empty()) continue;
          bool ready = e.ready || svc.publishNotReadyAddresses;
          candidates.push_back({{canonicalIP(e.addresses.front()), port}, ready, e.serving && e.terminating,
                                !nodeName_.empty() && e.nodeName == nodeName_});
        }
      }
      // KEP-1669: terminating-but-serving endpoints only when no ready one is
      // left, decided after the traffic-policy filter.
      auto pick = [&](bool localOnly) {
        std::vector<Backend> ready, fallback;
        for (const Candidate& c : candidates) {
          if (localOnly && !c.local) continue;
          if (c.ready) ready.push_back(c.backend);
          else if (c.servingTerminating) fallback.push_back(c.backend);
        }
        sortUnique(ready);
        sortUnique(fallback);
        return ready.empty() ? fallback : ready;
      };
      p.allBackends = pick(false);
      p.internalBackends = svc.internalTrafficPolicy == "Local" ? pick(true) : p.allBackends;
      p.externalBackends = p.externalPolicyLocal ? pick(true) : p.allBackends;
      plans.push_back(std::move(p));
    }
  }
  return plans;
}

std::vector<ServicePortPlan> ServiceTable::planAll() const {
  std::vector<ServicePortPlan> all;
  for (const auto& [key, _] : services_) {
    auto plans = plan(key);
    all.insert(all.end(), std::make_move_iterator(plans.begin()), std::make_move_iterator(plans.end()));
  }
  return all;
}

std::map<FrontendKey, FrontendState> frontendsOf(const ServicePortPlan& plan, const std::string& nodeIP) {
  std::map<FrontendKey, FrontendState> out;
  auto state = [&](const std::vector<Backend>& backends) {
    FrontendState s;
    s.clientIPAffinity = plan.clientIPAffinity;
    s.affinityTimeoutSeconds = plan.affinityTimeoutSeconds;
    for (const Backend& b : backends) s.backends.push_back(b.text());
    std::sort(s.backends.begin(), s.backends.end());
    return s;
  };
  out[{plan.clusterIP, plan.port, plan.protocol}] = state(plan.internalBackends);
  if (plan.nodePort > 0 && !nodeIP.empty() && isIPv6(nodeIP) == plan.ipv6) out[{nodeIP, plan.nodePort, plan.protocol}] = state(plan.allBackends);
  return out;
}

}  // namespace ferry::proxy
