// Registry semantics on a real SQLite store in a temporary directory.
#include "controlplane-lite/registry.h"
#include "controlplane-lite/store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>
#include <tuple>

using namespace ferry;
using namespace ferry::cp;
using api::Json;

namespace {

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("ferry-registry-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto s = openStore("sqlite", dir_.string());
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
    registry_ = std::make_unique<Registry>(*store_, ServerConfig{});
    auto st = registry_->bootstrap("127.0.0.1", 6443);
    ASSERT_TRUE(st) << st.error().message;
  }
  void TearDown() override {
    registry_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  Json deployment(const std::string& name, const std::string& image = "nginx:1.25") {
    return Json::parse(R"({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":")" + name +
                       R"(","namespace":"default","labels":{"app":"web"}},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},
      "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":")" +
                       image + R"(","ports":[{"containerPort":80}]}]}}}})");
  }
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Registry> registry_;
};

}  // namespace

TEST_F(RegistryTest, BootstrapObjects) {
  for (const char* ns : {"default", "kube-system", "kube-public", "kube-node-lease"}) EXPECT_TRUE(registry_->get("namespaces", "", ns));
  auto k = registry_->get("services", "default", "kubernetes");
  ASSERT_TRUE(k);
  EXPECT_EQ(api::at<std::string>(*k, {"spec", "clusterIP"}), "10.43.0.1");
  auto dns = registry_->get("services", "kube-system", "kube-dns");
  ASSERT_TRUE(dns);
  EXPECT_EQ(api::at<std::string>(*dns, {"spec", "clusterIP"}), "10.43.0.10");
  EXPECT_TRUE(registry_->get("endpointslices.discovery.k8s.io", "default", "kubernetes"));
  // Idempotent.
  EXPECT_TRUE(registry_->bootstrap("127.0.0.1", 6443));
}

TEST_F(RegistryTest, CreateGetUpdateConflictGeneration) {
  auto made = registry_->create("deployments.apps", deployment("web"));
  ASSERT_TRUE(made) << made.error().message;
  EXPECT_FALSE(api::uidOf(*made).empty());
  EXPECT_EQ(api::at<int>(*made, {"metadata", "generation"}), 1);
  EXPECT_EQ(api::at<int>(*made, {"spec", "revisionHistoryLimit"}), 10);
  std::string rv = api::resourceVersionOf(*made);
  EXPECT_FALSE(rv.empty());

  auto dup = registry_->create("deployments.apps", deployment("web"));
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, EEXIST);

  Json changed = *made;
  changed["spec"]["replicas"] = 3;
  changed["status"] = {{"replicas", 99}};
  auto updated = registry_->update("deployments.apps", changed);
  ASSERT_TRUE(updated) << updated.error().message;
  EXPECT_EQ(api::at<int>(*updated, {"metadata", "generation"}), 2);
  EXPECT_FALSE(updated->contains("status") && (*updated)["status"].contains("replicas"));

  // Stale resourceVersion: Conflict.
  auto stale = registry_->update("deployments.apps", changed);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ECANCELED);
  EXPECT_NE(stale.error().message.find("the object has been modified"), std::string::npos);

  // Status subresource changes only status, no generation bump.
  Json status = *updated;
  status["status"] = {{"replicas", 3}, {"observedGeneration", 2}};
  status["spec"]["replicas"] = 7;
  auto st = registry_->updateStatus("deployments.apps", status);
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(api::at<int>(*st, {"status", "replicas"}), 3);
  EXPECT_EQ(api::at<int>(*st, {"spec", "replicas"}), 3);
  EXPECT_EQ(api::at<int>(*st, {"metadata", "generation"}), 2);

  auto missing = registry_->get("deployments.apps", "default", "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT);
  EXPECT_EQ(missing.error().message, "deployments.apps \"nope\" not found");
}

TEST_F(RegistryTest, ValidationNamespaceAndGenerateName) {
  Json bad = deployment("web");
  bad["spec"]["template"]["spec"]["containers"][0].erase("image");
  auto r = registry_->create("deployments.apps", bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EINVAL);
  EXPECT_NE(r.error().message.find("spec.template.spec.containers[0].image: Required value"), std::string::npos);

  Json elsewhere = deployment("web");
  elsewhere["metadata"]["namespace"] = "missing";
  auto m = registry_->create("deployments.apps", elsewhere);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, ENOENT);

  Json cm = {{"metadata", {{"generateName", "cfg-"}, {"namespace", "default"}}}, {"data", {{"a", "b"}}}};
  auto made = registry_->create("configmaps", cm);
  ASSERT_TRUE(made) << made.error().message;
  EXPECT_EQ(api::nameOf(*made).rfind("cfg-", 0), 0u);
  EXPECT_EQ(api::nameOf(*made).size(), 9u);
}

TEST_F(RegistryTest, ServiceAllocationAndNodeCidr) {
  Json svc = Json::parse(R"({"metadata":{"name":"web","namespace":"default"},"spec":{"type":"NodePort","selector":{"app":"web"},"ports":[{"port":80}]}})");
  auto made = registry_->create("services", svc);
  ASSERT_TRUE(made) << made.error().message;
  std::string ip = api::at<std::string>(*made, {"spec", "clusterIP"});
  EXPECT_EQ(ip.rfind("10.43.", 0), 0u);
  int np = api::at<int>(*made, {"spec", "ports"}, 0);
  (void)np;
  int nodePort = (*made)["spec"]["ports"][0]["nodePort"].get<int>();
  EXPECT_GE(nodePort, 30000);
  EXPECT_LE(nodePort, 32767);
  EXPECT_EQ((*made)["spec"]["ports"][0]["targetPort"], 80);

  Json taken = Json::parse(R"({"metadata":{"name":"other","namespace":"default"},"spec":{"ports":[{"port":80}]}})");
  taken["spec"]["clusterIP"] = ip;
  auto clash = registry_->create("services", taken);
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error().code, EINVAL);
  ASSERT_TRUE(registry_->remove("services", "default", "web"));
  EXPECT_TRUE(registry_->create("services", taken));

  auto n1 = registry_->create("nodes", Json{{"metadata", {{"name", "n1"}}}});
  auto n2 = registry_->create("nodes", Json{{"metadata", {{"name", "n2"}}}});
  ASSERT_TRUE(n1 && n2);
  std::string c1 = api::at<std::string>(*n1, {"spec", "podCIDR"});
  EXPECT_EQ(c1, "10.42.0.0/24");
  EXPECT_EQ(api::at<std::string>(*n2, {"spec", "podCIDR"}), "10.42.1.0/24");
  ASSERT_TRUE(registry_->remove("nodes", "", "n1"));
  auto again = registry_->create("nodes", Json{{"metadata", {{"name", "n1"}}}});
  ASSERT_TRUE(again);
  EXPECT_EQ(api::at<std::string>(*again, {"spec", "podCIDR"}), c1);
}

TEST_F(RegistryTest, ServiceIPFamiliesSingleStackCluster) {
  auto svc = [](const std::string& name, const std::string& specExtra) {
    return Json::parse(R"({"metadata":{"name":")" + name + R"(","namespace":"default"},"spec":{"ports":[{"port":80}])" +
                       specExtra + "}}");
  };
  auto made = registry_->create("services", svc("plain", ""));
  ASSERT_TRUE(made) << made.error().message;
  EXPECT_EQ((*made)["spec"]["ipFamilies"], Json::array({"IPv4"}));
  EXPECT_EQ((*made)["spec"]["ipFamilyPolicy"], "SingleStack");
  // PreferDualStack on a single-stack cluster: the one family it has.
  auto prefer = registry_->create("services", svc("prefer", R"(,"ipFamilyPolicy":"PreferDualStack")"));
  ASSERT_TRUE(prefer) << prefer.error().message;
  EXPECT_EQ((*prefer)["spec"]["clusterIPs"].size(), 1u);
  for (const auto& [name, extra, field] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"v6", R"(,"ipFamilies":["IPv6"])", "spec.ipFamilies[0]"},
           {"require", R"(,"ipFamilyPolicy":"RequireDualStack")", "spec.ipFamilyPolicy"},
           {"v6ip", R"(,"clusterIP":"fd00:43::20")", "spec.ipFamilies[0]"}}) {
    auto refused = registry_->create("services", svc(name, extra));
    ASSERT_FALSE(refused) << name;
    EXPECT_EQ(refused.error().code, EINVAL) << name;
    EXPECT_NE(refused.error().message.find(field), std::string::npos) << name << ": " << refused.error().message;
  }
}

TEST_F(RegistryTest, ServiceIPFamiliesDualStackCluster) {
  ServerConfig config;
  config.serviceCIDR = "10.43.0.0/16,fd00:43::/112";
  registry_ = std::make_unique<Registry>(*store_, config);
  auto svc = [](const std::string& name, const std::string& specExtra) {
    return Json::parse(R"({"metadata":{"name":")" + name + R"(","namespace":"default"},"spec":{"ports":[{"port":80}])" +
                       specExtra + "}}");
  };
  auto dual = registry_->create("services", svc("dual", R"(,"ipFamilyPolicy":"PreferDualStack")"));
  ASSERT_TRUE(dual) << dual.error().message;
  EXPECT_EQ((*dual)["spec"]["ipFamilies"], Json::array({"IPv4", "IPv6"}));
  ASSERT_EQ((*dual)["spec"]["clusterIPs"].size(), 2u);
  std::string v4 = (*dual)["spec"]["clusterIPs"][0], v6 = (*dual)["spec"]["clusterIPs"][1];
  EXPECT_EQ((*dual)["spec"]["clusterIP"], v4);
  EXPECT_EQ(v4.rfind("10.43.", 0), 0u) << v4;
  EXPECT_EQ(v6.rfind("fd00:43::", 0), 0u) << v6;

  // IPv6 primary, single stack, a requested address (written in a non-canonical form).
  auto v6only = registry_->create("services", svc("v6only", R"(,"ipFamilies":["IPv6"],"clusterIP":"FD00:43:0::99")"));
  ASSERT_TRUE(v6only) << v6only.error().message;
  EXPECT_EQ((*v6only)["spec"]["clusterIPs"], Json::array({"fd00:43::99"}));
  EXPECT_EQ((*v6only)["spec"]["ipFamilies"], Json::array({"IPv6"}));
  auto clash = registry_->create("services", svc("clash", R"(,"ipFamilies":["IPv6"],"clusterIP":"fd00:43::99")"));
  ASSERT_FALSE(clash);
  EXPECT_NE(clash.error().message.find("already allocated"), std::string::npos) << clash.error().message;
  auto outside = registry_->create("services", svc("outside", R"(,"ipFamilies":["IPv6"],"clusterIP":"fd00:44::1")"));
  ASSERT_FALSE(outside);
  EXPECT_NE(outside.error().message.find("fd00:43::/112"), std::string::npos) << outside.error().message;
  auto mismatch = registry_->create("services", svc("mismatch", R"(,"ipFamilies":["IPv4"],"clusterIP":"fd00:43::98")"));
  ASSERT_FALSE(mismatch);
  EXPECT_NE(mismatch.error().message.find("expected an IPv4 address"), std::string::npos) << mismatch.error().message;
  // Deleting a dual-stack Service frees both of its addresses.
  ASSERT_TRUE(registry_->remove("services", "default", "dual"));
  Json again = svc("again", R"(,"ipFamilyPolicy":"RequireDualStack")");
  again["spec"]["clusterIP"] = v4;
  again["spec"]["clusterIPs"] = Json::array({v4, v6});
  auto reused = registry_->create("services", again);
  ASSERT_TRUE(reused) << reused.error().message;
  EXPECT_EQ((*reused)["spec"]["clusterIPs"], Json::array({v4, v6}));

  ServerConfig bad;
  bad.serviceCIDR = "10.43.0.0/16,10.44.0.0/16";
  registry_ = std::make_unique<Registry>(*store_, bad);
  auto refused = registry_->create("services", svc("bad", ""));
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("must be IPv6"), std::string::npos) << refused.error().message;
}

// Ranges given out by an older server (no by-node key) are kept for their node and
// never handed to another; a restarted server continues after the highest range.
TEST_F(RegistryTest, NodeCidrsSurviveRestartAndOlderStores) {
  ASSERT_TRUE(store_->create("/registry/podcidrs/10.42.0.0", "old-a"));
  ASSERT_TRUE(store_->create("/registry/podcidrs/10.42.2.0", "old-b"));
  auto fresh = registry_->create("nodes", Json{{"metadata", {{"name", "fresh"}}}});
  ASSERT_TRUE(fresh) << fresh.error().message;
  EXPECT_EQ(api::at<std::string>(*fresh, {"spec", "podCIDR"}), "10.42.3.0/24");
  auto oldB = registry_->create("nodes", Json{{"metadata", {{"name", "old-b"}}}});
  ASSERT_TRUE(oldB);
  EXPECT_EQ(api::at<std::string>(*oldB, {"spec", "podCIDR"}), "10.42.2.0/24");

  registry_ = std::make_unique<Registry>(*store_, ServerConfig{});  // a restarted server
  auto oldA = registry_->create("nodes", Json{{"metadata", {{"name", "old-a"}}}});
  ASSERT_TRUE(oldA);
  EXPECT_EQ(api::at<std::string>(*oldA, {"spec", "podCIDR"}), "10.42.0.0/24");
  auto next = registry_->create("nodes", Json{{"metadata", {{"name", "next"}}}});
  ASSERT_TRUE(next);
  EXPECT_EQ(api::at<std::string>(*next, {"spec", "podCIDR"}), "10.42.4.0/24");
  // The scan goes on from where it stopped (10.42.1.0 is taken only once the ranges above run out).
  auto wrap = registry_->create("nodes", Json{{"metadata", {{"name", "wrap"}}}});
  ASSERT_TRUE(wrap);
  EXPECT_EQ(api::at<std::string>(*wrap, {"spec", "podCIDR"}), "10.42.5.0/24");
}

TEST_F(RegistryTest, PodGracefulDeletionBindingAndFinalizers) {
  Json pod = Json::parse(R"({"metadata":{"name":"p","namespace":"default"},"spec":{"containers":[{"name":"c","image":"busybox"}]}})");
  ASSERT_TRUE(registry_->create("pods", pod));
  ASSERT_TRUE(registry_->bindPod("default", "p", "n1"));
  auto bound = registry_->get("pods", "default", "p");
  ASSERT_TRUE(bound);
  EXPECT_EQ(api::at<std::string>(*bound, {"spec", "nodeName"}), "n1");
  EXPECT_FALSE(registry_->bindPod("default", "p", "n2"));

  auto graceful = registry_->remove("pods", "default", "p");
  ASSERT_TRUE(graceful);
  EXPECT_TRUE(api::isTerminating(*graceful));
  EXPECT_EQ(api::at<int>(*graceful, {"metadata", "deletionGracePeriodSeconds"}), 30);
  EXPECT_TRUE(registry_->get("pods", "default", "p"));
  DeleteOptions now;
  now.gracePeriodSeconds = 0;
  ASSERT_TRUE(registry_->remove("pods", "default", "p", now));
  EXPECT_FALSE(registry_->get("pods", "default", "p"));

  Json cm = {{"metadata", {{"name", "held"}, {"namespace", "default"}, {"finalizers", {"example.com/hold"}}}}};
  ASSERT_TRUE(registry_->create("configmaps", cm));
  auto held = registry_->remove("configmaps", "default", "held");
  ASSERT_TRUE(held);
  EXPECT_TRUE(api::isTerminating(*held));
  Json release = *held;
  release["metadata"]["finalizers"] = Json::array();
  ASSERT_TRUE(registry_->update("configmaps", release));
  EXPECT_FALSE(registry_->get("configmaps", "default", "held"));
}

TEST_F(RegistryTest, ListSelectorsPagingAndPatch) {
  for (int i = 0; i < 5; ++i) {
    Json cm = {{"metadata", {{"name", "cm-" + std::to_string(i)}, {"namespace", "default"},
                             {"labels", {{"parity", i % 2 ? "odd" : "even"}}}}}};
    ASSERT_TRUE(registry_->create("configmaps", cm));
  }
  ListRequest req;
  req.options.labelSelector = "parity=even";
  auto even = registry_->listPage("configmaps", "default", req);
  ASSERT_TRUE(even);
  EXPECT_EQ(even->list.items.size(), 3u);
  ListRequest paged;
  paged.limit = 2;
  auto p1 = registry_->listPage("configmaps", "default", paged);
  ASSERT_TRUE(p1);
  EXPECT_EQ(p1->list.items.size(), 2u);
  ASSERT_FALSE(p1->continueToken.empty());
  paged.continueToken = p1->continueToken;
  auto p2 = registry_->listPage("configmaps", "default", paged);
  ASSERT_TRUE(p2);
  EXPECT_EQ(api::nameOf(p2->list.items[0]), "cm-2");

  ASSERT_TRUE(registry_->create("deployments.apps", deployment("web")));
  PatchRequest smp{"application/strategic-merge-patch+json",
                   R"({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"}],"containers":[{"name":"web","image":"nginx:1.26"}]}}}})",
                   "kubectl-client-side-apply", false, ""};
  auto patched = registry_->patch("deployments.apps", "default", "web", smp);
  ASSERT_TRUE(patched) << patched.error().message;
  EXPECT_EQ((*patched)["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.26");
  EXPECT_EQ((*patched)["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 80);

  PatchRequest scale{"application/merge-patch+json", R"({"spec":{"replicas":5}})", "", false, "scale"};
  auto scaled = registry_->patch("deployments.apps", "default", "web", scale);
  ASSERT_TRUE(scaled) << scaled.error().message;
  EXPECT_EQ((*scaled)["kind"], "Scale");
  EXPECT_EQ((*scaled)["spec"]["replicas"], 5);

  Json applied = deployment("applied");
  PatchRequest ssa{"application/apply-patch+yaml", applied.dump(), "kubectl", false, ""};
  bool created = false;
  auto a1 = registry_->patch("deployments.apps", "default", "applied", ssa, &created);
  ASSERT_TRUE(a1) << a1.error().message;
  EXPECT_TRUE(created);
  EXPECT_EQ((*a1)["metadata"]["managedFields"][0]["manager"], "kubectl");
  // Another manager changing an owned field conflicts unless forced.
  Json other = applied;
  other["spec"]["replicas"] = 4;
  PatchRequest ssa2{"application/apply-patch+yaml", other.dump(), "someone-else", false, ""};
  auto conflict = registry_->patch("deployments.apps", "default", "applied", ssa2);
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error().code, EALREADY);
  ssa2.force = true;
  auto forced = registry_->patch("deployments.apps", "default", "applied", ssa2);
  ASSERT_TRUE(forced) << forced.error().message;
  EXPECT_EQ((*forced)["spec"]["replicas"], 4);
}

TEST_F(RegistryTest, WatchDeliversAfterResourceVersionWithSelectors) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<WatchEvent> seen;
  auto rv = registry_->currentResourceVersion();
  ASSERT_TRUE(rv);
  ListOptions opts;
  opts.labelSelector = "app=web";
  auto w = registry_->watch("configmaps", "default", *rv, opts, [&](const WatchEvent& e) {
    std::lock_guard lock(mu);
    seen.push_back(e);
    cv.notify_all();
  });
  ASSERT_TRUE(w) << w.error().message;
  Json cm = {{"metadata", {{"name", "a"}, {"namespace", "default"}, {"labels", {{"app", "web"}}}}}};
  auto made = registry_->create("configmaps", cm);
  ASSERT_TRUE(made);
  ASSERT_TRUE(registry_->create("configmaps", Json{{"metadata", {{"name", "other"}, {"namespace", "default"}}}}));
  Json moved = *made;
  moved["metadata"]["labels"]["app"] = "db";
  ASSERT_TRUE(registry_->update("configmaps", moved));
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return seen.size() >= 2; }));
  EXPECT_EQ(seen[0].type, "ADDED");
  EXPECT_EQ(api::nameOf(*seen[0].object), "a");
  EXPECT_EQ(seen[1].type, "DELETED");  // left the selector
  lock.unlock();

  // Resuming from the first event's revision replays what followed.
  std::vector<WatchEvent> replay;
  auto w2 = registry_->watch("configmaps", "default", api::resourceVersionOf(*made), {}, [&](const WatchEvent& e) {
    std::lock_guard l(mu);
    replay.push_back(e);
    cv.notify_all();
  });
  ASSERT_TRUE(w2);
  lock.lock();
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return replay.size() >= 2; }));
  EXPECT_EQ(api::nameOf(*replay[0].object), "other");
  EXPECT_EQ(replay[1].type, "MODIFIED");
}

// The API server runs on api/'s selectors, YAML reader, patches, defaulting
// and validation. Where the server's former copies differed, these pin the
// Kubernetes behaviour that was kept.
TEST_F(RegistryTest, SelectorsFollowKubernetesSyntax) {
  for (int gen = 1; gen <= 3; ++gen) {
    Json cm = {{"metadata", {{"name", "gen-" + std::to_string(gen)}, {"namespace", "default"},
                             {"labels", {{"gen", std::to_string(gen)}}}}}};
    ASSERT_TRUE(registry_->create("configmaps", cm));
  }
  // `gen>1` is a Gt requirement in Kubernetes' selector syntax (it was read as "label gen>1 exists").
  ListRequest gt;
  gt.options.labelSelector = "gen>1";
  auto newer = registry_->listPage("configmaps", "default", gt);
  ASSERT_TRUE(newer) << newer.error().message;
  EXPECT_EQ(newer->list.items.size(), 2u);
  // A value that is not a label value is a bad request, not a selector that matches nothing.
  ListRequest bad;
  bad.options.labelSelector = "gen=a b";
  auto refused = registry_->listPage("configmaps", "default", bad);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, EBADMSG);
}

TEST_F(RegistryTest, StrategicMergeKnowsAtomicLists) {
  Json slice = Json::parse(R"({"metadata":{"name":"web-1","namespace":"default","labels":{"kubernetes.io/service-name":"web"}},
    "addressType":"IPv4","endpoints":[{"addresses":["10.42.0.5"]}],"ports":[{"name":"http","port":80,"protocol":"TCP"}]})");
  ASSERT_TRUE(registry_->create("endpointslices.discovery.k8s.io", slice));
  // EndpointSlice.ports is atomic in Kubernetes: a strategic merge patch replaces it
  // (it used to be merged by "port" because the list is called "ports").
  PatchRequest smp{"application/strategic-merge-patch+json", R"({"ports":[{"name":"metrics","port":9090,"protocol":"TCP"}]})", "", false, ""};
  auto patched = registry_->patch("endpointslices.discovery.k8s.io", "default", "web-1", smp);
  ASSERT_TRUE(patched) << patched.error().message;
  ASSERT_EQ((*patched)["ports"].size(), 1u);
  EXPECT_EQ((*patched)["ports"][0]["name"], "metrics");
  // A directive the patch format does not have is a bad request.
  PatchRequest bogus{"application/strategic-merge-patch+json", R"({"metadata":{"$patch":"bogus"}})", "", false, ""};
  auto refused = registry_->patch("endpointslices.discovery.k8s.io", "default", "web-1", bogus);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, EBADMSG);
}

TEST_F(RegistryTest, ApplyYamlIsTypedLikeKubernetes) {
  // go-yaml v2 (what Kubernetes reads YAML with) reads 0x3 as the integer 3; it used to become the float 3.0.
  const std::string yaml = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: hex
  namespace: default
spec:
  replicas: 0x3
  selector:
    matchLabels: {app: hex}
  template:
    metadata:
      labels: {app: hex}
    spec:
      containers:
      - name: web
        image: "nginx:1.25"
)";
  PatchRequest ssa{"application/apply-patch+yaml", yaml, "kubectl", false, ""};
  auto made = registry_->patch("deployments.apps", "default", "hex", ssa);
  ASSERT_TRUE(made) << made.error().message;
  EXPECT_TRUE((*made)["spec"]["replicas"].is_number_integer());
  EXPECT_EQ((*made)["spec"]["replicas"], 3);
}

TEST_F(RegistryTest, AdmissionDefaultsAndValidationFollowKubernetes) {
  // DefaultTolerationSeconds adds what the pod does not already tolerate (it used to add
  // nothing once the pod had any toleration).
  Json pod = Json::parse(R"({"metadata":{"name":"p","namespace":"default"},"spec":{
    "tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":10}],
    "containers":[{"name":"c","image":"busybox:1.36"}]}})");
  auto made = registry_->create("pods", pod);
  ASSERT_TRUE(made) << made.error().message;
  const Json& tolerations = (*made)["spec"]["tolerations"];
  ASSERT_EQ(tolerations.size(), 2u);
  EXPECT_EQ(tolerations[0]["tolerationSeconds"], 10);
  EXPECT_EQ(tolerations[1]["key"], "node.kubernetes.io/unreachable");
  EXPECT_EQ((*made)["spec"]["serviceAccountName"], "default");
  // The scheduler may still bind by setting spec.nodeName once.
  Json bound = *made;
  bound["spec"]["nodeName"] = "node-1";
  ASSERT_TRUE(registry_->update("pods", bound));
  Json moved = *registry_->get("pods", "default", "p");
  moved["spec"]["nodeName"] = "node-2";
  EXPECT_FALSE(registry_->update("pods", moved));

  // A Service name is a DNS-1035 label (starts with a letter); it was checked as DNS-1123.
  Json svc = Json::parse(R"({"metadata":{"name":"1web","namespace":"default"},"spec":{"ports":[{"port":80}]}})");
  auto refused = registry_->create("services", svc);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, EINVAL);
  EXPECT_NE(refused.error().message.find("metadata.name"), std::string::npos);
}

TEST_F(RegistryTest, PodStatusCarriesTheQosClassOfItsDefaultedSpec) {
  auto podWith = [](const std::string& name, const std::string& resources) {
    return Json::parse(R"({"metadata":{"name":")" + name + R"(","namespace":"default"},"spec":{"containers":[
      {"name":"c","image":"busybox:1.36","resources":)" + resources + "}]}}");
  };
  // Limits only: requests default to the limits, so the pod is Guaranteed (it was always
  // reported BestEffort before).
  auto guaranteed = registry_->create("pods", podWith("g", R"({"limits":{"cpu":"250m","memory":"64Mi"}})"));
  ASSERT_TRUE(guaranteed) << guaranteed.error().message;
  EXPECT_EQ((*guaranteed)["status"]["qosClass"], "Guaranteed");
  auto burstable = registry_->create("pods", podWith("b", R"({"requests":{"cpu":"100m"}})"));
  ASSERT_TRUE(burstable) << burstable.error().message;
  EXPECT_EQ((*burstable)["status"]["qosClass"], "Burstable");
  auto bestEffort = registry_->create("pods", podWith("e", "{}"));
  ASSERT_TRUE(bestEffort) << bestEffort.error().message;
  EXPECT_EQ((*bestEffort)["status"]["qosClass"], "BestEffort");
  EXPECT_EQ((*bestEffort)["status"]["phase"], "Pending");
}
