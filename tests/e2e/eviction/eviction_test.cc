// Eviction under node pressure, crossed for real. The node's hard threshold is
// allocatableMemory.available (node allocatable minus the pods' working set) set
// 150Mi below the node's allocatable, so only this node's own pods can cross it:
// other processes on the machine (builds, other tests) cannot make the test flap,
// and the machine itself is never short of memory. A BestEffort pod then writes
// 300Mi into a memory-backed emptyDir (sizeLimit 320Mi bounds it even if dd
// misbehaved); a Guaranteed pod idles beside it. Expected, as with the kubelet:
// MemoryPressure True and the memory-pressure NoSchedule taint on the node, the
// BestEffort pod Failed with reason Evicted and the kubelet's message, an Evicted
// event, the Guaranteed pod still running, and once the pressure transition
// period has passed, MemoryPressure False and the taint gone.
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace ferry::e2e;
using namespace std::chrono_literals;
using Json = nlohmann::json;

namespace {

constexpr long long kMi = 1024 * 1024;

long long memTotalBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  long long kb = 0;
  while (in >> key >> kb >> unit)
    if (key == "MemTotal:") return kb * 1024;
  return 0;
}

constexpr const char* kSteady = R"(apiVersion: v1
kind: Pod
metadata:
  name: steady
spec:
  containers:
  - name: steady
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    resources:
      requests: {cpu: 100m, memory: 64Mi}
      limits: {cpu: 100m, memory: 64Mi}
)";

// 300Mi of tmpfs pages, charged to the hog's memory cgroup; the emptyDir's
// sizeLimit caps it at 320Mi whatever happens.
constexpr const char* kHog = R"(apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 30
  volumes:
  - name: fill
    emptyDir: {medium: Memory, sizeLimit: 320Mi}
  containers:
  - name: hog
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: ["sh", "-c", "dd if=/dev/zero of=/fill/data bs=1M count=300; echo filled; sleep 3600"]
    volumeMounts:
    - {name: fill, mountPath: /fill}
)";

}  // namespace

TEST(Eviction, BestEffortHogEvictedGuaranteedKeptPressureSetAndCleared) {
  if (auto reason = e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  long long allocatable = memTotalBytes();  // no reserved memory: allocatable == MemTotal
  ASSERT_GT(allocatable, 1024 * kMi);
  long long thresholdKi = (allocatable - 150 * kMi) / 1024;
  ClusterOptions options;
  options.agentFlags = {"--eviction-hard", "allocatableMemory.available<" + std::to_string(thresholdKi) + "Ki",
                        "--eviction-pressure-transition-period", "20s"};
  Cluster cluster(options);
  ASSERT_EQ(cluster.start(), "");
  ASSERT_EQ(cluster.importBusybox(), "");

  auto nodeJson = [&] {
    auto r = cluster.kubectl("get node node-1 -o json", 30s);
    return r.exitCode == 0 ? Json::parse(r.output, nullptr, false) : Json();
  };
  auto condition = [&](const std::string& type) {
    Json node = nodeJson();
    if (!node.is_object()) return std::string();
    for (const auto& c : node["status"].value("conditions", Json::array()))
      if (c.value("type", "") == type) return c.value("status", "");
    return std::string();
  };
  auto hasTaint = [&](const std::string& key) {
    Json node = nodeJson();
    if (!node.is_object() || !node["spec"].contains("taints")) return false;
    for (const auto& t : node["spec"]["taints"])
      if (t.value("key", "") == key && t.value("effect", "") == "NoSchedule") return true;
    return false;
  };
  auto podJson = [&](const std::string& name) {
    auto r = cluster.kubectl("get pod " + name + " -o json", 30s);
    return r.exitCode == 0 ? Json::parse(r.output, nullptr, false) : Json();
  };
  auto phase = [&](const std::string& name) {
    Json p = podJson(name);
    return p.is_object() ? p["status"].value("phase", "") : "";
  };

  ASSERT_EQ(cluster.kubectl("apply -f -", 60s, kSteady).exitCode, 0);
  ASSERT_TRUE(waitFor([&] { return phase("steady") == "Running"; }, 120s)) << cluster.kubectl("describe pod steady").output;
  EXPECT_EQ(podJson("steady")["status"].value("qosClass", ""), "Guaranteed");
  EXPECT_EQ(condition("MemoryPressure"), "False");

  ASSERT_EQ(cluster.kubectl("apply -f -", 60s, kHog).exitCode, 0);
  EXPECT_TRUE(waitFor([&] { return condition("MemoryPressure") == "True"; }, 120s))
      << cluster.kubectl("get node node-1 -o yaml").output << cluster.serverLog();
  EXPECT_TRUE(waitFor([&] { return hasTaint("node.kubernetes.io/memory-pressure"); }, 60s))
      << cluster.kubectl("get node node-1 -o yaml").output;
  Json hog;
  ASSERT_TRUE(waitFor([&] {
    hog = podJson("hog");
    return hog.is_object() && hog["status"].value("reason", "") == "Evicted";
  }, 120s)) << cluster.kubectl("describe pod hog").output << cluster.serverLog();
  EXPECT_EQ(hog["status"].value("phase", ""), "Failed");
  EXPECT_EQ(hog["status"].value("qosClass", ""), "BestEffort");
  std::string message = hog["status"].value("message", "");
  EXPECT_EQ(message.rfind("The node was low on resource: memory. Threshold quantity: ", 0), 0u) << message;
  EXPECT_NE(message.find("Container hog was using "), std::string::npos) << message;
  EXPECT_NE(message.find("request is 0, has larger consumption of memory."), std::string::npos) << message;
  bool disruption = false;
  for (const auto& c : hog["status"].value("conditions", Json::array()))
    if (c.value("type", "") == "DisruptionTarget" && c.value("status", "") == "True" &&
        c.value("reason", "") == "TerminationByKubelet")
      disruption = true;
  EXPECT_TRUE(disruption) << hog["status"].dump(2);
  EXPECT_TRUE(waitFor([&] {
    auto r = cluster.kubectl("get events --field-selector involvedObject.name=hog,reason=Evicted -o name", 30s);
    return r.exitCode == 0 && !r.output.empty();
  }, 60s)) << cluster.kubectl("get events").output;

  // The Guaranteed pod was never touched.
  Json steady;
  ASSERT_TRUE(waitFor([&] { return (steady = podJson("steady")).is_object(); }, 60s));
  EXPECT_EQ(steady["status"].value("phase", ""), "Running");
  for (const auto& cs : steady["status"].value("containerStatuses", Json::array()))
    EXPECT_EQ(cs.value("restartCount", -1), 0);

  // Its memory went with it: the pressure clears after the transition period, the taint with it.
  EXPECT_TRUE(waitFor([&] { return condition("MemoryPressure") == "False"; }, 120s))
      << cluster.kubectl("get node node-1 -o yaml").output << cluster.serverLog();
  EXPECT_TRUE(waitFor([&] { return !hasTaint("node.kubernetes.io/memory-pressure"); }, 60s))
      << cluster.kubectl("get node node-1 -o yaml").output;
  EXPECT_EQ(phase("steady"), "Running");
  EXPECT_EQ(phase("hog"), "Failed");  // an evicted pod stays, as in Kubernetes, for its owner to see
}
