#include "cmd/systemd_unit.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>

using namespace ferry::cmd;

TEST(SystemdUnit, HasWhatPodsNeedToSurviveRestarts) {
  std::string unit = renderUnit({"server", "/usr/local/bin/ferry", {"--data-dir", "/var/lib/ferry"}, "/etc/ferry/server.env"});
  EXPECT_NE(unit.find("Type=notify"), std::string::npos);
  EXPECT_NE(unit.find("Delegate=yes"), std::string::npos);
  EXPECT_NE(unit.find("KillMode=process"), std::string::npos);
  EXPECT_NE(unit.find("Restart=always"), std::string::npos);
  EXPECT_NE(unit.find("ExecStart=/usr/local/bin/ferry server --data-dir /var/lib/ferry\n"), std::string::npos) << unit;
  EXPECT_NE(unit.find("EnvironmentFile=-/etc/ferry/server.env"), std::string::npos);
  EXPECT_EQ(unitName("agent"), "ferry-agent.service");
}

TEST(SystemdUnit, QuotesArgumentsForExecStart) {
  EXPECT_EQ(quoteForExec("--node-name=a1"), "--node-name=a1");
  EXPECT_EQ(quoteForExec("cpu=100m,memory=1Gi"), "cpu=100m,memory=1Gi");
  EXPECT_EQ(quoteForExec("two words"), "\"two words\"");
  EXPECT_EQ(quoteForExec("50%"), "\"50%%\"");
  EXPECT_EQ(quoteForExec("$HOME"), "\"$$HOME\"");
  EXPECT_EQ(quoteForExec(""), "\"\"");
}

// systemd's own checker must accept the generated unit.
TEST(SystemdUnit, PassesSystemdAnalyzeVerify) {
  if (access("/usr/bin/systemd-analyze", X_OK) != 0) GTEST_SKIP() << "systemd-analyze is not installed";
  const char* binary = std::getenv("FERRY_BINARY");
  std::string exec = binary && access(binary, X_OK) == 0 ? binary : "/bin/true";
  std::string dir = std::filesystem::temp_directory_path() / ("ferry-unit-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  for (const std::string role : {"server", "agent"}) {
    std::string path = dir + "/" + unitName(role);
    std::ofstream(path) << renderUnit({role, exec, {"--node-name", "node a", "--max-pods=50"}, "/etc/ferry/x.env"});
    std::string cmd = "systemd-analyze verify " + path + " 2>&1";
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[512];
    while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    int rc = pclose(p);
    EXPECT_EQ(rc, 0) << out;
    // Warnings about the host's own units are not ours; ours must not be named.
    EXPECT_EQ(out.find(unitName(role) + ":"), std::string::npos) << out;
  }
  std::filesystem::remove_all(dir);
}
