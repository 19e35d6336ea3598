// Pure pieces of the API server: routing, auth decisions, Status shapes,
// tables, selectors, strategic merge patch, discovery.
#include "controlplane-lite/api_handler.h"
#include "api/managed_fields.h"
#include "api/patch.h"
#include "api/selector.h"
#include "controlplane-lite/auth.h"
#include "controlplane-lite/discovery.h"
#include "controlplane-lite/object_policy.h"
#include "controlplane-lite/tables.h"

#include <gtest/gtest.h>

using namespace ferry;
using namespace ferry::cp;
using api::Json;

TEST(ResourcePath, ParsesCoreGroupNamespacedAndSubresources) {
  auto p = parseResourcePath("/api/v1/namespaces/default/pods/web-1/status");
  ASSERT_TRUE(p.valid);
  EXPECT_EQ(p.group, "");
  EXPECT_EQ(p.plural, "pods");
  EXPECT_EQ(p.ns, "default");
  EXPECT_EQ(p.name, "web-1");
  EXPECT_EQ(p.subresource, "status");

  p = parseResourcePath("/apis/apps/v1/namespaces/x/deployments/web/scale");
  EXPECT_EQ(p.group, "apps");
  EXPECT_EQ(p.plural, "deployments");
  EXPECT_EQ(p.subresource, "scale");

  p = parseResourcePath("/api/v1/namespaces/kube-system");
  EXPECT_EQ(p.plural, "namespaces");
  EXPECT_EQ(p.name, "kube-system");
  EXPECT_TRUE(p.ns.empty());

  p = parseResourcePath("/api/v1/namespaces/kube-system/status");
  EXPECT_EQ(p.plural, "namespaces");
  EXPECT_EQ(p.subresource, "status");

  p = parseResourcePath("/api/v1/pods");
  EXPECT_EQ(p.plural, "pods");
  EXPECT_TRUE(p.name.empty());

  p = parseResourcePath("/apis/apps/v1");
  EXPECT_TRUE(p.groupVersionOnly);
  EXPECT_FALSE(parseResourcePath("/healthz").valid);
}

TEST(Auth, AnonymousAdminNodeAndViewDecisions) {
  HttpRequest anon;
  EXPECT_EQ(authenticate(anon, "tok").role, Role::Anonymous);

  HttpRequest admin;
  admin.clientCertVerified = true;
  admin.clientCertCommonName = "admin";
  admin.clientCertOrganizations = {"system:masters"};
  EXPECT_EQ(authenticate(admin, "tok").role, Role::Admin);

  // The join token is only a bootstrap identity (node_certificates_test); the node's
  // own certificate makes it the node.
  HttpRequest token;
  token.headers["authorization"] = "Bearer node-a:tok";
  EXPECT_EQ(authenticate(token, "tok").role, Role::Bootstrap);
  EXPECT_EQ(authenticate(token, "tok").nodeName, "node-a");
  HttpRequest node;
  node.clientCertVerified = true;
  node.clientCertCommonName = "system:node:node-a";
  node.clientCertOrganizations = {"system:nodes"};
  Identity n = authenticate(node, "tok");
  ASSERT_EQ(n.role, Role::Node);
  EXPECT_EQ(n.nodeName, "node-a");
  EXPECT_EQ(n.user, "system:node:node-a");

  HttpRequest headerNode;
  headerNode.headers["authorization"] = "Bearer tok";
  headerNode.headers[kNodeNameHeader] = "node-b";
  EXPECT_EQ(authenticate(headerNode, "tok").nodeName, "node-b");

  HttpRequest wrong;
  wrong.headers["authorization"] = "Bearer node-a:nope";
  EXPECT_EQ(authenticate(wrong, "tok").role, Role::Unknown);

  RequestAttributes a;
  a.resourceRequest = true;
  a.resource = "pods";
  a.ns = "default";
  a.name = "web";
  a.verb = "get";
  EXPECT_TRUE(authorize(n, a).allowed);
  a.verb = "update";
  a.subresource = "status";
  EXPECT_TRUE(authorize(n, a, [] { return std::string("node-a"); }).allowed);
  EXPECT_FALSE(authorize(n, a, [] { return std::string("node-b"); }).allowed);
  a.subresource = "";
  a.verb = "delete";
  EXPECT_TRUE(authorize(n, a, [] { return std::string("node-a"); }).allowed);
  EXPECT_FALSE(authorize(n, a, [] { return std::string("node-b"); }).allowed);
  a.verb = "create";
  a.name = "";
  EXPECT_FALSE(authorize(n, a).allowed);

  RequestAttributes nodeObj{true, "update", "", "nodes", "status", "", "node-a", ""};
  EXPECT_TRUE(authorize(n, nodeObj).allowed);
  nodeObj.name = "node-b";
  EXPECT_FALSE(authorize(n, nodeObj).allowed);

  RequestAttributes lease{true, "update", "coordination.k8s.io", "leases", "", "kube-node-lease", "node-a", ""};
  EXPECT_TRUE(authorize(n, lease).allowed);
  lease.name = "node-b";
  EXPECT_FALSE(authorize(n, lease).allowed);

  RequestAttributes deploy{true, "create", "apps", "deployments", "", "default", "", ""};
  EXPECT_FALSE(authorize(n, deploy).allowed);
  RequestAttributes secretRead{true, "get", "", "secrets", "", "default", "s", ""};
  EXPECT_TRUE(authorize(n, secretRead).allowed);

  Identity view{Role::View, "viewer", {"ferry:view"}, ""};
  EXPECT_TRUE(authorize(view, RequestAttributes{true, "list", "", "pods", "", "", "", ""}).allowed);
  EXPECT_FALSE(authorize(view, RequestAttributes{true, "delete", "", "pods", "", "d", "p", ""}).allowed);
  EXPECT_FALSE(authorize(view, RequestAttributes{true, "get", "", "secrets", "", "d", "s", ""}).allowed);
  EXPECT_TRUE(authorize(Identity{Role::Admin}, deploy).allowed);
  EXPECT_TRUE(authorize(Identity{}, RequestAttributes{false, "get", "", "", "", "", "", "/version"}).allowed);
  EXPECT_FALSE(authorize(Identity{}, RequestAttributes{false, "get", "", "", "", "", "", "/api"}).allowed);
}

TEST(StatusErrors, ShapedAsKubernetes) {
  const Resource* pods = findResource("pods");
  auto r = statusError(Error{ENOENT, "pods \"nope\" not found"}, pods, "nope");
  EXPECT_EQ(r.status, 404);
  Json body = Json::parse(r.body);
  EXPECT_EQ(body["kind"], "Status");
  EXPECT_EQ(body["status"], "Failure");
  EXPECT_EQ(body["reason"], "NotFound");
  EXPECT_EQ(body["code"], 404);
  EXPECT_EQ(body["details"]["kind"], "pods");
  EXPECT_EQ(body["details"]["name"], "nope");

  const Resource* deploys = findResource("deployments.apps");
  auto inv = statusError(invalidError("Deployment.apps \"web\" is invalid",
                                      {{"spec.replicas", "Invalid value: -1: must be greater than or equal to 0", api::Cause::kInvalid},
                                       {"spec.template.spec.containers[0].image", "Required value", api::Cause::kRequired}}),
                         deploys, "web");
  EXPECT_EQ(inv.status, 422);
  body = Json::parse(inv.body);
  EXPECT_EQ(body["reason"], "Invalid");
  EXPECT_EQ(body["details"]["kind"], "Deployment");
  EXPECT_EQ(body["details"]["group"], "apps");
  ASSERT_EQ(body["details"]["causes"].size(), 2u);
  EXPECT_EQ(body["details"]["causes"][1]["field"], "spec.template.spec.containers[0].image");
  EXPECT_EQ(body["details"]["causes"][1]["reason"], "FieldValueRequired");
  EXPECT_NE(body["message"].get<std::string>().find("is invalid: [spec.replicas"), std::string::npos);

  EXPECT_EQ(statusError(Error{ECANCELED, "x"}, pods, "a").status, 409);
  EXPECT_EQ(Json::parse(statusError(Error{EEXIST, "x"}, pods, "a").body)["reason"], "AlreadyExists");
  EXPECT_EQ(statusError(Error{ERANGE, "x"}, pods, "").status, 410);
  EXPECT_EQ(statusError(Error{EACCES, "x"}, pods, "").status, 403);
}

TEST(Validation, ReportsEveryBadField) {
  const Resource* deploys = findResource("deployments.apps");
  Json d = Json::parse(R"({"metadata":{"name":"Bad_Name"},"spec":{"replicas":-1,"selector":{"matchLabels":{"app":"a"}},
    "template":{"metadata":{"labels":{"app":"b"}},"spec":{"containers":[{"name":"c"}]}}}})");
  auto causes = validateObject(*deploys, d, nullptr);
  std::vector<std::string> fields;
  for (const auto& c : causes) fields.push_back(c.field);
  EXPECT_NE(std::find(fields.begin(), fields.end(), "metadata.name"), fields.end());
  EXPECT_NE(std::find(fields.begin(), fields.end(), "spec.replicas"), fields.end());
  EXPECT_NE(std::find(fields.begin(), fields.end(), "spec.template.metadata.labels"), fields.end());
  EXPECT_NE(std::find(fields.begin(), fields.end(), "spec.template.spec.containers[0].image"), fields.end());
}

TEST(Tables, PodColumnsAndDurations) {
  EXPECT_EQ(humanDuration(5), "5s");
  EXPECT_EQ(humanDuration(200), "3m20s");
  EXPECT_EQ(humanDuration(3600 * 5), "5h");
  EXPECT_EQ(humanDuration(3600 * 24 * 3 + 3600 * 2), "3d2h");
  Json pod = Json::parse(R"({"metadata":{"name":"p","namespace":"d","creationTimestamp":"2020-01-01T00:00:00Z"},
    "spec":{"nodeName":"n1","containers":[{"name":"a"},{"name":"b"}]},
    "status":{"phase":"Running","podIP":"10.42.0.5","containerStatuses":[
      {"name":"a","ready":true,"restartCount":1,"state":{"running":{}}},
      {"name":"b","ready":false,"restartCount":2,"state":{"waiting":{"reason":"CrashLoopBackOff"}}}]}})");
  EXPECT_EQ(podStatusColumn(pod), "CrashLoopBackOff");
  Json t = toTable(*findResource("pods"), {pod}, "7", "", true, TableObjects::Metadata, api::parseRfc3339("2020-01-01T00:01:00Z"));
  EXPECT_EQ(t["kind"], "Table");
  EXPECT_EQ(t["columnDefinitions"][0]["name"], "Name");
  EXPECT_EQ(t["columnDefinitions"][5]["priority"], 1);
  auto cells = t["rows"][0]["cells"];
  EXPECT_EQ(cells[0], "p");
  EXPECT_EQ(cells[1], "1/2");
  EXPECT_EQ(cells[3], "3");
  EXPECT_EQ(cells[4], "60s");
  EXPECT_EQ(cells[5], "10.42.0.5");
  EXPECT_EQ(cells[6], "n1");
  EXPECT_EQ(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
  EXPECT_EQ(t["rows"][0]["object"]["metadata"]["namespace"], "d");

  Json terminating = pod;
  terminating["metadata"]["deletionTimestamp"] = "2020-01-01T00:00:30Z";
  EXPECT_EQ(podStatusColumn(terminating), "Terminating");

  Json svc = Json::parse(R"({"metadata":{"name":"s"},"spec":{"type":"NodePort","clusterIP":"10.43.0.20",
    "ports":[{"port":80,"nodePort":30080,"protocol":"TCP"}],"selector":{"app":"web"}}})");
  Json st = toTable(*findResource("services"), {svc}, "1", "", true, TableObjects::None, 0);
  EXPECT_EQ(st["rows"][0]["cells"][4], "80:30080/TCP");
  EXPECT_EQ(st["rows"][0]["cells"][6], "app=web");
}

TEST(Selectors, LabelAndField) {
  using api::FieldSelector;
  using api::LabelSelector;
  auto l = LabelSelector::parse("app=web,tier!=db,env in (a,b),!legacy");
  ASSERT_TRUE(l);
  EXPECT_TRUE(l->matches({{"app", "web"}, {"env", "a"}}));
  EXPECT_FALSE(l->matches({{"app", "web"}, {"env", "c"}}));
  EXPECT_FALSE(l->matches({{"app", "web"}, {"env", "a"}, {"legacy", "1"}}));
  EXPECT_FALSE(LabelSelector::parse("a in b"));
  auto f = FieldSelector::parse("spec.nodeName=n1,status.phase!=Succeeded,status.phase!=Failed");
  ASSERT_TRUE(f);
  EXPECT_TRUE(f->matches(Json::parse(R"({"spec":{"nodeName":"n1"},"status":{"phase":"Running"}})")));
  EXPECT_FALSE(f->matches(Json::parse(R"({"spec":{"nodeName":"n1"},"status":{"phase":"Failed"}})")));
  EXPECT_FALSE(f->matches(Json::parse(R"({"spec":{"nodeName":"n2"}})")));
}

TEST(StrategicMerge, ClientSideApplyKeepsPortsAndOrders) {
  Json original = Json::parse(R"({"spec":{"template":{"spec":{"containers":[
    {"name":"nginx","image":"nginx:1.25","ports":[{"containerPort":80,"protocol":"TCP"}]},
    {"name":"side","image":"busybox"}]}}}})");
  Json patch = Json::parse(R"({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"side"},{"name":"nginx"}],
    "containers":[{"image":"nginx:1.26","name":"nginx"}]}}}})");
  auto merged = api::strategicMergePatch("deployments.apps", original, patch);
  ASSERT_TRUE(merged);
  auto cs = (*merged)["spec"]["template"]["spec"]["containers"];
  ASSERT_EQ(cs.size(), 2u);
  EXPECT_EQ(cs[0]["name"], "side");
  EXPECT_EQ(cs[1]["image"], "nginx:1.26");
  EXPECT_EQ(cs[1]["ports"][0]["containerPort"], 80);

  Json del = Json::parse(R"({"spec":{"template":{"spec":{"containers":[{"name":"side","$patch":"delete"}]}}},
    "metadata":{"labels":{"gone":null},"finalizers":["b"],"$deleteFromPrimitiveList/finalizers":["a"]}})");
  Json withMeta = original;
  withMeta["metadata"] = Json::parse(R"({"labels":{"gone":"x","kept":"y"},"finalizers":["a"]})");
  merged = api::strategicMergePatch("deployments.apps", withMeta, del);
  ASSERT_TRUE(merged);
  EXPECT_EQ((*merged)["spec"]["template"]["spec"]["containers"].size(), 1u);
  EXPECT_FALSE((*merged)["metadata"]["labels"].contains("gone"));
  EXPECT_EQ((*merged)["metadata"]["finalizers"], Json::array({"b"}));

  Json set = api::fieldSetOf("deployments.apps", Json::parse(R"({"metadata":{"name":"x","labels":{"app":"a"}},"spec":{"replicas":2}})"));
  EXPECT_TRUE(set["f:metadata"]["f:labels"].contains("f:app"));
  EXPECT_TRUE(set["f:spec"].contains("f:replicas"));
}

TEST(Discovery, AggregatedAndOpenApi) {
  Json core = aggregatedDiscovery(true);
  EXPECT_EQ(core["kind"], "APIGroupDiscoveryList");
  ASSERT_EQ(core["items"].size(), 1u);
  EXPECT_EQ(core["items"][0]["metadata"]["name"], "");
  bool sawPods = false;
  for (const auto& r : core["items"][0]["versions"][0]["resources"])
    if (r["resource"] == "pods") {
      sawPods = true;
      EXPECT_EQ(r["categories"], Json::array({"all"}));
      EXPECT_EQ(r["scope"], "Namespaced");
    }
  EXPECT_TRUE(sawPods);
  Json apis = aggregatedDiscovery(false);
  EXPECT_GE(apis["items"].size(), 4u);
  Json root = openApiV3Root();
  EXPECT_TRUE(root["paths"].contains("apis/apps/v1"));
  auto doc = openApiV3GroupVersion("apps", "v1");
  ASSERT_TRUE(doc);
  auto& op = (*doc)["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
  EXPECT_EQ(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
  EXPECT_EQ(versionDocument()["minor"], "32");
}
