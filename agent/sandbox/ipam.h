// Pod IP allocation from the node's pod CIDR. Pure logic plus an atomically written
// state file, so a restarted agent neither leaks nor hands out an address twice.
#pragma once

#include "api/error.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace ferry::agent {

// An IPv4 CIDR, parsed and checked ("10.42.1.0/24").
struct Ipv4Cidr {
  uint32_t network = 0;  // host byte order, host bits zero
  int prefixLength = 0;

  static Result<Ipv4Cidr> parse(const std::string& text);
  std::string toString() const;
  uint32_t size() const;  // number of addresses
  bool contains(uint32_t address) const;
};

std::string ipv4ToString(uint32_t address);            // host byte order
Result<uint32_t> parseIpv4(const std::string& text);   // host byte order

// Writes <path>.tmp and renames it over `path`.
Status writeFileAtomically(const std::string& path, const std::string& content);

class Ipam {
 public:
  // The gateway is the first address of the CIDR; the network and broadcast addresses
  // are never handed out. Allocation is round-robin from after the last one, so a just
  // released address is not reused at once.
  explicit Ipam(Ipv4Cidr podCidr);

  // Returns the address owned by `owner` (a pod uid), allocating one if it has none.
  // ENOSPC when the range is exhausted.
  Result<uint32_t> allocate(const std::string& owner);
  // Releases `owner`'s address; false when it had none.
  bool release(const std::string& owner);
  std::optional<uint32_t> addressOf(const std::string& owner) const;

  const std::map<std::string, uint32_t>& allocations() const { return byOwner_; }
  uint32_t gateway() const;
  const Ipv4Cidr& cidr() const { return cidr_; }
  uint32_t capacity() const;  // usable pod addresses

  // {"cidr": "...", "next": "...", "allocations": {"<owner>": "10.42.1.7", ...}}
  std::string serialize() const;
  // Restores allocations; entries outside the CIDR, or a different CIDR, are errors
  // naming the field.
  static Result<Ipam> deserialize(const std::string& text);

  // File persistence: write to <path>.tmp, rename (see writeFileAtomically).
  Status saveTo(const std::string& path) const;
  // Loads `path`, or returns an empty Ipam for `podCidr` when the file does not exist.
  // EINVAL if the file belongs to another CIDR.
  static Result<Ipam> loadOrCreate(const std::string& path, Ipv4Cidr podCidr);

 private:
  Ipv4Cidr cidr_;
  uint32_t next_;  // next candidate offset
  std::map<std::string, uint32_t> byOwner_;
  std::map<uint32_t, std::string> byAddress_;
};

}  // namespace ferry::agent
