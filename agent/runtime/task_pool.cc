#include "agent/runtime/task_pool.h"

namespace ferry::runtime {

namespace {
// The task this thread is running (cancel() from inside a run must not wait for itself).
thread_local const TaskPool* currentPool = nullptr;
thread_local TaskPool::TaskId currentTask = 0;
}  // namespace

TaskPool::TaskPool(int minThreads, int maxThreads, std::chrono::milliseconds idleExit)
    : minThreads_(std::max(1, minThreads)), maxThreads_(std::max(std::max(1, minThreads), maxThreads)),
      idleExit_(idleExit) {
  std::lock_guard lock(mu_);
  for (int i = 0; i < minThreads_; ++i) spawnLocked();
}

TaskPool::~TaskPool() {
  std::map<std::thread::id, std::thread> live;
  std::vector<std::thread> exited;
  std::map<TaskId, Entry> tasks;
  {
    std::unique_lock lock(mu_);
    // Nothing starts any more; runs in progress finish first.
    stopping_ = true;
    queue_.clear();
    leaderCv_.notify_all();
    while (!followers_.empty()) promoteLocked(0);
    doneCv_.wait(lock, [&] {
      for (const auto& [id, e] : tasks_)
        if (e.running) return false;
      return true;
    });
    live.swap(live_);
    exited.swap(exited_);
    tasks.swap(tasks_);
  }
  for (auto& [id, t] : live) t.join();
  for (auto& t : exited) t.join();
  // `tasks` (their captured state) is destroyed here, without the lock.
}

TaskPool::TaskId TaskPool::schedule(Task task, Clock::time_point when) {
  std::lock_guard lock(mu_);
  TaskId id = nextId_++;
  Entry& e = tasks_[id];
  e.task = std::move(task);
  e.due = when;
  queueLocked(id, e);
  return id;
}

void TaskPool::queueLocked(TaskId id, Entry& e) {
  queue_.insert({e.due, id});
  if (leaderWaiting_) leaderCv_.notify_one();
  else if (!leaderActive_) promoteLocked(0);  // it becomes the leader
}

void TaskPool::wake(TaskId id) {
  std::lock_guard lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  Entry& e = it->second;
  if (e.running) {
    e.rerun = true;
    return;
  }
  queue_.erase({e.due, id});
  e.due = Clock::now();
  queueLocked(id, e);
}

void TaskPool::cancel(TaskId id) {
  Task dead;
  {
    std::unique_lock lock(mu_);
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return;
    if (it->second.running) {
      it->second.cancelled = true;
      if (currentPool == this && currentTask == id) return;  // the run ends it when it returns
      doneCv_.wait(lock, [&] { return !tasks_.contains(id); });
      return;
    }
    queue_.erase({it->second.due, id});
    dead = std::move(it->second.task);
    tasks_.erase(it);
  }
}

int TaskPool::threads() const {
  std::lock_guard lock(mu_);
  return threads_;
}

size_t TaskPool::tasks() const {
  std::lock_guard lock(mu_);
  return tasks_.size();
}

void TaskPool::spawnLocked() {
  if (stopping_) return;
  ++threads_;
  std::thread t([this] { loop(); });
  auto tid = t.get_id();
  live_.emplace(tid, std::move(t));
}

bool TaskPool::promoteLocked(TaskId task) {
  if (followers_.empty()) return false;
  Follower* f = followers_.back();  // the most recently idle: the others stay idle and may end
  followers_.pop_back();
  f->called = true;
  f->task = task;
  f->cv.notify_one();
  return true;
}

void TaskPool::runLocked(std::unique_lock<std::mutex>& lock, TaskId id) {
  Entry& e = tasks_.at(id);  // std::map: the reference stays valid while other entries come and go
  lock.unlock();
  currentPool = this;
  currentTask = id;
  std::optional<Clock::time_point> next = e.task();
  currentPool = nullptr;
  currentTask = 0;
  lock.lock();
  e.running = false;
  Task dead;
  if (e.cancelled || !next || stopping_) {
    dead = std::move(e.task);
    tasks_.erase(id);
  } else {
    e.due = e.rerun ? Clock::now() : *next;
    queue_.insert({e.due, id});
    if (leaderWaiting_) leaderCv_.notify_one();  // it may be due before what the leader waits for
  }
  doneCv_.notify_all();
  if (dead) {
    lock.unlock();
    dead = nullptr;
    lock.lock();
  }
}

TaskPool::TaskId TaskPool::takeDueLocked(Clock::time_point now) {
  if (queue_.empty() || queue_.begin()->first > now) return 0;
  TaskId id = queue_.begin()->second;
  queue_.erase(queue_.begin());
  Entry& e = tasks_.at(id);
  e.running = true;
  e.rerun = false;
  return id;
}

// Roles: one thread is the leader, which waits for the next due time and hands due tasks
// to idle threads (followers, the most recently idle first); it runs a task itself only
// when no thread has come free for kSpawnDelay, and then makes a new thread the leader.
// A thread that finishes a run takes the next due task itself. So a due task wakes one
// thread, a steady load of short runs keeps two or three threads, a burst of blocking
// runs grows the pool, and the threads it added are the ones left idle, which end after
// idleExit (trimming).
void TaskPool::loop() {
  constexpr auto kSpawnDelay = std::chrono::milliseconds(20);
  std::unique_lock lock(mu_);
  auto lastWork = Clock::now();
  bool leader = false;
  while (!stopping_) {
    if (!exited_.empty()) {
      std::vector<std::thread> ended;
      ended.swap(exited_);
      lock.unlock();
      for (auto& t : ended) t.join();
      lock.lock();
      continue;
    }
    auto now = Clock::now();
    if (!leader && !leaderActive_) leader = leaderActive_ = true;
    if (!leader) {
      if (TaskId id = takeDueLocked(now)) {
        runLocked(lock, id);
        lastWork = Clock::now();
        continue;
      }
      Follower me;
      followers_.push_back(&me);
      me.cv.wait_until(lock, lastWork + idleExit_, [&] { return me.called || stopping_; });
      if (!me.called) std::erase(followers_, &me);
      if (me.task) {  // handed over by the leader (already marked running)
        runLocked(lock, me.task);
        lastWork = Clock::now();
        continue;
      }
      if (me.called || stopping_) continue;
      if (threads_ > minThreads_) {  // not needed for idleExit: this thread ends
        auto self = live_.find(std::this_thread::get_id());
        exited_.push_back(std::move(self->second));
        live_.erase(self);
        --threads_;
        return;
      }
      lastWork = Clock::now();
      continue;
    }
    // The leader: hand due tasks to idle threads.
    while (!queue_.empty() && queue_.begin()->first <= now && !followers_.empty()) promoteLocked(takeDueLocked(now));
    Clock::time_point wakeAt = Clock::time_point::max();
    if (!queue_.empty()) {
      auto due = queue_.begin()->first;
      if (due > now) {
        wakeAt = due;
      } else if (now < due + kSpawnDelay) {
        wakeAt = due + kSpawnDelay;  // a thread may come free meanwhile
      } else {
        // Every thread has been busy for a while (blocking runs): add one to lead (below
        // maxThreads; at it, the first thread to come free leads) and run this one here.
        TaskId id = takeDueLocked(now);
        leader = leaderActive_ = false;
        if (threads_ < maxThreads_) spawnLocked();
        runLocked(lock, id);
        lastWork = Clock::now();
        continue;
      }
    }
    leaderWaiting_ = true;
    if (wakeAt == Clock::time_point::max()) leaderCv_.wait(lock);
    else leaderCv_.wait_until(lock, wakeAt);
    leaderWaiting_ = false;
  }
  if (leader) leaderActive_ = false;
}

}  // namespace ferry::runtime
