// ServiceProxy end to end in a test node: real cgroup BPF programs or a real
// nftables ruleset, real sockets from processes in the test cgroup.
#include "proxy/service_proxy.h"
#include "tests/kernel/proxy/proxy_test_env.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

namespace ferry::proxy {
namespace {

using namespace std::chrono_literals;
using testing::ClientJob;
using testing::ClientProcess;
using testing::ClientResult;
using testing::kBackendPort;
using testing::kBackends;
using testing::kBackends6;
using testing::kNodeIP;
using testing::ProxyTestEnv;

constexpr const char* kWebIP = "10.96.0.10";
constexpr int kNodePort = 30080;

api::Service webService() {
  api::Service s;
  s.ns = "default";
  s.name = "web";
  s.type = "NodePort";
  s.clusterIP = kWebIP;
  s.ports.push_back({"http", "TCP", 80, {true, 0, "web"}, kNodePort});  // named targetPort
  s.ports.push_back({"dns", "UDP", 53, {false, kBackendPort, ""}, 0});
  return s;
}

api::EndpointSlice webSlice(std::vector<std::string> ready, std::vector<std::string> terminating = {}) {
  api::EndpointSlice e;
  e.ns = "default";
  e.name = "web-abc";
  e.serviceName = "web";
  e.ports = {{"http", "TCP", kBackendPort}, {"dns", "UDP", kBackendPort}};
  for (const auto& a : ready) e.endpoints.push_back({{a}, true, true, false, "node-a", "", ""});
  for (const auto& a : terminating) e.endpoints.push_back({{a}, false, true, true, "node-a", "", ""});
  return e;
}

constexpr const char* kWeb6IP = "fd00:96::10";

// A single-stack IPv6 Service (ipFamilies [IPv6]) and its IPv6 slice.
api::Service web6Service() {
  api::Service s;
  s.ns = "default";
  s.name = "web6";
  s.clusterIP = kWeb6IP;
  s.clusterIPs = {kWeb6IP};
  s.ports.push_back({"http", "TCP", 80, {true, 0, "web"}, 0});
  s.ports.push_back({"dns", "UDP", 53, {false, kBackendPort, ""}, 0});
  return s;
}

api::EndpointSlice sliceOf(const std::string& service, const std::string& name, const std::string& addressType,
                           const std::vector<std::string>& ready) {
  api::EndpointSlice e;
  e.ns = "default";
  e.name = name;
  e.serviceName = service;
  e.addressType = addressType;
  e.ports = {{"http", "TCP", kBackendPort}, {"dns", "UDP", kBackendPort}};
  for (const auto& a : ready) e.endpoints.push_back({{a}, true, true, false, "node-a", "", ""});
  return e;
}

std::vector<std::string> firstBackends6(int n) { return {kBackends6, kBackends6 + n}; }

// "errno E xN, ..." (E < -1000: the client process itself failed).
std::string errorsText(const ClientResult& r) {
  std::string out;
  for (auto& [e, n] : r.errors) out += (out.empty() ? "errno " : ", errno ") + std::to_string(e) + " x" + std::to_string(n);
  return out;
}

std::vector<std::string> firstBackends(int n) { return {kBackends, kBackends + n}; }

class ServiceProxyKernelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string reason = env_.setUp();
    if (!reason.empty()) GTEST_SKIP() << reason;
    startProxy();
  }
  void TearDown() override {
    if (proxy_) {
      onNode([&] { EXPECT_TRUE(proxy_->uninstall()) << "uninstall"; proxy_.reset(); });
    }
    env_.tearDown();
  }

  ProxyConfig config() {
    ProxyConfig c;
    c.mode = GetParam();
    c.cgroupV2Path = env_.cgroupDir();
    c.bpffsDir = env_.bpffsDir();
    c.nodeIP = kNodeIP;
    c.clusterCIDR = "10.244.0.0/16";
    c.serviceCIDR = "10.96.0.0/16";
    c.nodeName = "node-a";
    return c;
  }
  void startProxy() {
    onNode([&] {
      auto p = ServiceProxy::start(config());
      ASSERT_TRUE(p) << p.error().message;
      proxy_ = std::move(*p);
    });
  }
  // nftables is bound to the namespace of the thread that opened it: every
  // proxy call runs on the node's thread.
  void onNode(const std::function<void()>& f) { env_.nodeWorker().run(f); }
  void apply(const std::function<Status()>& f) {
    onNode([&] {
      auto st = f();
      ASSERT_TRUE(st) << st.error().message;
    });
  }
  void programWeb(int backends) {
    apply([&] { return proxy_->upsertService(webService()); });
    apply([&] { return proxy_->upsertEndpointSlice(webSlice(firstBackends(backends))); });
  }
  ClientResult client(ClientJob::Kind kind, const std::string& address, int port, int count, bool checkPeer = false) {
    return env_.runClient({kind, address, port, count, checkPeer});
  }
  bool ebpf() const { return GetParam() == "ebpf"; }

  ProxyTestEnv env_;
  std::unique_ptr<ServiceProxy> proxy_;
};

TEST_P(ServiceProxyKernelTest, RoundRobinIsExactOver300Connections) {
  programWeb(3);
  ClientResult r = client(ClientJob::TcpConnect, kWebIP, 80, 300);
  EXPECT_TRUE(r.errors.empty()) << "errno of first failure: " << (r.errors.empty() ? 0 : r.errors.begin()->first);
  ASSERT_EQ(r.byBackend.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(r.byBackend[kBackends[i]], 100) << kBackends[i];
}

TEST_P(ServiceProxyKernelTest, ApplicationSeesOnlyTheServiceAddress) {
  programWeb(3);
  ClientResult udp = client(ClientJob::UdpSendto, kWebIP, 53, 30, true);
  EXPECT_TRUE(udp.errors.empty());
  EXPECT_EQ(udp.wrongPeer, 0) << "recvfrom source was a backend, not the Service";
  EXPECT_EQ(udp.byBackend.size(), 3u);
  ClientResult connectedUdp = client(ClientJob::UdpConnected, kWebIP, 53, 30, true);
  EXPECT_TRUE(connectedUdp.errors.empty());
  EXPECT_EQ(connectedUdp.wrongPeer, 0);
  ClientResult tcp = client(ClientJob::TcpConnect, kWebIP, 80, 30, true);
  EXPECT_TRUE(tcp.errors.empty());
  EXPECT_EQ(tcp.wrongPeer, 0) << "getpeername returned a backend";
  EXPECT_EQ(tcp.total(), 30);
}

// Entries in a pinned BPF map, counted by walking its keys (-1 when it cannot be opened).
int pinnedMapEntries(const std::string& path) {
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return -1;
  std::vector<unsigned char> key(64), next(64);
  int count = 0;
  void* previous = nullptr;
  while (bpf_map_get_next_key(fd, previous, next.data()) == 0) {
    ++count;
    key = next;
    previous = key.data();
  }
  close(fd);
  return count;
}

// A socket that connect()ed to a Service keeps its Service in its own storage
// (lb4/lb6_socket_services); the shared reverse-NAT LRUs are for unconnected UDP only.
// Both modes: every kind of client sees only the Service address; in ebpf mode the
// pinned LRUs are walked too (nftables mode has none). Not a GTEST_SKIP for nftables:
// one skipped case marks the whole binary skipped in CTest.
TEST_P(ServiceProxyKernelTest, ConnectedSocketsKeepTheirServiceInSocketStorage) {
  programWeb(3);
  apply([&] { return proxy_->upsertService(web6Service()); });
  apply([&] { return proxy_->upsertEndpointSlice(sliceOf("web6", "web6-abc", "IPv6", firstBackends6(3))); });
  const std::string lru = env_.bpffsDir() + "/lb4_reverse_nat", lru6 = env_.bpffsDir() + "/lb6_reverse_nat";
  auto entries = [&](const std::string& path) { return ebpf() ? pinnedMapEntries(path) : 0; };
  ASSERT_EQ(entries(lru), 0) << lru;
  ASSERT_EQ(entries(lru6), 0) << lru6;
  struct Case {
    ClientJob::Kind kind;
    const char* address;
    int port;
    const char* what;
  };
  for (const Case& c : {Case{ClientJob::TcpConnect, kWebIP, 80, "TCP"},
                        Case{ClientJob::Tcp6MappedConnect, kWebIP, 80, "TCP, v4-mapped"},
                        Case{ClientJob::UdpConnected, kWebIP, 53, "connected UDP"},
                        Case{ClientJob::TcpConnect, kWeb6IP, 80, "TCP over IPv6"},
                        Case{ClientJob::UdpConnected, kWeb6IP, 53, "connected UDP over IPv6"}}) {
    ClientResult r = client(c.kind, c.address, c.port, 30, true);
    EXPECT_EQ(r.total(), 30) << c.what << ": " << errorsText(r);
    EXPECT_EQ(r.wrongPeer, 0) << c.what << ": the application saw a backend address";
  }
  EXPECT_EQ(entries(lru), 0) << "connected sockets wrote the shared LRU";
  EXPECT_EQ(entries(lru6), 0) << "connected IPv6 sockets wrote the shared LRU";
  ClientResult udp = client(ClientJob::UdpSendto, kWebIP, 53, 30, true);
  EXPECT_EQ(udp.wrongPeer, 0);
  ClientResult udp6 = client(ClientJob::UdpSendto, kWeb6IP, 53, 30, true);
  EXPECT_EQ(udp6.wrongPeer, 0);
  if (ebpf()) {
    EXPECT_EQ(pinnedMapEntries(lru), 30) << "each unconnected sendto remembers its Service in the LRU";
    EXPECT_EQ(pinnedMapEntries(lru6), 30);
  }
}

TEST_P(ServiceProxyKernelTest, DualStackSocketReachesIPv4ServiceThroughMappedAddress) {
  programWeb(3);
  ClientResult r = client(ClientJob::Tcp6MappedConnect, kWebIP, 80, 30, true);
  EXPECT_TRUE(r.errors.empty()) << "errno " << (r.errors.empty() ? 0 : r.errors.begin()->first);
  EXPECT_EQ(r.byBackend.size(), 3u);
  EXPECT_EQ(r.wrongPeer, 0) << "getpeername6 returned a backend";
}

TEST_P(ServiceProxyKernelTest, ServiceWithoutEndpointsRefusesAtOnce) {
  programWeb(0);
  auto started = std::chrono::steady_clock::now();
  ClientResult r = client(ClientJob::TcpConnect, kWebIP, 80, 5);
  EXPECT_EQ(r.errors[ECONNREFUSED], 5);
  EXPECT_TRUE(r.byBackend.empty());
  // Informational: a timeout would take the client's 10 s per attempt.
  RecordProperty("refuse_ms", static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count()));
}

TEST_P(ServiceProxyKernelTest, TerminatingEndpointsServeOnlyWhenNoReadyOneIsLeft) {
  apply([&] { return proxy_->upsertService(webService()); });
  apply([&] { return proxy_->upsertEndpointSlice(webSlice({kBackends[0]}, {kBackends[1]})); });
  ClientResult r = client(ClientJob::TcpConnect, kWebIP, 80, 10);
  EXPECT_EQ(r.byBackend[kBackends[0]], 10);
  apply([&] { return proxy_->upsertEndpointSlice(webSlice({}, {kBackends[1]})); });
  r = client(ClientJob::TcpConnect, kWebIP, 80, 10);
  EXPECT_EQ(r.byBackend[kBackends[1]], 10);
}

TEST_P(ServiceProxyKernelTest, ClientIPAffinityPinsUntilTimeout) {
  api::Service s = webService();
  s.sessionAffinity = "ClientIP";
  s.affinityTimeoutSeconds = 3;  // each connect refreshes it; a loaded machine may pause the client a while
  apply([&] { return proxy_->upsertService(s); });
  apply([&] { return proxy_->upsertEndpointSlice(webSlice(firstBackends(3))); });
  ClientResult pinned = client(ClientJob::TcpConnect, kWebIP, 80, 20);
  ASSERT_EQ(pinned.byBackend.size(), 1u) << "one client, one backend while the pin is fresh";
  std::string first = pinned.byBackend.begin()->first;
  std::this_thread::sleep_for(4500ms);
  ClientResult after = client(ClientJob::TcpConnect, kWebIP, 80, 5);
  ASSERT_EQ(after.byBackend.size(), 1u);
  EXPECT_NE(after.byBackend.begin()->first, first) << "after the timeout round-robin moves on";
}

TEST_P(ServiceProxyKernelTest, EndpointChurnFailsNoConnectAndRemovedBackendsGetNone) {
  programWeb(3);
  ClientProcess loop(env_.cgroupDir(), env_.nodeNetns(), {ClientJob::TcpConnect, kWebIP, 80, 0, false});
  std::this_thread::sleep_for(200ms);
  for (int n : {1, 4, 2, 3}) {
    apply([&] { return proxy_->upsertEndpointSlice(webSlice(firstBackends(n))); });
    ClientResult phase = client(ClientJob::TcpConnect, kWebIP, 80, 4 * n);
    EXPECT_TRUE(phase.errors.empty()) << "with " << n << " endpoints: " << errorsText(phase);
    // The loop client takes tickets from the same counter, so this client may
    // not see every current endpoint; it must see no removed one.
    EXPECT_FALSE(phase.byBackend.empty());
    for (auto& [backend, count] : phase.byBackend) {
      auto current = firstBackends(n);
      EXPECT_NE(std::find(current.begin(), current.end(), backend), current.end()) << backend << " was removed";
    }
    std::this_thread::sleep_for(200ms);
  }
  loop.stop();
  ClientResult r = loop.wait();
  EXPECT_TRUE(r.errors.empty()) << "loop client: " << errorsText(r);
  EXPECT_GT(r.total(), 0);
  onNode([&] {
    auto programmed = proxy_->programmedState();
    ASSERT_TRUE(programmed);
    EXPECT_EQ(*programmed, proxy_->desiredState());
  });
}

TEST_P(ServiceProxyKernelTest, NodePortReachableFromAnotherNode) {
  programWeb(3);
  ClientProcess peer("", env_.peerNetns(), {ClientJob::TcpConnect, kNodeIP, kNodePort, 30, false});
  ClientResult r = peer.wait();
  EXPECT_TRUE(r.errors.empty()) << "errno " << (r.errors.empty() ? 0 : r.errors.begin()->first);
  EXPECT_EQ(r.byBackend.size(), 3u);
  EXPECT_EQ(r.total(), 30);
  // And from a local socket through the node address.
  ClientResult local = client(ClientJob::TcpConnect, kNodeIP, kNodePort, 3);
  EXPECT_EQ(local.byBackend.size(), 3u);
}

TEST_P(ServiceProxyKernelTest, HeadlessServiceProgramsNothing) {
  api::Service s = webService();
  s.clusterIP = "None";
  s.type = "ClusterIP";
  apply([&] { return proxy_->upsertService(s); });
  apply([&] { return proxy_->upsertEndpointSlice(webSlice(firstBackends(3))); });
  onNode([&] {
    auto programmed = proxy_->programmedState();
    ASSERT_TRUE(programmed);
    EXPECT_TRUE(programmed->empty());
  });
}

TEST_P(ServiceProxyKernelTest, MasqueradeTableIsInstalledAndRemoved) {
  apply([&] { return proxy_->ensureMasquerade(); });
  apply([&] { return proxy_->ensureMasquerade(); });  // idempotent
  EXPECT_EQ(testing::sh("ip netns exec fpxn" + env_.suffix() + " nft list table ip ferry-nat"), 0);
  onNode([&] {
    EXPECT_TRUE(proxy_->uninstall());
    proxy_.reset();
  });
  EXPECT_NE(testing::sh("ip netns exec fpxn" + env_.suffix() + " nft list table ip ferry-nat"), 0);
  EXPECT_NE(testing::sh("ip netns exec fpxn" + env_.suffix() + " nft list table ip ferry"), 0);
  EXPECT_NE(testing::sh("ip netns exec fpxn" + env_.suffix() + " nft list table ip6 ferry"), 0);
}

TEST_P(ServiceProxyKernelTest, IPv6RoundRobinIsExactOver300Connections) {
  apply([&] { return proxy_->upsertService(web6Service()); });
  apply([&] { return proxy_->upsertEndpointSlice(sliceOf("web6", "web6-abc", "IPv6", firstBackends6(3))); });
  ClientResult r = client(ClientJob::TcpConnect, kWeb6IP, 80, 300);
  EXPECT_TRUE(r.errors.empty()) << errorsText(r);
  ASSERT_EQ(r.byBackend.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(r.byBackend[kBackends6[i]], 100) << kBackends6[i];
}

TEST_P(ServiceProxyKernelTest, IPv6ApplicationSeesOnlyTheServiceAddress) {
  apply([&] { return proxy_->upsertService(web6Service()); });
  apply([&] { return proxy_->upsertEndpointSlice(sliceOf("web6", "web6-abc", "IPv6", firstBackends6(3))); });
  ClientResult udp = client(ClientJob::UdpSendto, kWeb6IP, 53, 30, true);
  EXPECT_TRUE(udp.errors.empty()) << errorsText(udp);
  EXPECT_EQ(udp.wrongPeer, 0) << "recvfrom source was a backend, not the Service (recvmsg6)";
  EXPECT_EQ(udp.byBackend.size(), 3u);
  ClientResult connectedUdp = client(ClientJob::UdpConnected, kWeb6IP, 53, 30, true);
  EXPECT_TRUE(connectedUdp.errors.empty()) << errorsText(connectedUdp);
  EXPECT_EQ(connectedUdp.wrongPeer, 0);
  ClientResult tcp = client(ClientJob::TcpConnect, kWeb6IP, 80, 30, true);
  EXPECT_TRUE(tcp.errors.empty()) << errorsText(tcp);
  EXPECT_EQ(tcp.wrongPeer, 0) << "getpeername6 returned a backend";
  EXPECT_EQ(tcp.total(), 30);
}

TEST_P(ServiceProxyKernelTest, IPv6ServiceWithoutEndpointsRefusesAtOnce) {
  apply([&] { return proxy_->upsertService(web6Service()); });
  ClientResult r = client(ClientJob::TcpConnect, kWeb6IP, 80, 5);
  EXPECT_EQ(r.errors[ECONNREFUSED], 5) << errorsText(r);
  EXPECT_TRUE(r.byBackend.empty());
  // An IPv4 slice gives an IPv6 frontend nothing.
  apply([&] { return proxy_->upsertEndpointSlice(sliceOf("web6", "web6-v4", "IPv4", firstBackends(3))); });
  r = client(ClientJob::TcpConnect, kWeb6IP, 80, 5);
  EXPECT_EQ(r.errors[ECONNREFUSED], 5) << errorsText(r);
}

api::Service dualStackWeb() {
  api::Service s = webService();
  s.clusterIPs = {kWebIP, kWeb6IP};
  return s;
}

// clusterIPs [IPv4, IPv6]: each family balances over the slices of its own addressType.
TEST_P(ServiceProxyKernelTest, DualStackServiceBalancesEachFamilyOverItsOwnSlices) {
  api::Service s = dualStackWeb();
  std::vector<api::EndpointSlice> slices = {sliceOf("web", "web-v4", "IPv4", firstBackends(3)),
                                            sliceOf("web", "web-v6", "IPv6", firstBackends6(3))};
  apply([&] { return proxy_->upsertService(s); });
  for (const auto& slice : slices) apply([&] { return proxy_->upsertEndpointSlice(slice); });
  ClientResult v4 = client(ClientJob::TcpConnect, kWebIP, 80, 300);
  ClientResult v6 = client(ClientJob::TcpConnect, kWeb6IP, 80, 300);
  EXPECT_TRUE(v4.errors.empty()) << errorsText(v4);
  EXPECT_TRUE(v6.errors.empty()) << errorsText(v6);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(v4.byBackend[kBackends[i]], 100) << kBackends[i];
    EXPECT_EQ(v6.byBackend[kBackends6[i]], 100) << kBackends6[i];
  }
  EXPECT_EQ(v4.byBackend.size(), 3u);
  EXPECT_EQ(v6.byBackend.size(), 3u);
  // One IPv6 endpoint change, applied incrementally.
  apply([&] { return proxy_->upsertEndpointSlice(sliceOf("web", "web-v6", "IPv6", firstBackends6(1))); });
  ClientResult shrunk = client(ClientJob::TcpConnect, kWeb6IP, 80, 10);
  EXPECT_EQ(shrunk.byBackend[kBackends6[0]], 10) << errorsText(shrunk);
  onNode([&] {
    auto programmed = proxy_->programmedState();
    ASSERT_TRUE(programmed);
    EXPECT_EQ(*programmed, proxy_->desiredState());
  });
}

// Pinned state is the ebpf mode's (nftables tables simply stay in the kernel).
using EbpfServiceProxyKernelTest = ServiceProxyKernelTest;

// A new agent adopts the pinned IPv6 maps and reconciles a shrink.
TEST_P(EbpfServiceProxyKernelTest, DualStackStateIsAdoptedAfterRestart) {
  api::Service s = dualStackWeb();
  std::vector<api::EndpointSlice> slices = {sliceOf("web", "web-v4", "IPv4", firstBackends(3)),
                                            sliceOf("web", "web-v6", "IPv6", firstBackends6(3))};
  apply([&] { return proxy_->upsertService(s); });
  for (const auto& slice : slices) apply([&] { return proxy_->upsertEndpointSlice(slice); });
  onNode([&] { proxy_.reset(); });
  startProxy();
  ASSERT_TRUE(proxy_);
  slices[1] = sliceOf("web", "web-v6", "IPv6", firstBackends6(2));
  apply([&] { return proxy_->resync({s}, slices); });
  onNode([&] {
    auto programmed = proxy_->programmedState();
    ASSERT_TRUE(programmed);
    EXPECT_EQ(*programmed, proxy_->desiredState());
    // http and dns on each ClusterIP, http on the (IPv4) node address.
    EXPECT_EQ(programmed->size(), 5u);
    FrontendKey http6{kWeb6IP, 80, "TCP"};
    ASSERT_TRUE(programmed->count(http6));
    EXPECT_EQ(programmed->at(http6).backends,
              (std::vector<std::string>{"[fd00:244::11]:8080", "[fd00:244::12]:8080"}));
  });
  ClientResult after = client(ClientJob::TcpConnect, kWeb6IP, 80, 10);
  EXPECT_TRUE(after.errors.empty()) << errorsText(after);
  EXPECT_EQ(after.byBackend.size(), 2u);
  EXPECT_EQ(after.byBackend.count(kBackends6[2]), 0u);
}

TEST_P(EbpfServiceProxyKernelTest, RestartAdoptsPinnedStateWithoutFailedConnects) {
  // The first agent: a separate process that programs, then dies by SIGKILL.
  onNode([&] { proxy_.reset(); });
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t agent = fork();
  if (agent == 0) {
    int fd = open(env_.nodeNetns().c_str(), O_RDONLY);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) _exit(1);
    auto p = ServiceProxy::start(config());
    if (!p) _exit(2);
    if (!(*p)->upsertService(webService()) || !(*p)->upsertEndpointSlice(webSlice(firstBackends(3)))) _exit(3);
    (void)!write(ready[1], "r", 1);
    pause();
    _exit(0);
  }
  close(ready[1]);
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1) << "first agent failed";
  close(ready[0]);
  ClientProcess loop(env_.cgroupDir(), env_.nodeNetns(), {ClientJob::TcpConnect, kWebIP, 80, 0, false});
  std::this_thread::sleep_for(200ms);
  kill(agent, SIGKILL);
  waitpid(agent, nullptr, 0);
  std::this_thread::sleep_for(200ms);

  startProxy();
  ASSERT_TRUE(proxy_);
  apply([&] { return proxy_->resync({webService()}, {webSlice(firstBackends(3))}); });
  onNode([&] {
    auto programmed = proxy_->programmedState();
    ASSERT_TRUE(programmed);
    EXPECT_EQ(*programmed, proxy_->desiredState());
    EXPECT_EQ(programmed->size(), 3u);  // http ClusterIP, dns ClusterIP, http NodePort
  });
  // The adopted ids keep working: shrink through the new agent.
  apply([&] { return proxy_->upsertEndpointSlice(webSlice(firstBackends(2))); });
  std::this_thread::sleep_for(200ms);
  loop.stop();
  ClientResult r = loop.wait();
  EXPECT_TRUE(r.errors.empty()) << "errno " << (r.errors.empty() ? 0 : r.errors.begin()->first);
  EXPECT_EQ(r.byBackend.size(), 3u);
  ClientResult after = client(ClientJob::TcpConnect, kWebIP, 80, 10);
  EXPECT_EQ(after.byBackend.size(), 2u);
  EXPECT_EQ(after.byBackend.count(kBackends[2]), 0u);
}

INSTANTIATE_TEST_SUITE_P(Modes, ServiceProxyKernelTest, ::testing::Values("ebpf", "nftables"),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Modes, EbpfServiceProxyKernelTest, ::testing::Values("ebpf"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace ferry::proxy
