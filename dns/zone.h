// The cluster zone (Kubernetes DNS-based service discovery, spec 1.1.0) as an
// immutable snapshot built from Services and EndpointSlices, and the answers
// it gives. A new snapshot replaces the old one whole on every change.
//
// The snapshot is flat: every name and record target lives in one character
// block, each name's records are one run of a record array, and an
// open-addressing table of entry numbers finds a name. 10,000 Services take
// about 2.7 MB this way (a map of strings to vectors of strings took ~13 MB),
// and answering a cluster name allocates nothing: lookups take a string_view.
#pragma once

#include "api/types.h"
#include "dns/wire.h"

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::dns {

class ZoneBuilder;

class Zone {
 public:
  const std::string& domain() const { return domain_; }  // "cluster.local"
  std::uint32_t ttl() const { return ttl_; }  // the spec's default TTL for records and negative answers

  // True when `name` is ours to answer: the cluster domain, or a reverse name
  // we hold a PTR for.
  bool authoritativeFor(std::string_view name) const;
  // Writes the answer for `query` (reset() of the writer included).
  void answer(const Query& query, ResponseWriter& out) const;
  // Appends the records of `name` for `qtype` to a response already begun (or
  // the SOA for a negative answer) and returns the rcode they amount to.
  std::uint8_t appendAnswer(std::string_view name, std::uint16_t qtype, ResponseWriter& out) const;
  // Does the name exist in the zone (for server-side search-path expansion)?
  bool exists(std::string_view name) const;

  // Bytes held by the snapshot's arrays (bench/dns reports it beside RSS).
  size_t storageBytes() const;
  size_t nameCount() const { return entries_.size(); }

 private:
  friend class ZoneBuilder;

  // One record of a name. Texts (CNAME, PTR and SRV targets, TXT) are
  // (offset, length) in text_; AAAA addresses are indexes into ipv6_.
  struct Record {
    std::uint16_t type;
    std::uint16_t port;    // SRV
    std::uint32_t value;   // A: the address (host order); AAAA: index in ipv6_; else offset in text_
    std::uint16_t length;  // text length
    std::uint16_t weight;  // SRV
  };
  // A name and its records (recordCount 0: an empty non-terminal, which exists).
  struct Entry {
    std::uint32_t name;  // offset in text_
    std::uint16_t nameLength;
    std::uint16_t recordCount;
    std::uint32_t firstRecord;
  };

  const Entry* find(std::string_view name) const;
  std::string_view textOf(std::uint32_t offset, std::uint16_t length) const {
    return std::string_view(text_).substr(offset, length);
  }
  // The address of "<a-b-c-d>.<ns>.pod.<domain>" (false when `name` is not one).
  bool podAddress(std::string_view name, std::uint32_t& address) const;

  std::string domain_;
  std::uint32_t ttl_ = 5;
  std::string text_;
  std::vector<Entry> entries_;
  std::vector<Record> records_;
  std::vector<std::array<std::uint8_t, 16>> ipv6_;
  std::vector<std::uint32_t> slots_;  // entry number + 1, 0 free; size a power of two
};

std::shared_ptr<const Zone> buildZone(const std::string& domain, const std::vector<api::Service>& services,
                                      const std::vector<api::EndpointSlice>& slices);

// "10.42.0.5" <-> host-order integer; "5.0.42.10.in-addr.arpa" for PTR names.
// parseIpv4 allocates nothing (the answer path uses it for pod names).
bool parseIpv4(std::string_view text, std::uint32_t& out, char separator = '.');
std::string reverseName(std::uint32_t address);
// The nibble form under ip6.arpa (RFC 3596).
std::string reverseName6(const std::array<std::uint8_t, 16>& address);

}  // namespace ferry::dns
