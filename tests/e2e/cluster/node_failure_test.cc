// A node that dies: node 2's agent is killed (kill -9) and its link cut. With a
// short --node-monitor-grace-period its Lease goes stale, the node lifecycle
// controller marks it NotReady (Ready=Unknown) and taints it
// node.kubernetes.io/unreachable:NoExecute; once the pods' tolerationSeconds run
// out they are evicted, the Deployment's replacements run on nodes 1 and 3, a
// standalone pod is not replaced, and the Service answers only from the live
// pods. When the node comes back, its evicted pods are finished and gone.
#include "tests/e2e/cluster/cluster_checks.h"
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>

namespace fs = std::filesystem;
using namespace ferry::e2e;
using namespace std::chrono_literals;

namespace {

// Tolerates an unreachable / not-ready node for 5 s (the default the API server
// adds is 300 s).
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
      terminationGracePeriodSeconds: 2
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      containers:
      - name: web
        image: docker.io/library/busybox:1.35
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports:
        - containerPort: 8080
          name: http
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
---
apiVersion: v1
kind: Pod
metadata:
  name: standalone
  labels: {role: standalone}
spec:
  nodeSelector: {kubernetes.io/hostname: node-2}
  terminationGracePeriodSeconds: 2
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
  containers:
  - name: sleep
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: ["sleep", "3600"]
)";

constexpr int kRequests = 60;

bool hasTaint(Cluster& cluster, const std::string& node, const std::string& key, const std::string& effect) {
  auto r = cluster.kubectl("get node " + node + " -o jsonpath='{range .spec.taints[*]}{.key}:{.effect} {end}'");
  return r.output.find(key + ":" + effect) != std::string::npos;
}

std::string readyStatus(Cluster& cluster, const std::string& node) {
  return cluster.kubectl("get node " + node + " -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}'").output;
}

}  // namespace

TEST(NodeFailure, PodsReplacedElsewhereAndServiceFollows) {
  if (auto reason = e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  // Leases renew every 10 s: 15 s without one is a dead node (Kubernetes: 40 s).
  ClusterOptions options;
  options.nodes = 3;
  options.serverFlags = {"--node-monitor-grace-period=15"};
  Cluster cluster(options);
  ASSERT_EQ(cluster.start(), "");
  ASSERT_EQ(cluster.importBusybox(), "");

  auto applied = cluster.kubectl("apply -f -", 60s, kApp);
  ASSERT_EQ(applied.exitCode, 0) << applied.output;
  bool ready = waitFor([&] {
    return cluster.kubectl("get deploy app -o jsonpath={.status.readyReplicas}").output == "6" &&
           cluster.kubectl("get pod standalone -o jsonpath={.status.phase}").output == "Running";
  }, 180s);
  ASSERT_TRUE(ready) << cluster.kubectl("get pods -o wide").output << "\n" << cluster.serverLog();
  auto before = podsOf(cluster, "app=app");
  std::set<std::string> victims;
  for (const auto& p : before)
    if (p.node == cluster.nodeName(2)) victims.insert(p.name);
  ASSERT_FALSE(victims.empty()) << "no app pod on node-2:\n" << describe(before);

  // Node 2 dies: its agent is killed, its link cut (its pods' processes live on, unreachable).
  cluster.killAgent(2);
  cluster.disconnectNode(2);

  bool notReady = waitFor([&] { return readyStatus(cluster, "node-2") == "Unknown"; }, 90s);
  ASSERT_TRUE(notReady) << cluster.kubectl("get nodes -o wide").output << "\n"
                        << cluster.kubectl("get node node-2 -o yaml").output;
  EXPECT_NE(cluster.kubectl("get nodes --no-headers").output.find("NotReady"), std::string::npos);
  EXPECT_EQ(readyStatus(cluster, "node-1"), "True");
  EXPECT_EQ(readyStatus(cluster, "node-3"), "True");
  bool tainted = waitFor([&] { return hasTaint(cluster, "node-2", "node.kubernetes.io/unreachable", "NoExecute"); }, 30s);
  EXPECT_TRUE(tainted) << cluster.kubectl("get node node-2 -o yaml").output;

  // After the 5 s toleration: node 2's pods are evicted and replaced on nodes 1 and 3.
  std::vector<PodPlacement> after;
  bool replaced = waitFor([&] {
    after = podsOf(cluster, "app=app");
    auto perNode = readyPerNode(after);
    int live = 0;
    for (const auto& [node, n] : perNode) live += n;
    bool victimsGone = std::all_of(after.begin(), after.end(), [&](const PodPlacement& p) {
      return !victims.count(p.name) || p.terminating;
    });
    return victimsGone && perNode["node-2"] == 0 && live == 6;
  }, 90s);
  ASSERT_TRUE(replaced) << describe(after) << "\n" << cluster.kubectl("get pods -o wide").output << "\n"
                        << cluster.kubectl("get events").output;
  std::vector<std::string> liveIps;
  std::set<std::string> liveNames;
  for (const auto& p : after)
    if (p.ready && !p.terminating) {
      EXPECT_NE(p.node, "node-2") << describe(after);
      liveIps.push_back(p.ip);
      liveNames.insert(p.name);
    }
  auto perNode = readyPerNode(after);
  EXPECT_GE(perNode["node-1"], 2) << describe(after);
  EXPECT_GE(perNode["node-3"], 2) << describe(after);
  EXPECT_TRUE(cluster.kubectl("get deploy app -o jsonpath={.status.readyReplicas}").output == "6");
  // The standalone pod is evicted too, and nothing replaces it.
  auto standalone = cluster.kubectl("get pods -l role=standalone -o jsonpath='{.items[*].metadata.deletionTimestamp}'");
  auto standaloneCount = cluster.kubectl("get pods -l role=standalone --no-headers");
  EXPECT_TRUE(standaloneCount.output.find("standalone") == std::string::npos || !standalone.output.empty())
      << cluster.kubectl("get pods -l role=standalone -o yaml").output;

  // The Service's ready endpoints are exactly the live pods.
  std::vector<std::string> wanted = liveIps;
  std::sort(wanted.begin(), wanted.end());
  bool endpointsFollow = waitFor([&] {
    auto ips = readyEndpoints(cluster, "app");
    std::sort(ips.begin(), ips.end());
    return ips == wanted;
  }, 60s);
  ASSERT_TRUE(endpointsFollow) << cluster.kubectl("get endpointslices -o yaml").output;

  // A client on node 3 reaches the app by name: only live pods answer, round-robin.
  auto client = cluster.kubectl("apply -f -", 60s, clientPodManifest("client", "node-3", liveIps, "http://app", kRequests));
  ASSERT_EQ(client.exitCode, 0) << client.output;
  bool done = waitFor([&] { return cluster.podOutput(3, "client").find("DONE") != std::string::npos; }, 120s);
  std::string output = cluster.podOutput(3, "client");
  ASSERT_TRUE(done) << output << "\n" << cluster.kubectl("describe pod client").output;
  EXPECT_EQ(output.find("FAILED"), std::string::npos) << output;
  auto perBackend = answersByBackend(output, "app-");
  EXPECT_EQ(perBackend.size(), 6u) << output;
  for (const auto& [backend, count] : perBackend) {
    EXPECT_TRUE(liveNames.count(backend)) << backend << " answered but is not a live pod\n" << output;
    EXPECT_EQ(count, kRequests / 6) << backend << "\n" << output;
  }

  // Node 2 comes back: Ready again, untainted, and its evicted pods are finished and gone.
  cluster.reconnectNode(2);
  ASSERT_EQ(cluster.restartAgent(2), "");
  bool back = waitFor([&] {
    return readyStatus(cluster, "node-2") == "True" &&
           !hasTaint(cluster, "node-2", "node.kubernetes.io/unreachable", "NoExecute");
  }, 90s);
  EXPECT_TRUE(back) << cluster.kubectl("get node node-2 -o yaml").output;
  bool cleaned = waitFor([&] {
    for (const auto& p : podsOf(cluster, "app=app"))
      if (victims.count(p.name)) return false;
    return cluster.kubectl("get pods -l role=standalone --no-headers").output.find("standalone") == std::string::npos;
  }, 90s);
  EXPECT_TRUE(cleaned) << cluster.kubectl("get pods -o wide").output;
}
