// In-process fan-out of committed changes to watchers (used by SqliteStore).
//
// One delivery thread calls every sink, so events reach each watcher in
// revision order and a slow sink delays the others rather than reordering them.
// A watch that starts in the past first replays the history (through the
// store's `Replay` function) on that same thread, then continues with live
// events newer than what the replay read: no gap, no duplicate.
#pragma once

#include "controlplane-lite/store.h"

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ferry::cp {

class WatchHub : public std::enable_shared_from_this<WatchHub> {
 public:
  using Emit = std::function<void(const StoreEvent&)>;
  // Calls `emit` for every change under `prefix` with revision > `afterRevision`, in
  // order, and returns the revision the history was read at.
  using Replay = std::function<Result<std::int64_t>(const std::string& prefix, std::int64_t afterRevision,
                                                    const Emit& emit)>;

  WatchHub(Replay replay, std::int64_t currentRevision, std::int64_t compactedRevision);
  ~WatchHub();

  void start();
  // Stops the delivery thread; no sink is called afterwards. Handles may outlive it.
  void stop();

  Result<std::unique_ptr<StoreWatch>> add(const std::string& prefix, std::int64_t afterRevision,
                                          Emit sink);
  // Called by the writer, in commit order, with the events of one commit.
  void publish(std::vector<StoreEvent> events);

  // Compaction protocol: `beginCompaction` lowers `wanted` so that no watch still
  // waiting for its replay loses history, and refuses new watches older than
  // the result; `endCompaction` records what was actually compacted.
  std::int64_t beginCompaction(std::int64_t wanted);
  void endCompaction(std::int64_t compactedTo);
  std::int64_t compactedRevision() const;

 private:
  struct Watcher;
  class Handle;
  void run();
  void remove(const std::shared_ptr<Watcher>& watcher);
  void callSink(Watcher& watcher, const StoreEvent& event);

  Replay replay_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::shared_ptr<Watcher>> watchers_;
  std::vector<std::shared_ptr<Watcher>> waitingForReplay_;
  std::deque<StoreEvent> queue_;
  std::int64_t published_ = 0;  // newest revision handed to publish()
  std::int64_t compacted_ = 0;
  std::int64_t compacting_ = 0;
  bool stopping_ = false;
  std::thread thread_;
  std::thread::id threadId_;
};

}  // namespace ferry::cp
