// "No allocation on the hot path for cluster names", checked by counting: this
// test binary interposes malloc (and so operator new, which calls it) and
// counts every allocation made while a measurement runs, in any thread. Once
// warm, answering cluster names must make none: through the zone directly, and
// through a running server over UDP and TCP, from a client the server knows as
// a pod (so the autopath check runs on every query, as it does for pods).
// Not counted as hot: names in the client's own namespace that do not exist
// (autopath builds candidate names for those) and forwarded names.
#include "dns/cluster_dns.h"
#include "dns/wire.h"
#include "dns/zone.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);
}

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
std::atomic<size_t> lastSize{0};
void note(size_t n) {
  if (counting.load(std::memory_order_relaxed)) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    lastSize.store(n, std::memory_order_relaxed);
  }
}
}  // namespace

extern "C" {
void* malloc(size_t n) {
  note(n);
  return __libc_malloc(n);
}
void* calloc(size_t count, size_t n) {
  note(count * n);
  return __libc_calloc(count, n);
}
void* realloc(void* p, size_t n) {
  note(n);
  return __libc_realloc(p, n);
}
void* memalign(size_t alignment, size_t n) {
  note(n);
  return __libc_memalign(alignment, n);
}
void* aligned_alloc(size_t alignment, size_t n) {
  note(n);
  return __libc_memalign(alignment, n);
}
int posix_memalign(void** out, size_t alignment, size_t n) {
  note(n);
  void* p = __libc_memalign(alignment, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
void free(void* p) { __libc_free(p); }
}

using namespace ferry::dns;

namespace {

// Counts the allocations made (by any thread) while `body` runs.
template <typename F>
long allocationsDuring(F&& body) {
  allocations = 0;
  counting = true;
  body();
  counting = false;
  return allocations.load();
}

std::vector<std::uint8_t> makeQuery(const std::string& name, std::uint16_t type, bool edns, std::uint16_t id) {
  std::vector<std::uint8_t> q = {static_cast<std::uint8_t>(id >> 8), static_cast<std::uint8_t>(id), 0x01, 0x00, 0, 1, 0, 0,
                                 0, 0, 0, static_cast<std::uint8_t>(edns ? 1 : 0)};
  size_t start = 0;
  while (!name.empty()) {
    size_t dot = name.find('.', start);
    std::string label = name.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    q.push_back(static_cast<std::uint8_t>(label.size()));
    q.insert(q.end(), label.begin(), label.end());
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  q.insert(q.end(), {0, static_cast<std::uint8_t>(type >> 8), static_cast<std::uint8_t>(type), 0, 1});
  if (edns) q.insert(q.end(), {0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0});
  return q;
}

std::shared_ptr<const Zone> testZone() {
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
  ext.externalName = "www.example.org";
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
  std::vector<ferry::api::Service> services = {app, dual, hl, ext};
  // Enough names that the lookup table is not trivially small.
  for (int i = 0; i < 2000; ++i) {
    ferry::api::Service s = app;
    s.name = "svc-" + std::to_string(i);
    s.ns = "prod";
    s.clusterIP = "10.43." + std::to_string(1 + i / 250) + "." + std::to_string(1 + i % 250);
    services.push_back(s);
  }
  return buildZone("cluster.local", services, {slice});
}

struct Case {
  std::string name;
  std::uint16_t type;
  std::uint8_t rcode;
  int answers;
};

// Every kind of cluster answer: records, NODATA, NXDOMAIN, synthesized pod names, the apex.
std::vector<Case> clusterCases() {
  return {
      {"app.default.svc.cluster.local", kTypeA, kNoError, 1},
      {"app.default.svc.cluster.local", kTypeAAAA, kNoError, 0},  // IPv4-only Service: NODATA
      {"dual.default.svc.cluster.local", kTypeAAAA, kNoError, 1},
      {"svc-1234.prod.svc.cluster.local", kTypeA, kNoError, 1},
      {"_http._tcp.app.default.svc.cluster.local", kTypeSRV, kNoError, 1},
      {"1.0.43.10.in-addr.arpa", kTypePTR, kNoError, 1},
      {"hl.default.svc.cluster.local", kTypeA, kNoError, 2},
      {"web-0.hl.default.svc.cluster.local", kTypeA, kNoError, 1},
      {"_http._tcp.hl.default.svc.cluster.local", kTypeSRV, kNoError, 2},
      {"10-42-0-9.default.pod.cluster.local", kTypeA, kNoError, 1},
      {"ext.default.svc.cluster.local", kTypeA, kNoError, 1},  // the CNAME
      {"nosuch.prod.svc.cluster.local", kTypeA, kNxDomain, 0},
      {"cluster.local", kTypeSOA, kNoError, 1},
      {"cluster.local", kTypeNS, kNoError, 1},
      {"dns-version.cluster.local", kTypeTXT, kNoError, 1},
  };
}

TEST(DnsHotPath, ZoneAnswersAllocateNothing) {
  auto zone = testZone();
  std::vector<std::vector<std::uint8_t>> queries;
  for (const auto& c : clusterCases())
    for (bool edns : {false, true}) queries.push_back(makeQuery(c.name, c.type, edns, 7));
  const std::vector<Case> cases = clusterCases();
  Query query;
  ResponseWriter writer;
  int mismatches = 0;
  auto answerAll = [&] {
    size_t i = 0;
    for (const auto& c : cases) {
      for (int e = 0; e < 2; ++e, ++i) {
        bool header = false;
        if (!parseQuery(queries[i].data(), queries[i].size(), query, header)) {
          ++mismatches;
          continue;
        }
        zone->answer(query, writer);
        const auto& out = writer.finish(query.udpPayload);
        if ((out[3] & 0xF) != c.rcode || ((out[6] << 8) | out[7]) != c.answers) ++mismatches;
      }
    }
  };
  answerAll();  // warm: buffers grow to their working size
  ASSERT_EQ(mismatches, 0);
  long n = allocationsDuring([&] {
    for (int round = 0; round < 100; ++round) answerAll();
  });
  EXPECT_EQ(n, 0) << "allocations while answering cluster names (last of " << lastSize << " bytes)";
  EXPECT_EQ(mismatches, 0);
}

// The counter itself works: a measurement that allocates is seen.
TEST(DnsHotPath, TheCounterSeesAllocations) {
  long n = allocationsDuring([] {
    std::string s(100, 'x');
    asm volatile("" : : "r"(s.data()) : "memory");
  });
  EXPECT_GE(n, 1);
}

class ServerHotPath : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937 rng{std::random_device{}()};
    for (int attempt = 0; attempt < 20 && !dns_; ++attempt) {
      port_ = 20000 + static_cast<int>(rng() % 20000);
      DnsConfig c;
      c.listen = {"127.0.0.1:" + std::to_string(port_)};
      c.resolvConf = "/dev/null";  // no upstream: nothing is ever forwarded off the machine
      auto s = ClusterDns::start(c);
      if (s) dns_ = std::move(*s);
    }
    ASSERT_TRUE(dns_);
    dns_->publish(testZone());
    // 127.0.0.1 is a pod in "default": every query also goes through the autopath check.
    auto clients = std::make_shared<ClusterDns::ClientNamespaces>();
    (*clients)[(127u << 24) | 1] = "default";
    dns_->publishClients(clients);
    for (const auto& c : clusterCases())
      for (bool edns : {false, true}) queries_.push_back(makeQuery(c.name, c.type, edns, 0x4242));
  }

  // Sends every query once over `fd` (UDP, or TCP with the length prefix) and
  // counts answers that are missing or not what the case expects. Allocates nothing.
  int roundTrip(int fd, bool tcp) {
    int bad = 0;
    size_t i = 0;
    for (const auto& c : cases_) {
      for (int e = 0; e < 2; ++e, ++i) {
        const auto& q = queries_[i];
        if (tcp) {
          std::uint8_t framed[2 + 512];
          framed[0] = static_cast<std::uint8_t>(q.size() >> 8);
          framed[1] = static_cast<std::uint8_t>(q.size());
          std::copy(q.begin(), q.end(), framed + 2);
          if (send(fd, framed, q.size() + 2, 0) != static_cast<ssize_t>(q.size() + 2)) return -1;
        } else if (send(fd, q.data(), q.size(), 0) != static_cast<ssize_t>(q.size())) {
          return -1;
        }
        size_t got = 0, want = tcp ? 2 : 0;
        std::uint8_t* out = reply_;
        while (true) {
          pollfd p{fd, POLLIN, 0};
          if (poll(&p, 1, 5000) <= 0) return -1;
          ssize_t n = recv(fd, reply_ + got, sizeof reply_ - got, 0);
          if (n <= 0) return -1;
          got += static_cast<size_t>(n);
          if (!tcp) break;
          if (got >= 2 && want == 2) want = 2 + ((reply_[0] << 8) | reply_[1]);
          if (got >= want) {
            out = reply_ + 2;
            break;
          }
        }
        if ((out[3] & 0xF) != c.rcode || ((out[6] << 8) | out[7]) != c.answers) ++bad;
      }
    }
    return bad;
  }

  int connectTo(int type) {
    int fd = socket(AF_INET, type, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(port_));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      close(fd);
      return -1;
    }
    return fd;
  }

  std::unique_ptr<ClusterDns> dns_;
  int port_ = 0;
  std::vector<Case> cases_ = clusterCases();
  std::vector<std::vector<std::uint8_t>> queries_;
  std::uint8_t reply_[65536 + 2];
};

TEST_F(ServerHotPath, UdpAnswersForClusterNamesAllocateNothing) {
  int fd = connectTo(SOCK_DGRAM);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(roundTrip(fd, false), 0);  // warm
  int bad = 0;
  long n = allocationsDuring([&] {
    for (int round = 0; round < 50; ++round) bad += roundTrip(fd, false);
  });
  close(fd);
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(n, 0) << "allocations while serving " << 50 * queries_.size() << " UDP queries (last of " << lastSize
                  << " bytes)";
  EXPECT_EQ(dns_->counters().forwarded, 0u);
}

TEST_F(ServerHotPath, TcpAnswersOnAnOpenConnectionAllocateNothing) {
  int fd = connectTo(SOCK_STREAM);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(roundTrip(fd, true), 0);  // warm: the connection's thread and buffers exist
  int bad = 0;
  long n = allocationsDuring([&] {
    for (int round = 0; round < 20; ++round) bad += roundTrip(fd, true);
  });
  close(fd);
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(n, 0) << "allocations while serving " << 20 * queries_.size() << " TCP queries (last of " << lastSize
                  << " bytes)";
}

}  // namespace
