#include "controlplane-lite/scheduler/cluster_state.h"
#include "tests/unit/controllers/test_objects.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

using namespace ferry;
using namespace ferry::cp;
using namespace ferry::cp::testing;

namespace {

api::Json ownedPod(const std::string& name, const std::string& ownerUid) {
  api::Json pod = makePod(name);
  pod["metadata"]["ownerReferences"] = {
      {{"apiVersion", "apps/v1"}, {"kind", "ReplicaSet"}, {"name", "rs"}, {"uid", ownerUid}, {"controller", true}}};
  return pod;
}

}  // namespace

TEST(ClusterState, SpreadsPodsOfOneOwnerEvenly) {
  ClusterState state;
  for (const char* n : {"node-a", "node-b", "node-c"}) state.upsertNode(makeNode(n));
  std::map<std::string, int> perNode;
  for (int i = 0; i < 6; ++i) {
    api::Json pod = ownedPod("web-" + std::to_string(i), "rs-uid");
    auto result = state.schedule(pod);
    ASSERT_FALSE(result.nodeName.empty()) << result.message;
    state.placePod("default/web-" + std::to_string(i), pod, result.nodeName);
    perNode[result.nodeName]++;
  }
  EXPECT_EQ(perNode["node-a"], 2);
  EXPECT_EQ(perNode["node-b"], 2);
  EXPECT_EQ(perNode["node-c"], 2);
}

TEST(ClusterState, TieBreakIsByNodeName) {
  ClusterState state;
  for (const char* n : {"zeta", "alpha", "mid"}) state.upsertNode(makeNode(n));
  EXPECT_EQ(state.schedule(makePod("p")).nodeName, "alpha");
}

// Nodes are kept sorted by name with an index by name; adds and removes in any order
// must leave every name finding its own node.
TEST(ClusterState, NodeIndexFollowsInsertsAndRemovalsAnywhere) {
  ClusterState state;
  std::vector<std::string> names;
  for (int i = 0; i < 40; ++i) {
    int n = (i * 17) % 40;  // 0, 17, 34, 11, ...: every number once, shuffled
    names.push_back(std::string("node-") + (n < 10 ? "0" : "") + std::to_string(n));
  }
  std::set<std::string> present;
  auto check = [&](const char* when) {
    ASSERT_EQ(state.nodeCount(), present.size()) << when;
    for (const auto& n : names) {
      const NodeInfo* info = state.node(n);
      if (present.count(n)) {
        ASSERT_NE(info, nullptr) << when << ": " << n;
        EXPECT_EQ(info->name, n) << when;
      } else {
        EXPECT_EQ(info, nullptr) << when << ": " << n << " was removed";
      }
    }
  };
  for (const auto& n : names) {
    state.upsertNode(makeNode(n));
    present.insert(n);
  }
  check("after adds");
  for (int i = 0; i < 40; i += 3) {
    state.removeNode(names[static_cast<size_t>(i)]);
    present.erase(names[static_cast<size_t>(i)]);
  }
  check("after removals");
  state.removeNode("not-a-node");
  state.upsertNode(makeNode(names[0]));
  present.insert(names[0]);
  check("after re-adding one");
  // Ties still go to the name that sorts first: node-00, removed and added back.
  EXPECT_EQ(state.schedule(makePod("p")).nodeName, "node-00");
}

TEST(ClusterState, UnschedulableMessageCountsReasonsLikeKubernetes) {
  ClusterState state;
  for (const char* name : {"small-1", "small-2"}) {
    api::Json small = makeNode(name, "4", "256Mi");
    small["metadata"]["labels"]["disk"] = "ssd";
    state.upsertNode(small);
  }
  api::Json other = makeNode("gpu", "4", "64Gi");
  other["metadata"]["labels"]["disk"] = "hdd";
  state.upsertNode(other);
  api::Json pod = makePod("big", "100m", "1Gi");
  pod["spec"]["nodeSelector"] = {{"disk", "ssd"}};
  auto result = state.schedule(pod);
  EXPECT_EQ(result.nodeName, "");
  EXPECT_EQ(result.message,
            "0/3 nodes are available: 2 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector.");
}

TEST(ClusterState, FitsAllocatableAndCountsPods) {
  ClusterState state;
  state.upsertNode(makeNode("n", "1", "1Gi", "2"));
  api::Json a = makePod("a", "600m", "100Mi");
  ASSERT_EQ(state.schedule(a).nodeName, "n");
  state.placePod("default/a", a, "n");
  EXPECT_EQ(state.schedule(makePod("b", "600m", "100Mi")).message, "0/1 nodes are available: 1 Insufficient cpu.");
  api::Json c = makePod("c", "100m", "100Mi");
  ASSERT_EQ(state.schedule(c).nodeName, "n");
  state.placePod("default/c", c, "n");
  EXPECT_EQ(state.schedule(makePod("d", "10m", "1Mi")).message, "0/1 nodes are available: 1 Too many pods.");
  state.removePod("default/a");
  EXPECT_EQ(state.schedule(makePod("b", "600m", "100Mi")).nodeName, "n");
}

TEST(ClusterState, InitContainersCountByTheirMaximum) {
  ClusterState state;
  state.upsertNode(makeNode("n", "1", "1Gi"));
  api::Json pod = makePod("p", "500m", "100Mi");
  pod["spec"]["initContainers"] = {{{"name", "init"}, {"resources", {{"requests", {{"cpu", "900m"}}}}}}};
  EXPECT_EQ(podRequests(pod).milliCpu, 900);
  pod["spec"]["initContainers"][0]["resources"]["requests"]["cpu"] = "1100m";
  EXPECT_EQ(state.schedule(pod).message, "0/1 nodes are available: 1 Insufficient cpu.");
}

TEST(ClusterState, TaintsNeedTolerations) {
  ClusterState state;
  api::Json node = makeNode("tainted");
  node["spec"]["taints"] = {{{"key", "dedicated"}, {"value", "db"}, {"effect", "NoSchedule"}}};
  state.upsertNode(node);
  api::Json pod = makePod("p");
  EXPECT_EQ(state.schedule(pod).message, "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: db}.");
  pod["spec"]["tolerations"] = {{{"key", "dedicated"}, {"operator", "Equal"}, {"value", "db"}, {"effect", "NoSchedule"}}};
  EXPECT_EQ(state.schedule(pod).nodeName, "tainted");
  pod["spec"]["tolerations"] = {{{"operator", "Exists"}}};
  EXPECT_EQ(state.schedule(pod).nodeName, "tainted");
}

TEST(ClusterState, NotReadyAndCordonedNodesAreSkipped) {
  ClusterState state;
  state.upsertNode(makeNode("down", "4", "8Gi", "110", false));
  api::Json cordoned = makeNode("cordoned");
  cordoned["spec"]["unschedulable"] = true;
  state.upsertNode(cordoned);
  EXPECT_EQ(state.schedule(makePod("p")).message,
            "0/2 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, "
            "1 node(s) were unschedulable.");
  state.upsertNode(makeNode("up"));
  EXPECT_EQ(state.schedule(makePod("p")).nodeName, "up");
}

TEST(ClusterState, RequiredNodeAffinity) {
  ClusterState state;
  api::Json a = makeNode("a");
  a["metadata"]["labels"]["zone"] = "z1";
  api::Json b = makeNode("b");
  b["metadata"]["labels"]["zone"] = "z2";
  b["metadata"]["labels"]["cores"] = "16";
  state.upsertNode(a);
  state.upsertNode(b);
  api::Json pod = makePod("p");
  pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] = {
      {{"matchExpressions", {{{"key", "zone"}, {"operator", "In"}, {"values", {"z2", "z3"}}},
                             {{"key", "cores"}, {"operator", "Gt"}, {"values", {"8"}}}}}}};
  EXPECT_EQ(state.schedule(pod).nodeName, "b");
  pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] = {
      {{"matchFields", {{{"key", "metadata.name"}, {"operator", "In"}, {"values", {"a"}}}}}}};
  EXPECT_EQ(state.schedule(pod).nodeName, "a");
}

TEST(ClusterState, HostPortsConflict) {
  ClusterState state;
  state.upsertNode(makeNode("only"));
  api::Json pod = makePod("p");
  pod["spec"]["containers"][0]["ports"] = {{{"containerPort", 80}, {"hostPort", 8080}}};
  ASSERT_EQ(state.schedule(pod).nodeName, "only");
  state.placePod("default/p", pod, "only");
  EXPECT_EQ(state.schedule(pod).message,
            "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.");
  pod["spec"]["containers"][0]["ports"][0]["protocol"] = "UDP";
  EXPECT_EQ(state.schedule(pod).nodeName, "only");
}

TEST(ClusterState, ExtendedResourcesOnlyWhereOffered) {
  ClusterState state;
  state.upsertNode(makeNode("plain"));
  api::Json gpu = makeNode("gpu");
  gpu["status"]["allocatable"]["nvidia.com/gpu"] = "1";
  state.upsertNode(gpu);
  api::Json pod = makePod("p");
  pod["spec"]["containers"][0]["resources"]["limits"] = {{"nvidia.com/gpu", "1"}};
  ASSERT_EQ(state.schedule(pod).nodeName, "gpu");
  state.placePod("default/p", pod, "gpu");
  EXPECT_EQ(state.schedule(pod).message, "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.");
}

TEST(PodResources, ParsesQuantities) {
  EXPECT_EQ(parseQuantityMilli("500m"), 500);
  EXPECT_EQ(parseQuantityMilli("2"), 2000);
  EXPECT_EQ(parseQuantityMilli("1Ki"), 1024000);
  EXPECT_EQ(parseQuantityMilli("1.5"), 1500);
  EXPECT_EQ(parseQuantityMilli("1e3"), 1000000);
  EXPECT_EQ(parseQuantityMilli("1G"), 1000000000000);
  EXPECT_FALSE(parseQuantityMilli("12xyz").has_value());
}

TEST(ClusterState, LargeClustersStayWithinOnePodOfEven) {
  ClusterState state;
  for (int i = 0; i < 333; ++i) state.upsertNode(makeNode("node-" + std::to_string(1000 + i), "32", "128Gi"));
  std::map<std::string, int> perNode;
  for (int i = 0; i < 3000; ++i) {
    api::Json pod = ownedPod("p" + std::to_string(i), "rs-uid");
    auto result = state.schedule(pod);
    ASSERT_FALSE(result.nodeName.empty()) << result.message;
    state.placePod("default/p" + std::to_string(i), pod, result.nodeName);
    perNode[result.nodeName]++;
  }
  int lo = 1 << 30, hi = 0;
  for (int i = 0; i < 333; ++i) {
    int n = perNode["node-" + std::to_string(1000 + i)];
    lo = std::min(lo, n);
    hi = std::max(hi, n);
  }
  EXPECT_LE(hi - lo, 1);
}
