// One leader at a time among several `ferry server` processes sharing a store
// (the scheduler and controllers run only on the leader; the API on all).
//
// The record is a Kubernetes Lease object stored under `key` (e.g.
// "/registry/leases/kube-system/ferry-controllers"), changed only by
// compare-and-swap on its modRevision, so it works on both backends through
// the Store interface alone. As in Kubernetes' client-go, no clock is compared
// across machines: a candidate takes over when the record has not changed for
// `ttl` by its OWN monotonic clock, and a leader stops believing it leads `ttl`
// after it SENT its last successful renewal. Hence two electors never both
// report isLeader() (short of clocks running at very different rates).
//
// Worst-case takeover after the leader dies without releasing: ttl + 2 × retry
// (e.g. ttl 9 s, retry 2 s → about 13 s). A leader that stops cleanly releases
// the record and the next candidate takes over at its next retry.
#pragma once

#include "controlplane-lite/store.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace ferry::cp {

struct LeaderElectionOptions {
  std::chrono::milliseconds ttl{9000};
  std::chrono::milliseconds retry{2000};  // how often the record is read and renewed
  // Called on the elector's thread; keep them short (start or stop the loops elsewhere).
  std::function<void()> onStartedLeading;
  std::function<void()> onStoppedLeading;
  // On stop(): clear the holder so that another candidate takes over at once.
  bool releaseOnStop = true;
};

class LeaderElector {
 public:
  // `identity` must be unique per process (e.g. node name + pid). `store` must outlive this.
  LeaderElector(Store& store, std::string key, std::string identity, LeaderElectionOptions options = {});
  ~LeaderElector();
  LeaderElector(const LeaderElector&) = delete;

  // Starts the renew thread.
  void start();
  // Stops it; releases the record when leading (unless options.releaseOnStop is false).
  void stop();

  bool isLeader() const;
  // The holder seen in the record at the last attempt ("" when none).
  std::string leader() const;

 private:
  void run();
  void attempt();
  void setLeading(bool leading);
  std::string record(const std::string& existing, const std::string& holder, bool newHolder);

  Store& store_;
  std::string key_;
  std::string identity_;
  LeaderElectionOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;

  // Elector thread only, except where atomic.
  std::atomic<bool> leading_{false};
  std::atomic<std::int64_t> validUntilNs_{0};  // steady clock: leadership expires here
  std::int64_t observedRevision_ = 0;
  std::chrono::steady_clock::time_point observedAt_{};
  std::string holder_;  // guarded by mutex_
};

}  // namespace ferry::cp
