// Image GC by disk usage, as the kubelet does it, on a small tmpfs the test mounts: when
// the image filesystem is at least the high threshold full, images no pod uses go, least
// recently used first, until it is at most the low threshold full; an image in use stays.
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "agent/images/image_store.h"
#include "tests/unit/images/test_archives.h"

namespace ferry::images {
namespace {

namespace fs = std::filesystem;
using namespace testing;
using namespace std::chrono_literals;

constexpr std::size_t kMiB = 1 << 20;

class ImageGcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "mounting the test's tmpfs needs root";
    base_ = makeTempDir("image-gc");
    fsDir_ = base_ + "/imagefs";
    fs::create_directories(fsDir_);
    // 10 MiB: three images of 1-2 MiB cross a 40% threshold.
    ASSERT_EQ(::mount("tmpfs", fsDir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=10m"), 0) << strerror(errno);
    mounted_ = true;
    auto store = ImageStore::open(fsDir_ + "/agent", {}, FERRY_UNPACK_PROGRAM);
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    if (mounted_) ::umount2(fsDir_.c_str(), MNT_DETACH);
    if (!base_.empty()) fs::remove_all(base_);
  }

  // An image of one layer holding `bytes` of data (compressible: the archive is small, the
  // unpacked layer is not).
  void importImage(const std::string& name, std::size_t bytes) {
    std::string archive = base_ + "/" + std::to_string(archives_++) + ".tar";
    fs::create_directories(base_ + "/work");
    writeOciArchive(archive, base_ + "/work", {{file("data", std::string(bytes, name.back()))}}, name);
    auto imported = store_->importArchive(archive);
    ASSERT_TRUE(imported) << imported.error().message;
  }

  std::string duOfStore() {
    std::string out;
    FILE* p = ::popen(("du -a " + fsDir_ + " | sort -n | tail -12").c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    ::pclose(p);
    return out;
  }

  int usagePercent() {
    struct statvfs st {};
    ::statvfs(fsDir_.c_str(), &st);
    return 100 - static_cast<int>(st.f_bavail * 100 / st.f_blocks);
  }

  std::string base_, fsDir_;
  bool mounted_ = false;
  int archives_ = 0;
  std::unique_ptr<ImageStore> store_;
};

TEST_F(ImageGcTest, RemovesUnusedImagesLeastRecentlyUsedFirstDownToTheLowThreshold) {
  // Last used in this order (one second apart: the store records seconds).
  importImage("example.com/oldest-unused:1", 2 * kMiB);
  std::this_thread::sleep_for(1100ms);
  importImage("example.com/in-use:1", 3 * kMiB / 2);
  std::this_thread::sleep_for(1100ms);
  importImage("example.com/newer-unused:1", kMiB);
  int before = usagePercent();
  ASSERT_GE(before, 40) << "the three images should fill at least 40% of the 10 MiB tmpfs";

  // Below the high threshold nothing is removed.
  auto idle = store_->garbageCollect({.highThresholdPercent = 90, .lowThresholdPercent = 80, .minimumAge = 0s},
                                     {"example.com/in-use:1"});
  ASSERT_TRUE(idle) << idle.error().message;
  EXPECT_FALSE(idle->triggered);
  EXPECT_EQ(store_->list().size(), 3u);

  // Used within the minimum age: kept, and GC says it could not free enough.
  auto young = store_->garbageCollect({.highThresholdPercent = 40, .lowThresholdPercent = 30, .minimumAge = 3600s},
                                      {"example.com/in-use:1"});
  ASSERT_TRUE(young) << young.error().message;
  EXPECT_TRUE(young->triggered);
  EXPECT_TRUE(young->removed.empty());
  EXPECT_NE(young->shortfall.find("used within 3600s"), std::string::npos) << young->shortfall;
  EXPECT_EQ(store_->list().size(), 3u);

  // Over 40%: free down to 30%. Removing the oldest unused image (2 MiB) is enough; the
  // newer unused one stays, the one in use (named as a pod spec names it) stays.
  auto report = store_->garbageCollect({.highThresholdPercent = 40, .lowThresholdPercent = 30, .minimumAge = 0s},
                                       {"example.com/in-use:1"});
  ASSERT_TRUE(report) << report.error().message << "\n" << duOfStore();
  EXPECT_TRUE(report->triggered);
  EXPECT_EQ(report->shortfall, "");
  EXPECT_EQ(report->usagePercentBefore, before);
  EXPECT_EQ(report->removed, std::vector<std::string>{"example.com/oldest-unused:1"});
  EXPECT_LE(usagePercent(), 30);
  EXPECT_EQ(report->usagePercentAfter, usagePercent());
  EXPECT_FALSE(store_->find("example.com/oldest-unused:1"));
  EXPECT_TRUE(store_->find("example.com/in-use:1"));
  EXPECT_TRUE(store_->find("example.com/newer-unused:1"));

  // Down to 5%: every unused image goes, the used one stays, and GC reports the shortfall.
  auto hard = store_->garbageCollect({.highThresholdPercent = 10, .lowThresholdPercent = 5, .minimumAge = 0s},
                                     {"example.com/in-use:1"});
  ASSERT_TRUE(hard) << hard.error().message;
  EXPECT_EQ(hard->removed, std::vector<std::string>{"example.com/newer-unused:1"});
  EXPECT_NE(hard->shortfall.find("in use"), std::string::npos) << hard->shortfall;
  EXPECT_FALSE(store_->find("example.com/newer-unused:1"));
  ASSERT_TRUE(store_->find("example.com/in-use:1"));
  EXPECT_EQ(store_->list().size(), 1u);
  // Its layer is still there to run from.
  auto kept = store_->find("example.com/in-use:1");
  ASSERT_EQ(kept->layerDirs.size(), 1u);
  EXPECT_EQ(fs::file_size(kept->layerDirs[0] + "/data"), 3 * kMiB / 2);
}

TEST(ImageGcPolicy, BadThresholdsNameTheFlag) {
  EXPECT_TRUE(validateImageGcPolicy({}));
  auto high = validateImageGcPolicy({.highThresholdPercent = 101, .lowThresholdPercent = 80});
  ASSERT_FALSE(high);
  EXPECT_NE(high.error().message.find("--image-gc-high-threshold"), std::string::npos) << high.error().message;
  auto low = validateImageGcPolicy({.highThresholdPercent = 85, .lowThresholdPercent = -1});
  ASSERT_FALSE(low);
  EXPECT_NE(low.error().message.find("--image-gc-low-threshold"), std::string::npos) << low.error().message;
  auto order = validateImageGcPolicy({.highThresholdPercent = 80, .lowThresholdPercent = 80});
  ASSERT_FALSE(order);
  EXPECT_NE(order.error().message.find("must be less than --image-gc-high-threshold"), std::string::npos);
  auto age = validateImageGcPolicy({.highThresholdPercent = 85, .lowThresholdPercent = 80, .minimumAge = -1s});
  ASSERT_FALSE(age);
  EXPECT_NE(age.error().message.find("--image-minimum-gc-age"), std::string::npos);
}

}  // namespace
}  // namespace ferry::images
