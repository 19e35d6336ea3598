#include "api/qos.h"

#include <gtest/gtest.h>

using ferry::api::Json;
using ferry::api::qosClass;

namespace {
std::string qos(const char* spec) { return qosClass(Json::parse(spec)); }
}  // namespace

TEST(Qos, BestEffortWithoutRequestsOrLimits) {
  EXPECT_EQ(qos(R"({"containers":[{"name":"a"},{"name":"b","resources":{}}]})"), "BestEffort");
  // Zero and non-compute resources do not count.
  EXPECT_EQ(qos(R"({"containers":[{"name":"a","resources":{"requests":{"cpu":"0","ephemeral-storage":"1Gi"}}}]})"),
            "BestEffort");
}

TEST(Qos, GuaranteedWhenEveryContainerHasEqualCpuAndMemoryLimits) {
  EXPECT_EQ(qos(R"({"containers":[{"resources":{"limits":{"cpu":"500m","memory":"128Mi"}}}]})"), "Guaranteed");
  EXPECT_EQ(qos(R"({"containers":[{"resources":{"limits":{"cpu":"1","memory":"1Gi"},"requests":{"cpu":"1000m","memory":"1024Mi"}}}],
                   "initContainers":[{"resources":{"limits":{"cpu":"100m","memory":"10Mi"}}}]})"),
            "Guaranteed");
}

TEST(Qos, BurstableOtherwise) {
  EXPECT_EQ(qos(R"({"containers":[{"resources":{"requests":{"cpu":"100m"}}}]})"), "Burstable");
  EXPECT_EQ(qos(R"({"containers":[{"resources":{"limits":{"cpu":"1","memory":"1Gi"},"requests":{"cpu":"500m"}}}]})"),
            "Burstable");
  EXPECT_EQ(qos(R"({"containers":[{"resources":{"limits":{"cpu":"1"}}}]})"), "Burstable");
  // One container without limits spoils it for the pod.
  EXPECT_EQ(qos(R"({"containers":[{"resources":{"limits":{"cpu":"1","memory":"1Gi"}}},{"name":"b"}]})"), "Burstable");
  // An init container counts too.
  EXPECT_EQ(qos(R"({"containers":[{"resources":{"limits":{"cpu":"1","memory":"1Gi"}}}],
                   "initContainers":[{"resources":{"requests":{"memory":"1Gi"}}}]})"),
            "Burstable");
}

TEST(Qos, PodLevelResourcesDecide) {
  EXPECT_EQ(qos(R"({"resources":{"limits":{"cpu":"1","memory":"1Gi"}},"containers":[{"name":"a"}]})"), "Guaranteed");
  EXPECT_EQ(qos(R"({"resources":{"requests":{"cpu":"1"}},"containers":[{"resources":{"limits":{"cpu":"1","memory":"1Gi"}}}]})"),
            "Burstable");
}
