#include "agent/runtime/task_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>

using namespace ferry::runtime;
using namespace std::chrono_literals;
using Clock = TaskPool::Clock;

namespace {

// Waits for a condition with a generous deadline (the machine is shared).
bool eventually(const std::function<bool()>& cond, std::chrono::seconds deadline = 30s) {
  auto end = Clock::now() + deadline;
  while (Clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return cond();
}

}  // namespace

TEST(TaskPool, RunsATaskUntilItIsDoneThenDropsIt) {
  TaskPool pool(1, 4);
  std::atomic<int> runs{0};
  auto alive = std::make_shared<int>(0);
  std::weak_ptr<int> watch = alive;
  pool.schedule([&runs, alive]() -> std::optional<Clock::time_point> {
    if (++runs == 3) return std::nullopt;
    return Clock::now() + 1ms;
  });
  alive.reset();
  ASSERT_TRUE(eventually([&] { return pool.tasks() == 0; }));
  EXPECT_EQ(runs, 3);
  EXPECT_TRUE(watch.expired()) << "the finished task's captured state is destroyed";
}

TEST(TaskPool, WakeRunsAFutureTaskNow) {
  TaskPool pool(1, 4);
  std::atomic<int> runs{0};
  auto id = pool.schedule([&]() -> std::optional<Clock::time_point> {
    ++runs;
    return Clock::now() + 1h;
  }, Clock::now() + 1h);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(runs, 0);
  pool.wake(id);
  ASSERT_TRUE(eventually([&] { return runs == 1; }));
  pool.wake(id);
  ASSERT_TRUE(eventually([&] { return runs == 2; }));
  pool.cancel(id);
}

TEST(TaskPool, CancelWaitsForTheRunInProgressAndNothingRunsAfter) {
  TaskPool pool(1, 4);
  std::promise<void> entered, release;
  auto releaseFuture = release.get_future().share();
  std::atomic<int> runs{0};
  std::atomic<bool> inRun{false};
  auto id = pool.schedule([&, releaseFuture]() -> std::optional<Clock::time_point> {
    inRun = true;
    if (++runs == 1) {
      entered.set_value();
      releaseFuture.wait();
    }
    inRun = false;
    return Clock::now();
  });
  entered.get_future().wait();
  auto cancelled = std::async(std::launch::async, [&] { pool.cancel(id); });
  EXPECT_EQ(cancelled.wait_for(100ms), std::future_status::timeout) << "cancel returned while the task ran";
  release.set_value();
  cancelled.get();
  EXPECT_FALSE(inRun);
  int seen = runs;
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(runs, seen);
  EXPECT_EQ(pool.tasks(), 0u);
}

TEST(TaskPool, ATaskMayCancelItselfWithoutDeadlock) {
  TaskPool pool(1, 2);
  std::atomic<int> runs{0};
  auto id = std::make_shared<std::atomic<TaskPool::TaskId>>(0);
  std::promise<void> scheduled;
  auto ready = scheduled.get_future().share();
  *id = pool.schedule([&, id, ready]() -> std::optional<Clock::time_point> {
    ready.wait();
    ++runs;
    pool.cancel(*id);
    return Clock::now();  // ignored: cancelled
  });
  scheduled.set_value();
  ASSERT_TRUE(eventually([&] { return pool.tasks() == 0; }));
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(runs, 1);
}

// A blocking task (an image pull, an exec probe) does not hold up the others: the pool
// grows while tasks block, and shrinks back to its minimum once they are idle.
TEST(TaskPool, GrowsWhileTasksBlockAndTrimsWhenIdle) {
  TaskPool pool(2, 8, 200ms);
  EXPECT_EQ(pool.threads(), 2);
  std::promise<void> release;
  auto gate = release.get_future().share();
  std::atomic<int> blocked{0};
  for (int i = 0; i < 5; ++i)
    pool.schedule([&, gate]() -> std::optional<Clock::time_point> {
      ++blocked;
      gate.wait();
      return std::nullopt;
    });
  ASSERT_TRUE(eventually([&] { return blocked == 5; })) << blocked << " of 5 blocking tasks running";
  // Meanwhile a short periodic task still runs.
  std::atomic<int> ticks{0};
  auto tick = pool.schedule([&]() -> std::optional<Clock::time_point> {
    ++ticks;
    return Clock::now() + 1ms;
  });
  ASSERT_TRUE(eventually([&] { return ticks >= 3; }));
  EXPECT_GE(pool.threads(), 6);
  EXPECT_LE(pool.threads(), 8);
  release.set_value();
  pool.cancel(tick);
  EXPECT_TRUE(eventually([&] { return pool.threads() == 2; })) << pool.threads() << " threads left";
}

TEST(TaskPool, NeverMoreThanMaxThreads) {
  TaskPool pool(1, 3, 50ms);
  std::promise<void> release;
  auto gate = release.get_future().share();
  std::atomic<int> running{0};
  for (int i = 0; i < 6; ++i)
    pool.schedule([&, gate]() -> std::optional<Clock::time_point> {
      ++running;
      gate.wait();
      --running;
      return std::nullopt;
    });
  ASSERT_TRUE(eventually([&] { return running == 3; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(running, 3);
  EXPECT_EQ(pool.threads(), 3);
  release.set_value();
  ASSERT_TRUE(eventually([&] { return pool.tasks() == 0; })) << "the queued tasks ran once threads were free";
}

TEST(TaskPool, DestructionWaitsForRunsAndDropsTheRest) {
  std::atomic<bool> finished{false};
  auto alive = std::make_shared<int>(0);
  std::weak_ptr<int> watch = alive;
  {
    TaskPool pool(1, 2);
    std::promise<void> entered;
    pool.schedule([&]() -> std::optional<Clock::time_point> {
      entered.set_value();
      std::this_thread::sleep_for(100ms);
      finished = true;
      return Clock::now();
    });
    pool.schedule([alive]() -> std::optional<Clock::time_point> { return Clock::now(); }, Clock::now() + 1h);
    alive.reset();
    entered.get_future().wait();
  }
  EXPECT_TRUE(finished);
  EXPECT_TRUE(watch.expired());
}

// The agent's steady state: many pods' workers polling every 200 ms, each run short.
// They share the minimum of threads instead of one each.
TEST(TaskPool, ManyShortPeriodicTasksShareFewThreads) {
  TaskPool pool(2, 64, 200ms);
  std::atomic<int> runs{0};
  std::vector<TaskPool::TaskId> ids;
  for (int i = 0; i < 100; ++i)
    ids.push_back(pool.schedule([&]() -> std::optional<Clock::time_point> {
      ++runs;
      return Clock::now() + 20ms;
    }));
  ASSERT_TRUE(eventually([&] { return runs >= 1000; }));
  // After a trimming window or two only what the runs needed at once is left.
  EXPECT_TRUE(eventually([&] { return pool.threads() <= 4; })) << pool.threads() << " threads for 100 short tasks";
  for (auto id : ids) pool.cancel(id);
}
