// Used only when the build has no ferry_control_loops target (control_loops.cc
// and controllers/ not in the tree yet): the server then runs without loops.
#include "controlplane-lite/control_loops.h"

namespace ferry::cp {

std::unique_ptr<ControlLoops> startControlLoops(ObjectClient&, const ServerConfig&, PodMetricsLookup) {
  return std::make_unique<ControlLoops>();
}

}  // namespace ferry::cp
