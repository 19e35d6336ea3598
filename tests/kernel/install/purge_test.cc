// `ferry uninstall --purge` removes what an installed Ferry made, nftables tables
// included. Runs in a network namespace the test makes (nft tables are per
// namespace), with every directory and the cgroup root under names of its own:
// the machine's /etc/ferry, /var/lib/ferry and /run/ferry are never touched.
#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

namespace fs = std::filesystem;

namespace {

struct Output {
  int status = -1;
  std::string text;
};

Output shell(const std::string& command) {
  Output out;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return out;
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.text.append(buf.data(), n);
  int status = pclose(pipe);
  out.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

std::string ferryBinary() {
  const char* env = std::getenv("FERRY_BINARY");
  return env ? env : "build/ferry";
}

class PurgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (a network namespace and nftables)";
    if (access(ferryBinary().c_str(), X_OK) != 0) GTEST_SKIP() << "no ferry binary at " << ferryBinary();
    if (shell("command -v nft").status != 0 || shell("command -v ip").status != 0)
      GTEST_SKIP() << "nft or ip (iproute2) is not installed";
    id_ = std::to_string(getpid());
    netns_ = "ferry-purge-" + id_;
    dir_ = fs::temp_directory_path() / ("ferry-purge-" + id_);
    fs::create_directories(dir_);
    ASSERT_EQ(shell("ip netns add " + netns_).status, 0);
    made_ = true;
  }
  void TearDown() override {
    if (made_) shell("ip netns delete " + netns_);
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
    // The cgroup root is purged by the test itself; if it failed half-way, take it away here.
    for (const char* h : {"unified", "memory", "cpu,cpuacct", "pids", "freezer", "cpuset"})
      rmdir((std::string("/sys/fs/cgroup/") + h + "/ferry-purge-" + id_).c_str());
  }
  Output inNetns(const std::string& command) { return shell("ip netns exec " + netns_ + " " + command); }

  std::string id_, netns_;
  fs::path dir_;
  bool made_ = false;
};

TEST_F(PurgeTest, RemovesFerrysNftTablesAndDirsButNothingElse) {
  // The tables an agent's proxy makes (NodePort DNAT / nftables mode, egress masquerade),
  // and one that is not Ferry's.
  std::string rules = dir_ / "rules.nft";
  {
    FILE* f = fopen(rules.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fputs("table ip ferry {\n chain nat-prerouting { type nat hook prerouting priority -100; }\n}\n"
          "table ip ferry-nat {\n chain postrouting { type nat hook postrouting priority 100; "
          "ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 masquerade; }\n}\n"
          "table ip someone-else {\n chain c { type filter hook input priority 0; }\n}\n",
          f);
    fclose(f);
  }
  auto loaded = inNetns("nft -f " + rules);
  ASSERT_EQ(loaded.status, 0) << loaded.text;
  ASSERT_NE(inNetns("nft list tables").text.find("table ip ferry-nat"), std::string::npos);

  std::string d = dir_.string();
  std::string install = ferryBinary() + " install server --unit-dir " + d + "/units --config-dir " + d +
                        "/etc --no-start --data-dir " + d + "/data --agent-data-dir " + d + "/agent --run-dir " + d +
                        "/run --bpffs-dir " + d + "/bpf --cgroup-root ferry-purge-" + id_;
  auto installed = inNetns(install);
  ASSERT_EQ(installed.status, 0) << installed.text;
  ASSERT_TRUE(fs::exists(d + "/etc/install.json"));
  for (const char* sub : {"/data/x", "/agent/pods", "/run/netns", "/bpf/links"}) fs::create_directories(d + sub);

  auto purged = inNetns(ferryBinary() + " uninstall --unit-dir " + d + "/units --config-dir " + d + "/etc --purge");
  EXPECT_EQ(purged.status, 0) << purged.text;

  std::string tables = inNetns("nft list tables").text;
  EXPECT_EQ(tables.find("table ip ferry\n"), std::string::npos) << "left behind:\n" << tables;
  EXPECT_EQ(tables.find("table ip ferry-nat"), std::string::npos) << "left behind:\n" << tables;
  EXPECT_NE(tables.find("table ip someone-else"), std::string::npos) << "purge removed a table that is not Ferry's";
  for (const char* sub : {"/units/ferry.service", "/etc", "/data", "/agent", "/run", "/bpf"})
    EXPECT_FALSE(fs::exists(d + sub)) << d + sub << " left behind";
  // (No second purge: without the record it would fall back to the machine's default dirs.)
}

}  // namespace
