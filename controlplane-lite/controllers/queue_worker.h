// Runs a controller's sync function over the keys of its WorkQueue on its own
// threads: success forgets the key's failures, an error re-queues it with back-off.
#pragma once

#include "api/error.h"
#include "controlplane-lite/controllers/work_queue.h"

#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace ferry::cp {

class QueueWorker {
 public:
  using SyncFunction = std::function<Status(const std::string& key)>;

  QueueWorker(std::string name, SyncFunction sync, int threads = 1);
  ~QueueWorker();

  WorkQueue& queue() { return queue_; }
  void start();
  void stop();

 private:
  void run();

  std::string name_;
  SyncFunction sync_;
  int threadCount_;
  WorkQueue queue_;
  std::vector<std::thread> threads_;
};

}  // namespace ferry::cp
