// A local, always-current copy of one resource kept by list + watch through an
// ObjectClient, with handlers called on every change. Every controller and the
// scheduler read objects from here instead of asking the API for each decision.
// The watch is restarted from a fresh list when it reports an ERROR event (410
// Gone, overflow) or cannot be opened; the relist is diffed against the cache
// so handlers see the changes they missed.
#pragma once

#include "controlplane-lite/object_client.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace ferry::cp {

// "ns/name", or "name" for cluster-scoped objects.
std::string objectKey(const api::Json& object);
std::string objectKey(const std::string& ns, const std::string& name);
// Splits a key made by objectKey into {ns, name}.
std::pair<std::string, std::string> splitKey(const std::string& key);

struct InformerHandlers {
  std::function<void(const ObjectPtr&)> onAdd;
  std::function<void(const ObjectPtr& oldObject, const ObjectPtr& newObject)> onUpdate;
  std::function<void(const ObjectPtr&)> onDelete;
};

class Informer {
 public:
  Informer(ObjectClient& client, std::string resource);
  ~Informer();

  // Handlers run on the informer's thread and must be quick (enqueue a key).
  // Add them before start().
  void addHandlers(InformerHandlers handlers);
  void start();
  void stop();
  // True once the first list has been loaded.
  bool synced() const { return synced_.load(); }
  bool waitForSync(std::chrono::milliseconds timeout);

  ObjectPtr get(const std::string& ns, const std::string& name) const;
  ObjectPtr getByKey(const std::string& key) const;
  // Objects of namespace `ns` ("" for all), in key order.
  std::vector<ObjectPtr> list(const std::string& ns = "") const;
  std::size_t size() const;

  // Write-through after the caller's own write, so that its next decision sees
  // it without waiting for the watch. Ignored when the cache already holds a
  // newer resourceVersion. Handlers are not called.
  void assume(const api::Json& written);
  void assumeDeleted(const std::string& key);

  const std::string& resource() const { return resource_; }

 private:
  void run();
  bool listAndReplace(std::string& resourceVersion);
  void apply(const WatchEvent& event);

  ObjectClient& client_;
  std::string resource_;
  std::vector<InformerHandlers> handlers_;

  mutable std::shared_mutex cacheMu_;
  std::map<std::string, ObjectPtr> cache_;
  // Keys deleted by assumeDeleted, with the resourceVersion they had: older events for them are dropped.
  std::unordered_map<std::string, std::int64_t> tombstones_;

  std::mutex eventsMu_;
  std::condition_variable eventsCv_;
  std::deque<WatchEvent> events_;
  bool watchBroken_ = false;

  std::atomic<bool> synced_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// One informer per resource, shared by every loop in the process.
class InformerSet {
 public:
  explicit InformerSet(ObjectClient& client) : client_(client) {}
  // Creates the informer on first use; call before start().
  Informer& get(const std::string& resource);
  void start();
  bool waitForSync(std::chrono::milliseconds timeout);
  void stop();

 private:
  ObjectClient& client_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Informer>> informers_;
};

// Parses a resourceVersion as the store revision it is; -1 when not numeric.
std::int64_t revisionOf(const api::Json& object);

}  // namespace ferry::cp
