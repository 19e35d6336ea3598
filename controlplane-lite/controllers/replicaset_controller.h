// ReplicaSet controller: keeps spec.replicas active pods matching the selector,
// adopting matching orphans and releasing pods whose labels no longer match,
// deleting the least valuable pods first, and reports status (replicas,
// fullyLabeledReplicas, readyReplicas, availableReplicas, observedGeneration).
#pragma once

#include "controlplane-lite/controllers/controller_context.h"
#include "controlplane-lite/controllers/queue_worker.h"

namespace ferry::cp {

class ReplicaSetController : public ControlLoop {
 public:
  static constexpr const char* kName = "replicaset-controller";

  explicit ReplicaSetController(ControllerContext& context);
  void start() override { worker_.start(); }
  void stop() override { worker_.stop(); }

  Status sync(const std::string& key);

 private:
  void enqueueOwnerOrMatching(const ObjectPtr& pod);

  ControllerContext& ctx_;
  Informer& replicaSets_;
  Informer& pods_;
  QueueWorker worker_;
};

// Orders pods so that the ones to delete first come first: unscheduled, pending,
// not ready, ready for less time, more restarts, newer (Kubernetes' ActivePods).
void sortPodsForDeletion(std::vector<api::Json>& pods);
// A pod for `owner` from `tmpl` (a PodTemplateSpec), named <generateNamePrefix>xxxxx.
api::Json podFromTemplate(const api::Json& tmpl, const std::string& ownerKind, const api::Json& owner,
                          const std::string& generateNamePrefix);

}  // namespace ferry::cp
