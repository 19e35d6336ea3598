#include "controlplane-lite/controllers/event_recorder.h"

#include "api/log.h"

#include <fmt/format.h>

#include <chrono>
#include <random>

namespace ferry::cp {

std::string apiVersionForKind(const std::string& kind) {
  if (kind == "Deployment" || kind == "ReplicaSet" || kind == "DaemonSet" || kind == "StatefulSet") return "apps/v1";
  if (kind == "HorizontalPodAutoscaler") return "autoscaling/v2";
  if (kind == "EndpointSlice") return "discovery.k8s.io/v1";
  return "v1";
}

EventRecorder::EventRecorder(ObjectClient& client, std::string component, std::size_t maxQueued)
    : client_(client), component_(std::move(component)), maxQueued_(maxQueued) {}

EventRecorder::~EventRecorder() { stop(); }

void EventRecorder::start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
}

void EventRecorder::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void EventRecorder::flush() {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, std::chrono::seconds(10), [this] { return queue_.empty() && !writing_; });
}

void EventRecorder::record(const std::string& kind, const api::Json& involved, const std::string& type,
                           const std::string& reason, const std::string& message, const std::string& source) {
  api::Json ref = {{"kind", kind},
                   {"apiVersion", apiVersionForKind(kind)},
                   {"name", api::nameOf(involved)},
                   {"uid", api::uidOf(involved)},
                   {"resourceVersion", api::resourceVersionOf(involved)}};
  if (!api::namespaceOf(involved).empty()) ref["namespace"] = api::namespaceOf(involved);
  std::lock_guard lock(mu_);
  if (queue_.size() >= maxQueued_) return;
  queue_.push_back(Pending{std::move(ref), type, reason, message, source.empty() ? component_ : source});
  cv_.notify_all();
}

void EventRecorder::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Pending event = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    lock.unlock();
    write(event);
    lock.lock();
    writing_ = false;
    cv_.notify_all();
  }
}

void EventRecorder::write(const Pending& event) {
  std::string ns = event.involvedObject.value("namespace", std::string("default"));
  std::string now = api::nowRfc3339();
  std::string seenKey = event.involvedObject.value("uid", "") + "\x1f" + event.reason + "\x1f" + event.message;
  if (seen_.size() > 4096) seen_.clear();
  auto it = seen_.find(seenKey);
  if (it != seen_.end()) {
    auto existing = client_.get("events", ns, it->second);
    if (existing) {
      api::Json updated = *existing;
      updated["count"] = updated.value("count", 1) + 1;
      updated["lastTimestamp"] = now;
      if (client_.update("events", updated)) return;
    }
  }
  // Kubernetes names events <object>.<16 hex digits>.
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string name = fmt::format("{}.{:016x}", event.involvedObject.value("name", "unknown"), rng() ^ ++counter_);
  api::Json object = {{"apiVersion", "v1"},
                      {"kind", "Event"},
                      {"metadata", {{"name", name}, {"namespace", ns}}},
                      {"involvedObject", event.involvedObject},
                      {"reason", event.reason},
                      {"message", event.message},
                      {"type", event.type},
                      {"source", {{"component", event.source}}},
                      {"reportingComponent", event.source},
                      {"reportingInstance", event.source},
                      {"firstTimestamp", now},
                      {"lastTimestamp", now},
                      {"count", 1}};
  auto created = client_.create("events", object);
  if (!created) {
    log::debug("event {} for {}: {}", event.reason, event.involvedObject.value("name", ""), created.error().message);
    return;
  }
  seen_[seenKey] = name;
}

}  // namespace ferry::cp
