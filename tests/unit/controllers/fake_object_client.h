// An in-memory ObjectClient for unit tests of the control loops' logic: keeps
// resourceVersions, uid, generation, watch (with replay from a resourceVersion),
// graceful deletion of bound pods, finalizers and deletion propagation
// finalizers, the status subresource and pods/binding. Not the registry: no
// validation or defaulting beyond what the loops rely on.
#pragma once

#include "controlplane-lite/object_client.h"

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ferry::cp::testing {

class FakeObjectClient : public ObjectClient {
 public:
  Result<api::Json> create(const std::string& resource, const api::Json& object) override;
  Result<api::Json> get(const std::string& resource, const std::string& ns, const std::string& name) override;
  Result<api::Json> update(const std::string& resource, const api::Json& object) override;
  Result<api::Json> updateStatus(const std::string& resource, const api::Json& object) override;
  Result<api::Json> remove(const std::string& resource, const std::string& ns, const std::string& name,
                           const DeleteOptions& options = {}) override;
  Result<ObjectList> list(const std::string& resource, const std::string& ns, const ListOptions& options = {}) override;
  Result<std::unique_ptr<ObjectWatch>> watch(const std::string& resource, const std::string& ns,
                                             const std::string& resourceVersion, const ListOptions& options,
                                             std::function<void(const WatchEvent&)> sink) override;

  // Test helpers.
  std::vector<api::Json> all(const std::string& resource, const std::string& ns = "");
  // Applies `mutate` to the stored object (like an update that may touch status).
  Result<api::Json> mutate(const std::string& resource, const std::string& ns, const std::string& name,
                           const std::function<void(api::Json&)>& mutate);
  // Finishes graceful deletions (the kubelet's part): removes every pod with a deletionTimestamp.
  void finishPodDeletions();
  int writes(const std::string& resource);

 private:
  struct Watcher {
    std::uint64_t id;
    std::string resource, ns;
    std::function<void(const WatchEvent&)> sink;
  };
  struct Recorded {
    std::string resource;
    std::int64_t revision;
    WatchEvent event;
  };
  class Handle;

  static bool clusterScoped(const std::string& resource);
  void emitLocked(const std::string& resource, const std::string& type, const api::Json& object);
  Result<api::Json> deleteOrFinalizeLocked(const std::string& resource, const std::string& key, api::Json object);
  Result<api::Json> bindLocked(const api::Json& binding);

  std::recursive_mutex mu_;
  std::map<std::string, std::map<std::string, api::Json>> objects_;
  std::int64_t revision_ = 100;
  std::uint64_t nextUid_ = 1;
  std::map<std::uint64_t, Watcher> watchers_;
  std::uint64_t nextWatcher_ = 1;
  std::vector<Recorded> history_;
  std::map<std::string, int> writes_;
};

}  // namespace ferry::cp::testing
