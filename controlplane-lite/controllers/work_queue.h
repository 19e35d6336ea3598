// A queue of object keys ("ns/name") for a controller's workers, with the
// guarantees client-go's workqueue gives: a key is queued at most once however
// often it is added, never handed to two workers at once (an add while it is
// being processed queues it again for after `done`), and failed keys come back
// after a per-key exponential back-off instead of in a hot loop.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace ferry::cp {

class WorkQueue {
 public:
  using Clock = std::chrono::steady_clock;

  explicit WorkQueue(std::chrono::milliseconds baseDelay = std::chrono::milliseconds(5),
                     std::chrono::milliseconds maxDelay = std::chrono::seconds(60));

  void add(const std::string& key);
  void addAfter(const std::string& key, std::chrono::milliseconds delay);
  // Re-queues after baseDelay * 2^(failures so far), capped at maxDelay.
  void addRateLimited(const std::string& key);
  // Clears the key's failure count (call after a successful sync).
  void forget(const std::string& key);
  int failures(const std::string& key);

  // Blocks until a key is ready; nullopt once shut down.
  std::optional<std::string> get();
  // Marks the key processed; re-queues it when it was added meanwhile.
  void done(const std::string& key);
  void shutdown();
  std::size_t length();

 private:
  void promoteDueLocked(Clock::time_point now);

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  std::unordered_set<std::string> dirty_;       // queued or waiting to be re-queued after done
  std::unordered_set<std::string> processing_;  // handed to a worker
  std::multimap<Clock::time_point, std::string> delayed_;
  std::unordered_map<std::string, int> failures_;
  std::chrono::milliseconds baseDelay_;
  std::chrono::milliseconds maxDelay_;
  bool shuttingDown_ = false;
};

}  // namespace ferry::cp
