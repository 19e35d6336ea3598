#include "controlplane-lite/watch_hub.h"

#include "api/log.h"

#include <algorithm>
#include <atomic>

#include <fmt/format.h>

namespace ferry::cp {

struct WatchHub::Watcher {
  std::string prefix;
  std::int64_t afterRevision = 0;
  Emit sink;
  // Touched by the delivery thread only.
  std::int64_t delivered = 0;  // newest revision this watcher has seen (or skipped)
  bool replayed = false;
  // Set when the handle goes away; the sink is never called afterwards.
  std::atomic<bool> cancelled{false};
  // Held while the sink runs, so a handle destroyed on another thread waits for it.
  std::mutex callMutex;
};

class WatchHub::Handle final : public StoreWatch {
 public:
  Handle(std::shared_ptr<WatchHub> hub, std::shared_ptr<Watcher> watcher)
      : hub_(std::move(hub)), watcher_(std::move(watcher)) {}
  ~Handle() override { hub_->remove(watcher_); }

 private:
  std::shared_ptr<WatchHub> hub_;
  std::shared_ptr<Watcher> watcher_;
};

WatchHub::WatchHub(Replay replay, std::int64_t currentRevision, std::int64_t compactedRevision)
    : replay_(std::move(replay)), published_(currentRevision), compacted_(compactedRevision) {}

WatchHub::~WatchHub() { stop(); }

void WatchHub::start() {
  std::lock_guard lock(mutex_);
  thread_ = std::thread([this] { run(); });
  threadId_ = thread_.get_id();
}

void WatchHub::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) thread_.join();
}

Result<std::unique_ptr<StoreWatch>> WatchHub::add(const std::string& prefix, std::int64_t afterRevision, Emit sink) {
  auto watcher = std::make_shared<Watcher>();
  watcher->prefix = prefix;
  watcher->afterRevision = afterRevision;
  watcher->sink = std::move(sink);
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return fail(EPIPE, "watch " + prefix + ": the store is closed");
    if (afterRevision >= published_) {
      // Everything newer is still to be published, and this watcher will be listed by then.
      watcher->delivered = afterRevision;
      watcher->replayed = true;
    } else {
      std::int64_t oldest = std::max(compacted_, compacting_);
      if (afterRevision < oldest) {
        return fail(ERANGE, fmt::format("watch {} from revision {}: history before revision {} is compacted",
                                        prefix, afterRevision, oldest + 1));
      }
      waitingForReplay_.push_back(watcher);
    }
    watchers_.push_back(watcher);
  }
  wake_.notify_all();
  return std::make_unique<Handle>(shared_from_this(), std::move(watcher));
}

void WatchHub::remove(const std::shared_ptr<Watcher>& watcher) {
  {
    std::lock_guard lock(mutex_);
    std::erase(watchers_, watcher);
    std::erase(waitingForReplay_, watcher);
  }
  if (std::this_thread::get_id() == threadId_) {
    watcher->cancelled = true;  // called from a sink: the delivery thread holds callMutex
  } else {
    std::lock_guard call(watcher->callMutex);
    watcher->cancelled = true;
  }
}

void WatchHub::publish(std::vector<StoreEvent> events) {
  if (events.empty()) return;
  {
    std::lock_guard lock(mutex_);
    published_ = std::max(published_, events.back().kv.modRevision);
    // A watcher added later replays from the history, so nobody needs these.
    if (watchers_.empty() || stopping_) return;
    for (auto& event : events) queue_.push_back(std::move(event));
  }
  wake_.notify_all();
}

std::int64_t WatchHub::beginCompaction(std::int64_t wanted) {
  std::lock_guard lock(mutex_);
  for (const auto& watcher : waitingForReplay_) wanted = std::min(wanted, watcher->afterRevision);
  if (wanted > compacted_) compacting_ = wanted;
  return wanted;
}

void WatchHub::endCompaction(std::int64_t compactedTo) {
  std::lock_guard lock(mutex_);
  compacted_ = std::max(compacted_, compactedTo);
  compacting_ = 0;
}

std::int64_t WatchHub::compactedRevision() const {
  std::lock_guard lock(mutex_);
  return compacted_;
}

void WatchHub::callSink(Watcher& watcher, const StoreEvent& event) {
  std::lock_guard call(watcher.callMutex);
  if (watcher.cancelled) return;
  try {
    watcher.sink(event);
  } catch (const std::exception& e) {
    log::error("watch {}: sink threw: {}", watcher.prefix, e.what());
  }
}

void WatchHub::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || !waitingForReplay_.empty(); });
    if (stopping_) return;
    auto replays = waitingForReplay_;
    std::deque<StoreEvent> events;
    events.swap(queue_);
    auto watchers = watchers_;
    lock.unlock();

    for (const auto& watcher : replays) {
      if (watcher->cancelled) continue;
      auto readAt = replay_(watcher->prefix, watcher->afterRevision,
                            [&](const StoreEvent& event) { callSink(*watcher, event); });
      if (readAt) {
        watcher->delivered = *readAt;
      } else {
        StoreEvent end;
        end.type = StoreEvent::Type::Error;
        end.kv.key = watcher->prefix;
        end.kv.value = readAt.error().message;
        callSink(*watcher, end);
        watcher->cancelled = true;
      }
      watcher->replayed = true;
    }
    lock.lock();
    for (const auto& watcher : replays) std::erase(waitingForReplay_, watcher);
    lock.unlock();

    for (const auto& event : events) {
      for (const auto& watcher : watchers) {
        if (watcher->cancelled || !watcher->replayed || event.kv.modRevision <= watcher->delivered) continue;
        watcher->delivered = event.kv.modRevision;
        if (event.kv.key.starts_with(watcher->prefix)) callSink(*watcher, event);
      }
    }
    lock.lock();
  }
}

}  // namespace ferry::cp
