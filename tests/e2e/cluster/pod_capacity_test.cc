// The node's pods capacity as a user sees it through kubectl. A node whose --max-pods is
// more than its /24 pod CIDR has addresses for advertises the CIDR's 253, so the
// scheduler never binds a pod that could get no IP. Within the capacity, the scheduler
// leaves the extra pod Pending ("Too many pods"), and a pod bound to the full node
// directly (spec.nodeName, past the scheduler) is refused by the agent as the kubelet
// does: Failed, reason OutOfpods, with an event, instead of waiting forever for an address.
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace fs = std::filesystem;
using namespace ferry::e2e;
using namespace std::chrono_literals;

namespace {

std::string pod(const std::string& name, const std::string& nodeName = "") {
  return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + "}\nspec:\n" +
         (nodeName.empty() ? "" : "  nodeName: " + nodeName + "\n") +
         "  containers:\n  - {name: main, image: docker.io/library/busybox:1.35, imagePullPolicy: Never, "
         "command: [sleep, \"3600\"]}\n";
}

}  // namespace

TEST(PodCapacity, MaxPodsAboveThePodCidrIsCappedToItsAddresses) {
  if (auto reason = e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  ClusterOptions options;
  options.agentFlags = {"--max-pods", "300"};
  Cluster cluster(options);
  ASSERT_EQ(cluster.start(), "");
  std::string pods;
  ASSERT_TRUE(waitFor([&] {
    pods = cluster.kubectl("get nodes -o jsonpath={.items[0].status.capacity.pods}/{.items[0].status.allocatable.pods}", 20s)
               .output;
    return pods == "253/253";
  }, 60s)) << "capacity/allocatable pods: " << pods;
}

TEST(PodCapacity, FullNodeLeavesTheNextPodPendingAndRefusesOneBoundPastTheScheduler) {
  if (auto reason = e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  ClusterOptions options;
  options.agentFlags = {"--max-pods", "2"};
  Cluster cluster(options);
  ASSERT_EQ(cluster.start(), "");
  ASSERT_EQ(cluster.importBusybox(), "");
  std::string node = cluster.kubectl("get nodes -o jsonpath={.items[0].metadata.name}", 20s).output;
  ASSERT_FALSE(node.empty());

  auto applied = cluster.kubectl("apply -f -", 60s, pod("a") + "---\n" + pod("b"));
  ASSERT_EQ(applied.exitCode, 0) << applied.output;
  for (const char* name : {"a", "b"})
    ASSERT_TRUE(waitFor([&] {
      return cluster.kubectl(std::string("get pod ") + name + " -o jsonpath={.status.phase}", 20s).output == "Running";
    }, 120s)) << cluster.kubectl(std::string("describe pod ") + name).output;

  // The scheduler sees the node full.
  applied = cluster.kubectl("apply -f -", 60s, pod("c"));
  ASSERT_EQ(applied.exitCode, 0) << applied.output;
  ASSERT_TRUE(waitFor([&] {
    return cluster.kubectl("get events --field-selector involvedObject.name=c "
                           "-o jsonpath={.items[*].message}", 20s)
               .output.find("Too many pods") != std::string::npos;
  }, 60s)) << cluster.kubectl("describe pod c").output;
  EXPECT_EQ(cluster.kubectl("get pod c -o jsonpath={.status.phase}", 20s).output, "Pending");

  // Bound directly: the agent refuses it with the kubelet's reason and message.
  applied = cluster.kubectl("apply -f -", 60s, pod("d", node));
  ASSERT_EQ(applied.exitCode, 0) << applied.output;
  std::string status;
  ASSERT_TRUE(waitFor([&] {
    status = cluster.kubectl("get pod d -o jsonpath={.status.phase}/{.status.reason}", 20s).output;
    return status == "Failed/OutOfpods";
  }, 60s)) << status << "\n" << cluster.kubectl("describe pod d").output;
  EXPECT_NE(cluster.kubectl("get pod d -o jsonpath={.status.message}", 20s).output.find(
                "Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2"),
            std::string::npos);
  EXPECT_TRUE(waitFor([&] {
    return cluster.kubectl("get events --field-selector involvedObject.name=d -o jsonpath={.items[*].reason}", 20s)
               .output.find("OutOfpods") != std::string::npos;
  }, 60s)) << cluster.kubectl("get events").output;

  // A freed place is used: deleting a running pod lets the scheduler bind the Pending one.
  ASSERT_EQ(cluster.kubectl("delete pod a --grace-period=1", 60s).exitCode, 0);
  EXPECT_TRUE(waitFor([&] {
    return cluster.kubectl("get pod c -o jsonpath={.status.phase}", 20s).output == "Running";
  }, 120s)) << cluster.kubectl("describe pod c").output;
}
