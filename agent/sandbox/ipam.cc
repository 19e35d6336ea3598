#include "agent/sandbox/ipam.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace ferry::agent {

Result<uint32_t> parseIpv4(const std::string& text) {
  in_addr addr{};
  if (::inet_pton(AF_INET, text.c_str(), &addr) != 1) return fail(EINVAL, "not an IPv4 address: \"" + text + "\"");
  return ntohl(addr.s_addr);
}

std::string ipv4ToString(uint32_t address) {
  in_addr addr{htonl(address)};
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &addr, buf, sizeof buf);
  return buf;
}

Result<Ipv4Cidr> Ipv4Cidr::parse(const std::string& text) {
  auto slash = text.find('/');
  if (slash == std::string::npos) return fail(EINVAL, "not a CIDR (missing /prefix): \"" + text + "\"");
  auto address = parseIpv4(text.substr(0, slash));
  if (!address) return fail(address.error().wrap("CIDR \"" + text + "\""));
  std::string prefixText = text.substr(slash + 1);
  int prefix = -1;
  try {
    size_t used = 0;
    prefix = std::stoi(prefixText, &used);
    if (used != prefixText.size()) prefix = -1;
  } catch (...) {
  }
  if (prefix < 0 || prefix > 32) return fail(EINVAL, "CIDR \"" + text + "\": bad prefix length");
  uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  if ((*address & ~mask) != 0) return fail(EINVAL, "CIDR \"" + text + "\": host bits set");
  return Ipv4Cidr{*address, prefix};
}

std::string Ipv4Cidr::toString() const { return ipv4ToString(network) + "/" + std::to_string(prefixLength); }

uint32_t Ipv4Cidr::size() const {
  return prefixLength == 0 ? 0xffffffffu : uint32_t{1} << (32 - prefixLength);
}

bool Ipv4Cidr::contains(uint32_t address) const {
  uint32_t mask = prefixLength == 0 ? 0 : ~uint32_t{0} << (32 - prefixLength);
  return (address & mask) == network;
}

// Offsets inside the CIDR: 0 network, 1 gateway, size-1 broadcast; pods get 2..size-2.
constexpr uint32_t kFirstPodOffset = 2;

Ipam::Ipam(Ipv4Cidr podCidr) : cidr_(podCidr), next_(kFirstPodOffset) {}

uint32_t Ipam::gateway() const { return cidr_.network + 1; }

uint32_t Ipam::capacity() const { return cidr_.size() >= 4 ? cidr_.size() - 3 : 0; }

std::optional<uint32_t> Ipam::addressOf(const std::string& owner) const {
  auto it = byOwner_.find(owner);
  if (it == byOwner_.end()) return std::nullopt;
  return it->second;
}

Result<uint32_t> Ipam::allocate(const std::string& owner) {
  if (owner.empty()) return fail(EINVAL, "ipam: owner must not be empty");
  if (auto existing = addressOf(owner)) return *existing;
  uint32_t last = cidr_.size() - 2;  // highest pod offset
  if (capacity() == 0 || byOwner_.size() >= capacity()) {
    return fail(ENOSPC, "ipam: no free address in " + cidr_.toString() + " (all " + std::to_string(capacity()) + " pod addresses are in use)");
  }
  for (uint32_t tried = 0; tried < capacity(); ++tried) {
    if (next_ < kFirstPodOffset || next_ > last) next_ = kFirstPodOffset;
    uint32_t candidate = cidr_.network + next_;
    ++next_;
    if (byAddress_.count(candidate)) continue;
    byOwner_[owner] = candidate;
    byAddress_[candidate] = owner;
    return candidate;
  }
  return fail(ENOSPC, "ipam: no free address in " + cidr_.toString() + " (all " + std::to_string(capacity()) + " pod addresses are in use)");
}

bool Ipam::release(const std::string& owner) {
  auto it = byOwner_.find(owner);
  if (it == byOwner_.end()) return false;
  byAddress_.erase(it->second);
  byOwner_.erase(it);
  return true;
}

std::string Ipam::serialize() const {
  nlohmann::json allocations = nlohmann::json::object();
  for (const auto& [owner, address] : byOwner_) allocations[owner] = ipv4ToString(address);
  nlohmann::json doc{{"cidr", cidr_.toString()},
                     {"next", ipv4ToString(cidr_.network + next_)},
                     {"allocations", allocations}};
  return doc.dump(1);
}

Result<Ipam> Ipam::deserialize(const std::string& text) {
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return fail(EINVAL, "ipam state: not a JSON object");
  if (!doc.contains("cidr") || !doc["cidr"].is_string()) return fail(EINVAL, "ipam state: cidr: missing");
  auto cidr = Ipv4Cidr::parse(doc["cidr"].get<std::string>());
  if (!cidr) return fail(cidr.error().wrap("ipam state: cidr"));
  Ipam ipam(*cidr);
  if (doc.contains("next") && doc["next"].is_string()) {
    auto next = parseIpv4(doc["next"].get<std::string>());
    if (next && cidr->contains(*next)) ipam.next_ = *next - cidr->network;
  }
  if (doc.contains("allocations")) {
    if (!doc["allocations"].is_object()) return fail(EINVAL, "ipam state: allocations: not an object");
    for (const auto& [owner, value] : doc["allocations"].items()) {
      std::string field = "ipam state: allocations." + owner;
      if (!value.is_string()) return fail(EINVAL, field + ": not a string");
      auto address = parseIpv4(value.get<std::string>());
      if (!address) return fail(address.error().wrap(field));
      uint32_t offset = *address - cidr->network;
      if (!cidr->contains(*address) || offset < kFirstPodOffset || offset > cidr->size() - 2) {
        return fail(EINVAL, field + ": " + value.get<std::string>() + " is not a pod address of " + cidr->toString());
      }
      if (ipam.byAddress_.count(*address)) return fail(EINVAL, field + ": address already owned by another pod");
      ipam.byOwner_[owner] = *address;
      ipam.byAddress_[*address] = owner;
    }
  }
  return ipam;
}

Status writeFileAtomically(const std::string& path, const std::string& content) {
  // Rename makes the switch atomic for readers and for an agent that crashes mid-write.
  // No fsync: after a power loss the pinned namespaces (on /run) are gone too, and
  // SandboxManager::open reconciles records against what exists.
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return failErrno("create " + tmp);
  ssize_t n = ::write(fd, content.data(), content.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(content.size())) return failErrno("write " + tmp, n < 0 ? err : EIO);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return failErrno("rename " + tmp + " to " + path);
  return {};
}

Status Ipam::saveTo(const std::string& path) const { return writeFileAtomically(path, serialize()); }

Result<Ipam> Ipam::loadOrCreate(const std::string& path, Ipv4Cidr podCidr) {
  if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) return Ipam(podCidr);
  std::ifstream in(path);
  if (!in) return failErrno("open " + path);
  std::stringstream text;
  text << in.rdbuf();
  auto ipam = deserialize(text.str());
  if (!ipam) return fail(ipam.error().wrap(path));
  if (ipam->cidr().network != podCidr.network || ipam->cidr().prefixLength != podCidr.prefixLength) {
    return fail(EINVAL, path + ": cidr: state is for " + ipam->cidr().toString() + ", node has " + podCidr.toString());
  }
  return ipam;
}

}  // namespace ferry::agent
