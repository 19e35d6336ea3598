#include "proxy/nft_ruleset.h"

#include <fmt/format.h>
#include <nftables/libnftables.h>

#include <algorithm>
#include <cctype>

namespace ferry::proxy {

namespace {

constexpr const char* kMasqueradeMark = "0x4000";

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Chain names from stable parts, so a re-render names the same Service the same way.
std::string portId(const ServicePortPlan& p) { return fmt::format("{}/{}/{}", p.serviceKey, lower(p.protocol), p.port); }

std::string endpointName(const std::string& prefix, const Backend& b) {
  return prefix + b.address + "/" + std::to_string(b.port);
}

// The timeout is part of the name: a new timeout makes a new set, and the
// rules naming it change with it (a set cannot be replaced while referenced).
std::string affinitySet(const std::string& id, const ServicePortPlan& p, const Backend& b) {
  return endpointName("aff-" + id + "/", b) + "/" + std::to_string(std::max(1, p.affinityTimeoutSeconds));
}

// Round-robin over endpoint chains with `numgen inc`, kube-proxy style. With
// ClientIP affinity a client address found in an endpoint's set goes straight
// back to that endpoint (the set entry times out timeoutSeconds after last use).
std::vector<std::string> balancerRules(const std::string& id, const ServicePortPlan& p,
                                       const std::vector<Backend>& backends, const std::string& preamble) {
  std::vector<std::string> rules;
  if (!preamble.empty()) rules.push_back(preamble);
  if (p.clientIPAffinity) {
    for (const Backend& b : backends)
      rules.push_back(fmt::format("ip saddr @{} goto {}", affinitySet(id, p, b), endpointName("ep-" + id + "/", b)));
  }
  std::string vmap = fmt::format("numgen inc mod {} vmap {{ ", backends.size());
  for (size_t i = 0; i < backends.size(); ++i)
    vmap += fmt::format("{}{} : goto {}", i ? ", " : "", i, endpointName("ep-" + id + "/", backends[i]));
  rules.push_back(vmap + " }");
  return rules;
}

void addEndpoint(NftFragment& f, const std::string& id, const ServicePortPlan& p, const Backend& b) {
  std::vector<std::string> rules{fmt::format("ip saddr {} jump mark-for-masquerade", b.address)};
  if (p.clientIPAffinity) {
    std::string set = affinitySet(id, p, b);
    rules.push_back(fmt::format("update @{} {{ ip saddr }}", set));
    f.sets[set] = fmt::format("type ipv4_addr; flags dynamic,timeout; timeout {}s;", std::max(1, p.affinityTimeoutSeconds));
  }
  rules.push_back(fmt::format("meta l4proto {} dnat to {}:{}", lower(p.protocol), b.address, b.port));
  f.chains[endpointName("ep-" + id + "/", b)] = std::move(rules);
}

}  // namespace

std::string renderDeleteTable(const std::string& table) {
  return fmt::format("add table ip {0}\ndelete table ip {0}\n", table);
}

NftFragment renderServiceFragment(const std::vector<ServicePortPlan>& plans, const NftServiceOptions& o) {
  NftFragment f;
  for (const ServicePortPlan& p : plans) {
    if (p.ipv6) continue;  // this ruleset is the `ip` (IPv4) table only
    std::string id = portId(p);
    std::string proto = lower(p.protocol);
    bool used = false;
    if (o.clusterIPs) {
      std::string key = fmt::format("{} . {} . {}", p.clusterIP, proto, p.port);
      if (p.internalBackends.empty()) {
        f.refusedElements[key] = "goto reject-chain";
      } else {
        std::string masq = o.clusterCIDR.empty() ? "" : fmt::format("ip saddr != {} jump mark-for-masquerade", o.clusterCIDR);
        f.chains["svc-" + id] = balancerRules(id, p, p.internalBackends, masq);
        f.serviceElements[key] = "goto svc-" + id;
        used = true;
      }
    }
    if (p.nodePort > 0 && !o.nodeIP.empty()) {
      std::string key = fmt::format("{} . {} . {}", o.nodeIP, proto, p.nodePort);
      if (p.externalBackends.empty()) {
        f.refusedElements[key] = "goto reject-chain";
      } else {
        // Cluster policy: masquerade so replies come back through this node.
        // Local policy: keep the client address; only local endpoints.
        f.chains["ext-" + id] = balancerRules(id, p, p.externalBackends, p.externalPolicyLocal ? "" : "jump mark-for-masquerade");
        f.serviceElements[key] = "goto ext-" + id;
        used = true;
      }
    }
    if (used) {
      for (const Backend& b : p.allBackends) addEndpoint(f, id, p, b);
    }
  }
  return f;
}

std::string renderServiceRuleset(const std::map<std::string, NftFragment>& fragments, const NftServiceOptions& o) {
  std::string sets, chains;
  std::vector<std::string> serviceElements, refusedElements;
  for (const auto& [_, f] : fragments) {
    for (const auto& [name, body] : f.sets) sets += fmt::format("  set {} {{ {} }}\n", name, body);
    for (const auto& [name, rules] : f.chains) {
      chains += fmt::format("  chain {} {{\n", name);
      for (const auto& r : rules) chains += "    " + r + "\n";
      chains += "  }\n";
    }
    for (const auto& [key, verdict] : f.serviceElements) serviceElements.push_back(key + " : " + verdict);
    for (const auto& [key, verdict] : f.refusedElements) refusedElements.push_back(key + " : " + verdict);
  }

  auto elements = [](const std::vector<std::string>& v) {
    if (v.empty()) return std::string();
    std::string s = "    elements = { ";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
    return s + " }\n";
  };

  std::string out = renderDeleteTable(o.table);
  out += fmt::format("table ip {} {{\n", o.table);
  out += "  map services {\n    type ipv4_addr . inet_proto . inet_service : verdict\n" + elements(serviceElements) + "  }\n";
  out += "  map no-endpoint-services {\n    type ipv4_addr . inet_proto . inet_service : verdict\n" +
         elements(refusedElements) + "  }\n";
  out += "  chain reject-chain {\n    meta l4proto tcp reject with tcp reset\n    reject\n  }\n";
  // Filter before NAT (-110 < -100): refuse Services without endpoints.
  for (const char* hook : {"input", "forward", "output"}) {
    if (std::string(hook) == "output" && !o.clusterIPs) continue;
    out += fmt::format(
        "  chain filter-{0} {{\n    type filter hook {0} priority -110; policy accept;\n"
        "    ip daddr . meta l4proto . th dport vmap @no-endpoint-services\n  }}\n",
        hook);
  }
  out += "  chain mark-for-masquerade {\n    meta mark set meta mark | " + std::string(kMasqueradeMark) + "\n  }\n";
  out += "  chain services-dispatch {\n    ip daddr . meta l4proto . th dport vmap @services\n  }\n";
  // nft 1.0.6 rejects the `dstnat` name on the output hook: numeric priorities.
  out += "  chain nat-prerouting {\n    type nat hook prerouting priority -100; policy accept;\n    jump services-dispatch\n  }\n";
  if (o.clusterIPs)
    out += "  chain nat-output {\n    type nat hook output priority -100; policy accept;\n    jump services-dispatch\n  }\n";
  out += fmt::format(
      "  chain nat-postrouting {{\n    type nat hook postrouting priority 100; policy accept;\n"
      "    meta mark & {0} == 0 return\n    meta mark set meta mark xor {0}\n    masquerade fully-random\n  }}\n",
      kMasqueradeMark);
  out += sets;
  out += chains;
  out += "}\n";
  return out;
}

std::string renderFragmentUpdate(const std::string& t, const NftFragment& before, const NftFragment& after) {
  // Order inside the one transaction: new chains exist before anything jumps
  // to them; references (rules, elements) go before what they name is deleted.
  std::string out;
  for (const auto& [name, _] : after.chains)
    if (!before.chains.count(name)) out += fmt::format("add chain ip {} {}\n", t, name);
  for (const auto& [name, rules] : after.chains) {
    auto old = before.chains.find(name);
    if (old != before.chains.end() && old->second == rules) continue;
    if (old != before.chains.end()) out += fmt::format("flush chain ip {} {}\n", t, name);
  }
  for (const auto& [name, _] : before.chains)
    if (!after.chains.count(name)) out += fmt::format("flush chain ip {} {}\n", t, name);
  auto elementDeletes = [&](const char* map, const auto& b, const auto& a) {
    for (const auto& [key, verdict] : b) {
      auto now = a.find(key);
      if (now == a.end() || now->second != verdict) out += fmt::format("delete element ip {} {} {{ {} }}\n", t, map, key);
    }
  };
  elementDeletes("services", before.serviceElements, after.serviceElements);
  elementDeletes("no-endpoint-services", before.refusedElements, after.refusedElements);
  for (const auto& [name, _] : before.chains)
    if (!after.chains.count(name)) out += fmt::format("delete chain ip {} {}\n", t, name);
  for (const auto& [name, body] : before.sets) {
    auto now = after.sets.find(name);
    if (now == after.sets.end() || now->second != body) out += fmt::format("delete set ip {} {}\n", t, name);
  }
  for (const auto& [name, body] : after.sets) {
    auto old = before.sets.find(name);
    if (old == before.sets.end() || old->second != body) out += fmt::format("add set ip {} {} {{ {} }}\n", t, name, body);
  }
  for (const auto& [name, rules] : after.chains) {
    auto old = before.chains.find(name);
    if (old != before.chains.end() && old->second == rules) continue;
    for (const auto& r : rules) out += fmt::format("add rule ip {} {} {}\n", t, name, r);
  }
  auto elementAdds = [&](const char* map, const auto& b, const auto& a) {
    for (const auto& [key, verdict] : a) {
      auto old = b.find(key);
      if (old == b.end() || old->second != verdict) out += fmt::format("add element ip {} {} {{ {} : {} }}\n", t, map, key, verdict);
    }
  };
  elementAdds("services", before.serviceElements, after.serviceElements);
  elementAdds("no-endpoint-services", before.refusedElements, after.refusedElements);
  return out;
}

std::string renderMasqueradeTable(const std::string& table, const std::string& clusterCIDR) {
  std::string out = renderDeleteTable(table);
  // Pod traffic leaving the pod network takes the node's address; traffic
  // between pods (and to Services, already translated to pods) keeps its source.
  out += fmt::format(
      "table ip {0} {{\n  chain postrouting {{\n    type nat hook postrouting priority 100; policy accept;\n"
      "    ip saddr {1} ip daddr != {1} ip daddr != 224.0.0.0/4 masquerade\n  }}\n}}\n",
      table, clusterCIDR);
  return out;
}

Result<std::unique_ptr<NftablesClient>> NftablesClient::open() {
  std::unique_ptr<NftablesClient> client(new NftablesClient());
  client->ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!client->ctx_) return fail(ENOMEM, "nftables: nft_ctx_new failed");
  nft_ctx_buffer_output(client->ctx_);
  nft_ctx_buffer_error(client->ctx_);
  // A no-op command opens the netlink socket now, in this thread's namespace.
  if (auto st = client->run("list tables ip\n"); !st) return fail(st.error().wrap("nftables"));
  return client;
}

NftablesClient::~NftablesClient() {
  if (ctx_) nft_ctx_free(ctx_);
}

Status NftablesClient::run(const std::string& commands) {
  int rc = nft_run_cmd_from_buffer(ctx_, commands.c_str());
  if (rc != 0) {
    std::string err = nft_ctx_get_error_buffer(ctx_) ? nft_ctx_get_error_buffer(ctx_) : "";
    while (!err.empty() && (err.back() == '\n')) err.pop_back();
    if (err.size() > 2000) err = err.substr(0, 2000) + "...";
    return fail(EINVAL, "nft: " + err);
  }
  return {};
}

}  // namespace ferry::proxy
