// The control loops against the real API server (`ferry server --no-agent`)
// and stock kubectl. Nodes are fake: Node objects and Leases the test keeps
// alive, and the test plays kubelet (pods bound to a live node become Ready
// through the status subresource; their graceful deletions are finished).
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <ctime>
#include <map>
#include <mutex>
#include <set>
#include <thread>

using ferry::e2e::Cluster;
using ferry::e2e::ClusterOptions;
using Json = nlohmann::json;

namespace {

std::string microNow() {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.000000Z", std::gmtime(&t));
  return buf;
}
std::string secondsNow() {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

const char* kNodes[] = {"fake-1", "fake-2", "fake-3"};

class FakeKubelets {
 public:
  explicit FakeKubelets(Cluster& cluster) : cluster_(cluster) {
    thread_ = std::thread([this] { run(); });
  }
  ~FakeKubelets() {
    running_ = false;
    thread_.join();
  }
  void setAlive(const std::string& node, bool alive) {
    std::lock_guard lock(mu_);
    if (alive) dead_.erase(node);
    else dead_.insert(node);
  }
  // The lowest number of ready, non-terminating pods labelled app=`app` seen since the last reset.
  int lowestReady() { return lowest_.load(); }
  void resetLowest() { lowest_ = 1 << 20; }
  std::string app = "web";

 private:
  void run() {
    int ip = 2;
    while (running_) {
      std::set<std::string> dead;
      {
        std::lock_guard lock(mu_);
        dead = dead_;
      }
      std::string script;
      for (const char* node : kNodes) {
        if (dead.count(node)) continue;
        script += "kubectl --kubeconfig " + cluster_.dataDir() + "/kubeconfig -n kube-node-lease patch lease " + node +
                  " --type=merge -p '{\"spec\":{\"renewTime\":\"" + microNow() + "\"}}' >/dev/null 2>&1; ";
      }
      auto listed = cluster_.kubectl("get pods -A -o json", std::chrono::seconds(30));
      Json pods = Json::parse(listed.output, nullptr, false);
      int ready = 0;
      if (pods.is_object() && pods.contains("items")) {
        for (const auto& pod : pods["items"]) {
          std::string node = pod["spec"].value("nodeName", "");
          std::string ns = pod["metadata"].value("namespace", ""), name = pod["metadata"].value("name", "");
          bool terminating = pod["metadata"].contains("deletionTimestamp");
          bool isReady = false;
          for (const auto& c : pod.value("status", Json::object()).value("conditions", Json::array()))
            if (c.value("type", "") == "Ready" && c.value("status", "") == "True") isReady = true;
          if (isReady && !terminating && pod["metadata"].value("labels", Json::object()).value("app", "") == app) ready++;
          if (node.empty() || dead.count(node)) continue;
          std::string k = "kubectl --kubeconfig " + cluster_.dataDir() + "/kubeconfig -n " + ns + " ";
          if (terminating) {
            script += k + "delete pod " + name + " --grace-period=0 --force >/dev/null 2>&1; ";
          } else if (!isReady) {
            Json status = {{"status",
                            {{"phase", "Running"},
                             {"podIP", "10.42.7." + std::to_string(ip++ % 250 + 2)},
                             {"conditions",
                              {{{"type", "PodScheduled"}, {"status", "True"}, {"lastTransitionTime", secondsNow()}},
                               {{"type", "Ready"}, {"status", "True"}, {"lastTransitionTime", secondsNow()}}}}}}};
            script += k + "patch pod " + name + " --subresource=status --type=merge -p '" + status.dump() +
                      "' >/dev/null 2>&1; ";
          }
        }
        lowest_ = std::min(lowest_.load(), ready);
      }
      cluster_.inNode(1, script, std::chrono::seconds(60));
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
  }

  Cluster& cluster_;
  std::atomic<bool> running_{true};
  std::atomic<int> lowest_{1 << 20};
  std::mutex mu_;
  std::set<std::string> dead_;
  std::thread thread_;
};

Json getJson(Cluster& c, const std::string& args) {
  auto r = c.kubectl(args + " -o json", std::chrono::seconds(30));
  if (r.exitCode != 0) return nullptr;
  return Json::parse(r.output, nullptr, false);
}

std::map<std::string, int> podsPerNode(Cluster& c, const std::string& selector, const std::string& ns = "default") {
  std::map<std::string, int> out;
  Json pods = getJson(c, "get pods -n " + ns + " -l " + selector);
  if (!pods.is_object()) return out;
  for (const auto& pod : pods["items"]) {
    if (pod["metadata"].contains("deletionTimestamp")) continue;
    out[pod["spec"].value("nodeName", "")]++;
  }
  return out;
}

std::string deploymentYaml(const std::string& ns, const std::string& image) {
  return R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: )" + ns + R"(
spec:
  replicas: 6
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: )" + image + R"(
        resources:
          requests: {cpu: 100m, memory: 64Mi}
)";
}

}  // namespace

TEST(ControllersE2E, SchedulingRolloutsNodeLossAndDeletion) {
  if (auto reason = ferry::e2e::e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  ClusterOptions options;
  options.agents = false;
  options.serverFlags = {"--node-monitor-grace-period", "5", "--pod-eviction-timeout", "3",
                         "--hpa-downscale-stabilization", "3"};
  Cluster cluster(options);
  if (auto err = cluster.start(); !err.empty()) GTEST_SKIP() << "the server does not start here: " << err;

  // Three fake nodes with Leases.
  for (const char* node : kNodes) {
    Json n = {{"apiVersion", "v1"},
              {"kind", "Node"},
              {"metadata", {{"name", node}, {"labels", {{"kubernetes.io/hostname", node}}}}}};
    ASSERT_EQ(cluster.kubectl("create -f -", std::chrono::seconds(30), n.dump()).exitCode, 0);
    Json status = {{"status",
                    {{"allocatable", {{"cpu", "4"}, {"memory", "8Gi"}, {"pods", "110"}}},
                     {"capacity", {{"cpu", "4"}, {"memory", "8Gi"}, {"pods", "110"}}},
                     {"conditions",
                      {{{"type", "Ready"}, {"status", "True"}, {"reason", "KubeletReady"},
                        {"lastHeartbeatTime", secondsNow()}, {"lastTransitionTime", secondsNow()}}}}}}};
    auto patched = cluster.kubectl(std::string("patch node ") + node + " --subresource=status --type=merge -p '" +
                                   status.dump() + "'");
    ASSERT_EQ(patched.exitCode, 0) << patched.output;
    Json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                  {"kind", "Lease"},
                  {"metadata", {{"name", node}, {"namespace", "kube-node-lease"}}},
                  {"spec", {{"holderIdentity", node}, {"leaseDurationSeconds", 40}, {"renewTime", microNow()}}}};
    auto created = cluster.kubectl("create -f -", std::chrono::seconds(30), lease.dump());
    ASSERT_EQ(created.exitCode, 0) << created.output;
  }
  FakeKubelets kubelets(cluster);

  // A Deployment of 6 spreads 2/2/2.
  ASSERT_EQ(cluster.kubectl("apply -f -", std::chrono::seconds(30), deploymentYaml("default", "nginx:1")).exitCode, 0);
  ASSERT_TRUE(ferry::e2e::waitFor([&] {
    auto per = podsPerNode(cluster, "app=web");
    return per["fake-1"] == 2 && per["fake-2"] == 2 && per["fake-3"] == 2;
  }, std::chrono::seconds(120))) << cluster.kubectl("get pods -o wide").output;
  auto status = cluster.kubectl("rollout status deployment/web --timeout=120s", std::chrono::seconds(150));
  ASSERT_EQ(status.exitCode, 0) << status.output;
  EXPECT_NE(status.output.find("successfully rolled out"), std::string::npos) << status.output;

  // A rolling update with maxUnavailable 0 never drops below 6 ready pods.
  kubelets.resetLowest();
  ASSERT_EQ(cluster.kubectl("set image deployment/web web=nginx:2").exitCode, 0);
  status = cluster.kubectl("rollout status deployment/web --timeout=180s", std::chrono::seconds(200));
  ASSERT_EQ(status.exitCode, 0) << status.output;
  EXPECT_NE(status.output.find("successfully rolled out"), std::string::npos) << status.output;
  EXPECT_GE(kubelets.lowestReady(), 6);

  // Undo goes back to revision 1's template, as revision 3.
  auto undo = cluster.kubectl("rollout undo deployment/web");
  ASSERT_EQ(undo.exitCode, 0) << undo.output;
  status = cluster.kubectl("rollout status deployment/web --timeout=180s", std::chrono::seconds(200));
  ASSERT_EQ(status.exitCode, 0) << status.output;
  Json d = getJson(cluster, "get deployment web");
  ASSERT_TRUE(d.is_object());
  EXPECT_EQ(d["spec"]["template"]["spec"]["containers"][0].value("image", ""), "nginx:1");
  EXPECT_EQ(d["metadata"]["annotations"].value("deployment.kubernetes.io/revision", ""), "3");

  // Node loss: fake-3 stops heartbeating. Its Deployment pods come back elsewhere; a standalone pod does not.
  Json standalone = {{"apiVersion", "v1"},
                     {"kind", "Pod"},
                     {"metadata", {{"name", "standalone"}, {"namespace", "default"}, {"labels", {{"app", "alone"}}}}},
                     {"spec", {{"nodeName", "fake-3"}, {"containers", {{{"name", "c"}, {"image", "busybox"}}}}}}};
  ASSERT_EQ(cluster.kubectl("create -f -", std::chrono::seconds(30), standalone.dump()).exitCode, 0);
  ASSERT_TRUE(ferry::e2e::waitFor([&] {
    Json p = getJson(cluster, "get pod standalone");
    for (const auto& c : p.value("status", Json::object()).value("conditions", Json::array()))
      if (c.value("type", "") == "Ready" && c.value("status", "") == "True") return true;
    return false;
  }, std::chrono::seconds(60)));
  kubelets.setAlive("fake-3", false);
  ASSERT_TRUE(ferry::e2e::waitFor([&] {
    Json n = getJson(cluster, "get node fake-3");
    bool unknown = false, tainted = false;
    for (const auto& c : n.value("status", Json::object()).value("conditions", Json::array()))
      if (c.value("type", "") == "Ready" && c.value("status", "") == "Unknown") unknown = true;
    for (const auto& t : n.value("spec", Json::object()).value("taints", Json::array()))
      if (t.value("key", "") == "node.kubernetes.io/unreachable" && t.value("effect", "") == "NoExecute") tainted = true;
    return unknown && tainted;
  }, std::chrono::seconds(60))) << cluster.kubectl("get node fake-3 -o yaml").output;
  ASSERT_TRUE(ferry::e2e::waitFor([&] {
    auto per = podsPerNode(cluster, "app=web");
    return per["fake-3"] == 0 && per["fake-1"] + per["fake-2"] == 6;
  }, std::chrono::seconds(120))) << cluster.kubectl("get pods -o wide").output;
  ASSERT_TRUE(ferry::e2e::waitFor([&] { return podsPerNode(cluster, "app=alone").empty(); }, std::chrono::seconds(60)));
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_TRUE(podsPerNode(cluster, "app=alone").empty()) << "a standalone pod was recreated";

  // The node comes back (its kubelet posts Ready again): the taints go, its leftover pods finish.
  kubelets.setAlive("fake-3", true);
  Json ready = {{"status",
                 {{"conditions",
                   {{{"type", "Ready"}, {"status", "True"}, {"reason", "KubeletReady"},
                     {"lastHeartbeatTime", secondsNow()}, {"lastTransitionTime", secondsNow()}}}}}}};
  ASSERT_EQ(cluster.kubectl("patch node fake-3 --subresource=status --type=merge -p '" + ready.dump() + "'").exitCode, 0);
  ASSERT_TRUE(ferry::e2e::waitFor([&] {
    Json n = getJson(cluster, "get node fake-3");
    return n.is_object() && n.value("spec", Json::object()).value("taints", Json::array()).empty();
  }, std::chrono::seconds(60))) << cluster.kubectl("get node fake-3 -o yaml").output;

  // Foreground deletion: the pods go before the Deployment.
  auto del = cluster.kubectl("delete deployment web --cascade=foreground --wait=false");
  ASSERT_EQ(del.exitCode, 0) << del.output;
  ASSERT_TRUE(ferry::e2e::waitFor([&] { return cluster.kubectl("get deployment web").exitCode != 0; },
                                  std::chrono::seconds(120)))
      << cluster.kubectl("get deployment,rs,pods -o wide").output;
  Json left = getJson(cluster, "get pods -l app=web");
  ASSERT_TRUE(left.is_object());
  EXPECT_TRUE(left["items"].empty()) << "the Deployment went before its pods";

  // Deleting a namespace removes everything in it, then the namespace.
  ASSERT_EQ(cluster.kubectl("create namespace doomed").exitCode, 0);
  ASSERT_EQ(cluster.kubectl("apply -f -", std::chrono::seconds(30), deploymentYaml("doomed", "nginx:1")).exitCode, 0);
  ASSERT_TRUE(ferry::e2e::waitFor([&] {
    auto per = podsPerNode(cluster, "app=web", "doomed");
    return per["fake-1"] + per["fake-2"] == 6;
  }, std::chrono::seconds(120)));
  auto nsDelete = cluster.kubectl("delete namespace doomed --timeout=120s", std::chrono::seconds(150));
  EXPECT_EQ(nsDelete.exitCode, 0) << nsDelete.output;
  EXPECT_TRUE(ferry::e2e::waitFor([&] { return cluster.kubectl("get namespace doomed").exitCode != 0; },
                                  std::chrono::seconds(120)));
}
