#include "cgroup/cgroup_tree.h"
#include "cgroup/limits.h"

#include <gtest/gtest.h>

namespace ferry::cgroup {
namespace {

TEST(CpuConversionTest, SharesFollowTheKubelet) {
  EXPECT_EQ(cpuSharesFromMilli(1000), 1024u);
  EXPECT_EQ(cpuSharesFromMilli(250), 256u);
  EXPECT_EQ(cpuSharesFromMilli(100), 102u);
  EXPECT_EQ(cpuSharesFromMilli(1), 2u) << "minimum 2";
  EXPECT_EQ(cpuSharesFromMilli(0), 2u);
  EXPECT_EQ(cpuSharesFromMilli(1000000), kMaxCpuShares);
}

TEST(CpuConversionTest, WeightFromShares) {
  EXPECT_EQ(cpuWeightFromShares(2), 1u);
  EXPECT_EQ(cpuWeightFromShares(1024), 39u);  // 1 + (1022*9999)/262142
  EXPECT_EQ(cpuWeightFromShares(262144), 10000u);
  EXPECT_EQ(cpuWeightFromShares(256), 10u);
}

TEST(CpuConversionTest, QuotaFromLimit) {
  EXPECT_EQ(cpuQuotaFromMilli(250), 25000);
  EXPECT_EQ(cpuQuotaFromMilli(1500), 150000);
  EXPECT_EQ(cpuQuotaFromMilli(5), kMinCpuQuotaUs) << "the kernel refuses quotas under 1 ms";
  EXPECT_EQ(cpuQuotaFromMilli(500, 50000), 25000);
}

TEST(QosLayoutTest, PodPathsLikeTheKubelet) {
  EXPECT_EQ(CgroupTree::podPath("abc", QosClass::Guaranteed), "podabc");
  EXPECT_EQ(CgroupTree::podPath("abc", QosClass::Burstable), "burstable/podabc");
  EXPECT_EQ(CgroupTree::podPath("abc", QosClass::BestEffort), "besteffort/podabc");
  EXPECT_EQ(qosClassName(QosClass::Burstable), "Burstable");
}

}  // namespace
}  // namespace ferry::cgroup
