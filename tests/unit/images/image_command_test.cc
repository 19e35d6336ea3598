// `ferry image import|ls|rm` as a user runs it.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <gtest/gtest.h>

#include "tests/unit/images/test_archives.h"

namespace ferry::images {
namespace {

namespace fs = std::filesystem;
using namespace testing;

std::string run(const std::string& cmd, int* rc) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

TEST(ImageCommand, ImportListRemove) {
  const char* binary = std::getenv("FERRY_BINARY");
  const char* source = std::getenv("FERRY_SOURCE_DIR");
  if (!binary || !fs::exists(binary) || !source) GTEST_SKIP() << "FERRY_BINARY is not built";
  std::string base = makeTempDir("image-cmd");
  std::string archive = base + "/busybox.tar";
  int rc = 0;
  std::string made = run(std::string(source) + "/tests/images/make-busybox-oci " + archive, &rc);
  if (rc != 0) {
    fs::remove_all(base);
    GTEST_SKIP() << "make-busybox-oci failed (no static busybox?): " << made;
  }
  std::string ferry = std::string(binary) + " image --data-dir " + base + "/data ";

  std::string out = run(ferry + "import " + archive + " --tag example.com/tools/busybox:v1", &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("imported sha256:"), std::string::npos) << out;

  out = run(ferry + "ls", &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("docker.io/library/busybox:1.35"), std::string::npos) << out;
  EXPECT_NE(out.find("example.com/tools/busybox:v1"), std::string::npos) << out;

  out = run(ferry + "rm busybox:1.35", &rc);
  EXPECT_EQ(rc, 0) << out;
  out = run(ferry + "ls", &rc);
  EXPECT_EQ(out.find("docker.io/library/busybox:1.35"), std::string::npos) << out;
  EXPECT_NE(out.find("example.com/tools/busybox:v1"), std::string::npos) << out;

  out = run(ferry + "rm busybox:1.35", &rc);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("not present"), std::string::npos) << out;

  // A hostile archive: refused with the reason, exit status 1.
  std::string hostile = base + "/hostile.tar";
  writeOciArchive(hostile, base, {{file("../../escape", "x")}}, "example.com/hostile:1");
  out = run(ferry + "import " + hostile, &rc);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("\"..\""), std::string::npos) << out;
  fs::remove_all(base);
}

}  // namespace
}  // namespace ferry::images
