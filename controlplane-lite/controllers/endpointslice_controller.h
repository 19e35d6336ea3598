// EndpointSlice controller, with the legacy Endpoints object beside it: for
// each Service with a selector, the matching pods that have an IP, with
// conditions ready (Ready and not terminating, or publishNotReadyAddresses) /
// serving / terminating, their node and targetRef, and the Service's target
// ports resolved per pod (named ports looked up in the pod's containers).
// Pods whose ports resolve differently land in different slices. Services
// without a selector are left to the user.
#pragma once

#include "controlplane-lite/controllers/controller_context.h"
#include "controlplane-lite/controllers/queue_worker.h"

namespace ferry::cp {

class EndpointSliceController : public ControlLoop {
 public:
  static constexpr const char* kName = "endpointslice-controller";
  static constexpr const char* kManagedBy = "endpointslice-controller.k8s.io";
  static constexpr int kMaxEndpointsPerSlice = 100;

  explicit EndpointSliceController(ControllerContext& context);
  void start() override { worker_.start(); }
  void stop() override { worker_.stop(); }

  Status sync(const std::string& key);

 private:
  void enqueueServicesSelecting(const ObjectPtr& pod);
  Status syncEndpoints(const api::Json& service, const std::vector<api::Json>& pods);

  ControllerContext& ctx_;
  Informer& services_;
  Informer& pods_;
  Informer& slices_;
  Informer& endpoints_;
  QueueWorker worker_;
};

}  // namespace ferry::cp
