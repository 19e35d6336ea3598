// The DNS server end to end on loopback, queried by a real client (dig):
// cluster names, forwarding to an upstream the test starts, caching, TCP,
// truncation and EDNS0. Never touches the machine's resolver.
#include "dns/cluster_dns.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <cstdio>
#include <mutex>
#include <random>
#include <regex>
#include <unistd.h>

using namespace ferry::dns;

namespace {

std::string runDig(const std::string& args) {
  std::string cmd = "dig +time=3 +tries=1 " + args + " 2>&1";
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  pclose(p);
  return out;
}

struct Server {
  std::unique_ptr<ClusterDns> dns;
  std::string address;
  int port = 0;
};

Server startServer(const std::string& ip, const std::string& domain, std::vector<std::string> upstreams,
                   DnsConfig c = {}) {
  std::mt19937 rng{std::random_device{}()};
  for (int attempt = 0; attempt < 20; ++attempt) {
    int port = 20000 + static_cast<int>(rng() % 20000);
    c.listen = {ip + ":" + std::to_string(port)};
    c.clusterDomain = domain;
    c.upstreams = upstreams;
    // Without upstreams a server would read the machine's resolv.conf: never
    // forward there (names it cannot answer get SERVFAIL instead).
    c.resolvConf = "/dev/null";
    auto s = ClusterDns::start(c);
    if (s) return {std::move(*s), ip, port};
  }
  return {};
}

ferry::api::Service service(const std::string& name, const std::string& ns, const std::string& ip) {
  ferry::api::Service s;
  s.name = name;
  s.ns = ns;
  s.clusterIP = ip;
  s.ports.push_back({"http", "TCP", 80, {}, 0});
  return s;
}

class DnsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/usr/bin/dig", X_OK) != 0) GTEST_SKIP() << "dig (dnsutils) is not installed";
    upstream_ = startServer("127.0.0.2", "example.test", {});
    ASSERT_TRUE(upstream_.dns) << "could not start the upstream";
    upstream_.dns->publish(buildZone("example.test", {service("www", "web", "192.0.2.7")}, {}));
    cluster_ = startServer("127.0.0.1", "cluster.local", {"127.0.0.2:" + std::to_string(upstream_.port)});
    ASSERT_TRUE(cluster_.dns);
  }
  std::string at() const { return "@" + cluster_.address + " -p " + std::to_string(cluster_.port) + " "; }
  Server upstream_, cluster_;
};

}  // namespace

TEST_F(DnsServerTest, AnswersClusterNamesOverUdpAndTcp) {
  cluster_.dns->publish(buildZone("cluster.local", {service("web", "default", "10.43.0.20")}, {}));
  EXPECT_EQ(runDig(at() + "+short web.default.svc.cluster.local A"), "10.43.0.20\n");
  EXPECT_EQ(runDig(at() + "+tcp +short web.default.svc.cluster.local A"), "10.43.0.20\n");
  auto nx = runDig(at() + "nope.default.svc.cluster.local A");
  EXPECT_NE(nx.find("status: NXDOMAIN"), std::string::npos) << nx;
  EXPECT_NE(nx.find("SOA"), std::string::npos) << nx;
  // AAAA of an IPv4-only Service: NODATA, the SOA in the authority section.
  auto nodata = runDig(at() + "+tcp web.default.svc.cluster.local AAAA");
  EXPECT_NE(nodata.find("status: NOERROR"), std::string::npos) << nodata;
  EXPECT_NE(nodata.find("ANSWER: 0, AUTHORITY: 1"), std::string::npos) << nodata;
  EXPECT_NE(nodata.find(";; AUTHORITY SECTION:\ncluster.local."), std::string::npos) << nodata;
}

TEST_F(DnsServerTest, NewSnapshotIsServedAtOnce) {
  EXPECT_NE(runDig(at() + "api.default.svc.cluster.local A").find("NXDOMAIN"), std::string::npos);
  cluster_.dns->publish(buildZone("cluster.local", {service("api", "default", "10.43.0.30")}, {}));
  EXPECT_EQ(runDig(at() + "+short api.default.svc.cluster.local A"), "10.43.0.30\n");
}

TEST_F(DnsServerTest, ForwardsOtherNamesAndCachesThem) {
  EXPECT_EQ(runDig(at() + "+short www.web.svc.example.test A"), "192.0.2.7\n");
  EXPECT_EQ(upstream_.dns->counters().queries, 1u);
  EXPECT_EQ(runDig(at() + "+short www.web.svc.example.test A"), "192.0.2.7\n");
  EXPECT_EQ(upstream_.dns->counters().queries, 1u) << "the second answer must come from the cache";
  EXPECT_EQ(cluster_.dns->counters().cacheHits, 1u);
  // Negative answers are cached too (RFC 2308), and say NXDOMAIN.
  EXPECT_NE(runDig(at() + "missing.web.svc.example.test A").find("NXDOMAIN"), std::string::npos);
  EXPECT_NE(runDig(at() + "missing.web.svc.example.test A").find("NXDOMAIN"), std::string::npos);
  EXPECT_EQ(upstream_.dns->counters().queries, 2u);
}

TEST_F(DnsServerTest, TruncatesBigUdpAnswersAndServesThemOverTcp) {
  ferry::api::Service big = service("big", "default", "None");
  ferry::api::EndpointSlice slice;
  slice.name = "big-1";
  slice.ns = "default";
  slice.serviceName = "big";
  for (int i = 0; i < 60; ++i) {
    ferry::api::Endpoint e;
    e.addresses = {"10.42.3." + std::to_string(i + 1)};
    slice.endpoints.push_back(e);
  }
  cluster_.dns->publish(buildZone("cluster.local", {big}, {slice}));
  auto udp = runDig(at() + "+noedns +ignore big.default.svc.cluster.local A");
  EXPECT_NE(udp.find(" tc"), std::string::npos) << udp;
  auto edns = runDig(at() + "+bufsize=4096 +ignore big.default.svc.cluster.local A");
  EXPECT_EQ(edns.find(" tc"), std::string::npos) << "60 records fit in an EDNS0 4096-byte answer: " << edns;
  auto tcp = runDig(at() + "+tcp +short big.default.svc.cluster.local A");
  EXPECT_EQ(std::count(tcp.begin(), tcp.end(), '\n'), 60) << tcp;
}

TEST_F(DnsServerTest, MalformedPacketsGetFormerrAndTheServerStaysUp) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(cluster_.port));
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  std::uint8_t bad[] = {0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1};
  sendto(fd, bad, sizeof bad, 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  timeval tv{3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::uint8_t reply[512];
  ssize_t n = recv(fd, reply, sizeof reply, 0);
  close(fd);
  ASSERT_GE(n, 12);
  EXPECT_EQ(reply[0], 0xAB);
  EXPECT_EQ(reply[3] & 0xF, kFormErr);
  cluster_.dns->publish(buildZone("cluster.local", {service("web", "default", "10.43.0.20")}, {}));
  EXPECT_EQ(runDig(at() + "+short web.default.svc.cluster.local A"), "10.43.0.20\n");
}

TEST_F(DnsServerTest, AutopathAnswersTheFirstSearchQueryForKnownClients) {
  cluster_.dns->publish(buildZone("cluster.local", {service("web", "default", "10.43.0.20")}, {}));
  std::uint32_t client = (127u << 24) | 5;  // 127.0.0.5, a "pod" in namespace default
  cluster_.dns->publishClients(
      std::make_shared<const ClusterDns::ClientNamespaces>(ClusterDns::ClientNamespaces{{client, "default"}}));
  // An external name: the pod's first query (ndots:5 → first search domain) is answered with
  // a CNAME to the external name and its address, from the upstream.
  auto ext = runDig(at() + "-b 127.0.0.5 www.web.svc.example.test.default.svc.cluster.local A");
  EXPECT_NE(ext.find("status: NOERROR"), std::string::npos) << ext;
  EXPECT_TRUE(std::regex_search(ext, std::regex(R"(CNAME\s+www\.web\.svc\.example\.test\.)"))) << ext;
  EXPECT_NE(ext.find("192.0.2.7"), std::string::npos) << ext;
  // A cluster name reached through a later search domain.
  auto svc = runDig(at() + "-b 127.0.0.5 +short web.default.default.svc.cluster.local A");
  EXPECT_NE(svc.find("10.43.0.20"), std::string::npos) << svc;
  // A name that exists nowhere is still NXDOMAIN.
  auto missing = runDig(at() + "-b 127.0.0.5 nothing.web.svc.example.test.default.svc.cluster.local A");
  EXPECT_NE(missing.find("NXDOMAIN"), std::string::npos) << missing;
  // The last candidate goes upstream; when the upstream fails (this one has no
  // upstream of its own: SERVFAIL) the asked name is answered from the zone.
  auto failed = runDig(at() + "-b 127.0.0.5 nothing.default.svc.cluster.local A");
  EXPECT_NE(failed.find("status: NXDOMAIN"), std::string::npos) << failed;
  // A client we do not know keeps the plain behaviour.
  auto other = runDig(at() + "-b 127.0.0.6 www.web.svc.example.test.default.svc.cluster.local A");
  EXPECT_NE(other.find("NXDOMAIN"), std::string::npos) << other;
  // Names that exist are answered as they are.
  EXPECT_EQ(runDig(at() + "-b 127.0.0.5 +short web.default.svc.cluster.local A"), "10.43.0.20\n");
  EXPECT_GE(cluster_.dns->counters().autopathAnswers, 3u);
}

TEST(StubDomainFlag, ParsesDomainAndUpstreams) {
  auto stub = parseStubDomain("Corp.Example.=10.0.0.53:5353,10.0.0.54");
  ASSERT_TRUE(stub) << stub.error().message;
  EXPECT_EQ(stub->domain, "corp.example");
  EXPECT_EQ(stub->upstreams, (std::vector<std::string>{"10.0.0.53:5353", "10.0.0.54"}));
  EXPECT_FALSE(parseStubDomain("corp.example"));
  EXPECT_FALSE(parseStubDomain("=10.0.0.53"));
  EXPECT_FALSE(parseStubDomain("corp.example="));
  auto bad = parseStubDomain("corp.example=dns.corp.example");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("not an IPv4 address"), std::string::npos) << bad.error().message;
}

// Two test upstreams on 127.0.0.x: names under the stub domain go to the stub's
// upstream (and only those), everything else to the default one; the cluster
// zone is still answered locally.
TEST_F(DnsServerTest, StubDomainGoesToItsOwnUpstream) {
  Server corp = startServer("127.0.0.3", "corp.example", {});
  ASSERT_TRUE(corp.dns);
  corp.dns->publish(buildZone("corp.example", {service("intranet", "it", "192.0.2.9")}, {}));
  DnsConfig c;
  c.stubDomains = {{"corp.example", {"127.0.0.3:" + std::to_string(corp.port)}},
                   {"unused.corp.example", {"127.0.0.4:9"}}};  // longer, never matching: not chosen
  Server stubbed = startServer("127.0.0.1", "cluster.local", {"127.0.0.2:" + std::to_string(upstream_.port)}, c);
  ASSERT_TRUE(stubbed.dns);
  stubbed.dns->publish(buildZone("cluster.local", {service("web", "default", "10.43.0.20")}, {}));
  std::string at = "@127.0.0.1 -p " + std::to_string(stubbed.port) + " ";

  EXPECT_EQ(runDig(at + "+short intranet.it.svc.corp.example A"), "192.0.2.9\n");
  EXPECT_EQ(corp.dns->counters().queries, 1u);
  EXPECT_EQ(upstream_.dns->counters().queries, 0u) << "a stub-domain name must not reach the default upstream";
  EXPECT_EQ(runDig(at + "+short www.web.svc.example.test A"), "192.0.2.7\n");
  EXPECT_EQ(upstream_.dns->counters().queries, 1u);
  EXPECT_EQ(corp.dns->counters().queries, 1u) << "other names must not reach the stub's upstream";
  // Negative answers come from the stub's upstream too.
  EXPECT_NE(runDig(at + "nothing.it.svc.corp.example A").find("NXDOMAIN"), std::string::npos);
  EXPECT_EQ(corp.dns->counters().queries, 2u);
  // A name that only ends like the domain is not in it.
  EXPECT_NE(runDig(at + "notcorp.example A").find("status:"), std::string::npos);
  EXPECT_EQ(corp.dns->counters().queries, 2u);
  EXPECT_EQ(runDig(at + "+short web.default.svc.cluster.local A"), "10.43.0.20\n");
  EXPECT_EQ(stubbed.dns->counters().stubForwarded, 2u);
}

namespace {

int connectTcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// Sends one length-prefixed query; returns the answer's rcode, or -1 when the
// connection gave no answer (closed).
int tcpQuery(int fd, const std::string& name) {
  auto q = buildQuery(0x4242, name, kTypeA, false);
  std::vector<std::uint8_t> msg{static_cast<std::uint8_t>(q.size() >> 8), static_cast<std::uint8_t>(q.size())};
  msg.insert(msg.end(), q.begin(), q.end());
  if (send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(msg.size())) return -1;
  std::uint8_t length[2];
  if (recv(fd, length, 2, MSG_WAITALL) != 2) return -1;
  std::vector<std::uint8_t> reply((length[0] << 8) | length[1]);
  if (reply.size() < 12 || recv(fd, reply.data(), reply.size(), MSG_WAITALL) != static_cast<ssize_t>(reply.size()))
    return -1;
  if (reply[0] != 0x42 || reply[1] != 0x42) return -1;
  return reply[3] & 0xF;
}

bool waitUntil(const std::function<bool()>& condition) {
  for (int i = 0; i < 200; ++i) {
    if (condition()) return true;
    usleep(50 * 1000);
  }
  return condition();
}

// True when the peer closed `fd` (read gives EOF or a reset within the timeout).
bool closedByPeer(int fd) {
  char c;
  ssize_t n = recv(fd, &c, 1, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

}  // namespace

// TCP connections are bounded, closed when idle, and their threads are joined
// once they end (none kept for the server's life).
TEST_F(DnsServerTest, TcpConnectionsAreBoundedClosedWhenIdleAndReaped) {
  DnsConfig c;
  c.tcpIdleTimeoutMs = 1000;
  c.maxTcpConnections = 4;
  Server tcp = startServer("127.0.0.1", "cluster.local", {}, c);
  ASSERT_TRUE(tcp.dns);
  tcp.dns->publish(buildZone("cluster.local", {service("web", "default", "10.43.0.20")}, {}));

  for (int round = 0; round < 2; ++round) {
    std::vector<int> fds;
    for (int i = 0; i < 4; ++i) {
      int fd = connectTcp(tcp.port);
      ASSERT_GE(fd, 0);
      fds.push_back(fd);
    }
    // Each connection answers (several queries on one connection as well).
    for (int fd : fds) EXPECT_EQ(tcpQuery(fd, "web.default.svc.cluster.local"), kNoError);
    EXPECT_EQ(tcpQuery(fds[0], "nope.default.svc.cluster.local"), kNxDomain);
    ASSERT_TRUE(waitUntil([&] { return tcp.dns->counters().tcpConnections == 4; }));
    // A fifth is closed at once.
    int extra = connectTcp(tcp.port);
    ASSERT_GE(extra, 0);
    EXPECT_TRUE(closedByPeer(extra));
    close(extra);
    EXPECT_EQ(tcp.dns->counters().tcpRefused, static_cast<std::uint64_t>(round + 1));
    // One client leaves; the others go idle and are closed by the server.
    close(fds[0]);
    for (size_t i = 1; i < fds.size(); ++i) {
      EXPECT_TRUE(closedByPeer(fds[i])) << "idle connection " << i << " stayed open";
      close(fds[i]);
    }
    // Every connection thread is joined (reaped within the accept loop's second).
    EXPECT_TRUE(waitUntil([&] {
      auto k = tcp.dns->counters();
      return k.tcpConnections == 0 && k.tcpThreads == 0;
    })) << "open " << tcp.dns->counters().tcpConnections << ", threads " << tcp.dns->counters().tcpThreads;
  }
}

// A replaced zone is freed by the publisher or the TCP loop, never by a thread
// serving queries (freeing 10,000 names would stall it for milliseconds); and
// it is freed, not kept, once the serving thread has moved to the new one.
TEST_F(DnsServerTest, ReplacedZoneIsFreedOffTheServingThread) {
  struct Freed {
    std::mutex mu;
    bool done = false;
    std::string thread;
  };
  auto freed = std::make_shared<Freed>();
  auto real = buildZone("cluster.local", {service("web", "default", "10.43.0.20")}, {});
  // The same zone, with a deleter that notes the name of the thread it runs on.
  std::shared_ptr<const Zone> first(real.get(), [keep = real, freed](const Zone*) mutable {
    char name[16] = {};
    pthread_getname_np(pthread_self(), name, sizeof name);
    std::lock_guard lock(freed->mu);
    freed->done = true;
    freed->thread = name;
    keep.reset();
  });
  real.reset();
  cluster_.dns->publish(std::move(first));
  // The serving thread takes the zone...
  EXPECT_EQ(runDig(at() + "+short web.default.svc.cluster.local A"), "10.43.0.20\n");
  cluster_.dns->publish(buildZone("cluster.local", {service("web", "default", "10.43.0.21")}, {}));
  // ...and drops it for the new one here, while the publisher has let go already.
  EXPECT_EQ(runDig(at() + "+short web.default.svc.cluster.local A"), "10.43.0.21\n");
  ASSERT_TRUE(waitUntil([&] {
    std::lock_guard lock(freed->mu);
    return freed->done;
  })) << "the replaced zone was never freed";
  std::lock_guard lock(freed->mu);
  EXPECT_NE(freed->thread, "ferry-dns-udp") << "the serving thread freed the replaced zone";
}
