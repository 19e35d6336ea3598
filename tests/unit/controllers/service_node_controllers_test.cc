#include "controlplane-lite/controllers/endpointslice_controller.h"
#include "controlplane-lite/controllers/garbage_collector.h"
#include "controlplane-lite/controllers/hpa_controller.h"
#include "controlplane-lite/controllers/node_lifecycle_controller.h"
#include "controlplane-lite/controllers/replicaset_controller.h"
#include "controller_fixture.h"

#include <set>

using namespace ferry;
using namespace ferry::cp;
using namespace ferry::cp::testing;

namespace {

api::Json makeService(const std::string& name, bool publishNotReady = false) {
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata", {{"name", name}, {"namespace", "default"}}},
          {"spec",
           {{"selector", {{"app", "web"}}},
            {"publishNotReadyAddresses", publishNotReady},
            {"ports", {{{"name", "web"}, {"port", 80}, {"targetPort", "http"}, {"protocol", "TCP"}}}}}}};
}

api::Json runningPod(const std::string& name, const std::string& ip, int port, bool ready, const std::string& node = "n1") {
  api::Json pod = makePod(name);
  pod["spec"]["nodeName"] = node;
  pod["spec"]["containers"][0]["ports"] = {{{"name", "http"}, {"containerPort", port}, {"protocol", "TCP"}}};
  pod["status"] = {{"phase", "Running"},
                   {"podIP", ip},
                   {"conditions", {{{"type", "Ready"}, {"status", ready ? "True" : "False"}}}}};
  return pod;
}

std::vector<api::Json> slicesOf(FakeObjectClient& client, const std::string& service) {
  std::vector<api::Json> out;
  for (const auto& s : client.all("endpointslices.discovery.k8s.io"))
    if (api::at<std::string>(s, {"metadata", "labels", "kubernetes.io/service-name"}) == service) out.push_back(s);
  return out;
}

api::Json endpointFor(const std::vector<api::Json>& slices, const std::string& pod) {
  for (const auto& s : slices)
    for (const auto& e : s.value("endpoints", api::Json::array()))
      if (api::at<std::string>(e, {"targetRef", "name"}) == pod) return e;
  return nullptr;
}

}  // namespace

struct EndpointSliceTest : ControllerFixture {};

TEST_F(EndpointSliceTest, SlicesFollowPodsWithResolvedPortsAndConditions) {
  ASSERT_TRUE(client.create("pods", runningPod("a", "10.42.0.5", 8080, true)));
  ASSERT_TRUE(client.create("pods", runningPod("b", "10.42.0.6", 9090, false)));
  ASSERT_TRUE(client.create("pods", makePod("no-ip")));
  add<EndpointSliceController>();
  start();
  auto svc = client.create("services", makeService("web"));
  ASSERT_TRUE(svc);
  // Different resolved ports: two slices.
  ASSERT_TRUE(eventually([&] {
    auto slices = slicesOf(client, "web");
    return slices.size() == 2 && endpointFor(slices, "a").is_object() && endpointFor(slices, "b").is_object();
  }));
  auto slices = slicesOf(client, "web");
  for (const auto& s : slices) {
    EXPECT_EQ(api::at<std::string>(s, {"metadata", "labels", "endpointslice.kubernetes.io/managed-by"}),
              "endpointslice-controller.k8s.io");
    EXPECT_EQ(s.value("addressType", ""), "IPv4");
    EXPECT_EQ(controllerRefOf(s)->value("uid", ""), api::uidOf(*svc));
    ASSERT_EQ(s["ports"].size(), 1u);
    EXPECT_EQ(s["ports"][0].value("name", ""), "web");
    int port = s["ports"][0].value("port", 0);
    std::string pod = api::at<std::string>(s["endpoints"][0], {"targetRef", "name"});
    EXPECT_EQ(port, pod == "a" ? 8080 : 9090);
  }
  api::Json a = endpointFor(slices, "a");
  EXPECT_EQ(a["addresses"][0], "10.42.0.5");
  EXPECT_EQ(a["nodeName"], "n1");
  EXPECT_EQ(a["conditions"]["ready"], true);
  EXPECT_EQ(endpointFor(slices, "b")["conditions"]["ready"], false);
  EXPECT_EQ(endpointFor(slices, "b")["conditions"]["serving"], false);
  EXPECT_TRUE(endpointFor(slices, "no-ip").is_null());

  // Legacy Endpoints: ready and not-ready addresses.
  ASSERT_TRUE(eventually([&] {
    auto ep = client.get("endpoints", "default", "web");
    return ep && ep->value("subsets", api::Json::array()).size() == 2;
  }));

  // Terminating: ready=false, serving stays, terminating=true, immediately.
  ASSERT_TRUE(client.remove("pods", "default", "a"));  // bound pod: graceful
  ASSERT_TRUE(eventually([&] {
    api::Json e = endpointFor(slicesOf(client, "web"), "a");
    return e.is_object() && e["conditions"]["ready"] == false && e["conditions"]["terminating"] == true &&
           e["conditions"]["serving"] == true;
  }));
  // Gone: removed from the slices; the service's slice set shrinks.
  client.finishPodDeletions();
  ASSERT_TRUE(eventually([&] { return endpointFor(slicesOf(client, "web"), "a").is_null() && slicesOf(client, "web").size() == 1; }));
}

TEST_F(EndpointSliceTest, PublishNotReadyAndServicesWithoutSelector) {
  ASSERT_TRUE(client.create("pods", runningPod("b", "10.42.0.6", 8080, false)));
  add<EndpointSliceController>();
  start();
  ASSERT_TRUE(client.create("services", makeService("headless", true)));
  ASSERT_TRUE(eventually([&] {
    api::Json e = endpointFor(slicesOf(client, "headless"), "b");
    return e.is_object() && e["conditions"]["ready"] == true;
  }));
  api::Json manual = makeService("manual");
  manual["spec"].erase("selector");
  ASSERT_TRUE(client.create("services", manual));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(slicesOf(client, "manual").empty());
}

struct NodeLifecycleTest : ControllerFixture {
  std::atomic<bool> heartbeating{true};
  std::thread heart;
  void renewLease(const std::string& node) {
    auto lease = client.get("leases.coordination.k8s.io", "kube-node-lease", node);
    if (!lease) return;
    (*lease)["spec"]["renewTime"] = api::nowRfc3339() + std::to_string(std::rand());
    client.update("leases.coordination.k8s.io", *lease);
  }
  void TearDown() override {
    heartbeating = false;
    if (heart.joinable()) heart.join();
    ControllerFixture::TearDown();
  }
};

TEST_F(NodeLifecycleTest, LostNodeIsTaintedAndItsPodsEvictedUntilItReturns) {
  config.nodeMonitorGracePeriodSeconds = 1;
  config.podEvictionTimeoutSeconds = 1;
  for (const char* n : {"n1", "n2"}) {
    ASSERT_TRUE(client.create("nodes", makeNode(n)));
    ASSERT_TRUE(client.create("leases.coordination.k8s.io",
                              {{"metadata", {{"name", n}, {"namespace", "kube-node-lease"}}},
                               {"spec", {{"holderIdentity", n}, {"renewTime", api::nowRfc3339()}}}}));
  }
  ASSERT_TRUE(client.create("pods", runningPod("standalone", "10.42.0.9", 80, true, "n1")));
  api::Json tolerant = runningPod("tolerant", "10.42.0.10", 80, true, "n1");
  tolerant["spec"]["tolerations"] = {{{"key", "node.kubernetes.io/unreachable"}, {"operator", "Exists"}, {"effect", "NoExecute"}}};
  ASSERT_TRUE(client.create("pods", tolerant));
  std::atomic<bool> n1Alive{true};
  heart = std::thread([&] {
    while (heartbeating) {
      renewLease("n2");
      if (n1Alive) renewLease("n1");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  add<NodeLifecycleController>(std::chrono::milliseconds(100));
  start();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(conditionOf(*client.get("nodes", "", "n1"), "Ready").value("status", ""), "True");

  n1Alive = false;
  ASSERT_TRUE(eventually([&] {
    auto node = client.get("nodes", "", "n1");
    bool tainted = false;
    for (const auto& t : api::at<api::Json>(*node, {"spec", "taints"}, api::Json::array()))
      if (t.value("key", "") == "node.kubernetes.io/unreachable" && t.value("effect", "") == "NoExecute") tainted = true;
    return tainted && conditionOf(*node, "Ready").value("status", "") == "Unknown";
  }));
  EXPECT_EQ(conditionOf(*client.get("nodes", "", "n2"), "Ready").value("status", ""), "True");
  // Its pods: not ready, and after the toleration the intolerant one is deleted.
  ASSERT_TRUE(eventually([&] {
    auto pod = client.get("pods", "default", "standalone");
    return !pod || api::isTerminating(*pod);
  }));
  auto tolerated = client.get("pods", "default", "tolerant");
  ASSERT_TRUE(tolerated);
  EXPECT_FALSE(api::isTerminating(*tolerated));
  EXPECT_EQ(conditionOf(*tolerated, "Ready").value("status", ""), "False");
  EXPECT_TRUE(eventually([&] { return hasEvent("NodeNotReady"); }));

  // The node returns: the kubelet posts Ready again and the taints go.
  n1Alive = true;
  client.mutate("nodes", "", "n1", [](api::Json& n) {
    setCondition(n["status"]["conditions"], "Ready", "True", "KubeletReady", "kubelet is posting ready status");
    n["status"]["conditions"][0]["lastHeartbeatTime"] = api::nowRfc3339();
  });
  EXPECT_TRUE(eventually([&] {
    auto node = client.get("nodes", "", "n1");
    return api::at<api::Json>(*node, {"spec", "taints"}, api::Json::array()).empty();
  }));
}

// TaintNodesByCondition: MemoryPressure/DiskPressure reported by the node become NoSchedule taints and go with them.
TEST_F(NodeLifecycleTest, PressureConditionsBecomeNoScheduleTaints) {
  config.nodeMonitorGracePeriodSeconds = 30;
  ASSERT_TRUE(client.create("nodes", makeNode("n1")));
  ASSERT_TRUE(client.create("leases.coordination.k8s.io",
                            {{"metadata", {{"name", "n1"}, {"namespace", "kube-node-lease"}}},
                             {"spec", {{"holderIdentity", "n1"}, {"renewTime", api::nowRfc3339()}}}}));
  add<NodeLifecycleController>(std::chrono::milliseconds(100));
  start();
  auto taintKeys = [&] {
    std::set<std::string> keys;
    auto node = client.get("nodes", "", "n1");
    for (const auto& t : api::at<api::Json>(*node, {"spec", "taints"}, api::Json::array()))
      if (t.value("effect", "") == "NoSchedule") keys.insert(t.value("key", ""));
    return keys;
  };
  client.mutate("nodes", "", "n1", [](api::Json& n) {
    setCondition(n["status"]["conditions"], "MemoryPressure", "True", "KubeletHasInsufficientMemory", "low");
  });
  EXPECT_TRUE(eventually([&] { return taintKeys() == std::set<std::string>{"node.kubernetes.io/memory-pressure"}; }));
  client.mutate("nodes", "", "n1", [](api::Json& n) {
    setCondition(n["status"]["conditions"], "MemoryPressure", "False", "KubeletHasSufficientMemory", "ok");
    setCondition(n["status"]["conditions"], "DiskPressure", "True", "KubeletHasDiskPressure", "full");
  });
  EXPECT_TRUE(eventually([&] { return taintKeys() == std::set<std::string>{"node.kubernetes.io/disk-pressure"}; }));
  client.mutate("nodes", "", "n1", [](api::Json& n) {
    setCondition(n["status"]["conditions"], "DiskPressure", "False", "KubeletHasNoDiskPressure", "ok");
  });
  EXPECT_TRUE(eventually([&] { return taintKeys().empty(); }));
}

struct GarbageCollectorTest : ControllerFixture {};

TEST_F(GarbageCollectorTest, DeletesOrphansForegroundAndOrphanPropagation) {
  add<GarbageCollector>();
  start();
  // Background: an object whose owner does not exist is deleted.
  api::Json dangling = makePod("dangling");
  dangling["metadata"]["ownerReferences"] = {
      {{"apiVersion", "apps/v1"}, {"kind", "ReplicaSet"}, {"name", "gone"}, {"uid", "no-such-uid"}, {"controller", true}}};
  ASSERT_TRUE(client.create("pods", dangling));
  EXPECT_TRUE(eventually([&] { return !client.get("pods", "default", "dangling"); }));

  // Foreground: the owner stays until its dependents are gone.
  auto rs = client.create("replicasets.apps", {{"metadata", {{"name", "fg"}, {"namespace", "default"}}},
                                               {"spec", {{"replicas", 1}}}});
  ASSERT_TRUE(rs);
  api::Json child = makePod("child");
  child["spec"]["nodeName"] = "n1";  // deleted gracefully: stays terminating until the kubelet finishes
  child["metadata"]["ownerReferences"] = {{{"apiVersion", "apps/v1"}, {"kind", "ReplicaSet"}, {"name", "fg"},
                                           {"uid", api::uidOf(*rs)}, {"controller", true}, {"blockOwnerDeletion", true}}};
  ASSERT_TRUE(client.create("pods", child));
  DeleteOptions foreground;
  foreground.propagationPolicy = "Foreground";
  ASSERT_TRUE(client.remove("replicasets.apps", "default", "fg", foreground));
  ASSERT_TRUE(eventually([&] {
    auto c = client.get("pods", "default", "child");
    return c && api::isTerminating(*c);
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(client.get("replicasets.apps", "default", "fg")) << "owner went before its dependent";
  client.finishPodDeletions();
  EXPECT_TRUE(eventually([&] { return !client.get("replicasets.apps", "default", "fg"); }));

  // Orphan: dependents lose the reference and stay.
  auto owner = client.create("replicasets.apps", {{"metadata", {{"name", "orph"}, {"namespace", "default"}}},
                                                  {"spec", {{"replicas", 1}}}});
  api::Json kept = makePod("kept");
  kept["metadata"]["ownerReferences"] = {{{"apiVersion", "apps/v1"}, {"kind", "ReplicaSet"}, {"name", "orph"},
                                          {"uid", api::uidOf(*owner)}, {"controller", true}}};
  ASSERT_TRUE(client.create("pods", kept));
  DeleteOptions orphan;
  orphan.propagationPolicy = "Orphan";
  ASSERT_TRUE(client.remove("replicasets.apps", "default", "orph", orphan));
  EXPECT_TRUE(eventually([&] { return !client.get("replicasets.apps", "default", "orph"); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto pod = client.get("pods", "default", "kept");
  ASSERT_TRUE(pod);
  EXPECT_EQ(controllerRefOf(*pod), nullptr);
}

TEST(HpaAlgorithm, FollowsKubernetesReplicaCalculator) {
  int util = 0;
  std::vector<PodSample> pods(2, PodSample{100, 90, true});  // 90% of request, target 50%
  EXPECT_EQ(*desiredReplicasForCpu(2, pods, 50, &util), 4);  // ceil(1.8 * 2)
  EXPECT_EQ(util, 90);
  std::vector<PodSample> near(2, PodSample{100, 53, true});  // within 10% tolerance
  EXPECT_EQ(*desiredReplicasForCpu(2, near, 50, &util), 2);
  std::vector<PodSample> low(4, PodSample{100, 10, true});
  EXPECT_EQ(*desiredReplicasForCpu(4, low, 50, &util), 1);  // ceil(0.2 * 4)
  // A missing metric counts as full usage when scaling down.
  std::vector<PodSample> missing = {PodSample{100, 10, true}, PodSample{100, std::nullopt, true}};
  EXPECT_EQ(*desiredReplicasForCpu(2, missing, 50, &util), 2);  // (10+100)/200 = 55%: within tolerance
  EXPECT_FALSE(desiredReplicasForCpu(1, {PodSample{0, 10, true}}, 50, &util).has_value());
}

struct HpaTest : ControllerFixture {};

TEST_F(HpaTest, ScalesUpOnLoadAndDownAfterStabilization) {
  config.hpaDownscaleStabilizationSeconds = 1;
  FixedPodMetrics metrics;
  add<ReplicaSetController>();
  add<HpaController>(metrics, std::chrono::milliseconds(200));
  start();
  startKubelet();
  auto rs = client.create("replicasets.apps",
                          {{"metadata", {{"name", "web"}, {"namespace", "default"}}},
                           {"spec", {{"replicas", 1}, {"selector", {{"matchLabels", {{"app", "web"}}}}}, {"template", podTemplate("nginx")}}}});
  ASSERT_TRUE(rs);
  ASSERT_TRUE(client.create(
      "horizontalpodautoscalers.autoscaling",
      {{"metadata", {{"name", "web"}, {"namespace", "default"}}},
       {"spec",
        {{"scaleTargetRef", {{"apiVersion", "apps/v1"}, {"kind", "ReplicaSet"}, {"name", "web"}}},
         {"minReplicas", 1},
         {"maxReplicas", 5},
         {"metrics", {{{"type", "Resource"}, {"resource", {{"name", "cpu"}, {"target", {{"type", "Utilization"}, {"averageUtilization", 50}}}}}}}}}}}));
  auto feed = [&](std::int64_t milli) {
    for (const auto& pod : client.all("pods")) metrics.set("default", api::nameOf(pod), milli);
  };
  // 100m requested, 100m used: 200% of a 50% target → 4 replicas.
  ASSERT_TRUE(eventually([&] {
    feed(100);
    auto r = client.get("replicasets.apps", "default", "web");
    return api::at<int>(*r, {"spec", "replicas"}) >= 4;
  }));
  EXPECT_TRUE(hasEvent("SuccessfulRescale", "above target"));
  // Load gone: back down to the minimum once the window has passed.
  ASSERT_TRUE(eventually([&] {
    feed(5);
    auto r = client.get("replicasets.apps", "default", "web");
    return api::at<int>(*r, {"spec", "replicas"}) == 1;
  }));
  auto hpa = client.get("horizontalpodautoscalers.autoscaling", "default", "web");
  EXPECT_EQ(conditionOf(*hpa, "ScalingActive").value("reason", ""), "ValidMetricFound");
}
