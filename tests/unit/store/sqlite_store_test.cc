// SQLite-only behaviour: the background compaction and the file it keeps.
#include "controlplane-lite/sqlite_store.h"
#include "tests/unit/store/store_fixture.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

namespace ferry::cp::testing {
namespace {

using namespace std::chrono_literals;

TEST(SqliteStore, CompactsHistoryInTheBackgroundKeepingTheNewestRevisions) {
  auto dir = makeTempDir("store-sqlite-compact");
  SqliteStoreOptions options;
  options.historyRevisions = 100;
  options.historyAge = 0s;
  options.compactionInterval = 100ms;
  auto store = SqliteStore::open((dir / "state.db").string(), options);
  ASSERT_TRUE(store) << store.error().message;
  std::int64_t last = 0;
  for (int i = 0; i < 300; ++i) {
    auto rev = (*store)->create("/c/k" + std::to_string(i), "v");
    ASSERT_TRUE(rev);
    last = *rev;
  }
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while ((*store)->compactedRevision() < last - 100 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GE((*store)->compactedRevision(), last - 100);
  EXPECT_LE((*store)->compactedRevision(), last - 100) << "kept fewer than historyRevisions";

  auto old = (*store)->watch("/c/", 1, [](const StoreEvent&) {});
  ASSERT_FALSE(old);
  EXPECT_EQ(old.error().code, ERANGE);
  EventLog events;
  auto recent = (*store)->watch("/c/", last - 50, events.sink());
  ASSERT_TRUE(recent) << recent.error().message;
  EXPECT_EQ(events.waitFor(50).size(), 50u);
  // The current state is untouched by compaction.
  auto page = (*store)->list("/c/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->items.size(), 300u);

  // The compacted point survives a restart.
  std::int64_t compacted = (*store)->compactedRevision();
  recent->reset();
  store->reset();
  auto reopened = SqliteStore::open((dir / "state.db").string());
  ASSERT_TRUE(reopened);
  EXPECT_EQ((*reopened)->compactedRevision(), compacted);
  auto stillOld = (*reopened)->watch("/c/", 1, [](const StoreEvent&) {});
  ASSERT_FALSE(stillOld);
  EXPECT_EQ(stillOld.error().code, ERANGE);
  reopened->reset();
  std::filesystem::remove_all(dir);
}

TEST(SqliteStore, KeepsItsFilesOwnerOnly) {
  auto dir = makeTempDir("store-sqlite-mode");
  std::string path = (dir / "state.db").string();
  auto store = SqliteStore::open(path);
  ASSERT_TRUE(store) << store.error().message;
  ASSERT_TRUE((*store)->create("/secret", "x"));
  for (const char* suffix : {"", "-wal"}) {
    auto perms = std::filesystem::status(path + suffix).permissions();
    EXPECT_EQ(perms & (std::filesystem::perms::group_all | std::filesystem::perms::others_all),
              std::filesystem::perms::none)
        << path << suffix;
  }
  store->reset();
  std::filesystem::remove_all(dir);
}

TEST(SqliteStore, RefusesAPathItCannotOpen) {
  auto store = SqliteStore::open("/nonexistent-dir-ferry/state.db");
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("/nonexistent-dir-ferry/state.db"), std::string::npos);
}

}  // namespace
}  // namespace ferry::cp::testing
