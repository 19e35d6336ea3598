// Kernel tier: pinned namespaces, bridge, pod veths and routes inside a "node"
// network namespace made by the test (the root namespace is never touched).
#include "netns/namespace_pins.h"
#include "netns/node_network.h"
#include "tests/kernel/netns/test_network.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

namespace ferry::netns {
namespace {

class NodeNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces)";
    dir_ = ferry::testing::makeScratchDir("ferry-netns-test");
    ASSERT_FALSE(dir_.empty());
    nodeNs_ = dir_ + "/node";
    ASSERT_TRUE(createPinnedNamespaces({.net = nodeNs_}));
    auto network = NodeNetwork::open(nodeNs_);
    ASSERT_TRUE(network) << network.error().message;
    network_ = std::move(*network);
  }
  void TearDown() override {
    network_.reset();
    for (const std::string& pin : pins_) (void)removePinnedNamespace(pin);
    for (const std::string& podDir : podDirs_) (void)removePodNamespaces(podDir);
    if (!nodeNs_.empty()) (void)removePinnedNamespace(nodeNs_);
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::string newPodNamespace(const std::string& name) {
    std::string path = dir_ + "/pods/" + name;
    Status status = createPinnedNamespaces({.net = path});
    EXPECT_TRUE(status) << (status ? "" : status.error().message);
    pins_.push_back(path);
    return path;
  }
  static bool hasLink(const std::vector<std::string>& links, const std::string& name) {
    return std::find(links.begin(), links.end(), name) != links.end();
  }

  std::string dir_, nodeNs_;
  std::vector<std::string> pins_;
  std::vector<std::string> podDirs_;  // made by createPodNamespacesAndLink
  std::unique_ptr<NodeNetwork> network_;
};

TEST_F(NodeNetworkTest, PinnedNamespacesCarryHostnameAndAreRemoved) {
  NamespacePins pins{.net = dir_ + "/n", .ipc = dir_ + "/i", .uts = dir_ + "/u"};
  ASSERT_TRUE(createPinnedNamespaces(pins, "pod-host"));
  EXPECT_TRUE(isPinnedNamespace(pins.net));
  EXPECT_TRUE(isPinnedNamespace(pins.ipc));
  EXPECT_TRUE(isPinnedNamespace(pins.uts));

  std::string seen;
  std::thread reader([&] {
    int fd = ::open(pins.uts.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && ::setns(fd, CLONE_NEWUTS) == 0) {
      char name[65] = {};
      ::gethostname(name, sizeof name - 1);
      seen = name;
    }
    if (fd >= 0) ::close(fd);
  });
  reader.join();
  EXPECT_EQ(seen, "pod-host");

  // A second create on the same pins must fail rather than silently replace them.
  EXPECT_FALSE(createPinnedNamespaces(pins, "other"));
  for (const std::string& p : {pins.net, pins.ipc, pins.uts}) {
    EXPECT_TRUE(removePinnedNamespace(p));
    EXPECT_FALSE(std::filesystem::exists(p));
    EXPECT_TRUE(removePinnedNamespace(p)) << "removing twice is fine";
  }
}

TEST_F(NodeNetworkTest, PodsOnTheBridgeReachEachOtherAndCleanUp) {
  ASSERT_TRUE(network_->ensureBridge("ferry0", "10.42.0.1/24"));
  ASSERT_TRUE(network_->ensureBridge("ferry0", "10.42.0.1/24")) << "idempotent";
  ASSERT_TRUE(network_->enableIpForwarding());

  std::string podA = newPodNamespace("a"), podB = newPodNamespace("b");
  auto created = network_->createPodLink({.podNetnsPath = podA, .hostIfName = "fvtesta", .bridgeName = "ferry0",
                                          .podAddress = "10.42.0.2/24", .gateway = "10.42.0.1"});
  ASSERT_TRUE(created) << created.error().message;
  created = network_->createPodLink({.podNetnsPath = podB, .hostIfName = "fvtestb", .bridgeName = "ferry0",
                                     .podAddress = "10.42.0.3/24", .gateway = "10.42.0.1"});
  ASSERT_TRUE(created) << created.error().message;
  auto again = network_->createPodLink({.podNetnsPath = podB, .hostIfName = "fvtestb", .bridgeName = "ferry0",
                                        .podAddress = "10.42.0.3/24", .gateway = "10.42.0.1"});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, EEXIST);

  auto hairpin = network_->hairpinEnabled("fvtesta");
  ASSERT_TRUE(hairpin) << hairpin.error().message;
  EXPECT_TRUE(*hairpin);

  auto podRoutes = listRoutesIn(podA);
  ASSERT_TRUE(podRoutes);
  bool hasDefault = false;
  for (const RouteEntry& r : *podRoutes) hasDefault |= r.destination == "default" && r.via == "10.42.0.1";
  EXPECT_TRUE(hasDefault);
  auto podAddrs = listAddressesIn(podA);
  ASSERT_TRUE(podAddrs);
  bool hasAddr = false;
  for (const AddressEntry& a : *podAddrs) hasAddr |= a.device == "eth0" && a.address == "10.42.0.2/24";
  EXPECT_TRUE(hasAddr);

  ferry::testing::TcpEchoServer serverB, serverNode;
  ASSERT_TRUE(serverB.start(podB, "10.42.0.3", 7000));
  auto reply = ferry::testing::tcpRoundTrip(podA, "10.42.0.3", 7000, "hello b");
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(*reply, "hello b");
  // The pod reaches the node through its gateway, and localhost inside the pod works.
  ASSERT_TRUE(serverNode.start(nodeNs_, "10.42.0.1", 7001));
  reply = ferry::testing::tcpRoundTrip(podA, "10.42.0.1", 7001, "hello node");
  ASSERT_TRUE(reply) << reply.error().message;
  ferry::testing::TcpEchoServer local;
  ASSERT_TRUE(local.start(podA, "127.0.0.1", 7002));
  reply = ferry::testing::tcpRoundTrip(podA, "127.0.0.1", 7002, "hello me");
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(*reply, "hello me");

  ASSERT_TRUE(network_->removePodLink("fvtesta"));
  ASSERT_TRUE(network_->removePodLink("fvtestb"));
  EXPECT_TRUE(network_->removePodLink("fvtestb")) << "missing link is not an error";
  auto links = network_->listLinks();
  ASSERT_TRUE(links);
  EXPECT_FALSE(hasLink(*links, "fvtesta"));
  EXPECT_FALSE(hasLink(*links, "fvtestb"));
  EXPECT_TRUE(hasLink(*links, "ferry0"));
  auto podLinks = listAddressesIn(podA);
  ASSERT_TRUE(podLinks);
  for (const AddressEntry& a : *podLinks) EXPECT_NE(a.device, "eth0") << "pod end goes with the host end";
}

// Runs `ip` in the node namespace and returns what it printed (empty on failure).
std::string ipInNamespace(const std::string& netnsPath, const std::string& args) {
  std::string out;
  FILE* p = ::popen(("nsenter --net=" + netnsPath + " ip " + args + " 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  return ::pclose(p) == 0 ? out : std::string();
}

std::string bridgeAddress(const std::string& netnsPath) {
  std::string text = ipInNamespace(netnsPath, "-o link show ferry0");
  auto at = text.find("link/ether ");
  return at == std::string::npos ? std::string() : text.substr(at + 11, 17);
}

// The gateway's link-layer address must not follow the bridge's ports: pods cache it, and
// a change loses their packets to the gateway (cluster DNS) until the cache expires.
TEST_F(NodeNetworkTest, BridgeAddressStaysWhenPortsComeAndGo) {
  ASSERT_TRUE(network_->ensureBridge("ferry0", "10.42.0.1/24"));
  std::string before = bridgeAddress(nodeNs_);
  ASSERT_EQ(before.size(), 17u) << ipInNamespace(nodeNs_, "-o link show ferry0");
  std::string pod = newPodNamespace("a");
  auto created = network_->createPodLink({.podNetnsPath = pod, .hostIfName = "fvtesta", .bridgeName = "ferry0",
                                          .podAddress = "10.42.0.2/24", .gateway = "10.42.0.1"});
  ASSERT_TRUE(created) << created.error().message;
  // A port with an address below the bridge's: an unpinned bridge would take it.
  ipInNamespace(nodeNs_, "link set fvtesta address 02:00:00:00:00:01");
  EXPECT_NE(ipInNamespace(nodeNs_, "-o link show fvtesta").find("02:00:00:00:00:01"), std::string::npos);
  EXPECT_EQ(bridgeAddress(nodeNs_), before) << "the bridge took its port's address";
  ASSERT_TRUE(network_->removePodLink("fvtesta"));
  EXPECT_EQ(bridgeAddress(nodeNs_), before) << "the bridge changed its address when its port left";
  ASSERT_TRUE(network_->ensureBridge("ferry0", "10.42.0.1/24"));
  EXPECT_EQ(bridgeAddress(nodeNs_), before) << "ensureBridge on an existing bridge keeps its address";
}

// The host end is a bridge port: no IPv6 link-local address (and so no duplicate
// detection or MLD traffic of its own), on both ways of making a pod's link. The
// pod's eth0 keeps its IPv6 configuration. On a kernel without IPv6 only the links
// are checked (no GTEST_SKIP: CTest would report the whole binary skipped).
TEST_F(NodeNetworkTest, HostEndsOfPodLinksGetNoIpv6Address) {
  const bool ipv6 = ::access("/proc/sys/net/ipv6", F_OK) == 0;
  if (!ipv6) RecordProperty("ipv6", "kernel without IPv6: addresses not checked");
  ASSERT_TRUE(network_->ensureBridge("ferry0", "10.42.0.1/24"));
  std::string pod = newPodNamespace("a");
  auto created = network_->createPodLink({.podNetnsPath = pod, .hostIfName = "fvtesta", .bridgeName = "ferry0",
                                          .podAddress = "10.42.0.2/24", .gateway = "10.42.0.1"});
  ASSERT_TRUE(created) << created.error().message;
  std::string podDir = dir_ + "/pods/b";
  auto pins = network_->createPodNamespacesAndLink(podDir, "pod-b", {.hostIfName = "fvtestb", .bridgeName = "ferry0",
                                                                     .podAddress = "10.42.0.3/24", .gateway = "10.42.0.1"});
  ASSERT_TRUE(pins) << pins.error().message;
  podDirs_.push_back(podDir);
  // Carrier changes reach addrconf through the kernel's link watch, up to a second
  // later: wait until the pod's end has its link-local address (the pair's carrier
  // event has run, for both ends), then look at the host end.
  for (auto [podNetns, hostEnd] : {std::pair{pod, "fvtesta"}, std::pair{pins->net, "fvtestb"}}) {
    std::string link = ipInNamespace(nodeNs_, std::string("-o link show ") + hostEnd);
    ASSERT_NE(link.find("master ferry0"), std::string::npos) << hostEnd << ": " << link;
    if (!ipv6) continue;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (ipInNamespace(podNetns, "-6 -o addr show dev eth0").find("fe80::") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_NE(ipInNamespace(podNetns, "-6 -o addr show dev eth0").find("fe80::"), std::string::npos)
        << "the pod's eth0 keeps its own IPv6 link-local address";
    link = ipInNamespace(nodeNs_, std::string("-o link show ") + hostEnd);
    ASSERT_NE(link.find("LOWER_UP"), std::string::npos) << hostEnd << " has no carrier: " << link;
    EXPECT_EQ(ipInNamespace(nodeNs_, std::string("-6 -o addr show dev ") + hostEnd), "") << hostEnd;
  }
  ASSERT_TRUE(network_->removePodLink("fvtesta"));
  ASSERT_TRUE(network_->removePodLink("fvtestb"));
}

TEST_F(NodeNetworkTest, HostGatewayRoutesAreMarkedAndRemoved) {
  ASSERT_TRUE(network_->ensureBridge("ferry0", "10.42.0.1/24"));
  ASSERT_TRUE(network_->ensureRoute("10.42.7.0/24", "10.42.0.200"));
  ASSERT_TRUE(network_->ensureRoute("10.42.7.0/24", "10.42.0.201")) << "replaces";
  auto routes = network_->listRoutes();
  ASSERT_TRUE(routes);
  int found = 0;
  for (const RouteEntry& r : *routes) {
    if (r.destination != "10.42.7.0/24") continue;
    ++found;
    EXPECT_EQ(r.via, "10.42.0.201");
    EXPECT_EQ(r.device, "ferry0");
    EXPECT_TRUE(r.ownedByFerry);
  }
  EXPECT_EQ(found, 1);
  EXPECT_FALSE(network_->ensureRoute("10.42.8.0/24", "not-an-ip"));
  ASSERT_TRUE(network_->removeRoute("10.42.7.0/24"));
  EXPECT_TRUE(network_->removeRoute("10.42.7.0/24")) << "missing route is not an error";
  routes = network_->listRoutes();
  ASSERT_TRUE(routes);
  for (const RouteEntry& r : *routes) EXPECT_NE(r.destination, "10.42.7.0/24");
}

}  // namespace
}  // namespace ferry::netns
