// The scheduler: takes pods without spec.nodeName, picks a node through
// ClusterState and binds the pod with a Binding (the pods/binding subresource,
// `create("bindings", ...)`). Decisions are made one pod at a time on one thread
// against an in-memory picture that counts a pod as placed as soon as it is
// chosen ("assumed"), so the binds themselves run in parallel on binder threads.
// A pod that fits nowhere gets PodScheduled=False/Unschedulable and a
// FailedScheduling event, and waits until a node or pod change could help.
#pragma once

#include "controlplane-lite/controllers/controller_context.h"
#include "controlplane-lite/controllers/work_queue.h"
#include "controlplane-lite/scheduler/cluster_state.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace ferry::cp {

struct SchedulerOptions {
  // Binds block on the store's commit; the store commits concurrent writes
  // together (one fsync per group), so more binds in flight means bigger groups.
  int binderThreads = 32;
  bool recordScheduledEvents = true;
};

class Scheduler : public ControlLoop {
 public:
  static constexpr const char* kName = "default-scheduler";

  Scheduler(ControllerContext& context, SchedulerOptions options = {});
  ~Scheduler() override;
  void start() override;
  void stop() override;

  std::uint64_t boundCount() const { return bound_.load(); }

 private:
  struct BindRequest {
    std::string podKey;
    ObjectPtr pod;
    std::string nodeName;
  };

  void onPod(const ObjectPtr& pod);
  void onPodDeleted(const ObjectPtr& pod);
  void onNode(const ObjectPtr& node);
  void onNodeDeleted(const ObjectPtr& node);
  // Queues every pod waiting as unschedulable: something changed that may let it fit.
  void retryUnschedulableLocked();
  void scheduleLoop();
  void bindLoop();
  void scheduleOne(const std::string& podKey);
  void markUnschedulable(const api::Json& pod, const std::string& message);

  ControllerContext& ctx_;
  SchedulerOptions options_;
  Informer& pods_;
  Informer& nodes_;

  std::mutex mu_;  // guards state_, assumed_, unschedulable_
  ClusterState state_;
  std::unordered_map<std::string, std::string> assumed_;        // pod key → node, bind in flight
  std::unordered_map<std::string, std::string> unschedulable_;  // pod key → digest of spec + labels

  WorkQueue queue_{std::chrono::milliseconds(1000), std::chrono::milliseconds(10000)};
  std::mutex bindMu_;
  std::condition_variable bindCv_;
  std::deque<BindRequest> binds_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> bound_{0};
  std::thread scheduleThread_;
  std::vector<std::thread> binderThreads_;
};

}  // namespace ferry::cp
