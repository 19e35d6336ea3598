// Runs chosen control loops against a FakeObjectClient, with a stand-in
// kubelet that gives pods an IP and makes them Ready and finishes their
// graceful deletions.
#pragma once

#include "controlplane-lite/controllers/controller_context.h"
#include "controlplane-lite/controllers/controller_util.h"
#include "fake_object_client.h"
#include "test_objects.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

namespace ferry::cp::testing {

struct ControllerFixture : ::testing::Test {
  FakeObjectClient client;
  InformerSet informers{client};
  EventRecorder events{client, "test"};
  ServerConfig config;
  std::unique_ptr<ControllerContext> context;
  std::vector<std::unique_ptr<ControlLoop>> loops;
  std::atomic<bool> kubeletRunning{false};
  std::atomic<bool> kubeletPaused{false};
  std::thread kubelet;
  int podCounter = 0;

  ControllerContext& ctx() {
    if (!context) context = std::make_unique<ControllerContext>(ControllerContext{client, informers, events, config});
    return *context;
  }
  template <class Loop, class... Args>
  Loop& add(Args&&... args) {
    auto loop = std::make_unique<Loop>(ctx(), std::forward<Args>(args)...);
    Loop& ref = *loop;
    loops.push_back(std::move(loop));
    return ref;
  }
  void start() {
    events.start();
    informers.start();
    ASSERT_TRUE(informers.waitForSync(std::chrono::seconds(5)));
    for (auto& l : loops) l->start();
  }
  // Pods get an IP and become Ready; terminating pods go away.
  void startKubelet() {
    kubeletRunning = true;
    kubelet = std::thread([this] {
      while (kubeletRunning) {
        if (!kubeletPaused) {
          for (const auto& pod : client.all("pods")) {
            if (api::isTerminating(pod)) continue;
            if (podIsReady(pod) || api::at<std::string>(pod, {"status", "phase"}) == "Unknown") continue;
            std::string ip = "10.42.0." + std::to_string(++podCounter % 250 + 2);
            client.mutate("pods", api::namespaceOf(pod), api::nameOf(pod), [&](api::Json& p) {
              p["status"]["phase"] = "Running";
              p["status"]["podIP"] = ip;
              setCondition(p["status"]["conditions"], "Ready", "True", "", "");
            });
          }
          client.finishPodDeletions();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
  }
  void TearDown() override {
    kubeletRunning = false;
    if (kubelet.joinable()) kubelet.join();
    for (auto& l : loops) l->stop();
    informers.stop();
    events.stop();
  }

  std::vector<api::Json> podsOwnedBy(const std::string& uid, bool includeTerminating = false) {
    std::vector<api::Json> out;
    for (const auto& pod : client.all("pods")) {
      const api::Json* ref = controllerRefOf(pod);
      if (ref && ref->value("uid", "") == uid && (includeTerminating || !api::isTerminating(pod))) out.push_back(pod);
    }
    return out;
  }
  bool hasEvent(const std::string& reason, const std::string& messagePart = "") {
    for (const auto& e : client.all("events"))
      if (e.value("reason", "") == reason && e.value("message", "").find(messagePart) != std::string::npos) return true;
    return false;
  }
};

inline api::Json podTemplate(const std::string& image, const api::Json& labels = {{"app", "web"}}) {
  return {{"metadata", {{"labels", labels}}},
          {"spec",
           {{"containers",
             {{{"name", "web"},
               {"image", image},
               {"ports", {{{"name", "http"}, {"containerPort", 8080}, {"protocol", "TCP"}}}},
               {"resources", {{"requests", {{"cpu", "100m"}}}}}}}}}}};
}

}  // namespace ferry::cp::testing
