// Unpacked layers work as overlayfs lowerdirs: whiteouts hide lower files, opaque
// directories hide lower directory contents. Mounts happen in a private mount namespace
// of a child process, so nothing is left mounted.
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "agent/images/image_store.h"
#include "tests/unit/images/test_archives.h"

namespace ferry::images {
namespace {

namespace fs = std::filesystem;
using namespace testing;

TEST(OverlayLayers, WhiteoutsAndOpaqueDirectoriesHideLowerLayers) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for overlayfs and trusted.* xattrs";
  std::string base = makeTempDir("overlay");
  auto store = ImageStore::open(base + "/data", {}, FERRY_UNPACK_PROGRAM);
  ASSERT_TRUE(store) << store.error().message;
  std::string archive = base + "/img.tar";
  writeOciArchive(archive, base,
                  {{dir("etc"), file("etc/keep", "k"), file("etc/gone", "g"), dir("cache"), file("cache/old", "o")},
                   {file("etc/.wh.gone", ""), dir("cache"), file("cache/.wh..wh..opq", ""), file("cache/new", "n")}},
                  "example.com/overlay:1");
  auto imported = (*store)->importArchive(archive);
  ASSERT_TRUE(imported) << imported.error().message;
  const Image& image = imported->front();
  ASSERT_EQ(image.layerDirs.size(), 2u);

  std::string upper = base + "/upper", work = base + "/work", merged = base + "/merged";
  for (const auto& d : {upper, work, merged}) fs::create_directories(d);
  // lowerdir lists the top layer first.
  std::string options = fmt::format("lowerdir={}:{},upperdir={},workdir={}", image.layerDirs[1], image.layerDirs[0], upper, work);

  pid_t child = ::fork();
  if (child == 0) {
    if (::unshare(CLONE_NEWNS) != 0) ::_exit(10);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(11);
    if (::mount("overlay", merged.c_str(), "overlay", 0, options.c_str()) != 0) ::_exit(12);
    if (!fs::exists(merged + "/etc/keep")) ::_exit(20);
    if (fs::exists(merged + "/etc/gone")) ::_exit(21);       // whited out
    if (fs::exists(merged + "/cache/old")) ::_exit(22);      // hidden by the opaque directory
    if (!fs::exists(merged + "/cache/new")) ::_exit(23);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  int code = WEXITSTATUS(status);
  fs::remove_all(base);
  if (code == 10 || code == 11 || code == 12) GTEST_SKIP() << "cannot mount overlayfs here (child exit " << code << ")";
  EXPECT_EQ(code, 0) << "20: lower file missing, 21: whiteout ignored, 22: opaque dir ignored, 23: upper layer file missing";
}

}  // namespace
}  // namespace ferry::images
