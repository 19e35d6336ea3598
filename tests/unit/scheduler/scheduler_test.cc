#include "controlplane-lite/scheduler/scheduler.h"
#include "controlplane-lite/controllers/controller_util.h"
#include "tests/unit/controllers/fake_object_client.h"
#include "tests/unit/controllers/test_objects.h"

#include <gtest/gtest.h>

using namespace ferry;
using namespace ferry::cp;
using namespace ferry::cp::testing;

namespace {

struct SchedulerFixture : ::testing::Test {
  FakeObjectClient client;
  InformerSet informers{client};
  EventRecorder events{client, "test"};
  ControllerContext context{client, informers, events, ServerConfig{}};
  std::unique_ptr<Scheduler> scheduler;

  void start() {
    scheduler = std::make_unique<Scheduler>(context);
    events.start();
    informers.start();
    ASSERT_TRUE(informers.waitForSync(std::chrono::seconds(5)));
    scheduler->start();
  }
  void TearDown() override {
    if (scheduler) scheduler->stop();
    informers.stop();
    events.stop();
  }
  std::string nodeOf(const std::string& pod) {
    auto p = client.get("pods", "default", pod);
    return p ? api::at<std::string>(*p, {"spec", "nodeName"}) : "";
  }
  bool hasEvent(const std::string& reason) {
    for (const auto& e : client.all("events"))
      if (e.value("reason", "") == reason) return true;
    return false;
  }
};

}  // namespace

TEST_F(SchedulerFixture, BindsPendingPodsAndRecordsScheduled) {
  ASSERT_TRUE(client.create("nodes", makeNode("node-a")));
  ASSERT_TRUE(client.create("pods", makePod("early")));  // exists before the scheduler starts
  start();
  ASSERT_TRUE(client.create("pods", makePod("late")));
  EXPECT_TRUE(eventually([&] { return nodeOf("early") == "node-a" && nodeOf("late") == "node-a"; }));
  EXPECT_TRUE(eventually([&] { return hasEvent("Scheduled"); }));
}

TEST_F(SchedulerFixture, UnschedulablePodWaitsThenFitsWhenANodeArrives) {
  ASSERT_TRUE(client.create("nodes", makeNode("small", "1", "256Mi")));
  start();
  ASSERT_TRUE(client.create("pods", makePod("big", "100m", "1Gi")));
  ASSERT_TRUE(eventually([&] {
    auto p = client.get("pods", "default", "big");
    api::Json c = conditionOf(*p, "PodScheduled");
    return c.is_object() && c.value("reason", "") == "Unschedulable" &&
           c.value("message", "") == "0/1 nodes are available: 1 Insufficient memory.";
  }));
  EXPECT_TRUE(eventually([&] { return hasEvent("FailedScheduling"); }));
  // No hot loop: while nothing changes, the pod is not retried.
  int writesBefore = client.writes("pods");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(client.writes("pods"), writesBefore);
  EXPECT_EQ(nodeOf("big"), "");

  ASSERT_TRUE(client.create("nodes", makeNode("large", "4", "8Gi")));
  EXPECT_TRUE(eventually([&] { return nodeOf("big") == "large"; }));
}

TEST_F(SchedulerFixture, FreedResourcesRetryUnschedulablePods) {
  ASSERT_TRUE(client.create("nodes", makeNode("n", "1", "8Gi")));
  start();
  ASSERT_TRUE(client.create("pods", makePod("first", "800m")));
  ASSERT_TRUE(eventually([&] { return nodeOf("first") == "n"; }));
  ASSERT_TRUE(client.create("pods", makePod("second", "800m")));
  ASSERT_TRUE(eventually([&] { return hasEvent("FailedScheduling"); }));
  EXPECT_EQ(nodeOf("second"), "");
  DeleteOptions now;
  now.gracePeriodSeconds = 0;
  ASSERT_TRUE(client.remove("pods", "default", "first", now));
  EXPECT_TRUE(eventually([&] { return nodeOf("second") == "n"; }));
}
