// `ferry agent`: joins the node, runs its pods, programs Service load balancing and serves DNS.
#pragma once

#include "agent/agent_config.h"
#include "api/error.h"

#include <atomic>
#include <functional>

namespace ferry::agent {

// Runs until `stop` becomes true. `onReady` is called once the node is
// registered and its data path is programmed (sd_notify READY=1).
Status runAgent(const AgentConfig& config, const std::atomic<bool>& stop, std::function<void()> onReady = {});

}  // namespace ferry::agent
