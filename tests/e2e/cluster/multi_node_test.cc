// A 3-node cluster as a user builds it: `ferry server` on node 1, `ferry agent`
// joining with the token on nodes 2 and 3 (each node its own network namespace,
// host-gw routes between them). All three are Ready; a Deployment of 6 replicas
// spreads over them; a client pod on every node reaches the pods on the other
// nodes by pod IP and `http://app` by name (its own node's DNS listener and
// socket load balancer), round-robin over all six. Then `kubectl drain` moves
// node 2's pods to the other nodes and leaves it cordoned.
#include "tests/e2e/cluster/cluster_checks.h"
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

namespace fs = std::filesystem;
using namespace ferry::e2e;
using namespace std::chrono_literals;

namespace {

constexpr const char* kApp = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  labels: {app: app}
spec:
  replicas: 6
  selector:
    matchLabels: {app: app}
  template:
    metadata:
      labels: {app: app}
    spec:
      terminationGracePeriodSeconds: 2  # httpd as PID 1 ignores SIGTERM: do not wait 30 s on a drain
      containers:
      - name: web
        image: docker.io/library/busybox:1.35
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports:
        - containerPort: 8080
          name: http
        resources:
          requests: {cpu: 50m, memory: 16Mi}
          limits: {cpu: 250m, memory: 64Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: app
spec:
  selector: {app: app}
  ports:
  - port: 80
    targetPort: http
)";

constexpr int kNodes = 3;
constexpr int kRequests = 60;  // 10 per replica

}  // namespace

TEST(MultiNode, ThreeNodesSpreadAndCrossNodeTraffic) {
  if (auto reason = e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  ClusterOptions options;
  options.nodes = kNodes;
  Cluster cluster(options);
  ASSERT_EQ(cluster.start(), "");

  // Every node registered, Ready, with allocatable resources.
  auto nodes = cluster.kubectl("get nodes --no-headers");
  ASSERT_EQ(nodes.exitCode, 0) << nodes.output;
  for (int i = 1; i <= kNodes; ++i) {
    std::string name = cluster.nodeName(i);
    auto ready = cluster.kubectl("get node " + name + " -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}'");
    EXPECT_EQ(ready.output, "True") << name << "\n" << nodes.output;
    auto cpu = cluster.kubectl("get node " + name + " -o jsonpath='{.status.allocatable.cpu}'");
    auto pods = cluster.kubectl("get node " + name + " -o jsonpath='{.status.allocatable.pods}'");
    EXPECT_FALSE(cpu.output.empty()) << name;
    EXPECT_FALSE(pods.output.empty()) << name;
    auto cidr = cluster.kubectl("get node " + name + " -o jsonpath='{.spec.podCIDR}'");
    EXPECT_FALSE(cidr.output.empty()) << name << " has no podCIDR";
  }

  ASSERT_EQ(cluster.importBusybox(), "");

  auto applied = cluster.kubectl("apply -f -", 60s, kApp);
  ASSERT_EQ(applied.exitCode, 0) << applied.output;
  bool ready = waitFor([&] {
    auto r = cluster.kubectl("get deploy app -o jsonpath={.status.readyReplicas}");
    return r.exitCode == 0 && r.output == "6";
  }, 180s);
  ASSERT_TRUE(ready) << cluster.kubectl("get pods -o wide").output << "\n"
                     << cluster.kubectl("describe pods").output << "\n" << cluster.serverLog();

  // The scheduler spreads one owner's pods within one of even: 2/2/2.
  auto pods = podsOf(cluster, "app=app");
  auto perNode = readyPerNode(pods);
  for (int i = 1; i <= kNodes; ++i)
    EXPECT_EQ(perNode[cluster.nodeName(i)], 2) << cluster.nodeName(i) << "\n" << describe(pods);
  std::vector<std::string> ips;
  std::map<std::string, std::string> podByIp;
  for (const auto& p : pods) {
    ASSERT_FALSE(p.ip.empty()) << describe(pods);
    ips.push_back(p.ip);
    podByIp[p.ip] = p.name;
  }
  ASSERT_EQ(ips.size(), 6u) << describe(pods);

  bool endpoints = waitFor([&] { return readyEndpoints(cluster, "app").size() == 6; }, 60s);
  ASSERT_TRUE(endpoints) << cluster.kubectl("get endpointslices -o yaml").output;

  // One client per node, all at once (each node load-balances on its own).
  for (int i = 1; i <= kNodes; ++i) {
    std::string manifest = clientPodManifest("client-" + std::to_string(i), cluster.nodeName(i), ips, "http://app", kRequests);
    auto r = cluster.kubectl("apply -f -", 60s, manifest);
    ASSERT_EQ(r.exitCode, 0) << r.output;
  }
  for (int i = 1; i <= kNodes; ++i) {
    std::string client = "client-" + std::to_string(i);
    bool done = waitFor([&] { return cluster.podOutput(i, client).find("DONE") != std::string::npos; }, 120s);
    std::string output = cluster.podOutput(i, client);
    ASSERT_TRUE(done) << client << ":\n" << output << "\n" << cluster.kubectl("describe pod " + client).output
                      << "\n" << cluster.kubectl("get pods -o wide").output;

    // By pod IP: every pod answers with its own name, those on other nodes too.
    auto byIp = answersByIp(output);
    int otherNodes = 0;
    for (const auto& p : pods) {
      EXPECT_EQ(byIp[p.ip], p.name) << client << " on " << cluster.nodeName(i) << " asking " << p.ip << " on " << p.node
                                    << "\n" << output;
      if (p.node != cluster.nodeName(i)) ++otherNodes;
    }
    EXPECT_EQ(otherNodes, 4) << describe(pods);

    // By name: exact round-robin over the six replicas.
    EXPECT_EQ(output.find("\nFAILED"), std::string::npos) << client << ":\n" << output;
    auto perBackend = answersByBackend(output, "app-");
    EXPECT_EQ(perBackend.size(), 6u) << client << ":\n" << output;
    for (const auto& [backend, count] : perBackend)
      EXPECT_EQ(count, kRequests / 6) << client << " " << backend << "\n" << output;
  }

  // `kubectl drain` of node 2: cordoned, its app pods evicted and replaced on nodes 1 and 3.
  auto drained = cluster.kubectl("drain node-2 --ignore-daemonsets --delete-emptydir-data --force --timeout=90s", 120s);
  EXPECT_EQ(drained.exitCode, 0) << drained.output;
  EXPECT_NE(cluster.kubectl("get node node-2 --no-headers").output.find("SchedulingDisabled"), std::string::npos);
  std::vector<PodPlacement> after;
  bool moved = waitFor([&] {
    after = podsOf(cluster, "app=app");
    auto live = readyPerNode(after);
    return live["node-2"] == 0 && live["node-1"] + live["node-3"] == 6 &&
           std::none_of(after.begin(), after.end(), [](const PodPlacement& p) { return p.node == "node-2"; });
  }, 90s);
  EXPECT_TRUE(moved) << describe(after) << "\n" << drained.output;
}
