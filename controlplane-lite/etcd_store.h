// The HA store: etcd v3 (Debian's etcd 3.4) through its JSON gateway, over
// http::Connection (see etcd_client.h for the failover rules).
//
// Writes are etcd transactions: create compares create_revision == 0, update
// and delete compare mod_revision with the expected revision, so optimistic
// concurrency is etcd's own. Revisions are etcd's revisions.
//
// Watches are `/v3/watch` streams, each on a thread and connection of its own; a
// stream that breaks reconnects (to the next endpoint when one is down) from
// the revision after the last event delivered. When that revision is compacted
// meanwhile, the sink gets a StoreEvent::Type::Error and the watch ends.
#pragma once

#include "controlplane-lite/store.h"

#include <memory>
#include <vector>

namespace ferry::cp {

class EtcdStore final : public Store {
 public:
  // `endpoints`: "host:port" each. Fails when none answers.
  static Result<std::unique_ptr<EtcdStore>> open(const std::vector<std::string>& endpoints);
  ~EtcdStore() override;

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

  // Drops history up to and including `revision` (etcd's compaction at revision + 1).
  Status compact(std::int64_t revision);

  struct Impl;

 private:
  explicit EtcdStore(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace ferry::cp
