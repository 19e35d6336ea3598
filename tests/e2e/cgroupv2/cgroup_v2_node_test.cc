// A one-node cluster on a pure cgroup-v2 node, driven by stock kubectl, checked in the
// node's cgroupfs: the kubelet's QoS tree, pod limits in memory.max / cpu.max / pids.max
// and enforced by the kernel (OOM kill reported as OOMKilled, CPU throttling, fork
// refusal), and a deleted pod's processes and cgroup gone.
//
// The development machines are hybrid (v1 memory/cpu), so this binary is not a CTest test
// of its own: the vm tier runs it in a qemu guest whose only hierarchy is cgroup2
// (tests/vm/sandbox/CMakeLists.txt). Anywhere else it skips and says why.
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/statfs.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using ferry::e2e::Cluster;
using ferry::e2e::ClusterOptions;
using ferry::e2e::waitFor;
using namespace std::chrono_literals;

namespace {

constexpr long kCgroup2Magic = 0x63677270;  // CGROUP2_SUPER_MAGIC
// Every pod's pids.max (the agent's --pod-pids-limit): small, so a fork loop reaches it.
constexpr int kPodPidsLimit = 48;
// What `limited` asks for (a Guaranteed pod: requests default to the limits).
constexpr long long kLimitedMemoryBytes = 64LL << 20;
// 10m, the smallest quota the kernel takes (1 ms per 100 ms period): even a guest vCPU
// starved by a loaded host runs the busy loop past it.
constexpr const char* kLimitedCpuMax = "1000 100000";

constexpr const char* kPods = R"(apiVersion: v1
kind: Pod
metadata:
  name: limited
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: main
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    # PID 1 of its namespace without a SIGTERM handler: only SIGKILL ends it.
    command: ["sh", "-c", "while :; do :; done"]
    resources:
      limits: {cpu: 10m, memory: 64Mi}
---
apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  containers:
  - name: hog
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    # dd's 128 MiB buffer, filled from /dev/zero, cannot fit under 32Mi.
    command: ["sh", "-c", "echo allocating; dd if=/dev/zero of=/dev/null bs=128M count=1; echo survived; sleep 100000"]
    resources:
      limits: {memory: 32Mi}
---
apiVersion: v1
kind: Pod
metadata:
  name: forker
spec:
  containers:
  - name: forker
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    # The subshell forks sleepers until pids.max refuses one (ash then exits it).
    command: ["sh", "-c", "(i=0; while [ $i -lt 200 ]; do sleep 100000 & i=$((i+1)); done; echo spawned-all); echo forks-done; exec sleep 100000"]
)";

// A pod as one `kubectl get pods` line shows it (its first container for the last two).
struct PodRow {
  std::string uid, phase, qosClass;
  int restartCount = 0;
  std::string lastTerminatedReason;
};

// Like the harness's waitFor, but gives the guest's CPU back between looks.
bool pollEvery(std::chrono::seconds interval, std::chrono::seconds timeout, const std::function<bool()>& condition) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(interval);
  }
  return condition();
}

std::string readText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The value of `key` in a flat-keyed cgroup file (memory.events, cpu.stat, pids.events).
long long keyOf(const fs::path& path, const std::string& key) {
  std::ifstream in(path);
  std::string k;
  long long v;
  while (in >> k >> v)
    if (k == key) return v;
  return -1;
}

std::string pureCgroupV2Reason() {
  struct statfs st {};
  if (statfs("/sys/fs/cgroup", &st) != 0 || st.f_type != kCgroup2Magic)
    return "needs a pure cgroup-v2 node (cgroup2 at /sys/fs/cgroup); the vm tier runs this test in a qemu guest";
  std::string controllers = readText("/sys/fs/cgroup/cgroup.subtree_control");
  for (const char* c : {"cpu", "memory", "pids"})
    if (controllers.find(c) == std::string::npos)
      return std::string("the root cgroup does not delegate the ") + c + " controller";
  return {};
}

}  // namespace

TEST(CgroupV2Node, LimitsEnforcedOomKilledQosTreeAndDeletion) {
  if (auto reason = ferry::e2e::e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  if (auto reason = pureCgroupV2Reason(); !reason.empty()) GTEST_SKIP() << reason;
  // Where the time goes (a TCG guest is slow): printed, never asserted.
  auto started = std::chrono::steady_clock::now();
  auto progress = [&](const char* what) {
    auto s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count();
    std::cout << "[" << s << " s] " << what << std::endl;
  };
  ClusterOptions options;
  options.agentFlags = {"--pod-pids-limit", std::to_string(kPodPidsLimit)};
  Cluster cluster(options);
  ASSERT_EQ(cluster.start(), "");
  progress("node Ready");
  // The vm tier builds the image on the host (native speed) and passes it in.
  const char* prebuilt = std::getenv("FERRY_E2E_BUSYBOX_IMAGE");
  std::string image;
  if (prebuilt) {
    image = prebuilt;
  } else {
    fs::create_directories(cluster.workDir() + "/images");
    image = ferry::e2e::makeBusyboxImage(cluster.workDir() + "/images");
  }
  ASSERT_FALSE(image.empty()) << "could not build the busybox test image";
  ASSERT_EQ(cluster.importImage(image), "");
  progress("image imported");
  auto applied = cluster.kubectl("apply -f -", 60s, kPods);
  ASSERT_EQ(applied.exitCode, 0) << applied.output;

  // One kubectl call per look (each is a Go binary starting in TCG: seconds under load).
  auto lookAtPods = [&] {
    std::map<std::string, PodRow> rows;
    auto r = cluster.kubectl(
        "get pods -o jsonpath='{range .items[*]}{.metadata.name}|{.metadata.uid}|{.status.phase}|{.status.qosClass}"
        "|{.status.containerStatuses[0].restartCount}|{.status.containerStatuses[0].lastState.terminated.reason}"
        "{\"\\n\"}{end}'",
        60s);
    std::istringstream lines(r.exitCode == 0 ? r.output : "");
    for (std::string line; std::getline(lines, line);) {
      std::vector<std::string> f;
      std::istringstream fields(line);
      for (std::string x; std::getline(fields, x, '|');) f.push_back(x);
      f.resize(6);
      rows[f[0]] = PodRow{f[1], f[2], f[3], f[4].empty() ? 0 : std::stoi(f[4]), f[5]};
    }
    return rows;
  };
  std::map<std::string, PodRow> pods;
  auto diagnostics = [&] {
    return cluster.kubectl("get pods -o wide").output + "\n" + cluster.kubectl("describe pods").output + "\n" +
           cluster.serverLog();
  };
  bool running = pollEvery(2s, 240s, [&] {
    pods = lookAtPods();
    return pods["limited"].phase == "Running" && pods["forker"].phase == "Running" && !pods["hog"].uid.empty();
  });
  ASSERT_TRUE(running) << diagnostics();
  progress("pods Running");

  const fs::path root = fs::path("/sys/fs/cgroup") / cluster.cgroupRoot(1);
  std::string limitedUid = pods["limited"].uid, hogUid = pods["hog"].uid, forkerUid = pods["forker"].uid;

  // The kubelet's QoS tree: Guaranteed pods under the root, the others under their class,
  // each level handing cpu, memory and pids down.
  const fs::path limitedPod = root / ("pod" + limitedUid);
  const fs::path hogPod = root / "burstable" / ("pod" + hogUid);
  const fs::path forkerPod = root / "besteffort" / ("pod" + forkerUid);
  for (const fs::path& dir : {limitedPod, hogPod, forkerPod}) EXPECT_TRUE(fs::is_directory(dir)) << dir;
  EXPECT_EQ(pods["limited"].qosClass, "Guaranteed");
  EXPECT_EQ(pods["hog"].qosClass, "Burstable");
  EXPECT_EQ(pods["forker"].qosClass, "BestEffort");
  for (const fs::path& dir : {root, root / "burstable", root / "besteffort", limitedPod}) {
    std::string enabled = readText(dir / "cgroup.subtree_control");
    for (const char* c : {"cpu", "memory", "pids"})
      EXPECT_NE(enabled.find(c), std::string::npos) << dir << " subtree_control: " << enabled;
  }

  // Limits as the kernel holds them, at the pod and the container level.
  const fs::path limitedMain = limitedPod / "main";
  EXPECT_EQ(readText(limitedPod / "memory.max"), std::to_string(kLimitedMemoryBytes));
  EXPECT_EQ(readText(limitedMain / "memory.max"), std::to_string(kLimitedMemoryBytes));
  EXPECT_EQ(readText(limitedPod / "cpu.max"), kLimitedCpuMax);
  EXPECT_EQ(readText(limitedMain / "cpu.max"), kLimitedCpuMax);
  for (const fs::path& pod : {limitedPod, hogPod, forkerPod})
    EXPECT_EQ(readText(pod / "pids.max"), std::to_string(kPodPidsLimit)) << pod;
  EXPECT_EQ(readText(hogPod / "hog" / "memory.max"), std::to_string(32LL << 20));
  EXPECT_EQ(readText(forkerPod / "forker" / "memory.max"), "max");
  // An OOM kill takes the whole container (as the kubelet sets it on v2).
  EXPECT_EQ(readText(hogPod / "hog" / "memory.oom.group"), "1");

  // cpu.max is enforced: the busy loop keeps hitting its quota.
  EXPECT_TRUE(waitFor([&] { return keyOf(limitedMain / "cpu.stat", "nr_throttled") > 0; }, 120s))
      << readText(limitedMain / "cpu.stat");

  progress("cgroup files checked, CPU throttled");
  // memory.max is enforced: the kernel kills dd, the agent reports OOMKilled and restarts it.
  bool oomReported = pollEvery(2s, 180s, [&] {
    pods = lookAtPods();
    return pods["hog"].restartCount >= 1 && pods["hog"].lastTerminatedReason == "OOMKilled";
  });
  EXPECT_TRUE(oomReported) << cluster.kubectl("get pod hog -o jsonpath='{.status.containerStatuses[0]}'").output
                           << "\n" << diagnostics();
  EXPECT_GE(keyOf(hogPod / "hog" / "memory.events", "oom_kill"), 1) << readText(hogPod / "hog" / "memory.events");
  std::string hogOutput = cluster.podOutput(1, "hog");
  EXPECT_NE(hogOutput.find("allocating"), std::string::npos) << hogOutput;
  EXPECT_EQ(hogOutput.find("survived"), std::string::npos) << hogOutput;

  progress("OOMKilled reported");
  // pids.max is enforced: the fork loop is refused before it has all its sleepers.
  EXPECT_TRUE(waitFor([&] { return cluster.podOutput(1, "forker").find("forks-done") != std::string::npos; }, 120s))
      << cluster.podOutput(1, "forker");
  EXPECT_EQ(cluster.podOutput(1, "forker").find("spawned-all"), std::string::npos);
  // The refusal is counted where the limit is (kernels >= 6.9) or in the forking task's
  // cgroup (older ones, such as the guest's 6.1).
  EXPECT_GE(keyOf(forkerPod / "pids.events", "max") + keyOf(forkerPod / "forker" / "pids.events", "max"), 1)
      << readText(forkerPod / "pids.events") << " / " << readText(forkerPod / "forker" / "pids.events");

  progress("fork refused");
  // Deleting a pod whose process ignores SIGTERM: after the grace period everything in
  // its cgroup is killed and the cgroup removed.
  std::vector<pid_t> pids;
  {
    std::ifstream procs(limitedMain / "cgroup.procs");
    for (pid_t pid; procs >> pid;) pids.push_back(pid);
  }
  ASSERT_FALSE(pids.empty()) << "no process in " << limitedMain;
  auto deleted = cluster.kubectl("delete pod limited --timeout=120s", 150s);
  EXPECT_EQ(deleted.exitCode, 0) << deleted.output;
  EXPECT_TRUE(waitFor([&] { return !fs::exists(limitedPod); }, 60s)) << limitedPod << " still exists";
  for (pid_t pid : pids) EXPECT_FALSE(fs::exists("/proc/" + std::to_string(pid))) << "pid " << pid << " survived";
  EXPECT_TRUE(fs::is_directory(hogPod)) << "deleting one pod touched another";
  progress("pod deleted, its cgroup gone");
}
