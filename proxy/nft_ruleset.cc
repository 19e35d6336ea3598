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

// Round-robin over endpoint chains with `numgen inc`, kube-proxy style. With
// ClientIP affinity a client address found in an endpoint's set goes straight
// back to that endpoint (the set entry times out timeoutSeconds after last use).
void renderBalancer(std::string& out, const std::string& chain, const std::string& id, const ServicePortPlan& p,
                    const std::vector<Backend>& backends, const std::string& preamble) {
  out += fmt::format("  chain {} {{\n", chain);
  if (!preamble.empty()) out += "    " + preamble + "\n";
  if (p.clientIPAffinity) {
    for (const Backend& b : backends)
      out += fmt::format("    ip saddr @{} goto {}\n", endpointName("aff-" + id + "/", b), endpointName("ep-" + id + "/", b));
  }
  out += fmt::format("    numgen inc mod {} vmap {{ ", backends.size());
  for (size_t i = 0; i < backends.size(); ++i)
    out += fmt::format("{}{} : goto {}", i ? ", " : "", i, endpointName("ep-" + id + "/", backends[i]));
  out += " }\n  }\n";
}

void renderEndpoint(std::string& out, const std::string& id, const ServicePortPlan& p, const Backend& b) {
  out += fmt::format("  chain {} {{\n    ip saddr {} jump mark-for-masquerade\n", endpointName("ep-" + id + "/", b), b.address);
  if (p.clientIPAffinity) out += fmt::format("    update @{} {{ ip saddr }}\n", endpointName("aff-" + id + "/", b));
  out += fmt::format("    meta l4proto {} dnat to {}:{}\n  }}\n", lower(p.protocol), b.address, b.port);
  if (p.clientIPAffinity)
    out += fmt::format("  set {} {{\n    type ipv4_addr\n    flags dynamic,timeout\n    timeout {}s\n  }}\n",
                       endpointName("aff-" + id + "/", b), std::max(1, p.affinityTimeoutSeconds));
}

}  // namespace

std::string renderDeleteTable(const std::string& table) {
  return fmt::format("add table ip {0}\ndelete table ip {0}\n", table);
}

std::string renderServiceRuleset(const std::vector<ServicePortPlan>& plans, const NftServiceOptions& o) {
  std::string chains;
  std::vector<std::string> serviceElements, refusedElements;
  for (const ServicePortPlan& p : plans) {
    std::string id = portId(p);
    std::string proto = lower(p.protocol);
    std::vector<Backend> endpoints = p.allBackends;  // every chain any frontend may jump to
    if (o.clusterIPs) {
      std::string key = fmt::format("{} . {} . {}", p.clusterIP, proto, p.port);
      if (p.internalBackends.empty()) {
        refusedElements.push_back(key + " : goto reject-chain");
      } else {
        std::string masq = o.clusterCIDR.empty() ? "" : fmt::format("ip saddr != {} jump mark-for-masquerade", o.clusterCIDR);
        renderBalancer(chains, "svc-" + id, id, p, p.internalBackends, masq);
        serviceElements.push_back(key + " : goto svc-" + id);
      }
    }
    if (p.nodePort > 0 && !o.nodeIP.empty()) {
      std::string key = fmt::format("{} . {} . {}", o.nodeIP, proto, p.nodePort);
      if (p.externalBackends.empty()) {
        refusedElements.push_back(key + " : goto reject-chain");
      } else {
        // Cluster policy: masquerade so replies come back through this node.
        // Local policy: keep the client address; only local endpoints.
        renderBalancer(chains, "ext-" + id, id, p, p.externalBackends,
                       p.externalPolicyLocal ? "" : "jump mark-for-masquerade");
        serviceElements.push_back(key + " : goto ext-" + id);
      }
    }
    if (!p.internalBackends.empty() || !p.externalBackends.empty()) {
      for (const Backend& b : endpoints) renderEndpoint(chains, id, p, b);
    }
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
  out += chains;
  out += "}\n";
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
