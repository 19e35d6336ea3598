// nftables text for the proxy: the Service ruleset (kube-proxy-nftables style)
// and the pod egress masquerade table. Rendering is pure (unit-tested);
// NftablesClient is the only code in Ferry that talks to nftables.
#pragma once

#include "api/error.h"
#include "proxy/service_table.h"

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
};

// A whole-table replacement in one transaction (add; delete; define).
std::string renderServiceRuleset(const std::vector<ServicePortPlan>& plans, const NftServiceOptions& options);
std::string renderMasqueradeTable(const std::string& table, const std::string& clusterCIDR);
std::string renderDeleteTable(const std::string& table);

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
