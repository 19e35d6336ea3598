// One store watch per resource, fanned out in-process to every API watcher of
// that resource. Keeps the last object of each key (so a label change that
// moves an object out of a watcher's selector is delivered as DELETED, as
// Kubernetes does) and a window of recent events for watchers that resume
// from a resourceVersion. Older resumption falls back to a store watch of its
// own, which answers ERANGE (410 Gone) when the history is compacted.
// When the store ends the cache's watch (StoreEvent::Type::Error), every watcher
// gets an ERROR event (410 Expired) and the cache lists again at the next add().
// The window holds the stored values (the objects' JSON text), decoded again only
// for a resuming watcher: as parsed objects the versions of 300 pods took most of
// the server's memory (bench/footprint), as text about a seventh of that. Live
// watchers all get the one parsed object, shared (WatchEvent::object).
#pragma once

#include "api/selector.h"
#include "controlplane-lite/object_client.h"
#include "controlplane-lite/store.h"

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

namespace ferry::cp {

struct WatchFilter {
  std::string ns;  // empty: every namespace
  api::LabelSelector labels;
  api::FieldSelector fields;
  bool matches(const api::Json& object) const;
};

class WatchCache {
 public:
  // `decode` turns a stored value into the API object with the given resourceVersion.
  using Decode = std::function<Result<api::Json>(const std::string& value, std::int64_t revision)>;
  WatchCache(Store& store, std::string prefix, Decode decode, std::size_t historyLimit = 10000);
  ~WatchCache();

  // afterRevision < 0: from the newest event the cache has seen.
  Result<std::unique_ptr<ObjectWatch>> add(std::int64_t afterRevision, WatchFilter filter,
                                           std::function<void(const WatchEvent&)> sink);
  std::size_t watcherCount();
  // True while the cache follows the store (it has listed and watches): only then is a
  // writer's decoded copy (Store DecodedValue) worth handing over.
  bool following() const { return following_.load(std::memory_order_relaxed); }
  // The cache's newest copy of `key` (null when it has none: absent, or not seen yet).
  // Starts the cache when no watcher has.
  Result<std::shared_ptr<const api::Json>> latestObject(const std::string& key);
  // Events in the resumable window (tests).
  std::size_t historySize();

 private:
  using Text = std::shared_ptr<const std::string>;
  struct Current {
    ObjectPtr object;
    Text value;  // as stored
    std::int64_t revision = 0;
  };
  struct Entry {
    std::int64_t revision;
    bool deleted;
    Text value;          // the object as stored (for a delete: its last value)
    Text previousValue;  // null when created
    std::int64_t previousRevision = 0;
  };
  struct Watcher {
    std::uint64_t id;
    std::int64_t afterRevision;
    WatchFilter filter;
    std::function<void(const WatchEvent&)> sink;
  };
  class Handle;

  Status ensureStarted();
  void onStoreEvent(const StoreEvent& event);
  void restartAfterStoreError(const std::string& reason);
  static void deliver(Watcher& watcher, std::int64_t revision, bool deleted, const ObjectPtr& object,
                      const ObjectPtr& previous, const std::shared_ptr<EncodedObject>& encoded);
  void replay(Watcher& watcher, const Entry& entry);
  void removeWatcher(std::uint64_t id);

  Store& store_;
  std::string prefix_;
  Decode decode_;
  std::size_t historyLimit_;
  std::recursive_mutex mu_;
  bool started_ = false;
  std::atomic<bool> following_{false};  // started_, readable without mu_
  std::unique_ptr<StoreWatch> storeWatch_;
  std::int64_t oldestResumable_ = 0;  // events with revision > this are all in history_
  std::int64_t latest_ = 0;
  std::deque<Entry> history_;
  std::map<std::string, Current> current_;
  std::map<std::uint64_t, std::shared_ptr<Watcher>> watchers_;
  std::uint64_t nextId_ = 1;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace ferry::cp
