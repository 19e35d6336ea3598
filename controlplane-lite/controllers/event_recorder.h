// Writes core/v1 Events ("kubectl describe" shows them) without blocking the
// loop that reports them: events go through a bounded queue to a writer thread.
// A repeat of the same reason and message for the same object bumps the count
// of the existing Event instead of creating another, as client-go's recorder
// does. When the queue is full events are dropped, like client-go's broadcaster.
#pragma once

#include "controlplane-lite/object_client.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

namespace ferry::cp {

class EventRecorder {
 public:
  EventRecorder(ObjectClient& client, std::string component, std::size_t maxQueued = 10000);
  ~EventRecorder();

  // `kind` of `involved` ("Pod", "Deployment"...). `type` is Normal or Warning.
  // `source` names the reporting loop ("default-scheduler"); empty: the recorder's component.
  void record(const std::string& kind, const api::Json& involved, const std::string& type, const std::string& reason,
              const std::string& message, const std::string& source = "");
  void start();
  void stop();
  // Waits until every queued event is written (tests).
  void flush();

 private:
  struct Pending {
    api::Json involvedObject;
    std::string type, reason, message, source;
  };
  void run();
  void write(const Pending& event);

  ObjectClient& client_;
  std::string component_;
  std::size_t maxQueued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  bool writing_ = false;
  bool stop_ = false;
  std::thread thread_;
  // (uid, reason, message) → event name, for counting repeats.
  std::unordered_map<std::string, std::string> seen_;
  unsigned counter_ = 0;
};

// apiVersion for the kinds the control loops report on.
std::string apiVersionForKind(const std::string& kind);

}  // namespace ferry::cp
