#include "agent/images/image_store.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>

#include <gtest/gtest.h>

#include "tests/unit/images/test_archives.h"

namespace ferry::images {
namespace {

namespace fs = std::filesystem;
using namespace testing;

std::string sourceDir() {
  const char* s = std::getenv("FERRY_SOURCE_DIR");
  return s ? s : FERRY_SOURCE_DIR_FALLBACK;
}

class ImageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = makeTempDir("store");
    auto store = ImageStore::open(base_ + "/data", {}, FERRY_UNPACK_PROGRAM);
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
  }
  void TearDown() override { fs::remove_all(base_); }

  // The busybox archive from tests/images/make-busybox-oci; empty when the machine has no
  // static busybox.
  // Built once per flag set for the whole test program (the script takes seconds on a
  // loaded machine).
  std::string busyboxArchive(const std::string& extraArgs = "") {
    static std::map<std::string, std::string> built;
    static struct Dir {
      std::string path = makeTempDir("busybox-archives");
      ~Dir() { fs::remove_all(path); }
    } archives;
    const std::string& dir = archives.path;
    auto it = built.find(extraArgs);
    if (it != built.end()) return it->second;
    std::string out = dir + "/busybox-" + std::to_string(built.size()) + ".tar";
    std::string cmd = sourceDir() + "/tests/images/make-busybox-oci " + out + " " + extraArgs + " >/dev/null";
    std::string result = std::system(cmd.c_str()) == 0 ? out : "";
    built[extraArgs] = result;
    return result;
  }

  size_t countEntries(const std::string& dir) {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
    return n;
  }

  std::string base_;
  std::unique_ptr<ImageStore> store_;
};

TEST_F(ImageStoreTest, ImportsTheBusyboxOciArchive) {
  std::string archive = busyboxArchive();
  if (archive.empty()) GTEST_SKIP() << "make-busybox-oci failed (no static busybox?)";
  auto imported = store_->importArchive(archive);
  ASSERT_TRUE(imported) << imported.error().message;
  ASSERT_EQ(imported->size(), 1u);
  auto image = store_->find("busybox:1.35");
  ASSERT_TRUE(image) << image.error().message;
  EXPECT_EQ(image->references, std::vector<std::string>{"docker.io/library/busybox:1.35"});
  EXPECT_EQ(image->config.cmd, std::vector<std::string>{"sh"});
  ASSERT_EQ(image->layerDirs.size(), 1u);
  EXPECT_TRUE(fs::is_regular_file(image->layerDirs[0] + "/bin/busybox"));
  EXPECT_TRUE(fs::read_symlink(image->layerDirs[0] + "/bin/sh").is_absolute());
  EXPECT_TRUE(fs::is_regular_file(fs::path(image->layerDirs[0]) / fs::path(fs::read_symlink(image->layerDirs[0] + "/bin/sh")).relative_path()));
  EXPECT_TRUE(image->digest.rfind("sha256:", 0) == 0);
  EXPECT_GT(image->sizeBytes, 500000);
  // By id and by repo digest too.
  EXPECT_TRUE(store_->find(image->id));
  EXPECT_TRUE(store_->find("busybox@" + image->digest));

  // The same content again, and as a docker-archive: the layer is reused, not unpacked twice.
  ASSERT_TRUE(store_->importArchive(archive));
  std::string dockerArchive = busyboxArchive("--docker-archive --ref busybox:docker");
  ASSERT_FALSE(dockerArchive.empty());
  auto fromDocker = store_->importArchive(dockerArchive);
  ASSERT_TRUE(fromDocker) << fromDocker.error().message;
  EXPECT_EQ(fromDocker->front().id, image->id);
  EXPECT_EQ(countEntries(store_->root() + "/layers"), 1u);
  EXPECT_EQ(store_->list().size(), 1u);
  EXPECT_EQ(store_->list().front().references.size(), 2u);
}

TEST_F(ImageStoreTest, PullPolicyWithLocalImages) {
  std::string archive = busyboxArchive();
  if (archive.empty()) GTEST_SKIP() << "make-busybox-oci failed (no static busybox?)";
  ASSERT_TRUE(store_->importArchive(archive));

  auto never = store_->ensure("busybox:1.35", PullPolicy::Never);
  ASSERT_TRUE(never) << never.error().error.message;
  auto ifNotPresent = store_->ensure("busybox:1.35", PullPolicy::IfNotPresent);
  ASSERT_TRUE(ifNotPresent);

  auto absent = store_->ensure("busybox:9.9", PullPolicy::Never);
  ASSERT_FALSE(absent);
  EXPECT_EQ(absent.error().reason, ImageFailureReason::ErrImageNeverPull);
  EXPECT_STREQ(imageFailureReasonName(absent.error().reason), "ErrImageNeverPull");

  auto invalid = store_->ensure("Not A Name", PullPolicy::IfNotPresent);
  ASSERT_FALSE(invalid);
  EXPECT_EQ(invalid.error().reason, ImageFailureReason::InvalidImageName);

  // Absent and nothing listening: a pull error, reported as ErrImagePull.
  auto unreachable = store_->ensure("127.0.0.1:1/busybox:1", PullPolicy::IfNotPresent);
  ASSERT_FALSE(unreachable);
  EXPECT_EQ(unreachable.error().reason, ImageFailureReason::ErrImagePull);
  // Always asks the registry even when the image is local.
  auto imported = store_->importArchive(archive, "127.0.0.1:1/busybox:1");
  ASSERT_TRUE(imported);
  auto always = store_->ensure("127.0.0.1:1/busybox:1", PullPolicy::Always);
  ASSERT_FALSE(always);
  EXPECT_EQ(always.error().reason, ImageFailureReason::ErrImagePull);
  EXPECT_TRUE(store_->ensure("127.0.0.1:1/busybox:1", PullPolicy::IfNotPresent));
}

TEST_F(ImageStoreTest, RemoveDropsReferencesThenImageAndLayers) {
  std::string archive = busyboxArchive();
  if (archive.empty()) GTEST_SKIP() << "make-busybox-oci failed (no static busybox?)";
  ASSERT_TRUE(store_->importArchive(archive, "example.com/bb:2"));
  ASSERT_TRUE(store_->remove("busybox:1.35"));
  EXPECT_FALSE(store_->find("busybox:1.35"));
  EXPECT_TRUE(store_->find("example.com/bb:2"));  // still named
  EXPECT_EQ(countEntries(store_->root() + "/layers"), 1u);
  ASSERT_TRUE(store_->remove("example.com/bb:2"));
  EXPECT_TRUE(store_->list().empty());
  EXPECT_EQ(countEntries(store_->root() + "/layers"), 0u);
  auto missing = store_->remove("example.com/bb:2");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT);
}

TEST_F(ImageStoreTest, HostileLayerFailsTheImportAndLeavesNothing) {
  std::string outside = base_ + "/outside";
  fs::create_directories(outside);
  struct Case {
    const char* name;
    std::vector<TarEntry> layer;
  };
  std::vector<Case> cases = {
      {"path traversal", {file("ok", "1"), file("../../../outside/pwned", "x")}},
      {"absolute symlink escape", {symlink("escape", outside), file("escape/pwned", "x")}},
      {"hard link escape", {hardlink("link", outside + "/victim")}},
      {"device node", {{TarEntry::CharDevice, "dev/kmsg", "", 0600}}},
  };
  std::ofstream(outside + "/victim") << "secret";
  for (const auto& c : cases) {
    std::string archive = base_ + "/hostile.tar";
    writeOciArchive(archive, base_, {{file("base", "ok")}, c.layer}, "example.com/hostile:1");
    auto r = store_->importArchive(archive);
    EXPECT_FALSE(r) << c.name << ": imported";
    EXPECT_FALSE(store_->find("example.com/hostile:1")) << c.name;
    // The good first layer may stay (content-addressed, harmless); the bad one left nothing.
    EXPECT_LE(countEntries(store_->root() + "/layers"), 1u) << c.name;
    EXPECT_EQ(countEntries(store_->root() + "/tmp"), 0u) << c.name;
    EXPECT_EQ(countEntries(outside), 1u) << c.name;  // only the victim
  }
}

TEST_F(ImageStoreTest, RefusesALayerWhoseContentIsNotItsDiffId) {
  // Two archives with the same config claims but different content would poison the
  // content-addressed layer: the diff id is checked.
  std::string good = base_ + "/good.tar";
  writeOciArchive(good, base_, {{file("a", "1")}}, "example.com/x:1");
  // Rewrite the archive's config to claim another diff id.
  auto work = base_ + "/w";
  fs::create_directories(work);
  std::string bad = base_ + "/bad.tar";
  std::string wrongDiff = digestOf("something else");
  // Build by hand: reuse writeOciArchive's pieces with a patched config.
  std::string plain = work + "/l.tar", gz = work + "/l.tar.gz";
  writeTar(plain, {file("a", "1")});
  writeTar(gz, {file("a", "1")}, Compression::Gzip);
  std::string layer = readAll(gz);
  nlohmann::json config = {{"architecture", "amd64"}, {"os", "linux"}, {"rootfs", {{"type", "layers"}, {"diff_ids", {wrongDiff}}}}};
  std::string configText = config.dump();
  nlohmann::json manifest = {{"schemaVersion", 2},
                             {"config", {{"digest", digestOf(configText)}, {"size", configText.size()}}},
                             {"layers", {{{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"}, {"digest", digestOf(layer)}, {"size", layer.size()}}}}};
  std::string manifestText = manifest.dump();
  nlohmann::json index = {{"schemaVersion", 2}, {"manifests", {{{"digest", digestOf(manifestText)}, {"size", manifestText.size()},
                                                                {"annotations", {{"io.containerd.image.name", "example.com/x:2"}}}}}}};
  writeTar(bad, {file("oci-layout", "{}"), file("index.json", index.dump()),
                 file("blobs/sha256/" + digestHex(digestOf(layer)), layer),
                 file("blobs/sha256/" + digestHex(digestOf(configText)), configText),
                 file("blobs/sha256/" + digestHex(digestOf(manifestText)), manifestText)});
  auto r = store_->importArchive(bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("diff id"), std::string::npos) << r.error().message;
  EXPECT_EQ(countEntries(store_->root() + "/layers"), 0u);
}

TEST_F(ImageStoreTest, GarbageCollectsUnusedImagesLeastRecentlyUsedFirst) {
  std::string a = base_ + "/a.tar", b = base_ + "/b.tar", c = base_ + "/c.tar";
  writeOciArchive(a, base_, {{file("data", std::string(100000, 'a'))}}, "example.com/a:1");
  writeOciArchive(b, base_, {{file("data", std::string(100000, 'b'))}}, "example.com/b:1");
  writeOciArchive(c, base_, {{file("data", std::string(100000, 'c'))}}, "example.com/c:1");
  ASSERT_TRUE(store_->importArchive(a));
  ASSERT_TRUE(store_->importArchive(b));
  ASSERT_TRUE(store_->importArchive(c));
  EXPECT_EQ(store_->storeBytes(), 300000u);
  // Under the high mark: nothing happens.
  ASSERT_TRUE(store_->garbageCollect(400000, 100000, {}));
  EXPECT_EQ(store_->list().size(), 3u);
  // Above it: unused images go until the low mark; "a" is in use.
  ASSERT_TRUE(store_->garbageCollect(250000, 150000, {"example.com/a:1"}));
  EXPECT_TRUE(store_->find("example.com/a:1"));
  EXPECT_EQ(store_->list().size(), 1u);
  EXPECT_EQ(store_->storeBytes(), 100000u);
}

}  // namespace
}  // namespace ferry::images

namespace ferry::images {
namespace {

TEST(RegistryOptionsFile, ReadsFieldsAndNamesBadOnes) {
  std::string dir = testing::makeTempDir("regopts");
  std::string path = dir + "/registries.json";
  auto missing = loadRegistryOptions(path);
  ASSERT_TRUE(missing);
  EXPECT_TRUE(missing->plainHttpForLoopback);
  std::ofstream(path) << R"({"plainHttpRegistries": ["10.0.0.5:5000"], "plainHttpForLoopback": false, "credentialFile": "/etc/x.json"})";
  auto options = loadRegistryOptions(path);
  ASSERT_TRUE(options) << options.error().message;
  EXPECT_EQ(options->plainHttpRegistries, std::vector<std::string>{"10.0.0.5:5000"});
  EXPECT_FALSE(options->plainHttpForLoopback);
  EXPECT_EQ(options->credentialFile, "/etc/x.json");
  std::ofstream(path) << R"({"plainHttpRegistries": "10.0.0.5:5000"})";
  auto bad = loadRegistryOptions(path);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("plainHttpRegistries"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ferry::images
