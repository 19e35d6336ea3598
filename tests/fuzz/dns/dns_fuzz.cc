// The DNS decoders never crash or read out of bounds: a query from a pod goes
// through parseQuery and, when it parses, is answered from a small zone and
// written with the transport limits; the same bytes taken as an upstream's
// response go through copyAnswers, forEachTtl and truncateForUdp.
#include "dns/wire.h"
#include "dns/zone.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace {

// A small zone with every kind of record: a ClusterIP Service with a named
// port (A, SRV, PTR), a dual-stack one (AAAA), a headless one with per-pod
// names, an ExternalName (CNAME), and the zone's own TXT/SOA/NS.
const ferry::dns::Zone& testZone() {
  static const std::shared_ptr<const ferry::dns::Zone> zone = [] {
    ferry::api::Service app;
    app.name = "app";
    app.ns = "default";
    app.clusterIP = "10.43.0.1";
    app.ports.push_back({"http", "TCP", 80, {}, 0});
    ferry::api::Service dual = app;
    dual.name = "dual";
    dual.clusterIP = "10.43.0.2";
    dual.clusterIPs = {"10.43.0.2", "fd00:43::2"};
    ferry::api::Service hl;
    hl.name = "hl";
    hl.ns = "default";
    hl.clusterIP = "None";
    ferry::api::Service ext;
    ext.name = "ext";
    ext.ns = "default";
    ext.type = "ExternalName";
    ext.externalName = "example.org";
    ferry::api::EndpointSlice slice;
    slice.name = "hl-1";
    slice.ns = "default";
    slice.serviceName = "hl";
    slice.ports.push_back({"http", "TCP", 8080});
    ferry::api::Endpoint web0;
    web0.addresses = {"10.42.0.5"};
    web0.hostname = "web-0";
    ferry::api::Endpoint web1;
    web1.addresses = {"10.42.0.6"};
    slice.endpoints = {web0, web1};
    return ferry::dns::buildZone("cluster.local", {app, dual, hl, ext}, {slice});
  }();
  return *zone;
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
