#include "controlplane-lite/controllers/queue_worker.h"

#include "api/log.h"

namespace ferry::cp {

QueueWorker::QueueWorker(std::string name, SyncFunction sync, int threads)
    : name_(std::move(name)), sync_(std::move(sync)), threadCount_(threads) {}

QueueWorker::~QueueWorker() { stop(); }

void QueueWorker::start() {
  for (int i = 0; i < threadCount_; ++i) threads_.emplace_back([this] { run(); });
}

void QueueWorker::stop() {
  queue_.shutdown();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void QueueWorker::run() {
  while (auto key = queue_.get()) {
    Status st;
    try {
      st = sync_(*key);
    } catch (const std::exception& e) {
      st = fail(EINVAL, std::string("exception: ") + e.what());
    }
    if (st) {
      queue_.forget(*key);
    } else {
      // Conflicts are routine (the cache was behind); only log the rest loudly.
      if (st.error().code == ECANCELED)
        log::debug("{} {}: {}", name_, *key, st.error().message);
      else
        log::warn("{} {}: {}", name_, *key, st.error().message);
      queue_.addRateLimited(*key);
    }
    queue_.done(*key);
  }
}

}  // namespace ferry::cp
