// The node-local cluster DNS server: answers the cluster zone from an
// immutable snapshot (zone.h) and forwards everything else to upstream servers
// through c-ares, with a cache that honours TTLs and RFC 2308 negative caching.
// UDP (one SO_REUSEPORT socket per thread) and TCP.
#pragma once

#include "api/error.h"
#include "dns/zone.h"

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace ferry::dns {

struct DnsConfig {
  std::vector<std::string> listen;     // "ip:port"
  std::string clusterDomain = "cluster.local";
  std::vector<std::string> upstreams;  // "ip:port" or "ip"; empty: nameservers of resolvConf
  std::string resolvConf = "/etc/resolv.conf";
  int udpThreads = 1;
  size_t cacheEntries = 10000;
};

struct DnsCounters {
  std::uint64_t queries = 0;
  std::uint64_t clusterAnswers = 0;
  std::uint64_t forwarded = 0;
  std::uint64_t cacheHits = 0;
  std::uint64_t formErrors = 0;
  std::uint64_t autopathAnswers = 0;
};

class ClusterDns {
 public:
  static Result<std::unique_ptr<ClusterDns>> start(const DnsConfig& config);
  ~ClusterDns();  // stops the threads and closes the sockets

  // Replaces the cluster zone; queries in flight finish with the old one.
  void publish(std::shared_ptr<const Zone> zone);
  // The namespaces of this node's pods by pod IP (host byte order). A query from
  // one of them gets its search path expanded server-side ("autopath"): the
  // first search-domain query of an external name is answered at once, with a
  // CNAME to the name the client would otherwise have reached 2–4 queries later.
  using ClientNamespaces = std::unordered_map<std::uint32_t, std::string>;
  void publishClients(std::shared_ptr<const ClientNamespaces> clients);
  DnsCounters counters() const;

  struct Impl;

 private:
  explicit ClusterDns(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::dns
