// The whole path as a user sees it, on one node: `kubectl apply` of a
// Deployment and a Service written for Kubernetes; the pods start in Ferry
// sandboxes; another pod reaches http://app by name and the requests go
// round-robin to the replicas.
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

namespace fs = std::filesystem;
using ferry::e2e::Cluster;
using ferry::e2e::ClusterOptions;
using namespace std::chrono_literals;

namespace {

constexpr const char* kApp = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  labels: {app: app}
spec:
  replicas: 3
  selector:
    matchLabels: {app: app}
  template:
    metadata:
      labels: {app: app}
    spec:
      containers:
      - name: web
        image: docker.io/library/busybox:1.35
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports:
        - containerPort: 8080
          name: http
        resources:
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

constexpr const char* kClient = R"(apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: ["sh", "-c", "for i in $(seq 30); do wget -qO- http://app || echo FAILED; done; echo DONE"]
)";

// The client container's CRI log lines (stream F|P text), from the node's log dir.
std::string clientOutput(const Cluster& c) {
  std::string out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(c.workDir() + "/n1/agent/logs", ec);
       !ec && it != fs::recursive_directory_iterator(); ++it) {
    if (!it->is_regular_file() || it->path().string().find("_client_") == std::string::npos) continue;
    std::ifstream in(it->path());
    for (std::string line; std::getline(in, line);) {
      // "<time> stdout F <text>"
      std::istringstream f(line);
      std::string time, stream, tag;
      f >> time >> stream >> tag;
      std::string text;
      std::getline(f, text);
      if (!text.empty() && text[0] == ' ') text.erase(0, 1);
      out += text + "\n";
    }
  }
  return out;
}

}  // namespace

TEST(ThinPath, DeploymentReachedByNameRoundRobin) {
  if (auto reason = ferry::e2e::e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  Cluster cluster(ClusterOptions{.nodes = 1});
  ASSERT_EQ(cluster.start(), "");
  ASSERT_EQ(cluster.importBusybox(), "");

  auto applied = cluster.kubectl("apply -f -", 60s, kApp);
  ASSERT_EQ(applied.exitCode, 0) << applied.output;

  bool ready = ferry::e2e::waitFor([&] {
    auto r = cluster.kubectl("get deploy app -o jsonpath={.status.readyReplicas}");
    return r.exitCode == 0 && r.output == "3";
  }, 180s);
  ASSERT_TRUE(ready) << cluster.kubectl("get pods -o wide").output << "\n" << cluster.kubectl("describe pods").output
                     << "\n" << cluster.serverLog();
  bool endpoints = ferry::e2e::waitFor([&] {
    auto r = cluster.kubectl("get endpointslices -l kubernetes.io/service-name=app -o jsonpath={.items[*].endpoints[*].addresses[0]}");
    std::istringstream s(r.output);
    int n = 0;
    for (std::string a; s >> a;) ++n;
    return n == 3;
  }, 60s);
  ASSERT_TRUE(endpoints) << cluster.kubectl("get endpointslices -o yaml").output;

  auto client = cluster.kubectl("apply -f -", 60s, kClient);
  ASSERT_EQ(client.exitCode, 0) << client.output;
  bool done = ferry::e2e::waitFor([&] { return clientOutput(cluster).find("DONE") != std::string::npos; }, 120s);
  std::string output = clientOutput(cluster);
  ASSERT_TRUE(done) << output << "\n" << cluster.kubectl("describe pod client").output << "\n" << cluster.serverLog();

  // Each replica answers with its hostname (the pod name): 30 requests, 10 each.
  std::map<std::string, int> perBackend;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("app-", 0) == 0) ++perBackend[line];
  EXPECT_EQ(output.find("FAILED"), std::string::npos) << output;
  ASSERT_EQ(perBackend.size(), 3u) << output;
  for (const auto& [backend, count] : perBackend) EXPECT_EQ(count, 10) << backend << "\n" << output;

  // The CPU and memory limits reached the pods' cgroups.
  auto pods = cluster.kubectl("get pods -l app=app -o jsonpath={.items[*].metadata.uid}");
  std::istringstream uids(pods.output);
  for (std::string uid; uids >> uid;) {
    bool found = false;
    std::error_code ec;
    // Hybrid hosts keep memory limits in the v1 hierarchy; pure v2 hosts in memory.max.
    bool v1 = fs::exists("/sys/fs/cgroup/memory/" + cluster.cgroupRoot(1));
    fs::path root = v1 ? "/sys/fs/cgroup/memory/" + cluster.cgroupRoot(1) : "/sys/fs/cgroup/" + cluster.cgroupRoot(1);
    for (auto it = fs::recursive_directory_iterator(root, ec);
         !ec && it != fs::recursive_directory_iterator(); ++it) {
      if (!it->is_directory() || it->path().filename() != "web" ||
          it->path().parent_path().filename() != "pod" + uid)
        continue;
      std::ifstream limit(it->path() / (v1 ? "memory.limit_in_bytes" : "memory.max"));
      long long bytes = 0;
      limit >> bytes;
      EXPECT_EQ(bytes, 64LL << 20) << it->path();
      found = true;
      it.disable_recursion_pending();
    }
    EXPECT_TRUE(found) << "no memory cgroup for pod " << uid;
  }
}
