// The cluster zone (Kubernetes DNS-based service discovery, spec 1.1.0) as an
// immutable snapshot built from Services and EndpointSlices, and the answers
// it gives. A new snapshot replaces the old one whole on every change.
#pragma once

#include "api/types.h"
#include "dns/wire.h"

#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace ferry::dns {

struct SrvRecord {
  std::uint16_t port = 0;
  std::string target;
};

struct NameRecords {
  std::vector<std::uint32_t> a;  // host byte order
  std::string cname;
  std::vector<SrvRecord> srv;
  std::vector<std::string> ptr;
  std::string txt;
};

class Zone {
 public:
  std::string domain;        // "cluster.local"
  std::uint32_t ttl = 5;     // the spec's default TTL for records and negative answers
  std::unordered_map<std::string, NameRecords> names;
  // Names that exist without records (empty non-terminals): "svc.cluster.local",
  // "default.svc.cluster.local", "_tcp.web.default.svc.cluster.local", ...
  std::unordered_set<std::string> interior;
  std::unordered_set<std::string> namespaces;  // for <a-b-c-d>.<ns>.pod.<domain>

  // True when `name` is ours to answer: the cluster domain, or a reverse name
  // we hold a PTR for.
  bool authoritativeFor(const std::string& name) const;
  // Writes the answer for `query` (reset() of the writer included).
  void answer(const Query& query, ResponseWriter& out) const;
  // Appends the records of `name` for `qtype` to a response already begun (or
  // the SOA for a negative answer) and returns the rcode they amount to.
  std::uint8_t appendAnswer(const std::string& name, std::uint16_t qtype, ResponseWriter& out) const;
  // Does the name exist in the zone (for server-side search-path expansion)?
  bool exists(const std::string& name) const;
};

std::shared_ptr<const Zone> buildZone(const std::string& domain, const std::vector<api::Service>& services,
                                      const std::vector<api::EndpointSlice>& slices);

// "10.42.0.5" <-> host-order integer; "5.0.42.10.in-addr.arpa" for PTR names.
bool parseIpv4(std::string_view text, std::uint32_t& out);
std::string reverseName(std::uint32_t address);

}  // namespace ferry::dns
