// The behaviour every Store backend must show; run against SQLite and etcd.
#include "controlplane-lite/sqlite_store.h"
#include "tests/unit/store/store_fixture.h"
#include "tests/unit/store/store_backends.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

namespace ferry::cp::testing {
namespace {

class StoreBehaviour : public ::testing::TestWithParam<std::string> {
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

TEST_P(StoreBehaviour, CreateGetUpdateRemoveAndTheirErrors) {
  auto created = store_->create("/registry/pods/default/a", "one");
  ASSERT_TRUE(created) << created.error().message;

  auto again = store_->create("/registry/pods/default/a", "two");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, EEXIST);

  auto got = store_->get("/registry/pods/default/a");
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->value, "one");
  EXPECT_EQ(got->createRevision, *created);
  EXPECT_EQ(got->modRevision, *created);

  auto stale = store_->update("/registry/pods/default/a", "two", *created - 1 > 0 ? *created - 1 : *created + 100);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ECANCELED);

  auto updated = store_->update("/registry/pods/default/a", "two", *created);
  ASSERT_TRUE(updated) << updated.error().message;
  EXPECT_GT(*updated, *created);
  got = store_->get("/registry/pods/default/a");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->value, "two");
  EXPECT_EQ(got->createRevision, *created);
  EXPECT_EQ(got->modRevision, *updated);

  auto unconditional = store_->update("/registry/pods/default/a", "three", 0);
  ASSERT_TRUE(unconditional) << unconditional.error().message;

  auto missing = store_->update("/registry/pods/default/nope", "x", 0);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT);
  auto missingGet = store_->get("/registry/pods/default/nope");
  ASSERT_FALSE(missingGet);
  EXPECT_EQ(missingGet.error().code, ENOENT);
  auto missingRemove = store_->remove("/registry/pods/default/nope", 0);
  ASSERT_FALSE(missingRemove);
  EXPECT_EQ(missingRemove.error().code, ENOENT);

  auto staleRemove = store_->remove("/registry/pods/default/a", *updated);
  ASSERT_FALSE(staleRemove);
  EXPECT_EQ(staleRemove.error().code, ECANCELED);
  auto removed = store_->remove("/registry/pods/default/a", *unconditional);
  ASSERT_TRUE(removed) << removed.error().message;
  EXPECT_GT(*removed, *unconditional);
  EXPECT_EQ(store_->get("/registry/pods/default/a").error().code, ENOENT);

  // A key can be created again after its deletion, with a new createRevision.
  auto recreated = store_->create("/registry/pods/default/a", "four");
  ASSERT_TRUE(recreated);
  EXPECT_EQ(store_->get("/registry/pods/default/a")->createRevision, *recreated);
}

TEST_P(StoreBehaviour, RevisionsIncreaseStrictlyAndRefusedWritesTakeNone) {
  auto start = store_->currentRevision();
  ASSERT_TRUE(start);
  std::int64_t last = *start;
  for (int i = 0; i < 20; ++i) {
    auto rev = store_->create("/r/" + std::to_string(i), "v");
    ASSERT_TRUE(rev);
    EXPECT_GT(*rev, last);
    last = *rev;
    ASSERT_FALSE(store_->create("/r/" + std::to_string(i), "v"));  // refused
  }
  EXPECT_EQ(*store_->currentRevision(), last);
  auto next = store_->update("/r/0", "w", 0);
  ASSERT_TRUE(next);
  EXPECT_EQ(*next, last + 1);
}

TEST_P(StoreBehaviour, ListPagesInKeyOrderWithinThePrefix) {
  std::set<std::string> expected;
  for (int i = 0; i < 25; ++i) {
    std::string key = fmt::format("/registry/configmaps/ns/cm-{:02}", i);
    ASSERT_TRUE(store_->create(key, "v" + std::to_string(i)));
    expected.insert(key);
  }
  ASSERT_TRUE(store_->create("/registry/configmaps/nt/other", "x"));    // sibling prefix
  ASSERT_TRUE(store_->create("/registry/configmaps/ns", "x"));          // the prefix without slash
  ASSERT_TRUE(store_->create("/registry/configmaps/ns/\xff", "x"));     // a high byte stays inside
  expected.insert("/registry/configmaps/ns/\xff");
  auto revision = store_->currentRevision();

  std::vector<std::string> seen;
  std::string after;
  int pages = 0;
  while (true) {
    auto page = store_->list("/registry/configmaps/ns/", after, 10);
    ASSERT_TRUE(page) << page.error().message;
    EXPECT_EQ(page->revision, *revision);
    for (const auto& kv : page->items) seen.push_back(kv.key);
    ++pages;
    if (!page->more) break;
    ASSERT_EQ(page->items.size(), 10u);
    after = page->items.back().key;
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, std::vector<std::string>(expected.begin(), expected.end()));

  auto all = store_->list("/registry/configmaps/ns/");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->items.size(), expected.size());
  EXPECT_FALSE(all->more);
  EXPECT_EQ(all->items.front().value, "v0");

  auto exact = store_->list("/registry/configmaps/ns/", {}, static_cast<std::int64_t>(expected.size()));
  ASSERT_TRUE(exact);
  EXPECT_FALSE(exact->more);

  auto none = store_->list("/registry/nothing/");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->items.empty());
  EXPECT_EQ(none->revision, *revision);
}

TEST_P(StoreBehaviour, WatchDeliversChangesUnderItsPrefixInOrder) {
  auto start = store_->currentRevision();
  ASSERT_TRUE(start);
  EventLog events;
  auto watch = store_->watch("/w/in/", *start, events.sink());
  ASSERT_TRUE(watch) << watch.error().message;

  auto r1 = store_->create("/w/in/a", "1");
  ASSERT_TRUE(store_->create("/w/out/a", "x"));
  auto r2 = store_->update("/w/in/a", "2", 0);
  auto r3 = store_->create("/w/in/b", "3");
  auto r4 = store_->remove("/w/in/a", 0);
  ASSERT_TRUE(r1 && r2 && r3 && r4);

  auto got = events.waitFor(4);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].type, StoreEvent::Type::Put);
  EXPECT_TRUE(got[0].created);
  EXPECT_EQ(got[0].kv.modRevision, *r1);
  EXPECT_EQ(got[1].type, StoreEvent::Type::Put);
  EXPECT_FALSE(got[1].created);
  EXPECT_EQ(got[1].kv.value, "2");
  EXPECT_EQ(got[1].kv.createRevision, *r1);
  EXPECT_EQ(got[1].kv.modRevision, *r2);
  EXPECT_EQ(got[2].kv.key, "/w/in/b");
  EXPECT_EQ(got[3].type, StoreEvent::Type::Delete);
  EXPECT_EQ(got[3].kv.key, "/w/in/a");
  EXPECT_EQ(got[3].kv.modRevision, *r4);
  EXPECT_EQ(got[3].kv.value, "2");

  // After the handle is gone, nothing more arrives.
  watch->reset();
  ASSERT_TRUE(store_->create("/w/in/c", "4"));
  auto marker = store_->watch("/w/in/", *r4, [](const StoreEvent&) {});
  ASSERT_TRUE(marker);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(events.snapshot().size(), 4u);
}

TEST_P(StoreBehaviour, WatchFromAnOldRevisionReplaysThenContinues) {
  std::vector<std::int64_t> revs;
  for (int i = 0; i < 5; ++i) {
    auto rev = store_->create("/replay/k" + std::to_string(i), std::to_string(i));
    ASSERT_TRUE(rev);
    revs.push_back(*rev);
  }
  EventLog events;
  auto watch = store_->watch("/replay/", revs[1], events.sink());
  ASSERT_TRUE(watch) << watch.error().message;
  auto r5 = store_->update("/replay/k0", "again", 0);
  ASSERT_TRUE(r5);
  auto got = events.waitFor(4);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].kv.modRevision, revs[2]);
  EXPECT_EQ(got[1].kv.modRevision, revs[3]);
  EXPECT_EQ(got[2].kv.modRevision, revs[4]);
  EXPECT_EQ(got[3].kv.modRevision, *r5);
  EXPECT_EQ(got[3].kv.value, "again");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(events.snapshot().size(), 4u) << "no duplicates";
}

TEST_P(StoreBehaviour, WatchBeforeTheCompactedRevisionFailsWithERANGE) {
  std::int64_t last = 0;
  for (int i = 0; i < 10; ++i) {
    auto rev = store_->update("/compact/k", std::to_string(i), 0);
    if (!rev) rev = store_->create("/compact/k", std::to_string(i));
    ASSERT_TRUE(rev);
    last = *rev;
  }
  auto compacted = backend_->compact(*store_, last - 3);
  ASSERT_TRUE(compacted) << compacted.error().message;

  auto tooOld = store_->watch("/compact/", last - 5, [](const StoreEvent&) {});
  ASSERT_FALSE(tooOld);
  EXPECT_EQ(tooOld.error().code, ERANGE);

  EventLog events;
  auto fine = store_->watch("/compact/", last - 3, events.sink());
  ASSERT_TRUE(fine) << fine.error().message;
  auto got = events.waitFor(3);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].kv.modRevision, last - 2);
  EXPECT_EQ(got[2].kv.value, "9");
}

TEST_P(StoreBehaviour, ConcurrentWritersGetDistinctRevisionsAndCompareAndSwapLosesNothing) {
  constexpr int kThreads = 8;
  constexpr int kWritesPerThread = 40;
  ASSERT_TRUE(store_->create("/cas/counter", "0"));
  std::mutex mutex;
  std::set<std::int64_t> revisions;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kWritesPerThread; ++i) {
        auto rev = store_->create(fmt::format("/cas/t{}/k{}", t, i), "v");
        if (!rev) {
          ++failures;
          continue;
        }
        std::lock_guard lock(mutex);
        revisions.insert(*rev);
      }
      // Increment the shared counter with compare-and-swap, retrying on conflicts.
      for (int i = 0; i < 5; ++i) {
        while (true) {
          auto current = store_->get("/cas/counter");
          if (!current) {
            ++failures;
            break;
          }
          auto rev = store_->update("/cas/counter", std::to_string(std::stoi(current->value) + 1),
                                    current->modRevision);
          if (rev) break;
          if (rev.error().code != ECANCELED) {
            ++failures;
            break;
          }
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(revisions.size(), static_cast<std::size_t>(kThreads * kWritesPerThread));
  auto counter = store_->get("/cas/counter");
  ASSERT_TRUE(counter);
  EXPECT_EQ(counter->value, std::to_string(kThreads * 5));
  auto page = store_->list("/cas/t");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->items.size(), static_cast<std::size_t>(kThreads * kWritesPerThread));
}

TEST_P(StoreBehaviour, ASinkMayWriteAndMayDropItsOwnWatch) {
  auto start = store_->currentRevision();
  ASSERT_TRUE(start);
  std::unique_ptr<StoreWatch> self;
  std::mutex mutex;
  std::condition_variable done;
  int calls = 0;
  auto watch = store_->watch("/self/", *start, [&](const StoreEvent& event) {
    std::lock_guard lock(mutex);
    ++calls;
    (void)store_->create("/echo/" + event.kv.key.substr(6), "seen");
    self.reset();
    done.notify_all();
  });
  ASSERT_TRUE(watch);
  {
    std::lock_guard lock(mutex);
    self = std::move(*watch);
  }
  ASSERT_TRUE(store_->create("/self/a", "1"));
  {
    std::unique_lock lock(mutex);
    done.wait_for(lock, std::chrono::seconds(20), [&] { return calls > 0; });
  }
  ASSERT_TRUE(store_->create("/self/b", "2"));
  // Wait until the echo of a exists, then check b was never seen.
  for (int i = 0; i < 200 && !store_->get("/echo/a"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(store_->get("/echo/a"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::lock_guard lock(mutex);
  EXPECT_EQ(calls, 1);
}

TEST_P(StoreBehaviour, DataSurvivesReopening) {
  auto rev = store_->create("/persist/a", "kept");
  ASSERT_TRUE(rev);
  store_.reset();
  auto reopened = backend_->open();
  ASSERT_TRUE(reopened) << reopened.error().message;
  store_ = std::move(*reopened);
  auto got = store_->get("/persist/a");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->value, "kept");
  EXPECT_GE(*store_->currentRevision(), *rev);
  auto next = store_->create("/persist/b", "x");
  ASSERT_TRUE(next);
  EXPECT_GT(*next, *rev);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreBehaviour, ::testing::ValuesIn(backendNames()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace ferry::cp::testing
