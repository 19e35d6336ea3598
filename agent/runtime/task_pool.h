// A few threads that run many timed tasks: each pod's worker is one task that runs its
// sync() when due, instead of a thread of its own per pod (bench/footprint, 100 pods:
// 100 sync threads, and 100 ended but never joined start threads, held 6 MB of stacks).
//
// A task may block (an image pull, an exec probe, a container start): when every thread
// is busy the pool adds one (up to maxThreads), so a burst of pod starts still runs in
// parallel; a thread not called for idleExit ends again (trimming), and idle threads are
// called most recently idle first, so the ones a burst added are the ones that end.
//
// Lock order: the pool's mutex is a leaf. A task runs without it, so a task may call
// schedule/wake/cancel (also on itself), and callers may hold their own locks.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

namespace ferry::runtime {

class TaskPool {
 public:
  using Clock = std::chrono::steady_clock;
  using TaskId = std::uint64_t;
  // Runs once per due time; returns when to run next, or nullopt when the task is done.
  using Task = std::function<std::optional<Clock::time_point>()>;

  explicit TaskPool(int minThreads = 2, int maxThreads = 64, std::chrono::milliseconds idleExit = std::chrono::seconds(10));
  ~TaskPool();  // cancels every task (waits for running ones) and joins the threads
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  TaskId schedule(Task task, Clock::time_point when = Clock::now());
  // Runs the task as soon as a thread is free (again right after, if it is running now).
  void wake(TaskId id);
  // Removes the task. Waits until a run in progress has returned, unless called from that
  // run itself. Afterwards the task's function is destroyed and never called again.
  void cancel(TaskId id);

  // For tests and the footprint figures.
  int threads() const;
  size_t tasks() const;

 private:
  struct Entry {
    Task task;
    Clock::time_point due;
    bool running = false;
    bool rerun = false;      // woken while running
    bool cancelled = false;  // cancel() while running: dropped when the run returns
  };
  void loop();
  void spawnLocked();
  void reapLocked();
  void queueLocked(TaskId id, Entry& e);
  bool promoteLocked(TaskId task);
  TaskId takeDueLocked(Clock::time_point now);
  void runLocked(std::unique_lock<std::mutex>& lock, TaskId id);

  const int minThreads_, maxThreads_;
  const std::chrono::milliseconds idleExit_;
  mutable std::mutex mu_;
  struct Follower {
    std::condition_variable cv;
    bool called = false;
    TaskId task = 0;  // handed over by the leader; 0: called to lead
  };
  std::condition_variable leaderCv_;  // the one idle thread that waits for the next due time
  std::vector<Follower*> followers_;  // the other idle threads, most recently idle last
  std::condition_variable doneCv_;  // a run ended (cancel waits on it)
  std::map<TaskId, Entry> tasks_;
  std::set<std::pair<Clock::time_point, TaskId>> queue_;  // due time order, tasks not running
  TaskId nextId_ = 1;
  int threads_ = 0;
  bool leaderActive_ = false;   // a thread has the leader role
  bool leaderWaiting_ = false;  // and waits on leaderCv_
  bool stopping_ = false;
  std::map<std::thread::id, std::thread> live_;
  std::vector<std::thread> exited_;  // ended threads, joined by the next spawn or the destructor
};

}  // namespace ferry::runtime
