// What only the etcd backend has to show: endpoint failover, watches that
// survive an etcd restart, the --datastore grammar.
#include "controlplane-lite/etcd_store.h"
#include "tests/unit/store/etcd_process.h"
#include "tests/unit/store/store_fixture.h"

#include <gtest/gtest.h>

#include <thread>

namespace ferry::cp::testing {
namespace {

using namespace std::chrono_literals;

class EtcdStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!EtcdProcess::available()) GTEST_SKIP() << EtcdProcess::kBinary << " is not installed (Debian etcd-server)";
    ASSERT_TRUE(etcd_.start()) << etcd_.error();
  }
  Result<std::unique_ptr<EtcdStore>> openWhenReady(const std::vector<std::string>& endpoints) {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (true) {
      auto store = EtcdStore::open(endpoints);
      if (store || std::chrono::steady_clock::now() > deadline) return store;
      std::this_thread::sleep_for(100ms);
    }
  }
  EtcdProcess etcd_;
};

// Nothing listens on 127.0.0.1:1, so connections to it are refused at once.
TEST_F(EtcdStoreTest, MovesOnToTheNextEndpointWhenOneIsDown) {
  auto store = openWhenReady({"127.0.0.1:1", etcd_.endpoint()});
  ASSERT_TRUE(store) << store.error().message;
  auto rev = (*store)->create("/failover/a", "1");
  ASSERT_TRUE(rev) << rev.error().message;
  auto got = (*store)->get("/failover/a");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->value, "1");
}

TEST_F(EtcdStoreTest, NoEndpointReachableIsAnError) {
  auto store = EtcdStore::open({"127.0.0.1:1"});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ECONNREFUSED) << store.error().message;
}

TEST_F(EtcdStoreTest, AWatchResumesAfterEtcdRestartsWithoutLossOrDuplicates) {
  auto store = openWhenReady({etcd_.endpoint()});
  ASSERT_TRUE(store) << store.error().message;
  auto start = (*store)->currentRevision();
  ASSERT_TRUE(start);
  EventLog events;
  auto watch = (*store)->watch("/restart/", *start, events.sink());
  ASSERT_TRUE(watch) << watch.error().message;
  auto first = (*store)->create("/restart/a", "1");
  ASSERT_TRUE(first);
  ASSERT_EQ(events.waitFor(1).size(), 1u);

  etcd_.stop();
  ASSERT_TRUE(etcd_.start()) << etcd_.error();
  // Writes right after the restart; the stream reconnects from the revision after the last event.
  Result<std::int64_t> second = std::unexpected(Error{});
  for (int i = 0; i < 100 && !second; ++i) {
    second = (*store)->create("/restart/b", "2");
    if (!second) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(second) << second.error().message;
  auto third = (*store)->update("/restart/a", "3", 0);
  ASSERT_TRUE(third);

  auto got = events.waitFor(3, 30s);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].kv.modRevision, *first);
  EXPECT_EQ(got[1].kv.modRevision, *second);
  EXPECT_EQ(got[2].kv.modRevision, *third);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(events.snapshot().size(), 3u) << "no duplicates after the reconnect";
}

TEST_F(EtcdStoreTest, OpenStoreParsesTheDatastoreFlag) {
  auto bad = openStore("etcd://", "");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, EINVAL);
  auto unknown = openStore("mysql://x", "");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, EINVAL);
  std::unique_ptr<Store> store;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!store && std::chrono::steady_clock::now() < deadline) {
    auto opened = openStore("etcd://127.0.0.1:1," + etcd_.endpoint(), "");
    if (opened) store = std::move(*opened);
    else std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(store);
  EXPECT_TRUE(store->create("/flag/a", "1"));
}

}  // namespace
}  // namespace ferry::cp::testing
