// The DNS decoders never crash or read out of bounds: a query from a pod goes
// through parseQuery and, when it parses, is answered from a small zone and
// written with the transport limits; the same bytes taken as an upstream's
// response go through copyAnswers, forEachTtl and truncateForUdp.
#include "dns/wire.h"
#include "dns/zone.h"

#include <cstdint>
#include <vector>

namespace {

const ferry::dns::Zone& testZone() {
  static const ferry::dns::Zone zone = [] {
    ferry::dns::Zone z;
    z.domain = "cluster.local";
    z.names["app.default.svc.cluster.local"].a = {0x0a2b0001};
    z.names["hl.default.svc.cluster.local"].a = {0x0a2a0005, 0x0a2a0006};
    z.names["web-0.hl.default.svc.cluster.local"].a = {0x0a2a0005};
    z.names["_http._tcp.app.default.svc.cluster.local"].srv = {{80, "app.default.svc.cluster.local"}};
    z.names["ext.default.svc.cluster.local"].cname = "example.org";
    z.names["1.0.43.10.in-addr.arpa"].ptr = {"app.default.svc.cluster.local"};
    z.names["dns-version.cluster.local"].txt = "1.1.0";
    for (const char* n : {"svc.cluster.local", "default.svc.cluster.local", "_tcp.app.default.svc.cluster.local"})
      z.interior.insert(n);
    z.namespaces.insert("default");
    return z;
  }();
  return zone;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  thread_local ferry::dns::Query query;
  thread_local ferry::dns::ResponseWriter writer;
  bool headerRead = false;
  if (ferry::dns::parseQuery(data, size, query, headerRead)) {
    const auto& zone = testZone();
    if (zone.authoritativeFor(query.name)) {
      zone.answer(query, writer);
      (void)writer.finish(query.udpPayload);
      (void)writer.finish(65535);
    }
  }
  // The same bytes as an upstream's answer to a forwarded query.
  thread_local ferry::dns::Query forwarded = [] {
    ferry::dns::Query q;
    q.id = 7;
    q.name = "www.example.org";
    q.qtype = ferry::dns::kTypeA;
    q.qclass = ferry::dns::kClassIN;
    return q;
  }();
  writer.reset(forwarded, ferry::dns::kNoError, false);
  (void)ferry::dns::copyAnswers(data, size, writer);
  (void)writer.finish(512);
  (void)ferry::dns::forEachTtl(data, size, [&](size_t offset) {
    if (offset + 4 > size) __builtin_trap();  // a TTL field must lie inside the message
  });
  std::vector<std::uint8_t> copy(data, data + size);
  ferry::dns::truncateForUdp(copy, 512);
  return 0;
}
