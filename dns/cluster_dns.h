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

// A domain whose names go to their own upstreams instead of the default ones
// (kube-dns stubDomains, CoreDNS `forward` in a server block per zone).
struct StubDomain {
  std::string domain;                  // "corp.example": the name itself and every name below it
  std::vector<std::string> upstreams;  // "ip:port" or "ip"
};

// Parses "corp.example=10.0.0.53:53[,10.0.0.54]" (the --dns-stub-domain flag).
Result<StubDomain> parseStubDomain(const std::string& text);

struct DnsConfig {
  std::vector<std::string> listen;     // "ip:port"
  std::string clusterDomain = "cluster.local";
  std::vector<std::string> upstreams;  // "ip:port" or "ip"; empty: nameservers of resolvConf
  std::string resolvConf = "/etc/resolv.conf";
  // Names outside the cluster zone under one of these go to its upstreams (the
  // longest matching domain wins); the cluster zone is always answered here.
  std::vector<StubDomain> stubDomains;
  int udpThreads = 1;
  size_t cacheEntries = 10000;
  // TCP (RFC 7766): a connection idle this long is closed; past maxTcpConnections
  // new connections are closed at once. One thread per open connection, joined
  // when it ends.
  int tcpIdleTimeoutMs = 10000;
  int maxTcpConnections = 128;
};

struct DnsCounters {
  std::uint64_t queries = 0;
  std::uint64_t clusterAnswers = 0;
  std::uint64_t forwarded = 0;
  std::uint64_t cacheHits = 0;
  std::uint64_t formErrors = 0;
  std::uint64_t autopathAnswers = 0;
  std::uint64_t stubForwarded = 0;    // forwarded to a stub domain's upstreams
  std::uint64_t tcpConnections = 0;   // open now
  std::uint64_t tcpThreads = 0;       // connection threads not yet joined (open or just ended)
  std::uint64_t tcpRefused = 0;       // closed at accept: too many open
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
