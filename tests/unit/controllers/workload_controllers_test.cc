#include "controlplane-lite/controllers/deployment_controller.h"
#include "controlplane-lite/controllers/replicaset_controller.h"
#include "controller_fixture.h"

#include <set>

using namespace ferry;
using namespace ferry::cp;
using namespace ferry::cp::testing;

namespace {

api::Json makeReplicaSet(const std::string& name, int replicas) {
  return {{"apiVersion", "apps/v1"},
          {"kind", "ReplicaSet"},
          {"metadata", {{"name", name}, {"namespace", "default"}}},
          {"spec",
           {{"replicas", replicas},
            {"selector", {{"matchLabels", {{"app", "web"}}}}},
            {"template", podTemplate("nginx:1")}}}};
}

api::Json makeDeployment(const std::string& name, int replicas, const api::Json& strategy) {
  return {{"apiVersion", "apps/v1"},
          {"kind", "Deployment"},
          {"metadata", {{"name", name}, {"namespace", "default"}}},
          {"spec",
           {{"replicas", replicas},
            {"selector", {{"matchLabels", {{"app", "web"}}}}},
            {"strategy", strategy},
            {"template", podTemplate("nginx:1")}}}};
}

}  // namespace

struct ReplicaSetTest : ControllerFixture {};

TEST_F(ReplicaSetTest, CreatesAdoptsReleasesAndScalesDown) {
  api::Json orphan = makePod("orphan");
  ASSERT_TRUE(client.create("pods", orphan));
  add<ReplicaSetController>();
  start();
  startKubelet();
  auto rs = client.create("replicasets.apps", makeReplicaSet("web", 3));
  ASSERT_TRUE(rs);
  std::string uid = api::uidOf(*rs);
  ASSERT_TRUE(eventually([&] { return podsOwnedBy(uid).size() == 3; }));
  // The orphan was adopted (so only two were created), with a controller reference.
  auto adopted = client.get("pods", "default", "orphan");
  ASSERT_TRUE(adopted);
  ASSERT_NE(controllerRefOf(*adopted), nullptr);
  EXPECT_EQ(controllerRefOf(*adopted)->value("uid", ""), uid);
  EXPECT_TRUE(eventually([&] { return hasEvent("SuccessfulCreate", "Created pod: web-"); }));

  ASSERT_TRUE(eventually([&] {
    auto r = client.get("replicasets.apps", "default", "web");
    return api::at<int>(*r, {"status", "readyReplicas"}) == 3 && api::at<int>(*r, {"status", "availableReplicas"}) == 3 &&
           api::at<int>(*r, {"status", "replicas"}) == 3 && api::at<int>(*r, {"status", "fullyLabeledReplicas"}) == 3 &&
           api::at<int>(*r, {"status", "observedGeneration"}) == 1;
  }));

  // Relabelling a pod releases it; a replacement is made.
  ASSERT_TRUE(client.mutate("pods", "default", "orphan", [](api::Json& p) { p["metadata"]["labels"]["app"] = "other"; }));
  ASSERT_TRUE(eventually([&] {
    auto p = client.get("pods", "default", "orphan");
    return controllerRefOf(*p) == nullptr && podsOwnedBy(uid).size() == 3;
  }));

  // Scale down deletes, then reports.
  auto current = client.get("replicasets.apps", "default", "web");
  (*current)["spec"]["replicas"] = 1;
  ASSERT_TRUE(client.update("replicasets.apps", *current));
  EXPECT_TRUE(eventually([&] { return podsOwnedBy(uid).size() == 1; }));
  EXPECT_TRUE(eventually([&] { return hasEvent("SuccessfulDelete"); }));
  EXPECT_TRUE(eventually([&] {
    auto r = client.get("replicasets.apps", "default", "web");
    return api::at<int>(*r, {"status", "replicas"}) == 1 && api::at<int>(*r, {"status", "observedGeneration"}) == 2;
  }));
}

TEST(ReplicaSetOrdering, DeletesUnscheduledPendingNotReadyNewestFirst) {
  api::Json ready = makePod("ready");
  ready["spec"]["nodeName"] = "n";
  ready["status"] = {{"phase", "Running"}, {"conditions", {{{"type", "Ready"}, {"status", "True"}}}}};
  ready["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z";
  api::Json notReady = ready;
  notReady["metadata"]["name"] = "not-ready";
  notReady["status"]["conditions"][0]["status"] = "False";
  api::Json pending = makePod("pending");
  pending["spec"]["nodeName"] = "n";
  pending["status"] = {{"phase", "Pending"}};
  api::Json unscheduled = makePod("unscheduled");
  std::vector<api::Json> pods = {ready, notReady, pending, unscheduled};
  sortPodsForDeletion(pods);
  EXPECT_EQ(api::nameOf(pods[0]), "unscheduled");
  EXPECT_EQ(api::nameOf(pods[1]), "pending");
  EXPECT_EQ(api::nameOf(pods[2]), "not-ready");
  EXPECT_EQ(api::nameOf(pods[3]), "ready");
}

TEST(DeploymentMath, IntOrPercent) {
  EXPECT_EQ(resolveIntOrPercent("25%", 10, true, 0), 3);
  EXPECT_EQ(resolveIntOrPercent("25%", 10, false, 0), 2);
  EXPECT_EQ(resolveIntOrPercent(2, 10, false, 0), 2);
  EXPECT_EQ(podTemplateHash(podTemplate("a"), 0), podTemplateHash(podTemplate("a"), 0));
  EXPECT_NE(podTemplateHash(podTemplate("a"), 0), podTemplateHash(podTemplate("b"), 0));
  EXPECT_NE(podTemplateHash(podTemplate("a"), 0), podTemplateHash(podTemplate("a"), 1));
}

struct DeploymentTest : ControllerFixture {
  std::vector<api::Json> ownedReplicaSets(const std::string& uid) {
    std::vector<api::Json> out;
    for (const auto& rs : client.all("replicasets.apps")) {
      const api::Json* ref = controllerRefOf(rs);
      if (ref && ref->value("uid", "") == uid) out.push_back(rs);
    }
    return out;
  }
  int readyPods() {
    int n = 0;
    for (const auto& pod : client.all("pods"))
      if (!api::isTerminating(pod) && podIsReady(pod)) n++;
    return n;
  }
  bool rolledOut(const std::string& name, int replicas) {
    auto d = client.get("deployments.apps", "default", name);
    if (!d) return false;
    api::Json progressing = conditionOf(*d, "Progressing");
    return api::at<std::int64_t>(*d, {"status", "observedGeneration"}) == api::at<std::int64_t>(*d, {"metadata", "generation"}) &&
           api::at<int>(*d, {"status", "updatedReplicas"}) == replicas &&
           api::at<int>(*d, {"status", "replicas"}) == replicas &&
           api::at<int>(*d, {"status", "availableReplicas"}) == replicas && progressing.is_object() &&
           progressing.value("reason", "") == "NewReplicaSetAvailable";
  }
  void setImage(const std::string& name, const std::string& image) {
    for (int attempt = 0; attempt < 20; ++attempt) {
      auto d = client.get("deployments.apps", "default", name);
      (*d)["spec"]["template"]["spec"]["containers"][0]["image"] = image;
      if (client.update("deployments.apps", *d)) return;
    }
    FAIL() << "could not update the deployment";
  }
};

TEST_F(DeploymentTest, RollingUpdateKeepsAvailabilityAndRollsBack) {
  add<ReplicaSetController>();
  add<DeploymentController>();
  start();
  startKubelet();
  auto created = client.create(
      "deployments.apps",
      makeDeployment("web", 6, {{"type", "RollingUpdate"}, {"rollingUpdate", {{"maxSurge", 1}, {"maxUnavailable", 0}}}}));
  ASSERT_TRUE(created);
  std::string uid = api::uidOf(*created);
  ASSERT_TRUE(eventually([&] { return rolledOut("web", 6); }));
  auto rss = ownedReplicaSets(uid);
  ASSERT_EQ(rss.size(), 1u);
  std::string firstRS = api::nameOf(rss[0]);
  std::string hash = api::at<std::string>(rss[0], {"metadata", "labels", "pod-template-hash"});
  EXPECT_EQ(firstRS, "web-" + hash);
  EXPECT_EQ(api::at<std::string>(rss[0], {"metadata", "annotations", "deployment.kubernetes.io/revision"}), "1");
  EXPECT_EQ(api::at<std::string>(rss[0], {"spec", "selector", "matchLabels", "pod-template-hash"}), hash);
  EXPECT_TRUE(hasEvent("ScalingReplicaSet", "Scaled up replica set " + firstRS + " to 6"));

  // Rolling update with maxUnavailable 0: never fewer than 6 ready pods.
  std::atomic<int> lowest{100};
  std::atomic<bool> watching{true};
  std::thread watcher([&] {
    while (watching) {
      lowest = std::min(lowest.load(), readyPods());
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  setImage("web", "nginx:2");
  bool done = eventually([&] { return ownedReplicaSets(uid).size() == 2 && rolledOut("web", 6); });
  watching = false;
  watcher.join();
  ASSERT_TRUE(done);
  EXPECT_GE(lowest.load(), 6);
  for (const auto& rs : ownedReplicaSets(uid)) {
    if (api::nameOf(rs) == firstRS) EXPECT_EQ(api::at<int>(rs, {"spec", "replicas"}), 0);
    else EXPECT_EQ(api::at<std::string>(rs, {"metadata", "annotations", "deployment.kubernetes.io/revision"}), "2");
  }
  auto d = client.get("deployments.apps", "default", "web");
  EXPECT_EQ(api::at<std::string>(*d, {"metadata", "annotations", "deployment.kubernetes.io/revision"}), "2");

  // Rollback (what `kubectl rollout undo` does): the template of revision 1 again.
  setImage("web", "nginx:1");
  ASSERT_TRUE(eventually([&] {
    auto rs = client.get("replicasets.apps", "default", firstRS);
    return rs && api::at<int>(*rs, {"spec", "replicas"}) == 6 &&
           api::at<std::string>(*rs, {"metadata", "annotations", "deployment.kubernetes.io/revision"}) == "3" &&
           rolledOut("web", 6);
  }));
  EXPECT_EQ(ownedReplicaSets(uid).size(), 2u);
}

TEST_F(DeploymentTest, RecreateStopsOldPodsFirst) {
  add<ReplicaSetController>();
  add<DeploymentController>();
  start();
  startKubelet();
  auto created = client.create("deployments.apps", makeDeployment("app", 2, {{"type", "Recreate"}}));
  ASSERT_TRUE(created);
  ASSERT_TRUE(eventually([&] { return rolledOut("app", 2); }));
  std::string uid = api::uidOf(*created);
  std::string oldRS = api::nameOf(ownedReplicaSets(uid)[0]);
  std::atomic<bool> mixed{false}, watching{true};
  std::thread watcher([&] {
    while (watching) {
      std::set<std::string> images;
      for (const auto& pod : client.all("pods"))
        images.insert(pod["spec"]["containers"][0].value("image", ""));
      if (images.size() > 1) mixed = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  setImage("app", "nginx:2");
  bool done = eventually([&] { return ownedReplicaSets(uid).size() == 2 && rolledOut("app", 2); });
  watching = false;
  watcher.join();
  ASSERT_TRUE(done);
  EXPECT_FALSE(mixed.load()) << "old and new pods ran at the same time";
}

TEST_F(DeploymentTest, ProgressDeadlineExceededWhenPodsNeverGetReady) {
  add<ReplicaSetController>();
  add<DeploymentController>();
  start();
  api::Json d = makeDeployment("stuck", 1, {{"type", "RollingUpdate"}});
  d["spec"]["progressDeadlineSeconds"] = 1;
  ASSERT_TRUE(client.create("deployments.apps", d));
  EXPECT_TRUE(eventually([&] {
    auto got = client.get("deployments.apps", "default", "stuck");
    api::Json c = conditionOf(*got, "Progressing");
    return c.is_object() && c.value("reason", "") == "ProgressDeadlineExceeded" && c.value("status", "") == "False";
  }));
  auto got = client.get("deployments.apps", "default", "stuck");
  EXPECT_EQ(conditionOf(*got, "Available").value("status", ""), "False");
}

TEST_F(DeploymentTest, PausedDeploymentDoesNotRollOut) {
  add<ReplicaSetController>();
  add<DeploymentController>();
  start();
  startKubelet();
  auto created = client.create("deployments.apps", makeDeployment("p", 2, {{"type", "RollingUpdate"}}));
  ASSERT_TRUE(eventually([&] { return rolledOut("p", 2); }));
  auto d = client.get("deployments.apps", "default", "p");
  (*d)["spec"]["paused"] = true;
  (*d)["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:9";
  ASSERT_TRUE(client.update("deployments.apps", *d));
  ASSERT_TRUE(eventually([&] {
    auto got = client.get("deployments.apps", "default", "p");
    return conditionOf(*got, "Progressing").value("reason", "") == "DeploymentPaused";
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(ownedReplicaSets(api::uidOf(*created)).size(), 1u);
}
