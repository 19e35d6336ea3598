// The embedded store: one SQLite file (`<dataDir>/state.db`) in WAL mode.
//
// Durability: every write is acknowledged only after its transaction committed
// with `synchronous=FULL`, i.e. after the WAL was fsync'ed. That survives
// `kill -9` of the process (which NORMAL+WAL would too: the WAL bytes are in the
// page cache once write() returned) and also a power loss (which NORMAL would
// not). The fsync cost is paid once per group of concurrent writers: writers
// queue their operation, the first one to find no commit in progress becomes
// the leader, runs every queued operation in one transaction and wakes the
// others (leader/follower group commit).
//
// Schema: `kv` (current value of each key), `log` (one row per revision: the
// change history watches resume from) and `meta` (the revision counter and the
// compacted revision). A background thread compacts `log`.
//
// Watches are served in-process: after each commit the changes go to a single
// delivery thread that calls the sinks whose prefix matches, in revision order.
#pragma once

#include "controlplane-lite/store.h"

#include <chrono>
#include <memory>

namespace ferry::cp {

struct SqliteStoreOptions {
  // A history entry is compacted only when it is more than `historyRevisions`
  // revisions old AND older than `historyAge`.
  std::int64_t historyRevisions = 10000;
  std::chrono::seconds historyAge{300};
  std::chrono::milliseconds compactionInterval{10000};
  // false: synchronous=NORMAL (survives kill -9, not a power loss). Only for benchmarks.
  bool fsyncEveryCommit = true;
};

class SqliteStore final : public Store {
 public:
  // Opens (creating when missing) the database file at `path`.
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& path, SqliteStoreOptions options = {});
  ~SqliteStore() override;

  Result<std::int64_t> create(const std::string& key, const std::string& value, DecodedValue decoded = {}) override;
  Result<std::int64_t> update(const std::string& key, const std::string& value,
                              std::int64_t expectedRevision, DecodedValue decoded = {}) override;
  Result<std::int64_t> remove(const std::string& key, std::int64_t expectedRevision) override;
  Result<KeyValue> get(const std::string& key) override;
  Result<ListPage> list(const std::string& prefix, const std::string& startAfter = {},
                        std::int64_t limit = 0) override;
  Result<std::unique_ptr<StoreWatch>> watch(const std::string& prefix, std::int64_t afterRevision,
                                            std::function<void(const StoreEvent&)> sink) override;
  Result<std::int64_t> currentRevision() override;

  // Drops history up to and including `revision` now (the background thread
  // does this on its own). Watches from before it then fail with ERANGE.
  Status compact(std::int64_t revision);
  std::int64_t compactedRevision() const;

  struct Impl;

 private:
  explicit SqliteStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::cp
