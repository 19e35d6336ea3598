#include "proxy/service_proxy.h"

#include "api/log.h"
#include "proxy/bpf_service_maps.h"
#include "proxy/nft_ruleset.h"
#include "proxy/service_table.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace ferry::proxy {

struct ServiceProxy::Impl {
  ProxyConfig config;
  bool ebpf = true;
  ServiceTable table;
  std::unique_ptr<BpfServiceMaps> maps;        // ebpf mode
  std::unique_ptr<NftablesClient> nft;
  std::map<std::string, std::set<FrontendKey>> ownedFrontends;  // ebpf: by Service key
  // nftables state as last written: per Service, its fragment in each
  // family's table ([0]: `ip`, [1]: `ip6`), and its frontends.
  bool nftTableWritten = false;
  std::map<std::string, NftFragment> nftFragments[2];
  std::map<std::string, std::map<FrontendKey, FrontendState>> nftFrontends;

  explicit Impl(const ProxyConfig& c) : config(c), table(c.nodeName) {}

  NftServiceOptions nftOptions(bool ipv6) const {
    return NftServiceOptions{config.nftTable, config.nodeIP, config.clusterCIDR, !ebpf, ipv6};
  }
  // The tables written: in ebpf mode only `ip` (NodePorts, and the node
  // address is IPv4); in nftables mode `ip6` too, for IPv6 Services.
  std::vector<bool> nftFamilies() const { return ebpf ? std::vector<bool>{false} : std::vector<bool>{false, true}; }

  // nftables carries every Service in nftables mode; in ebpf mode only the
  // NodePort entries for traffic from other hosts. A full sync replaces the
  // tables in one transaction. `plansByService`: every Service's plans, when the
  // caller has them already (a full sync builds them once).
  Status syncNftables(const std::map<std::string, std::vector<ServicePortPlan>>* plansByService = nullptr) {
    std::map<std::string, std::vector<ServicePortPlan>> computed;
    if (!plansByService) {
      for (const std::string& key : table.serviceKeys()) computed[key] = table.plan(key);
      plansByService = &computed;
    }
    std::map<std::string, NftFragment> fragments[2];
    std::map<std::string, std::map<FrontendKey, FrontendState>> frontends;
    std::string commands;
    for (bool ipv6 : nftFamilies()) {
      for (const auto& [key, plans] : *plansByService) {
        // ebpf mode: a Service without NodePorts has nothing in nftables.
        if (ebpf && !hasNodePorts(plans)) continue;
        NftFragment f = renderServiceFragment(plans, nftOptions(ipv6));
        if (!f.empty()) fragments[ipv6][key] = std::move(f);
      }
      commands += renderServiceRuleset(fragments[ipv6], nftOptions(ipv6));
    }
    for (const auto& [key, plans] : *plansByService) {
      if (ebpf && !hasNodePorts(plans)) continue;
      for (const auto& p : plans) frontends[key].merge(frontendsOf(p, config.nodeIP));
    }
    if (auto st = nft->run(commands); !st) return fail(st.error().wrap("program nft table " + config.nftTable));
    nftTableWritten = true;
    for (int i = 0; i < 2; ++i) nftFragments[i] = std::move(fragments[i]);
    nftFrontends = std::move(frontends);
    return {};
  }

  // One Service's change as the diff of its fragments: cost independent of the
  // number of Services.
  Status updateNftables(const std::string& key, const std::vector<ServicePortPlan>& plans) {
    if (!nftTableWritten) return syncNftables();
    static const NftFragment kEmpty;
    std::string commands;
    NftFragment after[2];
    for (bool ipv6 : nftFamilies()) {
      after[ipv6] = renderServiceFragment(plans, nftOptions(ipv6));
      auto it = nftFragments[ipv6].find(key);
      commands += renderFragmentUpdate(config.nftTable, it == nftFragments[ipv6].end() ? kEmpty : it->second, after[ipv6],
                                       nftOptions(ipv6).family());
    }
    if (!commands.empty()) {
      if (auto st = nft->run(commands); !st) return fail(st.error().wrap("update nft table " + config.nftTable + " for " + key));
    }
    for (bool ipv6 : nftFamilies()) {
      if (after[ipv6].empty()) nftFragments[ipv6].erase(key);
      else nftFragments[ipv6][key] = std::move(after[ipv6]);
    }
    std::map<FrontendKey, FrontendState> frontends;
    for (const auto& p : plans) frontends.merge(frontendsOf(p, config.nodeIP));
    if (frontends.empty()) nftFrontends.erase(key);
    else nftFrontends[key] = std::move(frontends);
    return {};
  }

  bool hasNodePorts(const std::vector<ServicePortPlan>& plans) const {
    for (const auto& p : plans)
      if (p.nodePort > 0) return true;
    return false;
  }

  // Brings one Service's frontends in the maps to the desired state.
  Status reconcileService(const std::string& key, bool hadNodePorts) {
    std::vector<ServicePortPlan> plans = table.plan(key);
    if (!ebpf) return updateNftables(key, plans);
    std::map<FrontendKey, FrontendState> desired;
    for (const auto& p : plans) desired.merge(frontendsOf(p, config.nodeIP));
    std::set<FrontendKey>& owned = ownedFrontends[key];
    for (const auto& [frontend, state] : desired) {
      if (auto st = maps->program(frontend, state); !st) return fail(st.error().wrap("service " + key));
      owned.insert(frontend);
    }
    for (auto it = owned.begin(); it != owned.end();) {
      if (desired.count(*it)) {
        ++it;
        continue;
      }
      if (auto st = maps->remove(*it); !st) return fail(st.error().wrap("service " + key));
      it = owned.erase(it);
    }
    if (owned.empty()) ownedFrontends.erase(key);
    if (hadNodePorts || hasNodePorts(plans)) return updateNftables(key, plans);
    return {};
  }

  Status resyncAll() {
    if (!ebpf) return syncNftables();
    // Memory is what a full sync of 100,000 Services costs (every newly touched
    // page faults, and faults are dear in a VM), so each Service's plans are
    // built when it is programmed and dropped right after, unless nftables
    // needs them too (NodePorts): no map of every Service's plans at once.
    std::map<std::string, std::vector<ServicePortPlan>> nodePortPlans;
    ownedFrontends.clear();
    // What the maps held before (sorted: frontends() walks an ordered map),
    // marked as each is programmed again; the unmarked rest is stale. Empty on
    // a first start, so that costs nothing then.
    const std::vector<FrontendKey> before = maps->frontends();
    std::vector<bool> stillWanted(before.size(), false);
    // All writes go in bulk, in make-before-break order across Services; what
    // was collected is applied even when a later Service fails.
    maps->beginBatch();
    Status programmed = [&]() -> Status {
      for (std::string& key : table.serviceKeys()) {
        std::vector<ServicePortPlan> plans = table.plan(key);
        if (plans.empty()) continue;
        std::map<FrontendKey, FrontendState> desired;
        for (const ServicePortPlan& p : plans) desired.merge(frontendsOf(p, config.nodeIP));
        std::set<FrontendKey>& owned = ownedFrontends[key];
        for (const auto& [frontend, state] : desired) {
          if (auto st = maps->program(frontend, state); !st) return fail(st.error().wrap("resync service " + key));
          owned.insert(frontend);
          if (auto at = std::lower_bound(before.begin(), before.end(), frontend); at != before.end() && *at == frontend)
            stillWanted[at - before.begin()] = true;
        }
        if (hasNodePorts(plans)) nodePortPlans.emplace(std::move(key), std::move(plans));
      }
      for (size_t i = 0; i < before.size(); ++i) {
        if (stillWanted[i]) continue;
        if (auto st = maps->remove(before[i]); !st) return fail(st.error().wrap("resync: remove stale frontend"));
      }
      return maps->collectBackends();
    }();
    Status committed = maps->commitBatch();
    if (!programmed) return programmed;
    if (!committed) return fail(committed.error().wrap("resync"));
    // In ebpf mode nftables needs only the Services with NodePorts.
    return syncNftables(&nodePortPlans);
  }

};

ServiceProxy::ServiceProxy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ServiceProxy::~ServiceProxy() = default;

Result<std::unique_ptr<ServiceProxy>> ServiceProxy::start(const ProxyConfig& config) {
  if (config.mode != "ebpf" && config.mode != "nftables")
    return fail(EINVAL, "proxy mode: " + config.mode + " is not ebpf or nftables");
  auto impl = std::make_unique<Impl>(config);
  impl->ebpf = config.mode == "ebpf";
  auto nft = NftablesClient::open();
  if (!nft) return fail(nft.error().wrap("start proxy"));
  impl->nft = std::move(*nft);
  if (impl->ebpf) {
    auto maps = BpfServiceMaps::open(config.bpffsDir, config.cgroupV2Path);
    if (!maps) return fail(maps.error().wrap("start proxy"));
    impl->maps = std::move(*maps);
  }
  log::info("proxy: started in {} mode", config.mode);
  return std::unique_ptr<ServiceProxy>(new ServiceProxy(std::move(impl)));
}

Status ServiceProxy::upsertService(const api::Service& service) {
  std::string key = ServiceTable::keyOf(service.ns, service.name);
  bool hadNodePorts = impl_->hasNodePorts(impl_->table.plan(key));
  impl_->table.upsertService(service);
  return impl_->reconcileService(key, hadNodePorts);
}

Status ServiceProxy::deleteService(const std::string& ns, const std::string& name) {
  std::string key = ServiceTable::keyOf(ns, name);
  bool hadNodePorts = impl_->hasNodePorts(impl_->table.plan(key));
  impl_->table.deleteService(key);
  return impl_->reconcileService(key, hadNodePorts);
}

Status ServiceProxy::upsertEndpointSlice(const api::EndpointSlice& slice) {
  if (slice.serviceName.empty()) return fail(EINVAL, "endpointslice " + slice.ns + "/" + slice.name + ": label kubernetes.io/service-name: missing");
  std::string key = ServiceTable::keyOf(slice.ns, slice.serviceName);
  bool hadNodePorts = impl_->hasNodePorts(impl_->table.plan(key));
  std::string previous = impl_->table.upsertEndpointSlice(slice);
  if (!previous.empty() && previous != key)
    if (auto st = impl_->reconcileService(previous, true); !st) return st;
  return impl_->reconcileService(key, hadNodePorts);
}

Status ServiceProxy::deleteEndpointSlice(const std::string& ns, const std::string& name) {
  std::string key = impl_->table.deleteEndpointSlice(ns, name);
  if (key.empty()) return {};
  return impl_->reconcileService(key, true);
}

Status ServiceProxy::setLocalOverride(const std::string& ns, const std::string& name, std::vector<OverrideBackend> backends) {
  std::string key = ServiceTable::keyOf(ns, name);
  for (const auto& b : backends) {
    if (b.port <= 0 || b.port > 65535) return fail(EINVAL, fmt::format("override {}: port {} out of range", key, b.port));
    if (b.address.empty()) return fail(EINVAL, "override " + key + ": address: empty");
  }
  bool hadNodePorts = impl_->hasNodePorts(impl_->table.plan(key));
  impl_->table.setOverride(key, std::move(backends));
  return impl_->reconcileService(key, hadNodePorts);
}

Status ServiceProxy::clearLocalOverride(const std::string& ns, const std::string& name) {
  std::string key = ServiceTable::keyOf(ns, name);
  impl_->table.clearOverride(key);
  return impl_->reconcileService(key, true);
}

Status ServiceProxy::resync(const std::vector<api::Service>& services, const std::vector<api::EndpointSlice>& slices) {
  impl_->table.replaceAll(services, slices);
  return impl_->resyncAll();
}

Status ServiceProxy::ensureMasquerade() {
  if (impl_->config.clusterCIDR.empty()) return fail(EINVAL, "masquerade: clusterCIDR: empty");
  if (auto st = impl_->nft->run(renderMasqueradeTable(impl_->config.nftNatTable, impl_->config.clusterCIDR)); !st)
    return fail(st.error().wrap("masquerade table " + impl_->config.nftNatTable));
  return {};
}

Result<ProgrammedState> ServiceProxy::programmedState() const {
  if (impl_->ebpf) return impl_->maps->read();
  ProgrammedState out;
  for (const auto& [_, frontends] : impl_->nftFrontends)
    for (const auto& [k, v] : frontends) out[k] = v;
  return out;
}

ProgrammedState ServiceProxy::desiredState() const {
  ProgrammedState out;
  for (const auto& p : impl_->table.planAll())
    for (auto& [k, v] : frontendsOf(p, impl_->config.nodeIP)) out[k] = v;
  return out;
}

Result<uint64_t> ServiceProxy::mapMemoryBytes() const {
  if (!impl_->maps) return 0;
  return impl_->maps->mapMemoryBytes();
}

Status ServiceProxy::uninstall() {
  Status result;
  if (impl_->maps) {
    result = impl_->maps->uninstall();
    impl_->maps.reset();
  }
  for (const std::string& table : {impl_->config.nftTable, impl_->config.nftNatTable}) {
    if (auto st = impl_->nft->run(renderDeleteTable(table)); !st && result) result = fail(st.error().wrap("uninstall"));
  }
  if (auto st = impl_->nft->run(renderDeleteTable(impl_->config.nftTable, "ip6")); !st && result)
    result = fail(st.error().wrap("uninstall"));
  return result;
}

}  // namespace ferry::proxy
