// Garbage collector by ownerReferences, over the resources that own or are
// owned in Ferry (deployments, replicasets, pods, services, endpointslices):
// - background: an object all of whose owners are gone is deleted;
// - foreground: an owner being deleted with the foregroundDeletion finalizer
//   has its dependents deleted (foreground again, so the chain waits), and
//   loses the finalizer once no blocking dependent is left;
// - orphan: an owner with the orphan finalizer has its ownerReferences removed
//   from its dependents, then loses the finalizer.
// Works in passes over the informers' caches, run after any change (batched)
// and every few seconds.
#pragma once

#include "controlplane-lite/controllers/controller_context.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace ferry::cp {

class GarbageCollector : public ControlLoop {
 public:
  static constexpr const char* kName = "garbage-collector-controller";

  explicit GarbageCollector(ControllerContext& context);
  ~GarbageCollector() override;
  void start() override;
  void stop() override;

  // One pass (exposed for tests).
  void collect();

 private:
  void markDirty();

  ControllerContext& ctx_;
  std::vector<Informer*> informers_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool dirty_ = true;
  bool stop_ = false;
  std::thread thread_;
};

// The resource (kubectl name) of a kind the collector tracks, or "".
std::string resourceForKind(const std::string& apiVersion, const std::string& kind);

}  // namespace ferry::cp
