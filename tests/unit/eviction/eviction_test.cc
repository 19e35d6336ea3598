// Eviction logic on fake node stats: thresholds, signals, the kubelet's ranking and message.
#include "agent/core/eviction.h"

#include "agent/agent_config.h"

#include <gtest/gtest.h>

using namespace ferry;
using namespace ferry::agent;

namespace {

constexpr std::int64_t Mi = 1024 * 1024;

PodUsage pod(const std::string& name, std::int64_t request, std::int64_t usage, std::int64_t priority = 0) {
  PodUsage p;
  p.uid = "uid-" + name;
  p.ns = "default";
  p.name = name;
  p.memoryRequest = request;
  p.memoryUsage = usage;
  p.priority = priority;
  p.containers.push_back({"c", request, usage, 0, 0});
  return p;
}

std::vector<std::string> names(const std::vector<PodUsage>& pods) {
  std::vector<std::string> out;
  for (const auto& p : pods) out.push_back(p.name);
  return out;
}

}  // namespace

TEST(EvictionThresholds, ParsesTheKubeletDefaults) {
  auto t = parseEvictionThresholds(AgentConfig{}.evictionHard);
  ASSERT_TRUE(t) << t.error().message;
  ASSERT_EQ(t->size(), 4u);  // three given + memory.available copied to allocatableMemory.available
  EXPECT_EQ((*t)[0].signal, EvictionSignal::MemoryAvailable);
  EXPECT_EQ((*t)[0].quantity, 100 * Mi);
  EXPECT_EQ((*t)[1].signal, EvictionSignal::NodeFsAvailable);
  EXPECT_DOUBLE_EQ((*t)[1].percentage, 0.10);
  EXPECT_EQ((*t)[2].signal, EvictionSignal::NodeFsInodesFree);
  EXPECT_DOUBLE_EQ((*t)[2].percentage, 0.05);
  EXPECT_EQ((*t)[3].signal, EvictionSignal::AllocatableMemoryAvailable);
  EXPECT_EQ((*t)[3].quantity, 100 * Mi);
}

TEST(EvictionThresholds, ExplicitAllocatableThresholdIsNotOverwritten) {
  auto t = parseEvictionThresholds("memory.available<1Gi, allocatableMemory.available<200Mi");
  ASSERT_TRUE(t) << t.error().message;
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[1].quantity, 200 * Mi);
  auto none = parseEvictionThresholds("");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
}

TEST(EvictionThresholds, BadStatementsAreNamed) {
  auto unknown = parseEvictionThresholds("memory.free<100Mi");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("unknown signal \"memory.free\""), std::string::npos) << unknown.error().message;
  auto op = parseEvictionThresholds("memory.available>100Mi");
  ASSERT_FALSE(op);
  EXPECT_NE(op.error().message.find("memory.available>100Mi"), std::string::npos);
  EXPECT_FALSE(parseEvictionThresholds("nodefs.available<150%"));
  EXPECT_FALSE(parseEvictionThresholds("nodefs.available<abc%"));
  EXPECT_FALSE(parseEvictionThresholds("memory.available<lots"));
  EXPECT_FALSE(parseEvictionThresholds("memory.available<-1Mi"));
  EXPECT_FALSE(parseEvictionThresholds("memory.available<1Mi,memory.available<2Mi"));
}

TEST(EvictionThresholds, Durations) {
  EXPECT_EQ(*parseDurationSeconds("5m"), std::chrono::seconds(300));
  EXPECT_EQ(*parseDurationSeconds("1m30s"), std::chrono::seconds(90));
  EXPECT_EQ(*parseDurationSeconds("2h"), std::chrono::seconds(7200));
  EXPECT_FALSE(parseDurationSeconds("5"));
  EXPECT_FALSE(parseDurationSeconds("5x"));
  EXPECT_FALSE(parseDurationSeconds(""));
  EXPECT_EQ(reservedMemoryBytes("cpu=100m,memory=256Mi"), 256 * Mi);
  EXPECT_EQ(reservedMemoryBytes("cpu=1"), 0);
}

TEST(EvictionSignals, MemoryAvailableIsCapacityMinusWorkingSetFromMeminfo) {
  // available = MemFree + Inactive(file): not MemAvailable, which also counts slab and active file.
  const char* meminfo =
      "MemTotal:        8000000 kB\nMemFree:         1000000 kB\nMemAvailable:    5000000 kB\n"
      "Buffers:           10000 kB\nCached:          3000000 kB\nActive(file):    1500000 kB\n"
      "Inactive(file):   500000 kB\n";
  auto m = nodeMemoryFromMeminfo(meminfo);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->capacityBytes, 8000000LL * 1024);
  EXPECT_EQ(m->workingSetBytes, (8000000LL - 1000000 - 500000) * 1024);
  NodeObservation o;
  o.memoryCapacityBytes = m->capacityBytes;
  o.memoryWorkingSetBytes = m->workingSetBytes;
  o.allocatableMemoryBytes = 4000 * Mi;
  o.podsWorkingSetBytes = 3950 * Mi;
  o.fsCapacityBytes = 1000 * Mi;
  o.fsAvailableBytes = 50 * Mi;
  o.inodes = 1000;
  o.inodesFree = 900;
  auto s = signalsOf(o);
  EXPECT_EQ(s[EvictionSignal::MemoryAvailable].available, 1500000LL * 1024);
  EXPECT_EQ(s[EvictionSignal::AllocatableMemoryAvailable].available, 50 * Mi);
  EXPECT_EQ(s[EvictionSignal::NodeFsAvailable].available, 50 * Mi);
  EXPECT_EQ(s[EvictionSignal::NodeFsInodesFree].available, 900);
  EXPECT_FALSE(nodeMemoryFromMeminfo("MemTotal: 1 kB\n"));
}

TEST(EvictionSignals, ThresholdsMetMemoryFirst) {
  auto t = parseEvictionThresholds("nodefs.available<10%,memory.available<100Mi,nodefs.inodesFree<5%");
  ASSERT_TRUE(t);
  NodeObservation o;
  o.memoryCapacityBytes = 1000 * Mi;
  o.memoryWorkingSetBytes = 950 * Mi;   // 50Mi available: met
  o.allocatableMemoryBytes = 1000 * Mi;
  o.podsWorkingSetBytes = 100 * Mi;     // 900Mi available: not met
  o.fsCapacityBytes = 1000 * Mi;
  o.fsAvailableBytes = 99 * Mi;         // under 10% (100Mi): met
  o.inodes = 1000;
  o.inodesFree = 50;                    // 5% is 50: not below it
  auto met = thresholdsMet(*t, signalsOf(o));
  ASSERT_EQ(met.size(), 2u);
  EXPECT_EQ(met[0].threshold.signal, EvictionSignal::MemoryAvailable);
  EXPECT_EQ(met[0].thresholdValue, 100 * Mi);
  EXPECT_EQ(met[0].available, 50 * Mi);
  EXPECT_EQ(met[1].threshold.signal, EvictionSignal::NodeFsAvailable);
  EXPECT_EQ(met[1].thresholdValue, 100 * Mi);
  o.memoryWorkingSetBytes = 100 * Mi;
  o.fsAvailableBytes = 500 * Mi;
  EXPECT_TRUE(thresholdsMet(*t, signalsOf(o)).empty());
}

TEST(EvictionRanking, OverRequestsFirstThenPriorityThenUsageAboveRequest) {
  std::vector<PodUsage> pods = {
      pod("guaranteed", 64 * Mi, 60 * Mi),            // under its request
      pod("besteffort-small", 0, 10 * Mi),            // over (requests nothing)
      pod("burstable-over", 100 * Mi, 400 * Mi),      // 300Mi above request
      pod("besteffort-big", 0, 200 * Mi),             // 200Mi above
      pod("besteffort-important", 0, 500 * Mi, 1000), // over, but higher priority
      pod("critical", 0, 900 * Mi, kSystemCriticalPriority),
      pod("burstable-under", 100 * Mi, 20 * Mi, -5),  // under request, lowest priority
  };
  auto ranked = rankForEviction(pods, EvictionResource::Memory);
  EXPECT_EQ(names(ranked), (std::vector<std::string>{"burstable-over", "besteffort-big", "besteffort-small",
                                                     "besteffort-important", "burstable-under", "guaranteed"}));
}

TEST(EvictionRanking, DiskRanksByStorage) {
  PodUsage a = pod("a", 0, 900 * Mi), b = pod("b", 0, 0), c = pod("c", 0, 0);
  a.storageUsage = 1 * Mi;
  b.storageUsage = 500 * Mi;
  c.storageRequest = 1000 * Mi;
  c.storageUsage = 600 * Mi;  // within its request
  auto ranked = rankForEviction({a, b, c}, EvictionResource::EphemeralStorage);
  EXPECT_EQ(names(ranked), (std::vector<std::string>{"b", "a", "c"}));
}

TEST(EvictionMessage, NamesResourceThresholdAndContainersOverRequest) {
  ThresholdMet met{{EvictionSignal::MemoryAvailable, 100 * Mi, 0}, 100 * Mi, 50 * Mi};
  PodUsage p = pod("hog", 0, 300 * Mi);
  p.containers.push_back({"sidecar", 64 * Mi, 10 * Mi, 0, 0});  // under its request: not named
  p.containers[0].name = "hog";
  EXPECT_EQ(evictionMessage(met, p),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
            "Container hog was using 300Mi, request is 0, has larger consumption of memory. ");
  ThresholdMet disk{{EvictionSignal::NodeFsAvailable, 0, 0.1}, 1024 * 1024 * 1024, 1000 * 1000};
  EXPECT_EQ(evictionMessage(disk, pod("x", 0, 0)).rfind("The node was low on resource: ephemeral-storage. "
                                                        "Threshold quantity: 1Gi, available: ", 0),
            0u);
}

TEST(EvictionSkeleton, RequestsDefaultToLimitsAndPriorityIsRead) {
  api::Json p = api::Json::parse(R"({
    "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
    "spec": {"priority": 7, "containers": [
      {"name": "a", "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "128Mi"}}},
      {"name": "b", "resources": {"limits": {"memory": "32Mi", "ephemeral-storage": "1Gi"}}},
      {"name": "c"}]}})");
  PodUsage u = podUsageSkeleton(p);
  EXPECT_EQ(u.uid, "u1");
  EXPECT_EQ(u.priority, 7);
  EXPECT_EQ(u.memoryRequest, 96 * Mi);
  EXPECT_EQ(u.storageRequest, 1024 * Mi);
  ASSERT_EQ(u.containers.size(), 3u);
  EXPECT_EQ(u.containers[1].memoryRequest, 32 * Mi);
  EXPECT_EQ(u.containers[2].memoryRequest, 0);
}
