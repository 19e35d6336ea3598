#include "dns/zone.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace ferry::dns {
namespace {

bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string dashed(std::uint32_t a) {
  return fmt::format("{}-{}-{}-{}", a >> 24, (a >> 16) & 0xFF, (a >> 8) & 0xFF, a & 0xFF);
}

// Every proper ancestor of `name` down to (and including) `stop` exists.
void addInterior(Zone& z, const std::string& name, const std::string& stop) {
  std::string_view rest = name;
  while (true) {
    size_t dot = rest.find('.');
    if (dot == std::string_view::npos) break;
    rest = rest.substr(dot + 1);
    z.interior.insert(std::string(rest));
    if (rest == stop || rest.size() <= stop.size()) break;
  }
}

}  // namespace

bool parseIpv4(std::string_view text, std::uint32_t& out) {
  std::string s(text);
  in_addr a{};
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) return false;
  out = ntohl(a.s_addr);
  return true;
}

std::string reverseName(std::uint32_t a) {
  return fmt::format("{}.{}.{}.{}.in-addr.arpa", a & 0xFF, (a >> 8) & 0xFF, (a >> 16) & 0xFF, a >> 24);
}

std::shared_ptr<const Zone> buildZone(const std::string& domainIn, const std::vector<api::Service>& services,
                                      const std::vector<api::EndpointSlice>& slices) {
  auto z = std::make_shared<Zone>();
  z->domain = lower(domainIn);
  const std::string& d = z->domain;
  std::string svcZone = "svc." + d;
  z->interior.insert(d);
  z->interior.insert(svcZone);
  z->interior.insert("pod." + d);
  z->names["dns-version." + d].txt = "1.1.0";

  std::map<std::string, std::vector<const api::EndpointSlice*>> slicesByService;
  for (const auto& s : slices) slicesByService[s.ns + "/" + s.serviceName].push_back(&s);

  for (const auto& svc : services) {
    std::string base = lower(svc.name + "." + svc.ns + "." + svcZone);
    z->namespaces.insert(lower(svc.ns));
    addInterior(*z, base, svcZone);
    NameRecords& rec = z->names[base];
    if (svc.type == "ExternalName") {
      std::string target = lower(svc.externalName);
      while (!target.empty() && target.back() == '.') target.pop_back();
      rec.cname = target;
      continue;
    }
    const auto& svcSlices = slicesByService[svc.ns + "/" + svc.name];
    if (!svc.headless()) {
      std::uint32_t ip;
      if (parseIpv4(svc.clusterIP, ip)) {
        rec.a.push_back(ip);
        z->names[reverseName(ip)].ptr.push_back(base);
      }
      for (const auto& p : svc.ports) {
        if (p.name.empty()) continue;
        std::string srvName = lower("_" + p.name + "._" + p.protocol + "." + base);
        z->names[srvName].srv.push_back({static_cast<std::uint16_t>(p.port), base});
        addInterior(*z, srvName, base);
      }
      continue;
    }
    // Headless: the endpoints themselves, each also under its own name.
    for (const auto* slice : svcSlices) {
      if (slice->addressType != "IPv4") continue;
      for (const auto& ep : slice->endpoints) {
        if (!ep.ready && !svc.publishNotReadyAddresses) continue;
        for (const auto& addr : ep.addresses) {
          std::uint32_t ip;
          if (!parseIpv4(addr, ip)) continue;
          rec.a.push_back(ip);
          std::string host = lower(ep.hostname.empty() ? dashed(ip) : ep.hostname) + "." + base;
          z->names[host].a.push_back(ip);
          if (!ep.hostname.empty()) z->names[reverseName(ip)].ptr.push_back(host);
          for (const auto& p : slice->ports) {
            if (p.name.empty()) continue;
            std::string srvName = lower("_" + p.name + "._" + p.protocol + "." + base);
            z->names[srvName].srv.push_back({static_cast<std::uint16_t>(p.port), host});
            addInterior(*z, srvName, base);
          }
        }
      }
    }
  }
  for (auto& [name, rec] : z->names) {
    std::sort(rec.a.begin(), rec.a.end());
    rec.a.erase(std::unique(rec.a.begin(), rec.a.end()), rec.a.end());
  }
  return z;
}

bool Zone::authoritativeFor(const std::string& name) const {
  if (name == domain || endsWith(name, "." + domain)) return true;
  return endsWith(name, ".in-addr.arpa") && names.contains(name);
}

bool Zone::exists(const std::string& name) const {
  if (names.contains(name) || interior.contains(name)) return true;
  // <a-b-c-d>.<ns>.pod.<domain> and <ns>.pod.<domain>
  std::string podZone = ".pod." + domain;
  if (endsWith(name, podZone)) {
    std::string_view head(name.data(), name.size() - podZone.size());
    size_t dot = head.rfind('.');
    std::string_view ns = dot == std::string_view::npos ? head : head.substr(dot + 1);
    if (dot == std::string_view::npos) return true;  // <ns>.pod.<domain>
    std::string ip(head.substr(0, dot));
    std::replace(ip.begin(), ip.end(), '-', '.');
    std::uint32_t a;
    return parseIpv4(ip, a) && !ns.empty();
  }
  return false;
}

void Zone::answer(const Query& q, ResponseWriter& out) const {
  out.reset(q, kNoError, true);
  out.setRcode(appendAnswer(q.name, q.qtype, out));
}

std::uint8_t Zone::appendAnswer(const std::string& name, std::uint16_t qtype, ResponseWriter& out) const {
  if (name == domain) {
    if (qtype == kTypeSOA || qtype == kTypeANY) out.addSoa(domain, ttl, ttl, false);
    else if (qtype == kTypeNS) out.addNs(domain, ttl, "ns.dns." + domain);
    else out.addSoa(domain, ttl, ttl, true);
    return kNoError;
  }
  auto it = names.find(name);
  if (it != names.end()) {
    const NameRecords& r = it->second;
    bool any = false;
    if (!r.cname.empty()) {
      // A CNAME answers every type; the client follows it.
      out.addCname(name, ttl, r.cname);
      return kNoError;
    }
    if (qtype == kTypeA || qtype == kTypeANY)
      for (auto a : r.a) {
        out.addA(name, ttl, a);
        any = true;
      }
    if (qtype == kTypeSRV || qtype == kTypeANY)
      for (const auto& s : r.srv) {
        out.addSrv(name, ttl, 0, static_cast<std::uint16_t>(100 / std::max<size_t>(1, r.srv.size())), s.port, s.target);
        any = true;
      }
    if (qtype == kTypePTR || qtype == kTypeANY)
      for (const auto& p : r.ptr) {
        out.addPtr(name, ttl, p);
        any = true;
      }
    if ((qtype == kTypeTXT || qtype == kTypeANY) && !r.txt.empty()) {
      out.addTxt(name, ttl, r.txt);
      any = true;
    }
    if (!any) out.addSoa(domain, ttl, ttl, true);  // NODATA
    return kNoError;
  }
  if (exists(name)) {
    // Pod A records are synthesized from the name; interior names are NODATA.
    std::string podZone = ".pod." + domain;
    if (qtype == kTypeA && endsWith(name, podZone)) {
      std::string_view head(name.data(), name.size() - podZone.size());
      size_t dot = head.rfind('.');
      if (dot != std::string_view::npos) {
        std::string ip(head.substr(0, dot));
        std::replace(ip.begin(), ip.end(), '-', '.');
        std::uint32_t a;
        if (parseIpv4(ip, a)) {
          out.addA(name, ttl, a);
          return kNoError;
        }
      }
    }
    out.addSoa(domain, ttl, ttl, true);
    return kNoError;
  }
  out.addSoa(domain, ttl, ttl, true);
  return kNxDomain;
}

}  // namespace ferry::dns
