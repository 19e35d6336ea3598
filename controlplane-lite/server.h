// `ferry server`: API server + store + scheduler + controllers in one process.
#pragma once

#include "api/error.h"
#include "controlplane-lite/server_config.h"

#include <atomic>
#include <functional>

namespace ferry::cp {

// Runs until `stop` becomes true. `onReady` is called once the API serves
// (used for sd_notify READY=1 and to start the in-process agent).
Status runServer(const ServerConfig& config, const std::atomic<bool>& stop, std::function<void()> onReady = {});

}  // namespace ferry::cp
