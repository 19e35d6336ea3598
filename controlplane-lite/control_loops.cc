#include "controlplane-lite/control_loops.h"

#include "api/log.h"
#include "controlplane-lite/controllers/controller_context.h"
#include "controlplane-lite/scheduler/scheduler.h"

#include <vector>

namespace ferry::cp {

namespace {

class RunningControlLoops : public ControlLoops {
 public:
  RunningControlLoops(ObjectClient& client, const ServerConfig& config)
      : informers_(client), events_(client, "controller-manager"), context_{client, informers_, events_, config} {
    loops_.push_back(std::make_unique<Scheduler>(context_));
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
  std::vector<std::unique_ptr<ControlLoop>> loops_;
};

}  // namespace

std::unique_ptr<ControlLoops> startControlLoops(ObjectClient& client, const ServerConfig& config) {
  return std::make_unique<RunningControlLoops>(client, config);
}

}  // namespace ferry::cp
