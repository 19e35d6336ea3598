#include "agent/images/layer_unpacker.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "agent/images/unpack_helper.h"
#include "tests/unit/images/test_archives.h"

namespace ferry::images {
namespace {

namespace fs = std::filesystem;
using namespace testing;

class LayerUnpackerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = makeTempDir("unpack");
    target_ = base_ + "/target";
    outside_ = base_ + "/outside";
    fs::create_directories(target_);
    fs::create_directories(outside_);
  }
  void TearDown() override { fs::remove_all(base_); }

  Result<UnpackedLayer> unpack(const std::vector<TarEntry>& entries, Compression c = Compression::None) {
    std::string tar = base_ + "/layer.tar";
    writeTar(tar, entries, c);
    return unpackLayer(tar, target_);
  }

  bool outsideIsEmpty() const { return fs::is_empty(outside_); }

  std::string base_, target_, outside_;
};

TEST_F(LayerUnpackerTest, UnpacksFilesDirsLinks) {
  auto r = unpack({dir("bin"), file("bin/busybox", "ELF...", 0755), symlink("bin/sh", "/bin/busybox"),
                   hardlink("bin/busybox2", "bin/busybox"), file("etc/deep/config", "x=1"), symlink("lib", "usr/lib"),
                   {TarEntry::Fifo, "run/fifo", "", 0600}});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(readAll(target_ + "/bin/busybox"), "ELF...");
  EXPECT_EQ(fs::status(target_ + "/bin/busybox").permissions() & fs::perms::owner_exec, fs::perms::owner_exec);
  EXPECT_EQ(fs::read_symlink(target_ + "/bin/sh"), "/bin/busybox");  // kept, never followed here
  struct stat a {}, b {};
  ASSERT_EQ(::stat((target_ + "/bin/busybox").c_str(), &a), 0);
  ASSERT_EQ(::stat((target_ + "/bin/busybox2").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(readAll(target_ + "/etc/deep/config"), "x=1");  // parents made on the way
  EXPECT_TRUE(fs::is_fifo(fs::symlink_status(target_ + "/run/fifo")));
  EXPECT_EQ(r->sizeBytes, 6 + 3);
}

TEST_F(LayerUnpackerTest, ReadsGzipAndZstdLayers) {
  for (auto c : {Compression::Gzip, Compression::Zstd}) {
    fs::remove_all(target_);
    fs::create_directories(target_);
    auto r = unpack({file("hello", "world")}, c);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(readAll(target_ + "/hello"), "world");
  }
}

TEST_F(LayerUnpackerTest, DiffIdIsTheDigestOfTheUncompressedTar) {
  std::string plain = base_ + "/p.tar", gz = base_ + "/p.tar.gz", zst = base_ + "/p.tar.zst";
  std::vector<TarEntry> entries = {file("a", "1"), file("b", "2")};
  writeTar(plain, entries);
  writeTar(gz, entries, Compression::Gzip);
  writeTar(zst, entries, Compression::Zstd);
  std::string expected = digestOf(readAll(plain));
  EXPECT_EQ(uncompressedDigest(plain).value(), expected);
  EXPECT_EQ(uncompressedDigest(gz).value(), expected);
  EXPECT_EQ(uncompressedDigest(zst).value(), expected);
}

TEST_F(LayerUnpackerTest, RefusesPathTraversal) {
  auto r = unpack({file("ok", "1"), file("../outside/pwned", "x")});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("\"..\""), std::string::npos) << r.error().message;
  auto nested = unpack({file("a/b/../../../outside/pwned", "x")});
  ASSERT_FALSE(nested);
  EXPECT_TRUE(outsideIsEmpty());
}

TEST_F(LayerUnpackerTest, RefusesAbsolutePaths) {
  auto r = unpack({file(outside_ + "/pwned", "x")});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("absolute path"), std::string::npos) << r.error().message;
  EXPECT_TRUE(outsideIsEmpty());
}

TEST_F(LayerUnpackerTest, RefusesWritingThroughAnAbsoluteSymlink) {
  auto r = unpack({symlink("escape", outside_), file("escape/pwned", "x")});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("symlink"), std::string::npos) << r.error().message;
  EXPECT_TRUE(outsideIsEmpty());
  // Also when the link is a parent further up.
  fs::remove_all(target_);
  fs::create_directories(target_);
  auto deeper = unpack({dir("a"), symlink("a/b", outside_), file("a/b/c/pwned", "x")});
  ASSERT_FALSE(deeper);
  EXPECT_TRUE(outsideIsEmpty());
}

TEST_F(LayerUnpackerTest, RefusesRelativeSymlinksAboveTheRoot) {
  auto r = unpack({dir("a"), symlink("a/up", "../../outside")});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("escapes the layer root"), std::string::npos) << r.error().message;
  fs::remove_all(target_);
  fs::create_directories(target_);
  EXPECT_TRUE(unpack({dir("a"), symlink("a/ok", "../b/c")}));  // stays inside
}

TEST_F(LayerUnpackerTest, RefusesHardLinksOutOfTheLayer) {
  std::string victim = outside_ + "/victim";
  std::ofstream(victim) << "secret";
  for (const std::string& target : {victim, std::string("../outside/victim"), std::string("a/../../outside/victim")}) {
    fs::remove_all(target_);
    fs::create_directories(target_);
    auto r = unpack({hardlink("link", target)});
    ASSERT_FALSE(r) << "hard link to " << target << " accepted";
    EXPECT_FALSE(fs::exists(target_ + "/link"));
  }
  // Through a symlink inside the layer that points out.
  fs::remove_all(target_);
  fs::create_directories(target_);
  auto viaSymlink = unpack({symlink("out", outside_), hardlink("link", "out/victim")});
  ASSERT_FALSE(viaSymlink);
  struct stat st {};
  ASSERT_EQ(::stat(victim.c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);  // never linked
}

TEST_F(LayerUnpackerTest, RefusesDeviceNodes) {
  auto c = unpack({{TarEntry::CharDevice, "dev/mem", "", 0600}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("device nodes"), std::string::npos) << c.error().message;
  auto b = unpack({{TarEntry::BlockDevice, "dev/sda", "", 0600}});
  ASSERT_FALSE(b);
  EXPECT_FALSE(fs::exists(target_ + "/dev/sda"));
}

TEST_F(LayerUnpackerTest, WhiteoutsBecomeOverlayWhiteouts) {
  auto r = unpack({dir("etc"), file("etc/.wh.passwd", ""), file(".wh.gone", "")});
  ASSERT_TRUE(r) << r.error().message;
  struct stat st {};
  ASSERT_EQ(::lstat((target_ + "/etc/passwd").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  EXPECT_FALSE(fs::exists(target_ + "/etc/.wh.passwd"));
  ASSERT_EQ(::lstat((target_ + "/gone").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
}

TEST_F(LayerUnpackerTest, OpaqueDirectoriesGetTheOverlayXattr) {
  if (::geteuid() != 0) GTEST_SKIP() << "trusted.overlay.opaque needs CAP_SYS_ADMIN";
  auto r = unpack({dir("var"), dir("var/cache"), file("var/cache/.wh..wh..opq", "")});
  ASSERT_TRUE(r) << r.error().message;
  char value[8] = {0};
  ASSERT_EQ(::getxattr((target_ + "/var/cache").c_str(), "trusted.overlay.opaque", value, sizeof value), 1);
  EXPECT_EQ(value[0], 'y');
  EXPECT_FALSE(fs::exists(target_ + "/var/cache/.wh..wh..opq"));
}

// The same work through ferry-unpack, as the image store does it: results and refusals come
// back whole (code and message), and a missing or broken program is named.
TEST_F(LayerUnpackerTest, HelperProcessUnpacksAndReportsErrors) {
  UnpackHelper helper(FERRY_UNPACK_PROGRAM);
  std::string tar = base_ + "/layer.tar.gz";
  writeTar(tar, {dir("bin"), file("bin/tool", "12345", 0755), symlink("bin/sh", "/bin/tool")}, Compression::Gzip);
  auto unpacked = helper.unpackLayer(tar, target_);
  ASSERT_TRUE(unpacked) << unpacked.error().message;
  EXPECT_EQ(unpacked->sizeBytes, 5);
  EXPECT_EQ(readAll(target_ + "/bin/tool"), "12345");
  EXPECT_EQ(fs::read_symlink(target_ + "/bin/sh"), "/bin/tool");
  auto digest = helper.uncompressedDigest(tar);
  ASSERT_TRUE(digest) << digest.error().message;
  EXPECT_EQ(*digest, uncompressedDigest(tar).value());

  std::string hostile = base_ + "/hostile.tar";
  writeTar(hostile, {file("../outside/pwned", "x")});
  fs::remove_all(target_);
  fs::create_directories(target_);
  auto refused = helper.unpackLayer(hostile, target_);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, EINVAL);
  EXPECT_NE(refused.error().message.find("\"..\""), std::string::npos) << refused.error().message;
  EXPECT_TRUE(outsideIsEmpty());

  std::string members = base_ + "/members";
  fs::create_directories(members);
  std::string archive = base_ + "/image.tar";
  writeTar(archive, {file("manifest.json", "[]"), symlink("alias.json", "manifest.json")});
  auto files = helper.extractArchive(archive, members);
  ASSERT_TRUE(files) << files.error().message;
  ASSERT_EQ(files->count("manifest.json"), 1u);
  EXPECT_EQ(readAll(files->at("manifest.json")), "[]");
  EXPECT_EQ(files->at("alias.json"), files->at("manifest.json"));

  auto missing = UnpackHelper(base_ + "/no-such-unpacker").unpackLayer(tar, target_);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("no-such-unpacker"), std::string::npos) << missing.error().message;
  auto silent = UnpackHelper("/bin/false").uncompressedDigest(tar);
  ASSERT_FALSE(silent);
  EXPECT_NE(silent.error().message.find("exit status 1 without a reply"), std::string::npos) << silent.error().message;
}

}  // namespace
}  // namespace ferry::images
