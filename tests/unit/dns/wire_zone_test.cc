#include "dns/wire.h"
#include "dns/zone.h"

#include <gtest/gtest.h>

using namespace ferry::dns;

namespace {

std::vector<std::uint8_t> makeQuery(const std::string& name, std::uint16_t type, bool edns = false) {
  std::vector<std::uint8_t> q = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, static_cast<std::uint8_t>(edns ? 1 : 0)};
  size_t start = 0;
  while (start <= name.size() && !name.empty()) {
    size_t dot = name.find('.', start);
    std::string label = name.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    q.push_back(static_cast<std::uint8_t>(label.size()));
    q.insert(q.end(), label.begin(), label.end());
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  q.push_back(0);
  q.push_back(static_cast<std::uint8_t>(type >> 8));
  q.push_back(static_cast<std::uint8_t>(type));
  q.push_back(0);
  q.push_back(1);
  if (edns) {
    std::vector<std::uint8_t> opt = {0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0};
    q.insert(q.end(), opt.begin(), opt.end());
  }
  return q;
}

struct Answer {
  std::uint8_t rcode;
  int answers;
  int authority;
  bool aa;
};

Answer summarize(std::span<const std::uint8_t> r) {
  return {static_cast<std::uint8_t>(r[3] & 0xF), (r[6] << 8) | r[7], (r[8] << 8) | r[9], (r[2] & 0x04) != 0};
}

std::shared_ptr<const Zone> sampleZone() {
  ferry::api::Service web;
  web.name = "web";
  web.ns = "default";
  web.clusterIP = "10.43.0.20";
  web.ports.push_back({"http", "TCP", 80, {}, 0});
  ferry::api::Service db;
  db.name = "db";
  db.ns = "prod";
  db.clusterIP = "None";
  db.ports.push_back({"pg", "TCP", 5432, {}, 0});
  ferry::api::Service ext;
  ext.name = "search";
  ext.ns = "default";
  ext.type = "ExternalName";
  ext.externalName = "www.example.org";
  ferry::api::EndpointSlice slice;
  slice.name = "db-1";
  slice.ns = "prod";
  slice.serviceName = "db";
  slice.ports.push_back({"pg", "TCP", 5432});
  ferry::api::Endpoint a;
  a.addresses = {"10.42.0.5"};
  a.hostname = "db-0";
  ferry::api::Endpoint b;
  b.addresses = {"10.42.1.6"};
  ferry::api::Endpoint notReady;
  notReady.addresses = {"10.42.1.9"};
  notReady.ready = false;
  slice.endpoints = {a, b, notReady};
  return buildZone("cluster.local", {web, db, ext}, {slice});
}

std::vector<std::uint8_t> ask(const Zone& z, const std::string& name, std::uint16_t type) {
  auto bytes = makeQuery(name, type);
  Query q;
  bool header = false;
  EXPECT_TRUE(parseQuery(bytes.data(), bytes.size(), q, header).has_value());
  ResponseWriter w;
  z.answer(q, w);
  auto out = w.finish(512);
  return {out.begin(), out.end()};
}

}  // namespace

TEST(DnsWire, ParsesQueryLowerCasingTheName) {
  auto bytes = makeQuery("Web.Default.SVC.cluster.local", kTypeA, true);
  Query q;
  bool header = false;
  ASSERT_TRUE(parseQuery(bytes.data(), bytes.size(), q, header).has_value());
  EXPECT_EQ(q.name, "web.default.svc.cluster.local");
  EXPECT_EQ(q.qtype, kTypeA);
  EXPECT_TRUE(q.edns);
  EXPECT_EQ(q.udpPayload, 4096);
}

TEST(DnsWire, RejectsMalformedInput) {
  Query q;
  bool header = false;
  std::vector<std::uint8_t> shortMsg = {1, 2, 3};
  EXPECT_FALSE(parseQuery(shortMsg.data(), shortMsg.size(), q, header).has_value());
  EXPECT_FALSE(header);

  auto truncated = makeQuery("web.default", kTypeA);
  truncated.resize(truncated.size() - 3);
  EXPECT_FALSE(parseQuery(truncated.data(), truncated.size(), q, header).has_value());
  EXPECT_TRUE(header);

  // A compression pointer to itself.
  std::vector<std::uint8_t> loop = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1};
  EXPECT_FALSE(parseQuery(loop.data(), loop.size(), q, header).has_value());

  // A 64-byte label.
  std::vector<std::uint8_t> big = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64};
  big.insert(big.end(), 64, 'a');
  big.insert(big.end(), {0, 0, 1, 0, 1});
  EXPECT_FALSE(parseQuery(big.data(), big.size(), q, header).has_value());

  // Two questions.
  auto two = makeQuery("a", kTypeA);
  two[5] = 2;
  EXPECT_FALSE(parseQuery(two.data(), two.size(), q, header).has_value());
}

TEST(DnsZone, ServiceAddressAndSrvAndPtr) {
  auto z = sampleZone();
  auto r = ask(*z, "web.default.svc.cluster.local", kTypeA);
  EXPECT_EQ(summarize(r).rcode, kNoError);
  EXPECT_EQ(summarize(r).answers, 1);
  EXPECT_TRUE(summarize(r).aa);
  // The address bytes are the last four of the message.
  EXPECT_EQ(std::vector<std::uint8_t>(r.end() - 4, r.end()), (std::vector<std::uint8_t>{10, 43, 0, 20}));

  EXPECT_EQ(summarize(ask(*z, "_http._tcp.web.default.svc.cluster.local", kTypeSRV)).answers, 1);
  EXPECT_EQ(summarize(ask(*z, "20.0.43.10.in-addr.arpa", kTypePTR)).answers, 1);
}

TEST(DnsZone, NxdomainAndNodataCarryTheSoa) {
  auto z = sampleZone();
  auto nx = summarize(ask(*z, "nope.default.svc.cluster.local", kTypeA));
  EXPECT_EQ(nx.rcode, kNxDomain);
  EXPECT_EQ(nx.authority, 1);
  auto nodata = summarize(ask(*z, "web.default.svc.cluster.local", kTypeAAAA));
  EXPECT_EQ(nodata.rcode, kNoError);
  EXPECT_EQ(nodata.answers, 0);
  EXPECT_EQ(nodata.authority, 1);
  // An empty non-terminal exists: NODATA, not NXDOMAIN.
  EXPECT_EQ(summarize(ask(*z, "default.svc.cluster.local", kTypeA)).rcode, kNoError);
}

TEST(DnsZone, HeadlessServiceListsReadyEndpointsAndHostnames) {
  auto z = sampleZone();
  EXPECT_EQ(summarize(ask(*z, "db.prod.svc.cluster.local", kTypeA)).answers, 2);
  EXPECT_EQ(summarize(ask(*z, "db-0.db.prod.svc.cluster.local", kTypeA)).answers, 1);
  EXPECT_EQ(summarize(ask(*z, "10-42-1-6.db.prod.svc.cluster.local", kTypeA)).answers, 1);
  EXPECT_EQ(summarize(ask(*z, "_pg._tcp.db.prod.svc.cluster.local", kTypeSRV)).answers, 2);
  EXPECT_EQ(summarize(ask(*z, "5.0.42.10.in-addr.arpa", kTypePTR)).answers, 1);
}

TEST(DnsZone, ExternalNamePodNamesAndVersion) {
  auto z = sampleZone();
  EXPECT_EQ(summarize(ask(*z, "search.default.svc.cluster.local", kTypeA)).answers, 1);  // the CNAME
  auto pod = ask(*z, "10-42-0-7.default.pod.cluster.local", kTypeA);
  EXPECT_EQ(summarize(pod).answers, 1);
  EXPECT_EQ(std::vector<std::uint8_t>(pod.end() - 4, pod.end()), (std::vector<std::uint8_t>{10, 42, 0, 7}));
  EXPECT_EQ(summarize(ask(*z, "dns-version.cluster.local", kTypeTXT)).answers, 1);
  EXPECT_EQ(summarize(ask(*z, "cluster.local", kTypeSOA)).answers, 1);
  EXPECT_FALSE(z->authoritativeFor("example.org"));
  EXPECT_FALSE(z->authoritativeFor("1.2.3.4.in-addr.arpa"));
}

TEST(DnsWire, TruncatesOverTheLimitWithTc) {
  ferry::api::Service big;
  big.name = "big";
  big.ns = "default";
  big.clusterIP = "None";
  ferry::api::EndpointSlice slice;
  slice.name = "big-1";
  slice.ns = "default";
  slice.serviceName = "big";
  for (int i = 0; i < 100; ++i) {
    ferry::api::Endpoint e;
    e.addresses = {"10.42.2." + std::to_string(i + 1)};
    slice.endpoints.push_back(e);
  }
  auto z = buildZone("cluster.local", {big}, {slice});
  auto bytes = makeQuery("big.default.svc.cluster.local", kTypeA);
  Query q;
  bool header = false;
  ASSERT_TRUE(parseQuery(bytes.data(), bytes.size(), q, header).has_value());
  ResponseWriter w;
  z->answer(q, w);
  auto udp = w.finish(512);
  EXPECT_TRUE(udp[2] & 0x02);
  EXPECT_LE(udp.size(), 512u);
  z->answer(q, w);
  auto tcp = w.finish(65535);
  EXPECT_FALSE(tcp[2] & 0x02);
  EXPECT_EQ(summarize(tcp).answers, 100);
}

TEST(DnsZone, DualStackServiceAnswersAaaaAndIp6Ptr) {
  ferry::api::Service dual;
  dual.name = "dual";
  dual.ns = "default";
  dual.clusterIP = "10.43.0.30";
  dual.clusterIPs = {"10.43.0.30", "fd00:43::1e"};
  ferry::api::Service hl;
  hl.name = "hl6";
  hl.ns = "default";
  hl.clusterIP = "None";
  ferry::api::EndpointSlice slice;
  slice.name = "hl6-1";
  slice.ns = "default";
  slice.serviceName = "hl6";
  slice.addressType = "IPv6";
  ferry::api::Endpoint e;
  e.addresses = {"fd00:42::5"};
  e.hostname = "web-0";
  slice.endpoints = {e};
  auto z = buildZone("cluster.local", {dual, hl}, {slice});

  auto a = ask(*z, "dual.default.svc.cluster.local", kTypeA);
  EXPECT_EQ(summarize(a).answers, 1);
  auto aaaa = ask(*z, "dual.default.svc.cluster.local", kTypeAAAA);
  ASSERT_EQ(summarize(aaaa).answers, 1);
  std::vector<std::uint8_t> want = {0xfd, 0, 0, 0x43, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x1e};
  EXPECT_EQ(std::vector<std::uint8_t>(aaaa.end() - 16, aaaa.end()), want);
  EXPECT_EQ(summarize(ask(*z, "dual.default.svc.cluster.local", kTypeANY)).answers, 2);
  std::string ptr6 = "e.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.4.0.0.0.0.d.f.ip6.arpa";
  EXPECT_EQ(ptr6, reverseName6({0xfd, 0, 0, 0x43, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x1e}));
  EXPECT_TRUE(z->authoritativeFor(ptr6));
  EXPECT_EQ(summarize(ask(*z, ptr6, kTypePTR)).answers, 1);

  // A headless Service over an IPv6 slice: AAAA for the Service and the pod's hostname, no A.
  EXPECT_EQ(summarize(ask(*z, "hl6.default.svc.cluster.local", kTypeAAAA)).answers, 1);
  auto noA = summarize(ask(*z, "hl6.default.svc.cluster.local", kTypeA));
  EXPECT_EQ(noA.rcode, kNoError);
  EXPECT_EQ(noA.answers, 0);
  EXPECT_EQ(noA.authority, 1);
  EXPECT_EQ(summarize(ask(*z, "web-0.hl6.default.svc.cluster.local", kTypeAAAA)).answers, 1);
}

TEST(DnsZone, PodNamesAndTheirNamespaceNames) {
  auto z = sampleZone();
  // <ns>.pod.<domain> exists (NODATA); malformed pod names do not.
  auto ns = summarize(ask(*z, "default.pod.cluster.local", kTypeA));
  EXPECT_EQ(ns.rcode, kNoError);
  EXPECT_EQ(ns.answers, 0);
  EXPECT_EQ(summarize(ask(*z, "10-42-0-7.default.pod.cluster.local", kTypeAAAA)).answers, 0);
  EXPECT_EQ(summarize(ask(*z, "10-42-0-256.default.pod.cluster.local", kTypeA)).rcode, kNxDomain);
  EXPECT_EQ(summarize(ask(*z, "10-42-0.default.pod.cluster.local", kTypeA)).rcode, kNxDomain);
  EXPECT_EQ(summarize(ask(*z, "x.10-42-0-7.default.pod.cluster.local", kTypeA)).rcode, kNxDomain);
  std::uint32_t a = 0;
  EXPECT_TRUE(parseIpv4("10.42.0.7", a));
  EXPECT_EQ(a, 0x0a2a0007u);
  EXPECT_FALSE(parseIpv4("10.42.0.07", a));
  EXPECT_FALSE(parseIpv4("10.42.0.7.", a));
  EXPECT_FALSE(parseIpv4("1.2.3", a));
}

TEST(DnsZone, TenThousandServicesStayCompact) {
  std::vector<ferry::api::Service> services;
  for (int i = 0; i < 10000; ++i) {
    ferry::api::Service s;
    s.name = "svc-" + std::to_string(i);
    s.ns = "bench";
    s.clusterIP = "10.43." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
    s.ports.push_back({"http", "TCP", 80, {}, 0});
    services.push_back(std::move(s));
  }
  auto z = buildZone("cluster.local", services, {});
  // Per Service: its name, the PTR name, the SRV name and "_tcp.<name>".
  EXPECT_EQ(z->nameCount(), 4u * 10000 + 5);
  // The flat layout's budget (measured ~2.7 MB); a map of strings took ~13 MB.
  EXPECT_LT(z->storageBytes(), 4u << 20);
  EXPECT_EQ(summarize(ask(*z, "svc-9999.bench.svc.cluster.local", kTypeA)).answers, 1);
  EXPECT_EQ(summarize(ask(*z, "_http._tcp.svc-5000.bench.svc.cluster.local", kTypeSRV)).answers, 1);
  EXPECT_EQ(summarize(ask(*z, "svc-10000.bench.svc.cluster.local", kTypeA)).rcode, kNxDomain);
}

TEST(DnsWire, NamesAreCompressedAgainstTheMessage) {
  auto z = sampleZone();
  // Header 12 + question (31-byte name, type, class) + one A record whose
  // name is a pointer to the question (0xC00C): 12 + 35 + 16 = 63 bytes.
  auto a = ask(*z, "web.default.svc.cluster.local", kTypeA);
  ASSERT_EQ(a.size(), 63u);
  EXPECT_EQ(a[47], 0xC0);
  EXPECT_EQ(a[48], 0x0C);
  // NXDOMAIN: the SOA's owner "cluster.local" points into the question, and its
  // mname/rname ("ns.dns.", "hostmaster.") end in a pointer to that owner.
  auto nx = ask(*z, "nope.default.svc.cluster.local", kTypeA);
  size_t soa = 12 + 32 + 4;
  EXPECT_EQ(nx[soa], 0xC0);
  EXPECT_EQ(nx[soa + 1], 12 + 1 + 4 + 1 + 7 + 1 + 3);  // offset of "cluster" in the question
  size_t rdata = soa + 2 + 10;
  EXPECT_EQ(nx[rdata], 2);  // "ns"
  EXPECT_EQ(nx[rdata + 3], 3);  // "dns"
  EXPECT_EQ(nx[rdata + 7], 0xC0);  // then a pointer
  EXPECT_EQ(nx[rdata + 8], nx[soa + 1]);
  // 12 + 36 + SOA (2 + 10 + "ns.dns"+ptr 9 + "hostmaster"+ptr 13 + 20) = 102 bytes.
  // (The question of "nope...": 32-byte name + 4.)
  EXPECT_EQ(nx.size(), 102u);
}

TEST(DnsWire, TheQuestionKeepsTheClientsCase) {
  // Resolvers that randomize the case of the name (the "0x20" trick) check that
  // the answer's question is the one they sent, byte for byte.
  auto z = sampleZone();
  auto bytes = makeQuery("wEb.DeFault.svc.CLUSTER.local", kTypeA);
  Query q;
  bool header = false;
  ASSERT_TRUE(parseQuery(bytes.data(), bytes.size(), q, header).has_value());
  ResponseWriter w;
  z->answer(q, w);
  auto r = w.finish(512);
  ASSERT_EQ(r.size(), 63u);
  EXPECT_EQ(summarize(r).answers, 1);
  EXPECT_TRUE(std::equal(bytes.begin() + 12, bytes.end(), r.begin() + 12));
  EXPECT_EQ(r[47], 0xC0);  // the answer's owner points to the question as asked
  EXPECT_EQ(r[48], 0x0C);
  // The negative answer's SOA still finds "cluster.local" in a mixed-case question.
  auto nx = makeQuery("Nope.Default.SVC.Cluster.Local", kTypeA);
  ASSERT_TRUE(parseQuery(nx.data(), nx.size(), q, header).has_value());
  z->answer(q, w);
  auto n = w.finish(512);
  EXPECT_EQ(summarize(n).rcode, kNxDomain);
  EXPECT_EQ(n.size(), 102u);
  EXPECT_EQ(n[12 + 32 + 4], 0xC0);
}

TEST(DnsWire, NamesAreLowerCasedInAsciiOnly) {
  // Every byte value 1..255 in labels of a name: only 'A'..'Z' change (to
  // 'a'..'z'); '@', '[', bytes from 0x80 ('A' | 0x80 among them) stay as they
  // are. Four names of two 32-byte labels (the lower-casing goes 8 bytes a step,
  // so every position in a step sees every kind of byte).
  for (int start = 0; start < 256; start += 64) {
    std::vector<std::uint8_t> wire;
    std::string expected;
    for (int label = 0; label < 2; ++label) {
      wire.push_back(32);
      if (label > 0) expected.push_back('.');
      for (int i = 0; i < 32; ++i) {
        int b = start + label * 32 + i;
        if (b == 0) b = 'Q';  // a zero byte is fine in a label, but keep the text printable
        wire.push_back(static_cast<std::uint8_t>(b));
        expected.push_back(static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b));
      }
    }
    wire.push_back(0);
    size_t offset = 0;
    std::string name;
    ASSERT_TRUE(readName(wire.data(), wire.size(), offset, name).has_value()) << start;
    EXPECT_EQ(offset, wire.size());
    EXPECT_EQ(name, expected) << "bytes from " << start;
  }
}
