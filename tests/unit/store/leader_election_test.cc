// LeaderElector on both backends: one leader at a time, takeover after a crash, hand-over on stop.
#include "controlplane-lite/leader_election.h"
#include "tests/unit/store/store_backends.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <thread>

namespace ferry::cp::testing {
namespace {

using namespace std::chrono_literals;

constexpr const char* kKey = "/registry/leases/kube-system/ferry-controllers";

LeaderElectionOptions fastOptions(bool releaseOnStop = true) {
  LeaderElectionOptions options;
  options.ttl = 3000ms;  // renewals every 200 ms: a loaded CI machine never misses 15 in a row
  options.retry = 200ms;
  options.releaseOnStop = releaseOnStop;
  return options;
}

bool waitUntil(const std::function<bool()>& condition, std::chrono::seconds deadline = 30s) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (condition()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return condition();
}

class LeaderElection : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    backend_ = makeBackend(GetParam());
    if (auto reason = backend_->unavailable(); !reason.empty()) GTEST_SKIP() << reason;
    auto opened = backend_->open();
    ASSERT_TRUE(opened) << opened.error().message;
    store_ = std::move(*opened);
  }
  void TearDown() override {
    store_.reset();
    backend_.reset();
  }
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Store> store_;
};

TEST_P(LeaderElection, OneLeaderAtATimeAndTakeoverWhenTheLeaderDies) {
  auto first = std::make_unique<LeaderElector>(*store_, kKey, "server-a", fastOptions(/*releaseOnStop=*/false));
  LeaderElector second(*store_, kKey, "server-b", fastOptions());
  first->start();
  ASSERT_TRUE(waitUntil([&] { return first->isLeader(); })) << "the first candidate never led";
  second.start();

  // Several renew periods: the first keeps leading, never both at once.
  auto until = std::chrono::steady_clock::now() + 2s;
  while (std::chrono::steady_clock::now() < until) {
    // Ask the candidate first: if it leads now, the old leader's term ended before,
    // so a later "true" from the old leader would be a real overlap.
    bool candidateLeads = second.isLeader();
    ASSERT_FALSE(candidateLeads && first->isLeader()) << "two leaders";
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(first->isLeader());
  EXPECT_FALSE(second.isLeader());
  EXPECT_EQ(second.leader(), "server-a");

  // "Crash" the leader: its thread stops without releasing the record.
  first->stop();
  EXPECT_FALSE(first->isLeader());
  ASSERT_TRUE(waitUntil([&] { return second.isLeader(); })) << "no takeover";
  auto record = store_->get(kKey);
  ASSERT_TRUE(record);
  auto lease = nlohmann::json::parse(record->value);
  EXPECT_EQ(lease["kind"], "Lease");
  EXPECT_EQ(lease["metadata"]["namespace"], "kube-system");
  EXPECT_EQ(lease["metadata"]["name"], "ferry-controllers");
  EXPECT_EQ(lease["spec"]["holderIdentity"], "server-b");
  EXPECT_GE(lease["spec"].value("leaseTransitions", 0), 1);
}

TEST_P(LeaderElection, AStoppingLeaderHandsOverAndCallbacksFire) {
  std::atomic<int> started{0}, stopped{0};
  auto options = fastOptions();
  options.ttl = 60s;  // a takeover by expiry would take a minute: only the release explains a quick one
  options.onStartedLeading = [&] { ++started; };
  options.onStoppedLeading = [&] { ++stopped; };
  LeaderElector first(*store_, kKey, "server-a", options);
  first.start();
  ASSERT_TRUE(waitUntil([&] { return first.isLeader(); }));
  auto secondOptions = fastOptions();
  secondOptions.ttl = 60s;
  LeaderElector second(*store_, kKey, "server-b", secondOptions);
  second.start();
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(second.isLeader());
  first.stop();
  EXPECT_EQ(started.load(), 1);
  EXPECT_EQ(stopped.load(), 1);
  ASSERT_TRUE(waitUntil([&] { return second.isLeader(); }, 20s)) << "no hand-over after release";
}

INSTANTIATE_TEST_SUITE_P(Backends, LeaderElection, ::testing::ValuesIn(backendNames()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace ferry::cp::testing
