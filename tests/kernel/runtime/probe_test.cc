// Network probes from inside a network namespace the test made (only lo in it).
#include "agent/runtime/probe.h"
#include "tests/kernel/runtime/test_env.h"

#include <gtest/gtest.h>

#include <sys/wait.h>

using namespace ferry::runtime;
using namespace ferry::runtime::testing;
using namespace std::chrono_literals;

namespace {

TEST(ProbeKernelTest, TcpAndHttpsProbesRunInThePodNetwork) {
  if (auto why = missingPrerequisite(); !why.empty()) GTEST_SKIP() << why;
  if (run("openssl version") != 0) GTEST_SKIP() << "needs the openssl command for a TLS server";
  PodEnvironment env;
  if (!env.ready()) GTEST_SKIP() << "could not create test namespaces";
  std::string cert = env.root() + "/cert.pem", key = env.root() + "/key.pem";
  ASSERT_EQ(run(fmt::format("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=probe -days 1 -keyout {} -out {}",
                            key, cert)),
            0);

  int port = 20000 + static_cast<int>(std::stoul(env.suffix(), nullptr, 16) % 20000);
  std::string portText = std::to_string(port);
  // Nothing listens yet: refused.
  auto refused = probeTcp(env.netnsPath(), "127.0.0.1", port, 2s);
  EXPECT_FALSE(refused.success);
  EXPECT_NE(refused.message.find("refused"), std::string::npos) << refused.message;

  pid_t server = fork();
  ASSERT_GE(server, 0);
  if (server == 0) {
    int devNull = open("/dev/null", O_RDWR);
    dup2(devNull, 0);
    dup2(devNull, 1);
    dup2(devNull, 2);
    std::string ns = env.netnsPath().substr(env.netnsPath().rfind('/') + 1);
    execlp("ip", "ip", "netns", "exec", ns.c_str(), "openssl", "s_server", "-accept", portText.c_str(), "-www", "-cert",
           cert.c_str(), "-key", key.c_str(), nullptr);
    _exit(127);
  }
  EXPECT_TRUE(waitFor([&] { return probeTcp(env.netnsPath(), "127.0.0.1", port, 2s).success; }, 30s));
  ProbeOutcome https;
  EXPECT_TRUE(waitFor([&] {
    https = probeHttpGet(env.netnsPath(), "HTTPS", "127.0.0.1", port, "/", {{"X-Probe", "1"}}, 5s);
    return https.success;
  }, 30s)) << https.message;
  kill(server, SIGKILL);
  waitpid(server, nullptr, 0);
}

}  // namespace
