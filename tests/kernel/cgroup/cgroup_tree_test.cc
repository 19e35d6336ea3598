// Kernel tier: a cgroup tree under a root of the test's own (ferry-test-<random>) on
// every hierarchy; limits enforced by the kernel, stats, kill and removal.
#include "cgroup/cgroup_tree.h"
#include "tests/kernel/cgroup/test_process.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

namespace ferry::cgroup {
namespace {

std::string readText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class CgroupTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (cgroupfs)";
    root_ = "ferry-test-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}() % 100000);
    auto tree = CgroupTree::open(root_);
    ASSERT_TRUE(tree) << tree.error().message;
    tree_ = std::move(*tree);
  }
  void TearDown() override {
    if (tree_) {
      Status s = tree_->destroy();
      EXPECT_TRUE(s) << (s ? "" : s.error().message);
      for (const char* h : {"memory", "cpu", "cpuacct", "pids", "unified", ""}) {
        EXPECT_FALSE(std::filesystem::exists(std::string("/sys/fs/cgroup/") + h + "/" + root_)) << h;
      }
    }
  }
  std::string root_;
  std::unique_ptr<CgroupTree> tree_;
};

TEST_F(CgroupTreeTest, LayoutFollowsQosAndLimitsAreWritten) {
  Limits podLimits{.cpuLimitMilli = 500, .cpuRequestMilli = 250, .memoryLimitBytes = 128 << 20, .pidsMax = 100};
  auto pod = tree_->createPod("uid-1", QosClass::Burstable, podLimits);
  ASSERT_TRUE(pod) << pod.error().message;
  EXPECT_EQ(*pod, "burstable/poduid-1");
  auto guaranteed = tree_->createPod("uid-2", QosClass::Guaranteed, {});
  ASSERT_TRUE(guaranteed);
  EXPECT_EQ(*guaranteed, "poduid-2");
  auto container = tree_->createContainer(*pod, "app", {.cpuLimitMilli = 250, .memoryLimitBytes = 64 << 20});
  ASSERT_TRUE(container) << container.error().message;
  EXPECT_EQ(*container, "burstable/poduid-1/app");
  EXPECT_FALSE(tree_->createContainer(*pod, "../escape", {}));
  EXPECT_FALSE(tree_->createContainer("../x", "app", {}));
  EXPECT_FALSE(tree_->createContainer("burstable/podnope", "app", {}));

  if (tree_->mode() == CgroupMode::Hybrid) {
    std::string cpu = "/sys/fs/cgroup/cpu/" + root_ + "/" + *pod;
    EXPECT_EQ(readText(cpu + "/cpu.cfs_quota_us"), "50000\n");
    EXPECT_EQ(readText(cpu + "/cpu.shares"), "256\n");
    EXPECT_EQ(readText("/sys/fs/cgroup/memory/" + root_ + "/" + *container + "/memory.limit_in_bytes"),
              std::to_string(64 << 20) + "\n");
    EXPECT_EQ(readText("/sys/fs/cgroup/pids/" + root_ + "/" + *pod + "/pids.max"), "100\n");
    EXPECT_TRUE(std::filesystem::is_directory("/sys/fs/cgroup/unified/" + root_ + "/" + *container));
  } else {
    std::string d = "/sys/fs/cgroup/" + root_ + "/" + *pod;
    EXPECT_EQ(readText(d + "/cpu.max"), "50000 100000\n");
    EXPECT_EQ(readText(d + "/cpu.weight"), std::to_string(cpuWeightFromShares(256)) + "\n");
    EXPECT_EQ(readText(d + "/pids.max"), "100\n");
  }
  auto uids = tree_->listPodUids();
  ASSERT_TRUE(uids);
  EXPECT_EQ(uids->size(), 2u);

  ASSERT_TRUE(tree_->remove(*pod));
  ASSERT_TRUE(tree_->remove(*pod)) << "missing is fine";
  for (const std::string& file : tree_->procsFiles(*pod)) EXPECT_FALSE(std::filesystem::exists(file));
  uids = tree_->listPodUids();
  ASSERT_TRUE(uids);
  EXPECT_EQ(uids->size(), 1u);
}

TEST_F(CgroupTreeTest, AttachJoinsEveryHierarchyAndRemoveKillsLeftovers) {
  auto pod = tree_->createPod("uid-3", QosClass::BestEffort, {});
  ASSERT_TRUE(pod);
  auto container = tree_->createContainer(*pod, "sleeper", {});
  ASSERT_TRUE(container);
  ferry::testing::ParkedChild child([] {
    for (;;) ::pause();
  });
  ASSERT_TRUE(tree_->attach(*container, child.pid()));
  child.release();
  std::string membership = readText("/proc/" + std::to_string(child.pid()) + "/cgroup");
  if (tree_->mode() == CgroupMode::Hybrid) {
    EXPECT_NE(membership.find("memory:/" + root_ + "/" + *container), std::string::npos) << membership;
    EXPECT_NE(membership.find("0::/" + root_ + "/" + *container), std::string::npos) << membership;
  }
  auto pids = tree_->processes(*pod);
  ASSERT_TRUE(pids);
  ASSERT_EQ(pids->size(), 1u);
  EXPECT_EQ((*pids)[0], child.pid());

  ASSERT_TRUE(tree_->remove(*pod));
  int status = child.wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

TEST_F(CgroupTreeTest, MemoryLimitOomKills) {
  auto pod = tree_->createPod("uid-4", QosClass::Burstable, {.memoryLimitBytes = 64 << 20});
  ASSERT_TRUE(pod);
  auto container = tree_->createContainer(*pod, "hog", {.memoryLimitBytes = 64 << 20});
  ASSERT_TRUE(container);
  auto before = tree_->stats(*container);
  ASSERT_TRUE(before) << before.error().message;
  ferry::testing::ParkedChild child([] {
    size_t size = 200u << 20;
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) ::_exit(3);
    std::memset(p, 0x5a, size);
    ::_exit(0);
  });
  ASSERT_TRUE(tree_->attach(*container, child.pid()));
  child.release();
  int status = child.wait();
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  auto after = tree_->stats(*container);
  ASSERT_TRUE(after);
  // Not exactly +1: on v2 a container's OOM kill takes its whole group (memory.oom.group),
  // and the kernel counts the victim once more as a member of that group.
  EXPECT_GT(after->oomKills, before->oomKills);
}

TEST_F(CgroupTreeTest, CpuLimitThrottlesToQuarterCore) {
  auto pod = tree_->createPod("uid-5", QosClass::Guaranteed, {.cpuLimitMilli = 250, .cpuRequestMilli = 250});
  ASSERT_TRUE(pod);
  auto container = tree_->createContainer(*pod, "spin", {.cpuLimitMilli = 250, .cpuRequestMilli = 250});
  ASSERT_TRUE(container);
  ferry::testing::ParkedChild child([] {
    volatile unsigned long n = 0;
    for (;;) n = n + 1;
  });
  ASSERT_TRUE(tree_->attach(*container, child.pid()));
  child.release();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // past the first period's burst
  auto start = tree_->stats(*container);
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(5));
  auto end = tree_->stats(*container);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(start && end);
  double cpus = (end->cpuUsageNs - start->cpuUsageNs) / 1e9 / seconds;
  uint64_t periods = end->cpuPeriods - start->cpuPeriods;
  uint64_t throttled = end->cpuThrottledPeriods - start->cpuThrottledPeriods;
  EXPECT_LE(cpus, 0.30) << "the quota caps usage (measured from the cgroup's own counters)";
  EXPECT_GT(periods, 0u);
  if (cpus < 0.20 && throttled * 10 < periods * 8) {
    ASSERT_TRUE(tree_->killAll(*pod));
    child.wait();
    GTEST_SKIP() << "the machine's other load starved the busy loop (" << cpus << " CPU, throttled in only "
                 << throttled << " of " << periods << " periods): the lower bound cannot be checked here";
  }
  EXPECT_NEAR(cpus, 0.25, 0.05) << "measured from the cgroup's own counters";
  ASSERT_TRUE(tree_->killAll(*pod));
  child.wait();
}

TEST_F(CgroupTreeTest, FreezeStopsAndThawResumes) {
  if (tree_->unifiedDirectory("").empty()) GTEST_SKIP() << "no cgroup v2 tree on this host";
  auto pod = tree_->createPod("uid-7", QosClass::BestEffort, {});
  ASSERT_TRUE(pod);
  auto container = tree_->createContainer(*pod, "spin", {});
  ASSERT_TRUE(container);
  ferry::testing::ParkedChild child([] {
    volatile unsigned long n = 0;
    for (;;) n = n + 1;
  });
  ASSERT_TRUE(tree_->attach(*container, child.pid()));
  child.release();
  ASSERT_TRUE(tree_->freeze(*pod));
  std::string events = tree_->unifiedDirectory(*pod) + "/cgroup.events";
  bool frozen = false;
  for (int i = 0; i < 500 && !frozen; ++i) {
    frozen = readText(events).find("frozen 1") != std::string::npos;
    if (!frozen) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(frozen) << readText(events);
  auto a = tree_->stats(*container);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto b = tree_->stats(*container);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->cpuUsageNs, b->cpuUsageNs) << "a frozen cgroup uses no CPU";
  ASSERT_TRUE(tree_->thaw(*pod));
  uint64_t after = b->cpuUsageNs;
  for (int i = 0; i < 1000 && after == b->cpuUsageNs; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    auto c = tree_->stats(*container);
    ASSERT_TRUE(c);
    after = c->cpuUsageNs;
  }
  EXPECT_GT(after, b->cpuUsageNs) << "thawed, it runs again";
  ASSERT_TRUE(tree_->remove(*pod));
  int status = child.wait();
  EXPECT_TRUE(WIFSIGNALED(status));
}

TEST_F(CgroupTreeTest, WorkingSetIsReported) {
  auto pod = tree_->createPod("uid-6", QosClass::BestEffort, {});
  ASSERT_TRUE(pod);
  ferry::testing::ParkedChild child([] {
    size_t size = 32u << 20;
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    std::memset(p, 1, size);
    for (;;) ::pause();
  });
  auto container = tree_->createContainer(*pod, "c", {});
  ASSERT_TRUE(container);
  ASSERT_TRUE(tree_->attach(*container, child.pid()));
  child.release();
  uint64_t workingSet = 0;
  for (int i = 0; i < 200 && workingSet < (30u << 20); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto stats = tree_->stats(*container);
    ASSERT_TRUE(stats);
    workingSet = stats->memoryWorkingSetBytes;
  }
  EXPECT_GE(workingSet, 30u << 20);
  ASSERT_TRUE(tree_->remove(*pod));
}

}  // namespace
}  // namespace ferry::cgroup
