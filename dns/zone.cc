#include "dns/zone.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <unordered_map>

namespace ferry::dns {
namespace {

bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// `name` is `domain` or below it.
bool inZone(std::string_view name, std::string_view domain) {
  if (name.size() == domain.size()) return name == domain;
  return name.size() > domain.size() && name[name.size() - domain.size() - 1] == '.' && endsWith(name, domain);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string dashed(std::uint32_t a) {
  return fmt::format("{}-{}-{}-{}", a >> 24, (a >> 16) & 0xFF, (a >> 8) & 0xFF, a & 0xFF);
}

// libstdc++'s string hash takes 8 bytes a step (a byte-wise FNV-1a cost ~140
// more instructions per query under callgrind).
size_t hashName(std::string_view s) { return std::hash<std::string_view>{}(s); }

bool parseIpv6(const std::string& text, std::array<std::uint8_t, 16>& out) {
  return inet_pton(AF_INET6, text.c_str(), out.data()) == 1;
}

}  // namespace

bool parseIpv4(std::string_view text, std::uint32_t& out, char separator) {
  std::uint32_t address = 0;
  size_t pos = 0;
  for (int part = 0; part < 4; ++part) {
    if (part > 0) {
      if (pos >= text.size() || text[pos] != separator) return false;
      ++pos;
    }
    size_t start = pos;
    std::uint32_t value = 0;
    while (pos < text.size() && pos - start < 3 && text[pos] >= '0' && text[pos] <= '9')
      value = value * 10 + static_cast<std::uint32_t>(text[pos++] - '0');
    size_t digits = pos - start;
    if (digits == 0 || value > 255 || (digits > 1 && text[start] == '0')) return false;
    address = (address << 8) | value;
  }
  if (pos != text.size()) return false;
  out = address;
  return true;
}

std::string reverseName(std::uint32_t a) {
  return fmt::format("{}.{}.{}.{}.in-addr.arpa", a & 0xFF, (a >> 8) & 0xFF, (a >> 16) & 0xFF, a >> 24);
}

std::string reverseName6(const std::array<std::uint8_t, 16>& address) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 15; i >= 0; --i) {
    out += kHex[address[i] & 0xF];
    out += '.';
    out += kHex[address[i] >> 4];
    out += '.';
  }
  return out + "ip6.arpa";
}

// Collects names and records in maps, then lays them out flat in a Zone. The
// maps are gone once finish() returns; only the flat arrays stay.
class ZoneBuilder {
 public:
  explicit ZoneBuilder(const std::string& domain) : zone_(std::make_shared<Zone>()) { zone_->domain_ = domain; }

  void addA(const std::string& name, std::uint32_t address) { entry(name).push_back({kTypeA, 0, address, 0, 0}); }
  void addAaaa(const std::string& name, const std::array<std::uint8_t, 16>& address) {
    auto [it, added] = ipv6Index_.try_emplace(address, static_cast<std::uint32_t>(zone_->ipv6_.size()));
    if (added) zone_->ipv6_.push_back(address);
    entry(name).push_back({kTypeAAAA, 0, it->second, 0, 0});
  }
  void addText(const std::string& name, std::uint16_t type, std::string_view text, std::uint16_t port = 0) {
    auto& records = entry(name);
    std::uint32_t at = intern(text);
    records.push_back({type, port, at, static_cast<std::uint16_t>(std::min<size_t>(text.size(), 65535)), 0});
  }
  // The name exists, with or without records.
  void touch(const std::string& name) { entry(name); }
  // Every proper ancestor of `name` down to (and including) `stop` exists.
  void addAncestors(const std::string& name, const std::string& stop) {
    std::string_view rest = name;
    while (true) {
      size_t dot = rest.find('.');
      if (dot == std::string_view::npos) break;
      rest = rest.substr(dot + 1);
      touch(std::string(rest));
      if (rest == stop || rest.size() <= stop.size()) break;
    }
  }

  std::shared_ptr<const Zone> finish() {
    Zone& z = *zone_;
    z.entries_.reserve(pending_.size());
    size_t recordCount = 0;
    for (auto& p : pending_) recordCount += std::min<size_t>(p.records.size(), 65535);
    z.records_.reserve(recordCount);
    for (auto& p : pending_) {
      auto& r = p.records;
      // A CNAME stands alone (an ExternalName Service has nothing else).
      auto cname = std::find_if(r.begin(), r.end(), [](const Zone::Record& x) { return x.type == kTypeCNAME; });
      if (cname != r.end()) r = {*cname};
      std::sort(r.begin(), r.end(), [](const Zone::Record& a, const Zone::Record& b) {
        return std::tie(a.type, a.value, a.port, a.length) < std::tie(b.type, b.value, b.port, b.length);
      });
      r.erase(std::unique(r.begin(), r.end(),
                          [](const Zone::Record& a, const Zone::Record& b) {
                            return a.type == b.type && a.value == b.value && a.port == b.port && a.length == b.length;
                          }),
              r.end());
      if (r.size() > 65535) r.resize(65535);
      auto srvCount = std::count_if(r.begin(), r.end(), [](const Zone::Record& x) { return x.type == kTypeSRV; });
      for (auto& x : r)
        if (x.type == kTypeSRV) x.weight = static_cast<std::uint16_t>(100 / std::max<long>(1, srvCount));
      z.entries_.push_back({p.name, p.nameLength, static_cast<std::uint16_t>(r.size()),
                            static_cast<std::uint32_t>(z.records_.size())});
      z.records_.insert(z.records_.end(), r.begin(), r.end());
      std::vector<Zone::Record>().swap(r);
    }
    size_t slots = 8;
    while (slots < z.entries_.size() * 2) slots *= 2;
    z.slots_.assign(slots, 0);
    for (size_t i = 0; i < z.entries_.size(); ++i) {
      const auto& e = z.entries_[i];
      size_t at = hashName(z.textOf(e.name, e.nameLength)) & (slots - 1);
      while (z.slots_[at] != 0) at = (at + 1) & (slots - 1);
      z.slots_[at] = static_cast<std::uint32_t>(i + 1);
    }
    z.text_.shrink_to_fit();
    z.ipv6_.shrink_to_fit();
    return zone_;
  }

 private:
  struct PendingName {
    std::uint32_t name;
    std::uint16_t nameLength;
    std::vector<Zone::Record> records;
  };

  // Stores each distinct text once: a Service's name is also the target of its
  // PTR and SRV records.
  std::uint32_t intern(std::string_view text) {
    auto [it, added] = texts_.try_emplace(std::string(text), 0);
    if (added) {
      it->second = static_cast<std::uint32_t>(zone_->text_.size());
      zone_->text_.append(text);
    }
    return it->second;
  }

  std::vector<Zone::Record>& entry(const std::string& name) {
    auto [it, added] = byName_.try_emplace(name, pending_.size());
    if (added) pending_.push_back({intern(name), static_cast<std::uint16_t>(name.size()), {}});
    return pending_[it->second].records;
  }

  std::shared_ptr<Zone> zone_;
  std::unordered_map<std::string, std::uint32_t> texts_;
  std::unordered_map<std::string, size_t> byName_;
  std::vector<PendingName> pending_;
  std::map<std::array<std::uint8_t, 16>, std::uint32_t> ipv6Index_;
};

std::shared_ptr<const Zone> buildZone(const std::string& domainIn, const std::vector<api::Service>& services,
                                      const std::vector<api::EndpointSlice>& slices) {
  std::string d = lower(domainIn);
  while (!d.empty() && d.back() == '.') d.pop_back();
  ZoneBuilder b(d);
  std::string svcZone = "svc." + d;
  b.touch(d);
  b.touch(svcZone);
  b.touch("pod." + d);
  b.addText("dns-version." + d, kTypeTXT, "1.1.0");

  std::map<std::string, std::vector<const api::EndpointSlice*>> slicesByService;
  for (const auto& s : slices) slicesByService[s.ns + "/" + s.serviceName].push_back(&s);

  for (const auto& svc : services) {
    std::string base = lower(svc.name + "." + svc.ns + "." + svcZone);
    b.addAncestors(base, svcZone);
    b.touch(base);
    if (svc.type == "ExternalName") {
      std::string target = lower(svc.externalName);
      while (!target.empty() && target.back() == '.') target.pop_back();
      b.addText(base, kTypeCNAME, target);
      continue;
    }
    if (!svc.headless()) {
      // Both families of a dual-stack Service; clusterIP is clusterIPs[0] when both are set.
      std::vector<std::string> ips = svc.clusterIPs;
      if (!svc.clusterIP.empty()) ips.push_back(svc.clusterIP);
      for (const auto& text : ips) {
        std::uint32_t ip;
        std::array<std::uint8_t, 16> ip6;
        if (parseIpv4(text, ip)) {
          b.addA(base, ip);
          b.addText(reverseName(ip), kTypePTR, base);
        } else if (parseIpv6(text, ip6)) {
          b.addAaaa(base, ip6);
          b.addText(reverseName6(ip6), kTypePTR, base);
        }
      }
      for (const auto& p : svc.ports) {
        if (p.name.empty()) continue;
        std::string srvName = lower("_" + p.name + "._" + p.protocol + "." + base);
        b.addText(srvName, kTypeSRV, base, static_cast<std::uint16_t>(p.port));
        b.addAncestors(srvName, base);
      }
      continue;
    }
    // Headless: the endpoints themselves, each also under its own name (its
    // hostname, or a-b-c-d for IPv4 endpoints without one).
    for (const auto* slice : slicesByService[svc.ns + "/" + svc.name]) {
      bool v4 = slice->addressType == "IPv4", v6 = slice->addressType == "IPv6";
      if (!v4 && !v6) continue;
      for (const auto& ep : slice->endpoints) {
        if (!ep.ready && !svc.publishNotReadyAddresses) continue;
        for (const auto& addr : ep.addresses) {
          std::uint32_t ip = 0;
          std::array<std::uint8_t, 16> ip6{};
          if (v4 ? !parseIpv4(addr, ip) : !parseIpv6(addr, ip6)) continue;
          v4 ? b.addA(base, ip) : b.addAaaa(base, ip6);
          if (ep.hostname.empty() && v6) continue;
          std::string host = lower(ep.hostname.empty() ? dashed(ip) : ep.hostname) + "." + base;
          v4 ? b.addA(host, ip) : b.addAaaa(host, ip6);
          if (!ep.hostname.empty()) b.addText(v4 ? reverseName(ip) : reverseName6(ip6), kTypePTR, host);
          for (const auto& p : slice->ports) {
            if (p.name.empty()) continue;
            std::string srvName = lower("_" + p.name + "._" + p.protocol + "." + base);
            b.addText(srvName, kTypeSRV, host, static_cast<std::uint16_t>(p.port));
            b.addAncestors(srvName, base);
          }
        }
      }
    }
  }
  return b.finish();
}

const Zone::Entry* Zone::find(std::string_view name) const {
  if (slots_.empty()) return nullptr;
  size_t mask = slots_.size() - 1;
  for (size_t at = hashName(name) & mask;; at = (at + 1) & mask) {
    std::uint32_t slot = slots_[at];
    if (slot == 0) return nullptr;
    const Entry& e = entries_[slot - 1];
    if (textOf(e.name, e.nameLength) == name) return &e;
  }
}

size_t Zone::storageBytes() const {
  return text_.capacity() + entries_.capacity() * sizeof(Entry) + records_.capacity() * sizeof(Record) +
         ipv6_.capacity() * 16 + slots_.capacity() * sizeof(std::uint32_t);
}

bool Zone::authoritativeFor(std::string_view name) const {
  if (inZone(name, domain_)) return true;
  return (endsWith(name, ".in-addr.arpa") || endsWith(name, ".ip6.arpa")) && find(name) != nullptr;
}

bool Zone::podAddress(std::string_view name, std::uint32_t& address) const {
  // <a-b-c-d>.<ns>.pod.<domain>: the address from the name, any namespace.
  constexpr std::string_view kPod = ".pod.";
  if (name.size() <= kPod.size() + domain_.size() || !endsWith(name, domain_)) return false;
  std::string_view head = name.substr(0, name.size() - domain_.size());
  if (!endsWith(head, kPod)) return false;
  head.remove_suffix(kPod.size());
  size_t dot = head.find('.');
  if (dot == std::string_view::npos || dot + 1 == head.size()) return false;
  std::string_view ns = head.substr(dot + 1);
  if (ns.find('.') != std::string_view::npos) return false;
  return parseIpv4(head.substr(0, dot), address, '-');
}

bool Zone::exists(std::string_view name) const {
  if (find(name) != nullptr) return true;
  std::uint32_t address;
  if (podAddress(name, address)) return true;
  // <ns>.pod.<domain> for any namespace (the pod names below it are synthesized).
  constexpr std::string_view kPod = ".pod.";
  if (name.size() <= kPod.size() + domain_.size() || !endsWith(name, domain_)) return false;
  std::string_view head = name.substr(0, name.size() - domain_.size());
  if (!endsWith(head, kPod)) return false;
  head.remove_suffix(kPod.size());
  return !head.empty() && head.find('.') == std::string_view::npos;
}

void Zone::answer(const Query& q, ResponseWriter& out) const {
  out.reset(q, kNoError, true);
  out.setRcode(appendAnswer(q.name, q.qtype, out));
}

std::uint8_t Zone::appendAnswer(std::string_view name, std::uint16_t qtype, ResponseWriter& out) const {
  bool any = qtype == kTypeANY;
  if (name == domain_) {
    if (qtype == kTypeSOA || any) out.addSoa(domain_, ttl_, ttl_, false);
    else if (qtype == kTypeNS) out.addNs(domain_, ttl_, "ns.dns", domain_);
    else out.addSoa(domain_, ttl_, ttl_, true);
    return kNoError;
  }
  if (const Entry* e = find(name)) {
    bool answered = false;
    for (std::uint32_t i = e->firstRecord; i < e->firstRecord + e->recordCount; ++i) {
      const Record& r = records_[i];
      if (r.type == kTypeCNAME) {
        // A CNAME answers every type; the client follows it.
        out.addCname(name, ttl_, textOf(r.value, r.length));
        return kNoError;
      }
      if (r.type != qtype && !any) continue;
      answered = true;
      switch (r.type) {
        case kTypeA: out.addA(name, ttl_, r.value); break;
        case kTypeAAAA: out.addRaw(name, kTypeAAAA, ttl_, ipv6_[r.value].data(), 16); break;
        case kTypeSRV: out.addSrv(name, ttl_, 0, r.weight, r.port, textOf(r.value, r.length)); break;
        case kTypePTR: out.addPtr(name, ttl_, textOf(r.value, r.length)); break;
        case kTypeTXT: out.addTxt(name, ttl_, textOf(r.value, r.length)); break;
        default: answered = false;
      }
    }
    if (!answered) out.addSoa(domain_, ttl_, ttl_, true);  // NODATA
    return kNoError;
  }
  if (exists(name)) {
    // Pod A records are synthesized from the name; <ns>.pod.<domain> is NODATA.
    std::uint32_t address;
    if ((qtype == kTypeA || any) && podAddress(name, address)) {
      out.addA(name, ttl_, address);
      return kNoError;
    }
    out.addSoa(domain_, ttl_, ttl_, true);
    return kNoError;
  }
  out.addSoa(domain_, ttl_, ttl_, true);
  return kNxDomain;
}

}  // namespace ferry::dns
