// kill -9 of a process in the middle of a write load loses no acknowledged write.
// The child prints every acknowledged write to a pipe; the parent kills it, then
// reopens the database and looks for each of them.
#include "controlplane-lite/sqlite_store.h"
#include "tests/unit/store/store_fixture.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <map>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace ferry::cp::testing {
namespace {

// Runs in the forked child: writers create then update their own keys until killed.
[[noreturn]] void writeUntilKilled(const std::string& path, int ackFd) {
  auto store = SqliteStore::open(path);
  if (!store) _exit(2);
  std::vector<std::thread> writers;
  for (int t = 0; t < 16; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0;; ++i) {
        std::string key = fmt::format("/durable/t{}/k{}", t, i);
        auto created = (*store)->create(key, "created");
        if (!created) _exit(3);
        std::string line = fmt::format("{} {}\n", key, *created);
        if (write(ackFd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(4);
        auto updated = (*store)->update(key, "updated", *created);
        if (!updated) _exit(5);
        line = fmt::format("{} {}\n", key, *updated);
        if (write(ackFd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(4);
      }
    });
  }
  for (auto& writer : writers) writer.join();
  _exit(0);
}

TEST(SqliteDurability, KillNineLosesNoAcknowledgedWrite) {
  auto dir = makeTempDir("store-durability");
  std::string path = (dir / "state.db").string();
  int pipeFds[2];
  ASSERT_EQ(pipe(pipeFds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipeFds[0]);
    writeUntilKilled(path, pipeFds[1]);
  }
  close(pipeFds[1]);

  // key -> newest acknowledged revision
  std::map<std::string, std::int64_t> acknowledged;
  FILE* acks = fdopen(pipeFds[0], "r");
  ASSERT_NE(acks, nullptr);
  char line[512];
  std::size_t lines = 0;
  bool killed = false;
  while (fgets(line, sizeof line, acks)) {
    char key[400];
    long long rev = 0;
    if (sscanf(line, "%399s %lld", key, &rev) != 2) continue;  // a torn last line
    auto& newest = acknowledged[key];
    newest = std::max<std::int64_t>(newest, rev);
    if (++lines == 3000 && !killed) {
      ASSERT_EQ(kill(child, SIGKILL), 0);  // mid-load; the pipe still holds acks sent before
      killed = true;
    }
  }
  fclose(acks);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(killed) << "the child stopped early, status " << status;
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;

  auto store = SqliteStore::open(path);
  ASSERT_TRUE(store) << store.error().message;
  std::size_t missing = 0;
  for (const auto& [key, rev] : acknowledged) {
    auto got = (*store)->get(key);
    if (!got || got->modRevision < rev) {
      if (++missing < 5) ADD_FAILURE() << key << " acknowledged at " << rev << " is missing or older";
    }
  }
  EXPECT_EQ(missing, 0u) << "of " << acknowledged.size() << " acknowledged keys";
  EXPECT_GE(acknowledged.size(), 1000u);
  store->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ferry::cp::testing
