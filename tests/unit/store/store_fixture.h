// The backends the behaviour suite runs against, each in a fresh temp directory.
#pragma once

#include "controlplane-lite/store.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ferry::cp::testing {

inline std::filesystem::path makeTempDir(const std::string& tag) {
  std::string pattern = (std::filesystem::temp_directory_path() / ("ferry-" + tag + "-XXXXXX")).string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  return pattern;
}

// Collects watch events from the store's delivery thread and lets a test wait for them.
class EventLog {
 public:
  std::function<void(const StoreEvent&)> sink() {
    return [this](const StoreEvent& event) {
      std::lock_guard lock(mutex_);
      events_.push_back(event);
      changed_.notify_all();
    };
  }
  // Waits (generously) until at least `count` events arrived; returns a copy of them.
  std::vector<StoreEvent> waitFor(std::size_t count, std::chrono::seconds deadline = std::chrono::seconds(20)) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, deadline, [&] { return events_.size() >= count; });
    return events_;
  }
  std::vector<StoreEvent> snapshot() {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<StoreEvent> events_;
};

}  // namespace ferry::cp::testing
