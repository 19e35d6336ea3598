// The agent may die without its containers noticing, through stock kubectl on a one-node
// cluster whose agent is its own process (beside `ferry server --no-agent`):
// - `kill -9` of the agent with 10 running pods (one of them restarted once before):
//   every container keeps running (same container ID and start time, its log keeps
//   growing while no agent runs), and the restarted agent reports them Running with
//   unchanged restart counts; a container that exited while no agent ran is reported
//   Terminated with its exit code; logs written before the kill are kept;
//   `kubectl logs --since` returns only the recent lines; exec reaches an adopted container;
// - a preStop httpGet hook is called before SIGTERM on delete (a CGI script in the pod
//   records the request before it answers, the TERM trap records the signal, both in a
//   hostPath file).
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;
using namespace ferry::e2e;
using namespace std::chrono_literals;

namespace {

constexpr int kPods = 10;

std::string tickerPod(const std::string& name) {
  // Counts seconds into its log: the count keeps going while no agent runs.
  return R"(apiVersion: v1
kind: Pod
metadata: {name: )" + name + R"(, labels: {app: ticker}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: [sh, -c, "echo started; i=0; while true; do i=$((i+1)); echo tick-$i; sleep 1; done"]
---
)";
}

std::string manifests(const std::string& hostDir) {
  std::string all;
  for (int i = 0; i < kPods - 1; ++i) all += tickerPod("ticker-" + std::to_string(i));
  // Restarted once before the kill (its first run fails), then runs: restartCount 1.
  all += R"(apiVersion: v1
kind: Pod
metadata: {name: once, labels: {app: ticker}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: scratch, emptyDir: {}}]
  containers:
  - name: main
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: [sh, -c, "if [ -f /scratch/ran ]; then echo second-run; i=0; while true; do i=$((i+1)); echo tick-$i; sleep 1; done; fi; touch /scratch/ran; echo first-run; exit 1"]
    volumeMounts: [{name: scratch, mountPath: /scratch}]
---
apiVersion: v1
kind: Pod
metadata: {name: exits-while-away}
spec:
  restartPolicy: Never
  volumes: [{name: host, hostPath: {path: )" + hostDir + R"(, type: Directory}}]
  containers:
  - name: main
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: [sh, -c, "echo waiting; while [ ! -f /host/exit-now ]; do sleep 0.2; done; echo exiting; exit 7"]
    volumeMounts: [{name: host, mountPath: /host}]
---
apiVersion: v1
kind: Pod
metadata: {name: hooked}
spec:
  terminationGracePeriodSeconds: 20
  volumes: [{name: host, hostPath: {path: )" + hostDir + R"(, type: Directory}}]
  containers:
  - name: main
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: [sh, -c, "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho prestop $REQUEST_METHOD $QUERY_STRING >> /host/order\\necho Content-Type: text/plain\\necho\\necho ok\\n' > /www/cgi-bin/stop && chmod +x /www/cgi-bin/stop && httpd -p 8080 -h /www && trap 'echo term >> /host/order; exit 0' TERM; echo serving; while true; do sleep 1; done"]
    ports: [{containerPort: 8080}]
    lifecycle:
      preStop:
        httpGet: {path: "/cgi-bin/stop?from=kubelet", port: 8080}
    volumeMounts: [{name: host, mountPath: /host}]
)";
  return all;
}

std::string jsonpath(Cluster& c, const std::string& pod, const std::string& path) {
  return c.kubectl("get pod " + pod + " -o 'jsonpath={" + path + "}'", 20s).output;
}

struct Seen {
  std::string phase, containerId, startedAt, restartCount, ready;
};

// name → what the API says of the pod and its one container.
std::map<std::string, Seen> seenPods(Cluster& c) {
  auto r = c.kubectl(
      "get pods -o jsonpath='{range .items[*]}{.metadata.name}|{.status.phase}|"
      "{.status.containerStatuses[0].containerID}|{.status.containerStatuses[0].state.running.startedAt}|"
      "{.status.containerStatuses[0].restartCount}|{.status.containerStatuses[0].ready}{\"\\n\"}{end}'",
      30s);
  std::map<std::string, Seen> out;
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> f;
    std::istringstream fields(line);
    for (std::string field; std::getline(fields, field, '|');) f.push_back(field);
    f.resize(6);
    if (!f[0].empty()) out[f[0]] = Seen{f[1], f[2], f[3], f[4], f[5]};
  }
  return out;
}

std::vector<std::string> tickers() {
  std::vector<std::string> names;
  for (int i = 0; i < kPods - 1; ++i) names.push_back("ticker-" + std::to_string(i));
  names.push_back("once");
  return names;
}

// The highest tick-N in a log.
int lastTick(const std::string& log) {
  int last = 0;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("tick-", 0) == 0) last = std::max(last, std::atoi(line.c_str() + 5));
  return last;
}

}  // namespace

TEST(AgentRestart, KillNineKeepsContainersAndTheRestartedAgentAdoptsThem) {
  if (auto reason = e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  ClusterOptions options;
  options.separateServerProcess = true;  // node 1's agent alone can be killed
  Cluster cluster(options);
  ASSERT_EQ(cluster.start(), "");
  ASSERT_EQ(cluster.importBusybox(), "");
  std::string hostDir = cluster.workDir() + "/hostdir";
  fs::create_directories(hostDir);

  auto applied = cluster.kubectl("apply -f -", 60s, manifests(hostDir));
  ASSERT_EQ(applied.exitCode, 0) << applied.output;
  std::map<std::string, Seen> before;
  ASSERT_TRUE(waitFor([&] {
    before = seenPods(cluster);
    for (const auto& name : tickers())
      if (before[name].phase != "Running" || before[name].ready != "true" || before[name].startedAt.empty())
        return false;
    return before["once"].restartCount == "1" && before["exits-while-away"].phase == "Running" &&
           before["hooked"].phase == "Running";
  }, 180s)) << cluster.kubectl("get pods -o wide").output << cluster.kubectl("describe pod once").output;
  // A few ticks in every log before the kill.
  ASSERT_TRUE(waitFor([&] { return lastTick(cluster.kubectl("logs ticker-0", 20s).output) >= 2; }, 60s));
  std::map<std::string, int> ticksAtKill;
  for (const auto& name : tickers()) ticksAtKill[name] = lastTick(cluster.podOutput(1, name));

  // ---- the agent dies; the containers must not notice ----
  cluster.killAgent(1);
  auto killedAt = std::chrono::steady_clock::now();
  std::ofstream(hostDir + "/exit-now") << "now\n";  // exits-while-away exits 7 with no agent
  // Every container keeps writing its log with no agent (the per-container shim owns it).
  EXPECT_TRUE(waitFor([&] {
    for (const auto& name : tickers())
      if (lastTick(cluster.podOutput(1, name)) < ticksAtKill[name] + 4) return false;
    return true;
  }, 60s)) << "logs stopped growing while the agent was down";
  std::this_thread::sleep_until(killedAt + 3s);
  ASSERT_EQ(cluster.restartAgent(1), "");

  // ---- the restarted agent adopts them ----
  // The exit that happened while it was away is reported: that status can only come from
  // the restarted agent.
  EXPECT_TRUE(waitFor([&] {
    return jsonpath(cluster, "exits-while-away", ".status.phase") == "Failed";
  }, 120s)) << cluster.kubectl("get pod exits-while-away -o yaml").output << cluster.agentLog(1);
  EXPECT_EQ(jsonpath(cluster, "exits-while-away", ".status.containerStatuses[0].state.terminated.exitCode"), "7");
  EXPECT_EQ(jsonpath(cluster, "exits-while-away", ".status.containerStatuses[0].restartCount"), "0");
  EXPECT_NE(cluster.kubectl("logs exits-while-away", 20s).output.find("exiting"), std::string::npos);

  // The node API is back (logs reach the agent) and every pod is as before: Running, the
  // same container (ID and start time), the same restart count, still ready.
  ASSERT_TRUE(waitFor([&] { return cluster.kubectl("logs ticker-0 --tail=1", 20s).exitCode == 0; }, 120s))
      << cluster.agentLog(1);
  // Give a wrongly restarting agent time to show it: a restart would change the container.
  std::this_thread::sleep_for(5s);
  auto after = seenPods(cluster);
  for (const auto& name : tickers()) {
    SCOPED_TRACE(name);
    EXPECT_EQ(after[name].phase, "Running");
    EXPECT_EQ(after[name].containerId, before[name].containerId);
    EXPECT_EQ(after[name].startedAt, before[name].startedAt);
    EXPECT_EQ(after[name].restartCount, before[name].restartCount);
    EXPECT_EQ(after[name].ready, "true");
    // The log before the kill is kept and the one counting on is the same process.
    auto log = cluster.kubectl("logs " + name, 20s).output;
    EXPECT_NE(log.find(name == "once" ? "second-run" : "started"), std::string::npos) << log;
    EXPECT_GT(lastTick(log), ticksAtKill[name] + 4) << log;
  }
  EXPECT_EQ(after["once"].restartCount, "1");
  EXPECT_NE(cluster.kubectl("logs once --previous", 20s).output.find("first-run"), std::string::npos);
  // exec reaches an adopted container (its PID 1 is still the ticking shell).
  auto exec = cluster.kubectl("exec ticker-0 -- cat /proc/1/cmdline", 30s);
  EXPECT_EQ(exec.exitCode, 0) << exec.output;
  EXPECT_NE(exec.output.find("tick-"), std::string::npos) << exec.output;

  // ---- logs --since: only lines newer than the window ----
  auto recent = cluster.kubectl("logs ticker-1 --since=3s", 20s);
  EXPECT_EQ(recent.exitCode, 0) << recent.output;
  EXPECT_EQ(recent.output.find("started"), std::string::npos) << recent.output;
  int recentLines = 0;
  std::istringstream recentStream(recent.output);
  for (std::string line; std::getline(recentStream, line);) ++recentLines;
  EXPECT_GE(recentLines, 1) << recent.output;
  EXPECT_LE(recentLines, 6) << recent.output;  // ~3 ticks (one a second); far fewer than the whole log
  auto whole = cluster.kubectl("logs ticker-1", 20s).output;
  EXPECT_GT(lastTick(whole), 10) << whole;

  // ---- preStop httpGet, then SIGTERM ----
  auto del = cluster.kubectl("delete pod hooked --wait=false", 30s);
  ASSERT_EQ(del.exitCode, 0) << del.output;
  EXPECT_TRUE(waitFor([&] { return cluster.kubectl("get pod hooked", 20s).exitCode != 0; }, 60s));
  std::ifstream orderFile(hostDir + "/order");
  std::stringstream order;
  order << orderFile.rdbuf();
  EXPECT_EQ(order.str(), "prestop GET from=kubelet\nterm\n")
      << cluster.kubectl("get events --field-selector involvedObject.name=hooked").output;
}
