// A crashing container as a user sees it through kubectl, on a node that joined
// the cluster (node 2): restartCount rises, the pod shows CrashLoopBackOff while
// it waits, the waits grow (Kubernetes' back-off: 10 s, 20 s, ...) as the status
// timestamps show, and the back-off is in the pod's events. A container under
// restartPolicy OnFailure that exits 0 completes and is not restarted.
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <ctime>
#include <filesystem>
#include <map>
#include <set>

namespace fs = std::filesystem;
using namespace ferry::e2e;
using namespace std::chrono_literals;
using Json = nlohmann::json;

namespace {

constexpr const char* kPods = R"(apiVersion: v1
kind: Pod
metadata:
  name: crash
spec:
  nodeSelector: {kubernetes.io/hostname: node-2}
  containers:
  - name: crash
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: ["sh", "-c", "echo started; sleep 2; exit 1"]
---
apiVersion: v1
kind: Pod
metadata:
  name: once
spec:
  nodeSelector: {kubernetes.io/hostname: node-2}
  restartPolicy: OnFailure
  containers:
  - name: once
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: ["sh", "-c", "sleep 1; exit 0"]
)";

// RFC 3339 "2026-01-02T03:04:05Z" → seconds since the epoch, -1 if unparsable.
long long epochSeconds(const std::string& text) {
  std::tm tm{};
  if (text.empty() || strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm) == nullptr) return -1;
  return static_cast<long long>(timegm(&tm));
}

std::string stringAt(const Json& j, const Json::json_pointer& p) {
  return j.contains(p) && j[p].is_string() ? j[p].get<std::string>() : "";
}

}  // namespace

TEST(CrashRestart, BackOffGrowsAndOnFailureCompletes) {
  if (auto reason = e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  ClusterOptions options;
  options.nodes = 2;
  Cluster cluster(options);
  ASSERT_EQ(cluster.start(), "");
  ASSERT_EQ(cluster.importBusybox(), "");

  auto applied = cluster.kubectl("apply -f -", 60s, kPods);
  ASSERT_EQ(applied.exitCode, 0) << applied.output;

  // Every run of the crashing container seen in its status: startedAt → finishedAt
  // (from state.running, state.terminated and lastState.terminated).
  std::map<long long, long long> runs;
  std::set<int> restartCounts;
  bool sawBackOffInTable = false, sawBackOffInStatus = false;
  std::string lastStatus;
  auto observe = [&] {
    auto r = cluster.kubectl("get pod crash -o json", 20s);
    if (r.exitCode != 0) return;
    Json pod = Json::parse(r.output, nullptr, false);
    if (pod.is_discarded()) return;
    const Json::json_pointer statusPath("/status/containerStatuses/0");
    if (!pod.contains(statusPath)) return;
    const Json& cs = pod[statusPath];
    lastStatus = cs.dump();
    restartCounts.insert(cs.value("restartCount", 0));
    if (stringAt(cs, Json::json_pointer("/state/waiting/reason")) == "CrashLoopBackOff") sawBackOffInStatus = true;
    for (const char* path : {"/state/terminated", "/lastState/terminated"}) {
      Json::json_pointer p(path);
      if (!cs.contains(p)) continue;
      long long started = epochSeconds(cs[p].value("startedAt", ""));
      long long finished = epochSeconds(cs[p].value("finishedAt", ""));
      if (started < 0 || finished < 0) continue;
      // A run first seen running is the same run (its start, give or take a second).
      for (long long s = started - 1; s <= started + 1; ++s)
        if (auto it = runs.find(s); it != runs.end() && it->second < 0) runs.erase(it);
      runs[started] = finished;
    }
    long long running = epochSeconds(stringAt(cs, Json::json_pointer("/state/running/startedAt")));
    if (running >= 0 && !runs.count(running - 1) && !runs.count(running + 1)) runs.try_emplace(running, -1);
    auto table = cluster.kubectl("get pod crash --no-headers", 20s);
    if (table.output.find("CrashLoopBackOff") != std::string::npos) sawBackOffInTable = true;
  };
  // Wait until the fourth run has started: the waits before runs 2, 3 and 4 are known.
  auto gaps = [&] {
    std::vector<long long> g;
    for (auto it = runs.begin(); it != runs.end() && std::next(it) != runs.end(); ++it)
      if (it->second >= 0) g.push_back(std::next(it)->first - it->second);
    return g;
  };
  bool enough = waitFor([&] {
    observe();
    return runs.size() >= 4 && gaps().size() >= 3 && sawBackOffInTable;
  }, 150s);
  std::string runText;
  for (const auto& [s, f] : runs) runText += std::to_string(s) + " -> " + std::to_string(f) + "\n";
  ASSERT_TRUE(enough) << "runs seen:\n" << runText << "last status: " << lastStatus << "\n"
                      << cluster.kubectl("describe pod crash").output;

  // restartCount rose one by one up to at least 3.
  EXPECT_GE(*restartCounts.rbegin(), 3) << lastStatus;
  EXPECT_TRUE(sawBackOffInStatus) << lastStatus;
  EXPECT_TRUE(sawBackOffInTable);
  // Waits: about 0, 10, 20 s (second-precision timestamps): each later wait is longer.
  auto g = gaps();
  ASSERT_GE(g.size(), 3u) << runText;
  EXPECT_GE(g[1], 5) << runText;
  EXPECT_GT(g[2], g[1] + 5) << runText;
  EXPECT_GT(g[1], g[0]) << runText;
  // The restarted container ran again (its output is logged once per run).
  auto crashLog = cluster.podOutput(2, "crash");
  size_t starts = 0;
  for (size_t pos = 0; (pos = crashLog.find("started", pos)) != std::string::npos; ++pos) ++starts;
  EXPECT_GE(starts, 3u) << crashLog;

  auto events = cluster.kubectl("get events --field-selector involvedObject.name=crash");
  EXPECT_NE(events.output.find("Back-off restarting failed container"), std::string::npos) << events.output;

  // OnFailure + exit 0: Succeeded, Completed, never restarted.
  bool completed = waitFor([&] {
    return cluster.kubectl("get pod once -o jsonpath={.status.phase}").output == "Succeeded";
  }, 60s);
  ASSERT_TRUE(completed) << cluster.kubectl("get pod once -o yaml").output;
  auto once = Json::parse(cluster.kubectl("get pod once -o json").output, nullptr, false);
  ASSERT_FALSE(once.is_discarded());
  const Json& cs = once["status"]["containerStatuses"][0];
  EXPECT_EQ(cs.value("restartCount", -1), 0) << cs.dump();
  EXPECT_EQ(stringAt(cs, Json::json_pointer("/state/terminated/reason")), "Completed") << cs.dump();
  EXPECT_EQ(cs["state"]["terminated"].value("exitCode", -1), 0) << cs.dump();
  EXPECT_EQ(cluster.kubectl("get pod once -o jsonpath={.spec.nodeName}").output, "node-2");
}
