// Builders for the API objects the control-loop tests use, and a poll helper.
#pragma once

#include "api/object.h"

#include <chrono>
#include <functional>
#include <string>
#include <thread>

namespace ferry::cp::testing {

inline api::Json makeNode(const std::string& name, const std::string& cpu = "4", const std::string& memory = "8Gi",
                          const std::string& pods = "110", bool ready = true) {
  return {{"apiVersion", "v1"},
          {"kind", "Node"},
          {"metadata", {{"name", name}, {"labels", {{"kubernetes.io/hostname", name}}}}},
          {"spec", api::Json::object()},
          {"status",
           {{"allocatable", {{"cpu", cpu}, {"memory", memory}, {"pods", pods}}},
            {"capacity", {{"cpu", cpu}, {"memory", memory}, {"pods", pods}}},
            {"conditions", {{{"type", "Ready"}, {"status", ready ? "True" : "False"}}}}}}};
}

inline api::Json makePod(const std::string& name, const std::string& cpu = "100m", const std::string& memory = "128Mi",
                         const std::string& ns = "default") {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", ns}, {"labels", {{"app", "web"}}}}},
          {"spec",
           {{"containers",
             {{{"name", "c"}, {"image", "busybox"}, {"resources", {{"requests", {{"cpu", cpu}, {"memory", memory}}}}}}}}}}};
}

// Polls `condition` every 10 ms until it holds or `timeout` passes.
inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return condition();
}

}  // namespace ferry::cp::testing
