// nftables text for the proxy: the Service ruleset (kube-proxy-nftables style)
// and the pod egress masquerade table. Rendering is pure (unit-tested);
// NftablesClient is the only code in Ferry that talks to nftables.
//
// Each Service renders to a fragment (its chains, affinity sets and map
// elements). A full sync replaces the whole table in one transaction; a change
// of one Service is the diff of its fragment, also one transaction, so its
// cost does not grow with the number of Services.
#pragma once

#include "api/error.h"
#include "proxy/service_table.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

struct nft_ctx;

namespace ferry::proxy {

struct NftServiceOptions {
  std::string table = "ferry";
  std::string nodeIP;       // NodePort frontends: nodeIP . proto . nodePort
  std::string clusterCIDR;  // ClusterIP traffic from outside it is masqueraded
  // true (nftables mode): ClusterIP frontends too, with an output hook for
  // local clients. false (ebpf mode): only what arrives from other hosts on a
  // NodePort; local sockets are translated by the BPF programs.
  bool clusterIPs = true;
  // false: table `ip <table>` with the IPv4 plans; true: table `ip6 <table>`
  // with the IPv6 plans (nftables mode; no NodePort there: nodeIP is IPv4, and
  // no masquerade by source: clusterCIDR is IPv4).
  bool ipv6 = false;
  std::string family() const { return ipv6 ? "ip6" : "ip"; }
};

struct NftFragment {
  std::map<std::string, std::vector<std::string>> chains;  // chain name -> rules
  std::map<std::string, std::string> sets;                  // set name -> declaration body
  std::map<std::string, std::string> serviceElements;       // "addr . proto . port" -> verdict
  std::map<std::string, std::string> refusedElements;       // same, Services without endpoints
  bool empty() const { return chains.empty() && sets.empty() && serviceElements.empty() && refusedElements.empty(); }
};

// What one Service (all its ports) contributes.
NftFragment renderServiceFragment(const std::vector<ServicePortPlan>& plans, const NftServiceOptions& options);
// A whole-table replacement in one transaction (add; delete; define).
std::string renderServiceRuleset(const std::map<std::string, NftFragment>& fragments, const NftServiceOptions& options);
// Commands turning `before` into `after` in an existing table of `family`
// (ip | ip6); "" if equal.
std::string renderFragmentUpdate(const std::string& table, const NftFragment& before, const NftFragment& after,
                                 const std::string& family = "ip");

std::string renderMasqueradeTable(const std::string& table, const std::string& clusterCIDR);
std::string renderDeleteTable(const std::string& table, const std::string& family = "ip");

class NftablesClient {
 public:
  // Binds to the network namespace of the calling thread.
  static Result<std::unique_ptr<NftablesClient>> open();
  ~NftablesClient();
  // Runs commands as one transaction; the error carries nft's message.
  Status run(const std::string& commands);

 private:
  NftablesClient() = default;
  ::nft_ctx* ctx_ = nullptr;
};

}  // namespace ferry::proxy
