// Network probes and httpGet hooks, run from inside the pod's network namespace (on a
// short-lived thread that enters it), so they work whether or not the host can route to
// the pod. Exec probes go through Container::exec.
#pragma once

#include "api/error.h"

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace ferry::runtime {

struct ProbeOutcome {
  bool success = false;
  std::string message;  // why it failed, as kubelet events phrase it
};

// TCP connect to host:port; success when it connects within `timeout`.
ProbeOutcome probeTcp(const std::string& netnsPath, const std::string& host, int port,
                      std::chrono::milliseconds timeout);

// HTTP GET (scheme HTTP or HTTPS; like the kubelet, the certificate is not verified);
// success for status 200..399.
ProbeOutcome probeHttpGet(const std::string& netnsPath, const std::string& scheme, const std::string& host, int port,
                          const std::string& path, const std::vector<std::pair<std::string, std::string>>& headers,
                          std::chrono::milliseconds timeout);

}  // namespace ferry::runtime
