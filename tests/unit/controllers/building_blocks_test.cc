#include "controlplane-lite/controllers/controller_util.h"
#include "controlplane-lite/controllers/informer.h"
#include "controlplane-lite/controllers/work_queue.h"
#include "fake_object_client.h"
#include "test_objects.h"

#include <gtest/gtest.h>

#include <atomic>

using namespace ferry;
using namespace ferry::cp;
using namespace ferry::cp::testing;

TEST(WorkQueue, DeduplicatesAndNeverHandsAKeyToTwoWorkers) {
  WorkQueue q;
  q.add("a");
  q.add("a");
  q.add("b");
  EXPECT_EQ(q.length(), 2u);
  auto first = q.get();
  ASSERT_EQ(*first, "a");
  q.add("a");  // while processing: comes back only after done
  auto second = q.get();
  EXPECT_EQ(*second, "b");
  EXPECT_EQ(q.length(), 0u);
  q.done("a");
  EXPECT_EQ(q.length(), 1u);
  EXPECT_EQ(*q.get(), "a");
}

TEST(WorkQueue, RateLimitedRetriesBackOff) {
  WorkQueue q(std::chrono::milliseconds(50), std::chrono::milliseconds(1000));
  q.addRateLimited("k");
  q.addRateLimited("k");
  EXPECT_EQ(q.failures("k"), 2);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(*q.get(), "k");
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(40));
  q.forget("k");
  EXPECT_EQ(q.failures("k"), 0);
  q.shutdown();
  EXPECT_FALSE(q.get().has_value());
}

TEST(Informer, ListsWatchesAndCallsHandlers) {
  FakeObjectClient client;
  ASSERT_TRUE(client.create("pods", makePod("before")));
  Informer informer(client, "pods");
  std::atomic<int> adds{0}, updates{0}, deletes{0};
  informer.addHandlers({[&](const ObjectPtr&) { adds++; }, [&](const ObjectPtr&, const ObjectPtr&) { updates++; },
                        [&](const ObjectPtr&) { deletes++; }});
  informer.start();
  ASSERT_TRUE(informer.waitForSync(std::chrono::seconds(5)));
  EXPECT_EQ(adds.load(), 1);
  ASSERT_TRUE(client.create("pods", makePod("after")));
  ASSERT_TRUE(client.mutate("pods", "default", "after", [](api::Json& p) { p["status"]["phase"] = "Running"; }));
  ASSERT_TRUE(client.remove("pods", "default", "before"));
  EXPECT_TRUE(eventually([&] { return adds == 2 && updates == 1 && deletes == 1; }));
  EXPECT_EQ(informer.list("default").size(), 1u);
  EXPECT_EQ(api::at<std::string>(*informer.get("default", "after"), {"status", "phase"}), "Running");
  EXPECT_EQ(informer.list("other").size(), 0u);
  informer.stop();
}

TEST(Informer, AssumedWritesAreNotOverwrittenByOlderEvents) {
  FakeObjectClient client;
  Informer informer(client, "pods");
  informer.start();
  ASSERT_TRUE(informer.waitForSync(std::chrono::seconds(5)));
  api::Json pod = makePod("p");
  pod["metadata"]["resourceVersion"] = "999999";
  informer.assume(pod);
  ASSERT_TRUE(client.create("pods", makePod("p")));  // its event carries a lower resourceVersion
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(api::resourceVersionOf(*informer.get("default", "p")), "999999");
  informer.stop();
}

TEST(Selectors, LabelSelectorExpressions) {
  api::Json sel = {{"matchLabels", {{"app", "web"}}},
                   {"matchExpressions", {{{"key", "tier"}, {"operator", "In"}, {"values", {"a", "b"}}},
                                         {{"key", "canary"}, {"operator", "DoesNotExist"}}}}};
  EXPECT_TRUE(labelSelectorMatches(sel, {{"app", "web"}, {"tier", "a"}}));
  EXPECT_FALSE(labelSelectorMatches(sel, {{"app", "web"}, {"tier", "c"}}));
  EXPECT_FALSE(labelSelectorMatches(sel, {{"app", "web"}, {"tier", "a"}, {"canary", "1"}}));
  EXPECT_TRUE(labelSelectorMatches(api::Json::object(), {}));
  EXPECT_FALSE(labelSelectorMatches(api::Json(), {{"a", "b"}}));
}
