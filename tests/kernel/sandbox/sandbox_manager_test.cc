// Kernel tier: pod sandboxes on a "node" that is a network namespace made by the test,
// with a cgroup root of the test's own. Nothing outside those is touched.
#include "agent/sandbox/sandbox_manager.h"
#include "netns/namespace_pins.h"
#include "netns/node_network.h"
#include "tests/kernel/cgroup/test_process.h"
#include "tests/kernel/netns/test_network.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>
#include <algorithm>

namespace ferry::agent {
namespace {

int countNsfsMountsUnder(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  int count = 0;
  while (std::getline(in, line)) {
    if (line.find(" " + dir + "/") != std::string::npos && line.find(" nsfs ") != std::string::npos) ++count;
  }
  return count;
}

class SandboxManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, cgroups)";
    dir_ = ferry::testing::makeScratchDir("ferry-sandbox-test");
    ASSERT_FALSE(dir_.empty());
    nodeNs_ = dir_ + "/node-netns";
    ASSERT_TRUE(netns::createPinnedNamespaces({.net = nodeNs_}));
    config_.runDir = dir_ + "/run";
    config_.dataDir = dir_ + "/data";
    // The test owns ferry-test-<random>; the agent's root is below it, so a root that a
    // restarted manager found already there (and so never removes) still goes at the end.
    std::string testRoot = "ferry-test-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}() % 100000);
    auto testTree = cgroup::CgroupTree::open(testRoot);
    ASSERT_TRUE(testTree) << testTree.error().message;
    testCgroups_ = std::move(*testTree);
    config_.cgroupRoot = testRoot + "/node";
    config_.nodeNetnsPath = nodeNs_;
    config_.podCIDR = "10.42.0.0/24";
    openManager();
  }
  void openManager() {
    auto manager = SandboxManager::open(config_);
    ASSERT_TRUE(manager) << manager.error().message;
    manager_ = std::move(*manager);
  }
  void TearDown() override {
    if (manager_) {
      for (const PodSandbox& s : manager_->list()) EXPECT_TRUE(manager_->remove(s.uid));
      EXPECT_TRUE(manager_->cgroups().destroy());
      manager_.reset();
    }
    if (testCgroups_) {
      EXPECT_TRUE(testCgroups_->destroy());
    }
    if (!nodeNs_.empty()) (void)netns::removePinnedNamespace(nodeNs_);
    if (!dir_.empty()) {
      EXPECT_EQ(countNsfsMountsUnder(dir_), 0);
      std::filesystem::remove_all(dir_);
    }
  }
  PodSandbox create(const std::string& uid, cgroup::QosClass qos = cgroup::QosClass::BestEffort,
                    cgroup::Limits limits = {}) {
    auto sandbox = manager_->create({.uid = uid, .name = "pod-" + uid, .namespace_ = "default", .qos = qos,
                                     .limits = limits});
    EXPECT_TRUE(sandbox) << (sandbox ? "" : sandbox.error().message);
    return sandbox ? *sandbox : PodSandbox{};
  }

  std::string dir_, nodeNs_;
  SandboxManagerConfig config_;
  std::unique_ptr<SandboxManager> manager_;
  std::unique_ptr<cgroup::CgroupTree> testCgroups_;
};

TEST_F(SandboxManagerTest, TwentyPodsReachEachOtherAndLeaveNothingBehind) {
  auto node = netns::NodeNetwork::open(nodeNs_);
  ASSERT_TRUE(node);
  auto linksBefore = (*node)->listLinks();
  auto addressesBefore = (*node)->listAddresses();
  auto routesBefore = (*node)->listRoutes();
  ASSERT_TRUE(linksBefore && addressesBefore && routesBefore);

  constexpr int kPods = 20;
  std::vector<PodSandbox> pods;
  std::set<std::string> ips;
  for (int i = 0; i < kPods; ++i) {
    pods.push_back(create("uid-" + std::to_string(i)));
    ASSERT_FALSE(pods.back().podIP.empty());
    EXPECT_TRUE(ips.insert(pods.back().podIP).second) << "duplicate " << pods.back().podIP;
    EXPECT_EQ(pods.back().gateway, "10.42.0.1");
  }
  auto hairpin = (*node)->hairpinEnabled(pods[0].hostVeth);
  ASSERT_TRUE(hairpin) << hairpin.error().message;
  EXPECT_TRUE(*hairpin) << "a pod reaching itself through a Service needs hairpin";
  // Creating again returns the same sandbox.
  auto again = manager_->create({.uid = "uid-3"});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->podIP, pods[3].podIP);

  std::vector<std::unique_ptr<ferry::testing::TcpEchoServer>> servers;
  for (const PodSandbox& pod : pods) {
    servers.push_back(std::make_unique<ferry::testing::TcpEchoServer>());
    ASSERT_TRUE(servers.back()->start(pod.netnsPath, pod.podIP, 8080));
  }
  int reached = 0;
  for (const PodSandbox& from : pods) {
    for (const PodSandbox& to : pods) {
      if (from.uid == to.uid) continue;
      auto reply = ferry::testing::tcpRoundTrip(from.netnsPath, to.podIP, 8080, from.uid);
      ASSERT_TRUE(reply) << from.podIP << " -> " << to.podIP << ": " << reply.error().message;
      EXPECT_EQ(*reply, from.uid);
      ++reached;
    }
  }
  EXPECT_EQ(reached, kPods * (kPods - 1));
  for (auto& server : servers) server->stop();

  // The pod's UTS namespace carries its hostname.
  std::string hostname;
  std::thread([&] {
    int fd = ::open(pods[0].utsnsPath.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && ::setns(fd, CLONE_NEWUTS) == 0) {
      char buf[65] = {};
      ::gethostname(buf, 64);
      hostname = buf;
    }
    if (fd >= 0) ::close(fd);
  }).join();
  EXPECT_EQ(hostname, "pod-uid-0");

  for (const PodSandbox& pod : pods) ASSERT_TRUE(manager_->remove(pod.uid));
  EXPECT_TRUE(manager_->remove("uid-0")) << "removing twice is fine";
  EXPECT_TRUE(manager_->list().empty());

  // Count what is left: links, addresses, routes in the node; pins; cgroups; IPAM entries.
  // Veths go with their pod's network namespace, which the kernel destroys in the background.
  auto linksAfter = (*node)->listLinks();
  for (int i = 0; i < 1000 && linksAfter && *linksAfter != *linksBefore; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    linksAfter = (*node)->listLinks();
  }
  auto addressesAfter = (*node)->listAddresses();
  auto routesAfter = (*node)->listRoutes();
  ASSERT_TRUE(linksAfter && addressesAfter && routesAfter);
  std::vector<std::string> expectedLinks = *linksBefore;
  EXPECT_EQ(*linksAfter, expectedLinks);
  EXPECT_EQ(addressesAfter->size(), addressesBefore->size());
  EXPECT_EQ(routesAfter->size(), routesBefore->size());
  EXPECT_EQ(countNsfsMountsUnder(dir_ + "/run"), 0);
  EXPECT_TRUE(std::filesystem::is_empty(config_.runDir + "/pods"));
  auto uids = manager_->cgroups().listPodUids();
  ASSERT_TRUE(uids);
  EXPECT_TRUE(uids->empty());
  std::ifstream state(config_.dataDir + "/sandboxes.json");
  std::stringstream text;
  text << state.rdbuf();
  EXPECT_NE(text.str().find("\"allocations\": {}"), std::string::npos) << text.str();
}

// Sandboxes of different pods are made and removed in parallel (PodManager starts and
// removes pods on a pool): every one complete, addresses distinct, the state file and
// a restarted manager agree, and parallel removal leaves nothing behind.
TEST_F(SandboxManagerTest, ParallelCreatesAndRemovesStayConsistent) {
  constexpr int kThreads = 8, kPerThread = 5;
  std::vector<std::vector<PodSandbox>> made(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) made[t].push_back(create("p" + std::to_string(t) + "-" + std::to_string(i)));
    });
  }
  for (auto& th : threads) th.join();
  threads.clear();
  std::set<std::string> ips;
  for (const auto& list : made) {
    for (const PodSandbox& s : list) {
      ASSERT_FALSE(s.podIP.empty());
      EXPECT_TRUE(ips.insert(s.podIP).second) << "duplicate " << s.podIP;
      EXPECT_TRUE(netns::isPinnedNamespace(s.netnsPath)) << s.uid;
    }
  }
  EXPECT_EQ(manager_->list().size(), static_cast<size_t>(kThreads * kPerThread));
  // A create and a remove of one pod at once: they do not overlap (the remove either
  // finds the sandbox complete or none at all) and nothing of it is left.
  std::thread creator([&] { (void)manager_->create({.uid = "racer", .name = "racer", .namespace_ = "default"}); });
  std::thread remover([&] { EXPECT_TRUE(manager_->remove("racer")); });
  creator.join();
  remover.join();
  EXPECT_TRUE(manager_->remove("racer"));
  EXPECT_FALSE(manager_->find("racer"));

  // What the state file says is what a restarted manager finds.
  manager_.reset();
  openManager();
  ASSERT_EQ(manager_->list().size(), static_cast<size_t>(kThreads * kPerThread));
  for (const auto& list : made)
    for (const PodSandbox& s : list) EXPECT_EQ(manager_->find(s.uid).value_or(PodSandbox{}).podIP, s.podIP) << s.uid;

  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (const PodSandbox& s : made[t]) EXPECT_TRUE(manager_->remove(s.uid)) << s.uid;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_TRUE(manager_->list().empty());
  EXPECT_EQ(countNsfsMountsUnder(config_.runDir), 0);
  auto node = netns::NodeNetwork::open(nodeNs_);
  ASSERT_TRUE(node);
  auto links = (*node)->listLinks();
  ASSERT_TRUE(links);
  // Pod veths go with their netns; the kernel deletes them in the background.
  bool vethsGone = false;
  for (int i = 0; i < 200 && !vethsGone; ++i) {
    links = (*node)->listLinks();
    ASSERT_TRUE(links);
    vethsGone = std::none_of(links->begin(), links->end(), [](const std::string& l) { return l.rfind("fv", 0) == 0; });
    if (!vethsGone) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(vethsGone);
}

TEST_F(SandboxManagerTest, TwoProcessesOfOnePodTalkOverLocalhost) {
  PodSandbox pod = create("uid-local", cgroup::QosClass::Burstable, {.memoryLimitBytes = 256 << 20});
  auto serverCgroup = manager_->cgroups().createContainer(pod.cgroupPath, "server", {});
  auto clientCgroup = manager_->cgroups().createContainer(pod.cgroupPath, "client", {});
  ASSERT_TRUE(serverCgroup && clientCgroup);
  int netFd = ::open(pod.netnsPath.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(netFd, 0);
  // Separate processes, as two containers would be: each enters the pod's netns itself.
  ferry::testing::ParkedChild server([netFd] {
    if (::setns(netFd, CLONE_NEWNET) != 0) ::_exit(10);
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(9000);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 1) != 0) ::_exit(11);
    int conn = ::accept(fd, nullptr, nullptr);
    char buf[16];
    ssize_t n = ::read(conn, buf, sizeof buf);
    if (n != 4 || std::memcmp(buf, "ping", 4) != 0) ::_exit(12);
    (void)!::write(conn, "pong", 4);
    ::_exit(0);
  });
  ferry::testing::ParkedChild client([netFd] {
    if (::setns(netFd, CLONE_NEWNET) != 0) ::_exit(20);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(9000);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int attempt = 0; attempt < 500; ++attempt) {
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        (void)!::write(fd, "ping", 4);
        char buf[16];
        ssize_t n = ::read(fd, buf, sizeof buf);
        ::_exit(n == 4 && std::memcmp(buf, "pong", 4) == 0 ? 0 : 21);
      }
      ::close(fd);
      ::usleep(10000);
    }
    ::_exit(22);
  });
  ::close(netFd);
  ASSERT_TRUE(manager_->cgroups().attach(*serverCgroup, server.pid()));
  ASSERT_TRUE(manager_->cgroups().attach(*clientCgroup, client.pid()));
  server.release();
  client.release();
  int clientStatus = client.wait();
  int serverStatus = server.wait();
  EXPECT_TRUE(WIFEXITED(clientStatus) && WEXITSTATUS(clientStatus) == 0) << clientStatus;
  EXPECT_TRUE(WIFEXITED(serverStatus) && WEXITSTATUS(serverStatus) == 0) << serverStatus;
  ASSERT_TRUE(manager_->remove(pod.uid));
}

TEST_F(SandboxManagerTest, ContainerOverItsMemoryLimitIsOomKilled) {
  cgroup::Limits limits{.memoryLimitBytes = 64 << 20};
  PodSandbox pod = create("uid-oom", cgroup::QosClass::Guaranteed, limits);
  auto container = manager_->cgroups().createContainer(pod.cgroupPath, "hog", limits);
  ASSERT_TRUE(container);
  auto before = manager_->cgroups().stats(*container);
  ASSERT_TRUE(before);
  ferry::testing::ParkedChild hog([] {
    size_t size = 200u << 20;
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) ::_exit(3);
    std::memset(p, 0x5a, size);
    ::_exit(0);
  });
  ASSERT_TRUE(manager_->cgroups().attach(*container, hog.pid()));
  hog.release();
  int status = hog.wait();
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  auto after = manager_->cgroups().stats(*container);
  ASSERT_TRUE(after);
  // Not exactly +1: on v2 a container's OOM kill takes its whole group (memory.oom.group),
  // and the kernel counts the victim once more as a member of that group.
  EXPECT_GT(after->oomKills, before->oomKills) << "OOMKilled is told from the cgroup's counter";
}

TEST_F(SandboxManagerTest, RestartKeepsCompleteSandboxesAndSweepsBrokenOnes) {
  PodSandbox a = create("uid-a"), b = create("uid-b"), c = create("uid-c");
  manager_.reset();  // the agent stops; its sandboxes stay
  // Something broke while the agent was down: b lost its veth.
  {
    auto node = netns::NodeNetwork::open(nodeNs_);
    ASSERT_TRUE(node);
    ASSERT_TRUE((*node)->removePodLink(b.hostVeth));
  }
  openManager();
  auto kept = manager_->list();
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(manager_->find("uid-a")->podIP, a.podIP);
  EXPECT_EQ(manager_->find("uid-c")->podIP, c.podIP);
  EXPECT_FALSE(manager_->find("uid-b"));
  EXPECT_FALSE(std::filesystem::exists(b.netnsPath));
  // New pods never get a kept pod's address.
  for (int i = 0; i < 10; ++i) {
    PodSandbox fresh = create("uid-new-" + std::to_string(i));
    EXPECT_NE(fresh.podIP, a.podIP);
    EXPECT_NE(fresh.podIP, c.podIP);
  }
  ferry::testing::TcpEchoServer server;
  ASSERT_TRUE(server.start(a.netnsPath, a.podIP, 8081));
  auto reply = ferry::testing::tcpRoundTrip(c.netnsPath, a.podIP, 8081, "still here");
  ASSERT_TRUE(reply) << reply.error().message;
}

TEST_F(SandboxManagerTest, PeerRoutesFollowTheNodeList) {
  ASSERT_TRUE(manager_->setPeerRoutes({{"10.42.1.0/24", "10.42.0.250"}, {"10.42.2.0/24", "10.42.0.251"}}));
  ASSERT_TRUE(manager_->setPeerRoutes({{"10.42.2.0/24", "10.42.0.252"}}));
  auto node = netns::NodeNetwork::open(nodeNs_);
  ASSERT_TRUE(node);
  auto routes = (*node)->listRoutes();
  ASSERT_TRUE(routes);
  int owned = 0;
  for (const netns::RouteEntry& r : *routes) {
    if (!r.ownedByFerry) continue;
    ++owned;
    EXPECT_EQ(r.destination, "10.42.2.0/24");
    EXPECT_EQ(r.via, "10.42.0.252");
  }
  EXPECT_EQ(owned, 1);
  ASSERT_TRUE(manager_->setPeerRoutes({}));
  routes = (*node)->listRoutes();
  for (const netns::RouteEntry& r : *routes) EXPECT_FALSE(r.ownedByFerry);
  EXPECT_FALSE(manager_->setPeerRoutes({{"10.42.3.1/24", "10.42.0.9"}})) << "host bits in podCIDR";
}

TEST_F(SandboxManagerTest, BadInputNamesTheField) {
  auto bad = manager_->create({.uid = "../etc"});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("uid"), std::string::npos);
  SandboxManagerConfig config = config_;
  config.podCIDR = "10.42.0.1/24";
  auto other = SandboxManager::open(config);
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message.find("podCIDR"), std::string::npos) << other.error().message;
}

}  // namespace
}  // namespace ferry::agent

namespace ferry::agent {
namespace {

// Two nodes (each a network namespace with its own SandboxManager and cgroup root) on an
// underlay bridge in a third namespace; pods reach pods of the other node by host-gw.
TEST(MultiNodeTest, PodsReachPodsOnAnotherNodeThroughHostGwRoutes) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, cgroups)";
  std::string dir = ferry::testing::makeScratchDir("ferry-multinode-test");
  ASSERT_FALSE(dir.empty());
  std::string underlayNs = dir + "/underlay";
  ASSERT_TRUE(netns::createPinnedNamespaces({.net = underlayNs}));
  std::string testRoot = "ferry-test-" + std::to_string(::getpid()) + "-mn" + std::to_string(std::random_device{}() % 100000);
  auto testCgroups = cgroup::CgroupTree::open(testRoot);
  ASSERT_TRUE(testCgroups);

  struct Node {
    std::string name, netns, ip, podCIDR;
    std::unique_ptr<SandboxManager> manager;
    PodSandbox pod;
  };
  Node nodes[2] = {{"a", dir + "/node-a", "192.168.50.2", "10.42.1.0/24", nullptr, {}},
                   {"b", dir + "/node-b", "192.168.50.3", "10.42.2.0/24", nullptr, {}}};
  {
    auto underlay = netns::NodeNetwork::open(underlayNs);
    ASSERT_TRUE(underlay);
    ASSERT_TRUE((*underlay)->ensureBridge("under0", "192.168.50.1/24"));
    for (Node& node : nodes) {
      ASSERT_TRUE(netns::createPinnedNamespaces({.net = node.netns}));
      // The node's uplink is a "pod link" of the underlay: eth0 in the node namespace.
      Status linked = (*underlay)->createPodLink({.podNetnsPath = node.netns, .hostIfName = "up-" + node.name,
                                                  .bridgeName = "under0", .podAddress = node.ip + "/24",
                                                  .gateway = "192.168.50.1"});
      ASSERT_TRUE(linked) << linked.error().message;
      SandboxManagerConfig config{.runDir = dir + "/run-" + node.name, .dataDir = dir + "/data-" + node.name,
                                  .cgroupRoot = testRoot + "/node-" + node.name, .nodeNetnsPath = node.netns,
                                  .podCIDR = node.podCIDR};
      auto manager = SandboxManager::open(config);
      ASSERT_TRUE(manager) << manager.error().message;
      node.manager = std::move(*manager);
      auto pod = node.manager->create({.uid = "pod-on-" + node.name, .name = "web"});
      ASSERT_TRUE(pod) << pod.error().message;
      node.pod = *pod;
    }
  }
  ASSERT_TRUE(nodes[0].manager->setPeerRoutes({{nodes[1].podCIDR, nodes[1].ip}}));
  ASSERT_TRUE(nodes[1].manager->setPeerRoutes({{nodes[0].podCIDR, nodes[0].ip}}));

  ferry::testing::TcpEchoServer serverB;
  ASSERT_TRUE(serverB.start(nodes[1].pod.netnsPath, nodes[1].pod.podIP, 8080));
  auto reply = ferry::testing::tcpRoundTrip(nodes[0].pod.netnsPath, nodes[1].pod.podIP, 8080, "across nodes");
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(*reply, "across nodes");
  serverB.stop();

  // Without the route the other node's pods are unreachable: the route is what does it.
  ASSERT_TRUE(nodes[0].manager->setPeerRoutes({}));
  ferry::testing::TcpEchoServer serverB2;
  ASSERT_TRUE(serverB2.start(nodes[1].pod.netnsPath, nodes[1].pod.podIP, 8081));
  EXPECT_FALSE(ferry::testing::tcpRoundTrip(nodes[0].pod.netnsPath, nodes[1].pod.podIP, 8081, "x"));
  serverB2.stop();

  for (Node& node : nodes) {
    EXPECT_TRUE(node.manager->remove(node.pod.uid));
    EXPECT_TRUE(node.manager->cgroups().destroy());
    node.manager.reset();
    (void)netns::removePinnedNamespace(node.netns);
  }
  EXPECT_TRUE((*testCgroups)->destroy());
  (void)netns::removePinnedNamespace(underlayNs);
  EXPECT_EQ(countNsfsMountsUnder(dir), 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ferry::agent
