// What every control loop is built from: the API, the shared informers, the
// event recorder and the server's configuration.
#pragma once

#include "controlplane-lite/controllers/event_recorder.h"
#include "controlplane-lite/controllers/informer.h"
#include "controlplane-lite/object_client.h"
#include "controlplane-lite/server_config.h"

namespace ferry::cp {

struct ControllerContext {
  ObjectClient& client;
  InformerSet& informers;
  EventRecorder& events;
  ServerConfig config;
};

// A loop started by startControlLoops. Constructors register informer handlers;
// start() runs after the informers have synced.
class ControlLoop {
 public:
  virtual ~ControlLoop() = default;
  virtual void start() = 0;
  virtual void stop() = 0;
};

}  // namespace ferry::cp
