#include "controlplane-lite/scheduler/scheduler.h"

#include "api/log.h"
#include "controlplane-lite/controllers/controller_util.h"

#include <fmt/format.h>

namespace ferry::cp {

namespace {

bool isOurs(const api::Json& pod) {
  std::string name = api::at<std::string>(pod, {"spec", "schedulerName"});
  return name.empty() || name == Scheduler::kName;
}

bool isTerminal(const api::Json& pod) {
  std::string phase = api::at<std::string>(pod, {"status", "phase"});
  return phase == "Succeeded" || phase == "Failed";
}

// What can change whether an unschedulable pod fits by itself (status updates cannot).
std::string schedulingDigest(const api::Json& pod) {
  return api::at<api::Json>(pod, {"spec"}, api::Json::object()).dump() +
         api::at<api::Json>(pod, {"metadata", "labels"}, api::Json::object()).dump();
}

}  // namespace

Scheduler::Scheduler(ControllerContext& context, SchedulerOptions options)
    : ctx_(context),
      options_(options),
      pods_(context.informers.get("pods")),
      nodes_(context.informers.get("nodes")) {
  pods_.addHandlers({[this](const ObjectPtr& p) { onPod(p); },
                     [this](const ObjectPtr&, const ObjectPtr& p) { onPod(p); },
                     [this](const ObjectPtr& p) { onPodDeleted(p); }});
  nodes_.addHandlers({[this](const ObjectPtr& n) { onNode(n); },
                      [this](const ObjectPtr&, const ObjectPtr& n) { onNode(n); },
                      [this](const ObjectPtr& n) { onNodeDeleted(n); }});
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::start() {
  scheduleThread_ = std::thread([this] { scheduleLoop(); });
  for (int i = 0; i < options_.binderThreads; ++i) binderThreads_.emplace_back([this] { bindLoop(); });
}

void Scheduler::stop() {
  stop_ = true;
  queue_.shutdown();
  {
    std::lock_guard lock(bindMu_);
    bindCv_.notify_all();
  }
  if (scheduleThread_.joinable()) scheduleThread_.join();
  for (auto& t : binderThreads_)
    if (t.joinable()) t.join();
  binderThreads_.clear();
}

void Scheduler::onPod(const ObjectPtr& pod) {
  if (!isOurs(*pod)) return;
  std::string key = objectKey(*pod);
  std::string nodeName = api::at<std::string>(*pod, {"spec", "nodeName"});
  std::lock_guard lock(mu_);
  if (!nodeName.empty()) {
    assumed_.erase(key);
    unschedulable_.erase(key);
    if (isTerminal(*pod)) {
      if (!state_.nodeOfPod(key).empty()) {
        state_.removePod(key);
        retryUnschedulableLocked();
      }
    } else if (state_.nodeOfPod(key) != nodeName) {
      state_.placePod(key, *pod, nodeName);
    }
    return;
  }
  if (api::isTerminating(*pod) || assumed_.count(key)) return;
  auto it = unschedulable_.find(key);
  if (it != unschedulable_.end()) {
    if (it->second == schedulingDigest(*pod)) return;
    unschedulable_.erase(it);
  }
  queue_.add(key);
}

void Scheduler::onPodDeleted(const ObjectPtr& pod) {
  std::string key = objectKey(*pod);
  std::lock_guard lock(mu_);
  assumed_.erase(key);
  unschedulable_.erase(key);
  if (!state_.nodeOfPod(key).empty()) {
    state_.removePod(key);
    retryUnschedulableLocked();
  }
}

void Scheduler::onNode(const ObjectPtr& node) {
  std::lock_guard lock(mu_);
  bool known = state_.node(api::nameOf(*node)) != nullptr;
  state_.upsertNode(*node);
  // Pods that were bound before their node was known are accounted now.
  if (!known) {
    for (const auto& pod : pods_.list()) {
      if (api::at<std::string>(*pod, {"spec", "nodeName"}) == api::nameOf(*node) && !isTerminal(*pod) &&
          state_.nodeOfPod(objectKey(*pod)).empty())
        state_.placePod(objectKey(*pod), *pod, api::nameOf(*node));
    }
  }
  retryUnschedulableLocked();
}

void Scheduler::onNodeDeleted(const ObjectPtr& node) {
  std::lock_guard lock(mu_);
  state_.removeNode(api::nameOf(*node));
}

void Scheduler::retryUnschedulableLocked() {
  for (const auto& [key, digest] : unschedulable_) queue_.add(key);
}

void Scheduler::scheduleLoop() {
  while (auto key = queue_.get()) {
    scheduleOne(*key);
    queue_.done(*key);
  }
}

void Scheduler::scheduleOne(const std::string& podKey) {
  ObjectPtr pod = pods_.getByKey(podKey);
  if (!pod || !api::at<std::string>(*pod, {"spec", "nodeName"}).empty() || api::isTerminating(*pod)) return;
  PlacementResult result;
  {
    std::lock_guard lock(mu_);
    if (assumed_.count(podKey)) return;
    result = state_.schedule(*pod);
    if (!result.nodeName.empty()) {
      state_.placeScheduled(podKey, result);
      assumed_[podKey] = result.nodeName;
      unschedulable_.erase(podKey);
    } else {
      unschedulable_[podKey] = schedulingDigest(*pod);
    }
  }
  if (result.nodeName.empty()) {
    markUnschedulable(*pod, result.message);
    return;
  }
  std::lock_guard lock(bindMu_);
  binds_.push_back(BindRequest{podKey, pod, result.nodeName});
  bindCv_.notify_one();
}

void Scheduler::markUnschedulable(const api::Json& pod, const std::string& message) {
  api::Json updated = pod;
  if (!updated["status"].is_object()) updated["status"] = api::Json::object();
  bool changed = setCondition(updated["status"]["conditions"], "PodScheduled", "False", "Unschedulable", message);
  if (changed) {
    if (api::at<std::string>(updated, {"status", "phase"}).empty()) updated["status"]["phase"] = "Pending";
    auto st = ctx_.client.updateStatus("pods", updated);
    if (!st) log::debug("scheduler: status of {}: {}", objectKey(pod), st.error().message);
  }
  ctx_.events.record("Pod", pod, "Warning", "FailedScheduling", message, kName);
}

void Scheduler::bindLoop() {
  for (;;) {
    BindRequest request;
    {
      std::unique_lock lock(bindMu_);
      bindCv_.wait(lock, [this] { return stop_ || !binds_.empty(); });
      if (stop_) return;
      request = std::move(binds_.front());
      binds_.pop_front();
    }
    api::Json binding = {
        {"apiVersion", "v1"},
        {"kind", "Binding"},
        {"metadata", {{"name", api::nameOf(*request.pod)}, {"namespace", api::namespaceOf(*request.pod)}}},
        {"target", {{"apiVersion", "v1"}, {"kind", "Node"}, {"name", request.nodeName}}}};
    if (!api::uidOf(*request.pod).empty()) binding["metadata"]["uid"] = api::uidOf(*request.pod);
    auto bound = ctx_.client.create("bindings", binding);
    if (!bound && bound.error().code == ENOENT && bound.error().message.find("resource type") != std::string::npos) {
      // An API without the pods/binding subresource: set spec.nodeName with an update instead.
      bound = [&]() -> Result<api::Json> {
        auto pod = ctx_.client.get("pods", api::namespaceOf(*request.pod), api::nameOf(*request.pod));
        if (!pod) return pod;
        if (!api::at<std::string>(*pod, {"spec", "nodeName"}).empty()) return fail(ECANCELED, "already assigned");
        (*pod)["spec"]["nodeName"] = request.nodeName;
        return ctx_.client.update("pods", *pod);
      }();
    }
    if (bound) {
      bound_++;
      if (options_.recordScheduledEvents)
        ctx_.events.record("Pod", *request.pod, "Normal", "Scheduled",
                           fmt::format("Successfully assigned {} to {}", request.podKey, request.nodeName), kName);
      continue;
    }
    log::info("scheduler: bind {} to {}: {}", request.podKey, request.nodeName, bound.error().message);
    {
      std::lock_guard lock(mu_);
      auto it = assumed_.find(request.podKey);
      if (it != assumed_.end() && it->second == request.nodeName) {
        assumed_.erase(it);
        state_.removePod(request.podKey);
      }
    }
    // Gone, or bound by someone else: the informer will say so. Anything else: try again later.
    if (bound.error().code != ENOENT && bound.error().code != EEXIST) queue_.addRateLimited(request.podKey);
  }
}

}  // namespace ferry::cp
