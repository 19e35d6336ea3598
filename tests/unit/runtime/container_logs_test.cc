// CRI log files: the writer's format, splitting and rotation, and reading them back
// with kubectl logs' options.
#include "agent/runtime/container_logs.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

using namespace ferry::runtime;

namespace {

class ContainerLogsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ferry-logs-" + std::to_string(getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string read(const std::string& path, LogOptions o = {}) {
    std::string out;
    auto st = streamLogs(path, o, [&](std::string_view s) {
      out += s;
      return true;
    });
    EXPECT_TRUE(st.has_value()) << (st ? "" : st.error().message);
    return out;
  }
  static std::string raw(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::filesystem::path dir_;
};

TEST_F(ContainerLogsTest, WritesCriEntriesAndJoinsPartialLines) {
  std::string path = (dir_ / "0.log").string();
  {
    CriLogWriter w(path, 1 << 20, 2);
    w.write("stdout", "hello\nwor");
    w.write("stderr", "oops\n");
    w.write("stdout", "ld\n");
    w.write("stdout", "no newline at the end");
  }
  std::string text = raw(path);
  std::istringstream lines(text);
  std::string line;
  std::vector<std::string> entries;
  while (std::getline(lines, line)) entries.push_back(line.substr(line.find(' ') + 1));
  ASSERT_EQ(entries.size(), 4u) << text;
  EXPECT_EQ(entries[0], "stdout F hello");
  EXPECT_EQ(entries[1], "stderr F oops");
  EXPECT_EQ(entries[2], "stdout F world");
  EXPECT_EQ(entries[3], "stdout P no newline at the end");
  // Timestamps are RFC 3339 with nanoseconds, in UTC.
  EXPECT_EQ(text[10], 'T');
  EXPECT_EQ(text.find('Z'), 29u) << text;
  EXPECT_EQ(read(path), "hello\noops\nworld\n");
}

TEST_F(ContainerLogsTest, RotatesBySizeAndReadsAcrossFiles) {
  std::string path = (dir_ / "0.log").string();
  {
    CriLogWriter w(path, 200, 3);
    for (int i = 0; i < 20; ++i) w.write("stdout", "line " + std::to_string(i) + "\n");
  }
  EXPECT_TRUE(std::filesystem::exists(path + ".1"));
  EXPECT_TRUE(std::filesystem::exists(path + ".2"));
  EXPECT_FALSE(std::filesystem::exists(path + ".3"));
  EXPECT_LE(std::filesystem::file_size(path + ".1"), 300u);
  std::string all = read(path);
  EXPECT_NE(all.find("line 19\n"), std::string::npos);
  EXPECT_EQ(all.find("line 0\n"), std::string::npos) << "the oldest file should have been dropped";
  LogOptions tail;
  tail.tailLines = 3;
  EXPECT_EQ(read(path, tail), "line 17\nline 18\nline 19\n");
}

TEST_F(ContainerLogsTest, SinceTimestampsAndLimitBytes) {
  std::string path = (dir_ / "0.log").string();
  std::ofstream(path) << "2020-01-01T00:00:00.000000000Z stdout F old\n"
                      << "2200-01-01T00:00:00.500000000Z stdout F future\n";
  LogOptions since;
  since.sinceSeconds = 60;
  EXPECT_EQ(read(path, since), "future\n");
  LogOptions ts;
  ts.timestamps = true;
  ts.tailLines = 1;
  EXPECT_EQ(read(path, ts), "2200-01-01T00:00:00.500000000Z future\n");
  LogOptions limit;
  limit.limitBytes = 5;
  EXPECT_EQ(read(path, limit), "old\nf");
  auto missing = streamLogs((dir_ / "nope.log").string(), {}, [](std::string_view) { return true; });
  EXPECT_FALSE(missing.has_value());
}

}  // namespace
