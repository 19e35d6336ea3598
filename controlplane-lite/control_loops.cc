#include "controlplane-lite/control_loops.h"

#include "api/log.h"
#include "controlplane-lite/controllers/controller_context.h"
#include "controlplane-lite/controllers/deployment_controller.h"
#include "controlplane-lite/controllers/endpointslice_controller.h"
#include "controlplane-lite/controllers/garbage_collector.h"
#include "controlplane-lite/controllers/hpa_controller.h"
#include "controlplane-lite/controllers/node_lifecycle_controller.h"
#include "controlplane-lite/controllers/pod_metrics_source.h"
#include "controlplane-lite/controllers/replicaset_controller.h"
#include "controlplane-lite/scheduler/scheduler.h"

#include <vector>

namespace ferry::cp {

namespace {

class RunningControlLoops : public ControlLoops {
 public:
  RunningControlLoops(ObjectClient& client, const ServerConfig& config, PodMetricsLookup podMetrics)
      : informers_(client),
        events_(client, "controller-manager"),
        context_{client, informers_, events_, config},
        metrics_(std::move(podMetrics)) {
    loops_.push_back(std::make_unique<Scheduler>(context_));
    loops_.push_back(std::make_unique<ReplicaSetController>(context_));
    loops_.push_back(std::make_unique<DeploymentController>(context_));
    loops_.push_back(std::make_unique<EndpointSliceController>(context_));
    loops_.push_back(std::make_unique<NodeLifecycleController>(context_));
    loops_.push_back(std::make_unique<GarbageCollector>(context_));
    // Kubernetes syncs HPAs every 15 s; a short stabilization window (tests) asks for quicker passes.
    auto hpaPeriod = config.hpaDownscaleStabilizationSeconds < 60 ? std::chrono::seconds(1) : std::chrono::seconds(15);
    loops_.push_back(std::make_unique<HpaController>(context_, metrics_, hpaPeriod));
    events_.start();
    informers_.start();
    if (!informers_.waitForSync(std::chrono::seconds(60))) log::warn("control loops: informers not synced after 60s");
    for (auto& loop : loops_) loop->start();
  }

  ~RunningControlLoops() override {
    for (auto& loop : loops_) loop->stop();
    informers_.stop();
    events_.stop();
  }

 private:
  InformerSet informers_;
  EventRecorder events_;
  ControllerContext context_;
  ApiPodMetricsSource metrics_;
  std::vector<std::unique_ptr<ControlLoop>> loops_;
};

}  // namespace

std::unique_ptr<ControlLoops> startControlLoops(ObjectClient& client, const ServerConfig& config,
                                                PodMetricsLookup podMetrics) {
  return std::make_unique<RunningControlLoops>(client, config, std::move(podMetrics));
}

}  // namespace ferry::cp
