// The control plane's durable key-value store: one interface, two backends
// (embedded SQLite, etcd v3). Revisions are global and strictly increasing, as
// in etcd; an object's resourceVersion is the modRevision of its key.
#pragma once

#include "api/error.h"
#include "api/object.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ferry::cp {

struct KeyValue {
  std::string key;
  std::string value;
  std::int64_t createRevision = 0;
  std::int64_t modRevision = 0;
};

struct StoreEvent {
  // Error: the watch ended and no event follows (history compacted while a
  // watch reconnected, backend unreachable); kv.value holds the reason. Treat
  // it like 410 Gone: list again and watch from the list's revision.
  enum class Type { Put, Delete, Error };
  Type type = Type::Put;
  KeyValue kv;          // for Delete: key and the revision of the deletion, value = last value
  bool created = false; // Put that created the key
  // The decoded value when the in-process writer handed it over with the write (see
  // DecodedValue); null otherwise (decode kv.value).
  std::shared_ptr<const api::Json> object;
};

// What an in-process writer may give a create or update besides the bytes: called once
// by the store with the write's revision, inside the commit and before any watcher sees
// the change; returns the value decoded as the writer's own decode of the bytes at that
// revision would. In-process watches then get it on StoreEvent::object instead of parsing
// the bytes back. Backends whose watch events come from elsewhere (etcd) ignore it.
using DecodedValue = std::function<std::shared_ptr<const api::Json>(std::int64_t revision)>;

// Stops delivering events when destroyed. Destruction waits for a sink call of
// this watch that is running on another thread, so never destroy a watch while
// holding a lock its sink takes (destroying it from inside its own sink is fine).
class StoreWatch {
 public:
  virtual ~StoreWatch() = default;
};

struct ListPage {
  std::vector<KeyValue> items;
  std::int64_t revision = 0;  // store revision the page was read at
  bool more = false;          // more keys follow the last item
};

// Error codes: ENOENT missing key, EEXIST on create of an existing key,
// ECANCELED on a revision mismatch (optimistic concurrency), ERANGE when a
// watch asks for a revision older than the compacted history (410 Gone).
class Store {
 public:
  virtual ~Store() = default;

  // Returns the revision of the write.
  virtual Result<std::int64_t> create(const std::string& key, const std::string& value,
                                      DecodedValue decoded = {}) = 0;
  // Replaces the value when the key's modRevision equals `expectedRevision` (0: any).
  virtual Result<std::int64_t> update(const std::string& key, const std::string& value,
                                      std::int64_t expectedRevision, DecodedValue decoded = {}) = 0;
  // Deletes when the key's modRevision equals `expectedRevision` (0: any); returns the deletion's revision.
  virtual Result<std::int64_t> remove(const std::string& key, std::int64_t expectedRevision) = 0;
  virtual Result<KeyValue> get(const std::string& key) = 0;
  // Keys with `prefix`, in key order, strictly after `startAfter` (empty: from the start),
  // at most `limit` (0: no limit).
  virtual Result<ListPage> list(const std::string& prefix, const std::string& startAfter = {},
                                std::int64_t limit = 0) = 0;
  // Delivers, in revision order, every change under `prefix` with revision > `afterRevision`
  // (usually the revision a list returned; a revision at or past the current one means
  // "from now on"). Fails with ERANGE when `afterRevision` is older than the compacted
  // history. The sink runs on a store thread and must not block for long; it may call
  // the store, and may destroy its own watch.
  virtual Result<std::unique_ptr<StoreWatch>> watch(const std::string& prefix, std::int64_t afterRevision,
                                                    std::function<void(const StoreEvent&)> sink) = 0;
  virtual Result<std::int64_t> currentRevision() = 0;
};

// Opens the backend named by --datastore: "sqlite" (file under dataDir) or
// "etcd://host:port[,host:port]".
Result<std::unique_ptr<Store>> openStore(const std::string& datastore, const std::string& dataDir);

}  // namespace ferry::cp
