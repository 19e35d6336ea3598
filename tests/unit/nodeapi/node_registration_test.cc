// The Node object the agent registers: its pods capacity follows --max-pods but never
// exceeds the addresses of the node's pod CIDR.
#include "agent/core/node_registration.h"

#include <gtest/gtest.h>

namespace ferry::agent {
namespace {

TEST(NodeRegistration, PodsCapacityIsMaxPodsCappedToThePodCidr) {
  EXPECT_EQ(podCapacity(110, "10.42.0.0/24"), 110);
  EXPECT_EQ(podCapacity(300, "10.42.0.0/24"), 253);  // network, gateway and broadcast are no pod's
  EXPECT_EQ(podCapacity(300, "10.42.0.0/23"), 300);
  EXPECT_EQ(podCapacity(300, "10.42.0.0/28"), 13);
  EXPECT_EQ(podCapacity(300, ""), 300);  // not known yet
  EXPECT_EQ(podCapacity(300, "not-a-cidr"), 300);

  NodeFacts facts;
  facts.name = "n1";
  facts.cpuCores = 2;
  facts.memoryBytes = 4LL << 30;
  AgentConfig config;
  config.maxPods = 300;
  auto node = buildNodeObject(facts, config, "10.42.7.0/24");
  EXPECT_EQ(node["status"]["capacity"]["pods"], "253");
  EXPECT_EQ(node["status"]["allocatable"]["pods"], "253");
  EXPECT_EQ(buildNodeObject(facts, config)["status"]["allocatable"]["pods"], "300");
}

}  // namespace
}  // namespace ferry::agent
