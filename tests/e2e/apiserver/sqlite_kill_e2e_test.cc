// `kill -9` of a `ferry server` on SQLite while 16 clients write through its
// HTTPS API (creates and merge-patch updates): restarted on the same data dir,
// every write the API acknowledged is there. Done three times in a row on the
// same store, so the restarts also recover a WAL left by a killed process.
#include "tests/e2e/apiserver/server_process.h"
#include "tests/unit/store/store_fixture.h"

#include <gtest/gtest.h>

#include <thread>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using ferry::e2e::ApiClient;
using ferry::e2e::ServerProcess;
using ferry::e2e::WriteLoad;

namespace {

bool waitFor(const std::function<bool()>& condition, std::chrono::seconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return condition();
}

}  // namespace

TEST(ApiServerSqliteKill, KillMinus9UnderWriteLoadLosesNoAcknowledgedWrite) {
  const char* binary = std::getenv("FERRY_BINARY");
  if (!binary || !fs::exists(binary)) GTEST_SKIP() << "FERRY_BINARY not built";
  fs::path dir = ferry::cp::testing::makeTempDir("e2e-sqlite-kill");
  ServerProcess server(binary, dir / "server", "sqlite");

  for (int round = 0; round < 3; ++round) {
    ASSERT_EQ(server.start(), "") << "round " << round;
    WriteLoad load("round" + std::to_string(round));
    load.start({&server}, 16);
    // Kill at a moment that differs from round to round, with writes in flight.
    std::size_t target = 200 + 150 * round;
    ASSERT_TRUE(waitFor([&] { return load.acknowledged() >= target; }, std::chrono::seconds(120)))
        << "round " << round << ": only " << load.acknowledged() << " writes acknowledged\n" << server.log();
    server.kill9();
    load.stop();

    ASSERT_EQ(server.start(), "") << "restart after kill -9, round " << round;
    ApiClient client(server.dataDir(), server.url());
    auto lost = load.lostWrites(client);
    for (std::size_t i = 0; i < lost.size() && i < 20; ++i) ADD_FAILURE() << "round " << round << ": " << lost[i];
    EXPECT_TRUE(lost.empty()) << lost.size() << " lost of " << load.acknowledged();
    std::printf("round %d: %zu writes acknowledged before kill -9, %zu unanswered, %zu lost\n", round,
                load.acknowledged(), load.refused(), lost.size());
    server.stop();
  }
  if (HasFailure()) std::fprintf(stderr, "%s\n", server.log().substr(0, 20000).c_str());
  fs::remove_all(dir);
}
