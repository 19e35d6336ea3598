// Deployment controller: one ReplicaSet per pod template (named
// <deployment>-<pod-template-hash>), rolled with RollingUpdate (maxSurge /
// maxUnavailable, absolute or percent) or Recreate; revision annotations and
// revisionHistoryLimit; rollback is a template that matches an old ReplicaSet
// (what `kubectl rollout undo` patches in), which becomes the newest revision;
// pause; Progressing/Available conditions with progressDeadlineSeconds; status
// and observedGeneration as `kubectl rollout status` reads them.
#pragma once

#include "controlplane-lite/controllers/controller_context.h"
#include "controlplane-lite/controllers/queue_worker.h"

namespace ferry::cp {

class DeploymentController : public ControlLoop {
 public:
  static constexpr const char* kName = "deployment-controller";

  explicit DeploymentController(ControllerContext& context);
  void start() override { worker_.start(); }
  void stop() override { worker_.stop(); }

  Status sync(const std::string& key);

 private:
  void enqueueOwner(const ObjectPtr& replicaSet);

  ControllerContext& ctx_;
  Informer& deployments_;
  Informer& replicaSets_;
  Informer& pods_;
  QueueWorker worker_;
};

// The pod-template-hash of a template (FNV-1a of its JSON, then Kubernetes'
// safe alphabet), with `collisionCount` mixed in.
std::string podTemplateHash(const api::Json& podTemplate, int collisionCount);
// maxSurge / maxUnavailable: an int or "25%" of `replicas` (surge rounds up, unavailable down).
int resolveIntOrPercent(const api::Json& value, int replicas, bool roundUp, int fallback);

}  // namespace ferry::cp
