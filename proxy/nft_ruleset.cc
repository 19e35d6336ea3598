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

// nft names take no ':'; '-' never occurs in an address, so the mapping is one to one.
std::string endpointName(const std::string& prefix, const Backend& b) {
  std::string address = b.address;
  std::replace(address.begin(), address.end(), ':', '-');
  return prefix + address + "/" + std::to_string(b.port);
}

// The address match keyword of the table's family.
const char* addressKeyword(const ServicePortPlan& p) { return p.ipv6 ? "ip6" : "ip"; }

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
      rules.push_back(fmt::format("{} saddr @{} goto {}", addressKeyword(p), affinitySet(id, p, b), endpointName("ep-" + id + "/", b)));
  }
  std::string vmap = fmt::format("numgen inc mod {} vmap {{ ", backends.size());
  for (size_t i = 0; i < backends.size(); ++i)
    vmap += fmt::format("{}{} : goto {}", i ? ", " : "", i, endpointName("ep-" + id + "/", backends[i]));
  rules.push_back(vmap + " }");
  return rules;
}

void addEndpoint(NftFragment& f, const std::string& id, const ServicePortPlan& p, const Backend& b) {
  const char* ip = addressKeyword(p);
  // Hairpin: a backend reaching its own Service is masqueraded, so the reply comes back through NAT.
  std::vector<std::string> rules{fmt::format("{} saddr {} jump mark-for-masquerade", ip, b.address)};
  if (p.clientIPAffinity) {
    std::string set = affinitySet(id, p, b);
    rules.push_back(fmt::format("update @{} {{ {} saddr }}", set, ip));
    f.sets[set] = fmt::format("type {}; flags dynamic,timeout; timeout {}s;", p.ipv6 ? "ipv6_addr" : "ipv4_addr",
                              std::max(1, p.affinityTimeoutSeconds));
  }
  rules.push_back(fmt::format("meta l4proto {} dnat to {}:{}", lower(p.protocol), p.ipv6 ? "[" + b.address + "]" : b.address, b.port));
  f.chains[endpointName("ep-" + id + "/", b)] = std::move(rules);
}

}  // namespace

std::string renderDeleteTable(const std::string& table, const std::string& family) {
  return fmt::format("add table {1} {0}\ndelete table {1} {0}\n", table, family);
}

NftFragment renderServiceFragment(const std::vector<ServicePortPlan>& plans, const NftServiceOptions& o) {
  NftFragment f;
  for (const ServicePortPlan& p : plans) {
    if (p.ipv6 != o.ipv6) continue;  // each family has its own table
    std::string id = portId(p);
    std::string proto = lower(p.protocol);
    bool used = false;
    if (o.clusterIPs) {
      std::string key = fmt::format("{} . {} . {}", p.clusterIP, proto, p.port);
      if (p.internalBackends.empty()) {
        f.refusedElements[key] = "goto reject-chain";
      } else {
        // Off-pod-network clients are masqueraded (clusterCIDR is IPv4: none in the ip6 table).
        std::string masq = o.clusterCIDR.empty() || o.ipv6 ? "" : fmt::format("ip saddr != {} jump mark-for-masquerade", o.clusterCIDR);
        f.chains["svc-" + id] = balancerRules(id, p, p.internalBackends, masq);
        f.serviceElements[key] = "goto svc-" + id;
        used = true;
      }
    }
    if (p.nodePort > 0 && !o.nodeIP.empty() && (o.nodeIP.find(':') != std::string::npos) == o.ipv6) {
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

  const std::string family = o.family();
  const std::string ip = o.ipv6 ? "ip6" : "ip", addressType = o.ipv6 ? "ipv6_addr" : "ipv4_addr";
  std::string out = renderDeleteTable(o.table, family);
  out += fmt::format("table {} {} {{\n", family, o.table);
  out += "  map services {\n    type " + addressType + " . inet_proto . inet_service : verdict\n" + elements(serviceElements) + "  }\n";
  out += "  map no-endpoint-services {\n    type " + addressType + " . inet_proto . inet_service : verdict\n" +
         elements(refusedElements) + "  }\n";
  out += "  chain reject-chain {\n    meta l4proto tcp reject with tcp reset\n    reject\n  }\n";
  // Filter before NAT (-110 < -100): refuse Services without endpoints.
  for (const char* hook : {"input", "forward", "output"}) {
    if (std::string(hook) == "output" && !o.clusterIPs) continue;
    out += fmt::format(
        "  chain filter-{0} {{\n    type filter hook {0} priority -110; policy accept;\n"
        "    {1} daddr . meta l4proto . th dport vmap @no-endpoint-services\n  }}\n",
        hook, ip);
  }
  out += "  chain mark-for-masquerade {\n    meta mark set meta mark | " + std::string(kMasqueradeMark) + "\n  }\n";
  out += "  chain services-dispatch {\n    " + ip + " daddr . meta l4proto . th dport vmap @services\n  }\n";
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

std::string renderFragmentUpdate(const std::string& table, const NftFragment& before, const NftFragment& after,
                                 const std::string& family) {
  const std::string t = family + " " + table;  // "ip ferry", "ip6 ferry"
  // Order inside the one transaction: new chains exist before anything jumps
  // to them; references (rules, elements) go before what they name is deleted.
  std::string out;
  for (const auto& [name, _] : after.chains)
    if (!before.chains.count(name)) out += fmt::format("add chain {} {}\n", t, name);
  for (const auto& [name, rules] : after.chains) {
    auto old = before.chains.find(name);
    if (old != before.chains.end() && old->second == rules) continue;
    if (old != before.chains.end()) out += fmt::format("flush chain {} {}\n", t, name);
  }
  for (const auto& [name, _] : before.chains)
    if (!after.chains.count(name)) out += fmt::format("flush chain {} {}\n", t, name);
  auto elementDeletes = [&](const char* map, const auto& b, const auto& a) {
    for (const auto& [key, verdict] : b) {
      auto now = a.find(key);
      if (now == a.end() || now->second != verdict) out += fmt::format("delete element {} {} {{ {} }}\n", t, map, key);
    }
  };
  elementDeletes("services", before.serviceElements, after.serviceElements);
  elementDeletes("no-endpoint-services", before.refusedElements, after.refusedElements);
  for (const auto& [name, _] : before.chains)
    if (!after.chains.count(name)) out += fmt::format("delete chain {} {}\n", t, name);
  for (const auto& [name, body] : before.sets) {
    auto now = after.sets.find(name);
    if (now == after.sets.end() || now->second != body) out += fmt::format("delete set {} {}\n", t, name);
  }
  for (const auto& [name, body] : after.sets) {
    auto old = before.sets.find(name);
    if (old == before.sets.end() || old->second != body) out += fmt::format("add set {} {} {{ {} }}\n", t, name, body);
  }
  for (const auto& [name, rules] : after.chains) {
    auto old = before.chains.find(name);
    if (old != before.chains.end() && old->second == rules) continue;
    for (const auto& r : rules) out += fmt::format("add rule {} {} {}\n", t, name, r);
  }
  auto elementAdds = [&](const char* map, const auto& b, const auto& a) {
    for (const auto& [key, verdict] : a) {
      auto old = b.find(key);
      if (old == b.end() || old->second != verdict) out += fmt::format("add element {} {} {{ {} : {} }}\n", t, map, key, verdict);
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
