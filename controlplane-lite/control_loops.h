// The scheduler and the controllers, started by runServer on the leader.
#pragma once

#include "controlplane-lite/controllers/pod_metrics_source.h"
#include "controlplane-lite/object_client.h"
#include "controlplane-lite/server_config.h"

#include <memory>

namespace ferry::cp {

class ControlLoops {
 public:
  // Stops every loop and joins their threads.
  virtual ~ControlLoops() = default;
};

// Starts the scheduler and every controller against `client`, which must outlive the result.
// `podMetrics` feeds the HPA (empty: the HPA sees no metrics).
std::unique_ptr<ControlLoops> startControlLoops(ObjectClient& client, const ServerConfig& config,
                                                PodMetricsLookup podMetrics = {});

}  // namespace ferry::cp
