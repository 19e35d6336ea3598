#include "api/patch.h"

#include <gtest/gtest.h>

using ferry::api::Json;
using ferry::api::jsonMergePatch;
using ferry::api::jsonPatch;
using ferry::api::strategicMergePatch;

namespace {

Json deployment() {
  return Json::parse(R"({"apiVersion":"apps/v1","kind":"Deployment",
    "metadata":{"name":"web","labels":{"app":"web","tier":"front"},"finalizers":["a","b"]},
    "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},
      "strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":"25%"}},
      "template":{"metadata":{"labels":{"app":"web"}},
        "spec":{"containers":[
            {"name":"nginx","image":"nginx:1.25","ports":[{"containerPort":80,"protocol":"TCP"}],
             "env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],
             "volumeMounts":[{"name":"data","mountPath":"/data"}]},
            {"name":"sidecar","image":"busybox:1.36"}],
          "volumes":[{"name":"data","emptyDir":{}}],
          "tolerations":[{"key":"a","operator":"Exists"}]}}}})");
}

Json smp(const Json& original, const char* patch, const char* resource = "deployments.apps") {
  auto r = strategicMergePatch(resource, original, Json::parse(patch));
  EXPECT_TRUE(r.has_value()) << r.error().message;
  return r ? *r : Json();
}

std::vector<std::string> names(const Json& list) {
  std::vector<std::string> out;
  for (const auto& e : list) out.push_back(e.is_object() ? e.value("name", "?") : e.get<std::string>());
  return out;
}

const Json& podSpec(const Json& d) { return d["spec"]["template"]["spec"]; }

}  // namespace

TEST(StrategicMergePatch, ClientSideApplyKeepsContainerPorts) {
  Json out = smp(deployment(), R"({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"},{"name":"sidecar"}],
    "containers":[{"image":"nginx:1.26","name":"nginx"}]}}}})");
  const Json& nginx = podSpec(out)["containers"][0];
  EXPECT_EQ(nginx["image"], "nginx:1.26");
  EXPECT_EQ(nginx["ports"][0]["containerPort"], 80);
  EXPECT_EQ(nginx["env"].size(), 2u);
  EXPECT_EQ(names(podSpec(out)["containers"]), (std::vector<std::string>{"nginx", "sidecar"}));
  EXPECT_FALSE(podSpec(out).contains("$setElementOrder/containers"));
}

TEST(StrategicMergePatch, ExactKubectlApplyBody) {
  Json d = deployment();
  podSpec(d);
  d["spec"]["template"]["spec"]["containers"].erase(1);
  Json out = smp(d, R"({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],"containers":[{"image":"nginx:1.26","name":"nginx"}]}}}})");
  EXPECT_EQ(podSpec(out)["containers"].size(), 1u);
  EXPECT_EQ(podSpec(out)["containers"][0]["ports"][0]["containerPort"], 80);
  EXPECT_EQ(podSpec(out)["containers"][0]["image"], "nginx:1.26");
}

TEST(StrategicMergePatch, ApplyRemovesAContainerAndAddsOne) {
  Json out = smp(deployment(), R"({"spec":{"template":{"spec":{
    "$setElementOrder/containers":[{"name":"nginx"},{"name":"metrics"}],
    "containers":[{"$patch":"delete","name":"sidecar"},{"name":"metrics","image":"prom:2","ports":[{"containerPort":9090}]}]}}}})");
  EXPECT_EQ(names(podSpec(out)["containers"]), (std::vector<std::string>{"nginx", "metrics"}));
  EXPECT_EQ(podSpec(out)["containers"][1]["ports"][0]["containerPort"], 9090);
  EXPECT_EQ(podSpec(out)["containers"][0]["ports"][0]["containerPort"], 80);
}

TEST(StrategicMergePatch, SetElementOrderReordersWithoutChanges) {
  Json out = smp(deployment(), R"({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"sidecar"},{"name":"nginx"}]}}}})");
  EXPECT_EQ(names(podSpec(out)["containers"]), (std::vector<std::string>{"sidecar", "nginx"}));
  EXPECT_EQ(podSpec(out)["containers"][1]["image"], "nginx:1.25");
}

TEST(StrategicMergePatch, NewElementsWithoutOrderGoFirstAsKubernetesDoes) {
  // The kubectl patch documentation shows the added container before the existing one.
  Json out = smp(deployment(), R"({"spec":{"template":{"spec":{"containers":[{"name":"extra","image":"redis"}]}}}})");
  EXPECT_EQ(names(podSpec(out)["containers"]), (std::vector<std::string>{"extra", "nginx", "sidecar"}));
}

TEST(StrategicMergePatch, SetImageAndRolloutRestart) {
  Json out = smp(deployment(), R"({"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.37"}]}}}})");
  EXPECT_EQ(podSpec(out)["containers"][1]["image"], "busybox:1.37");
  EXPECT_EQ(podSpec(out)["containers"][0]["image"], "nginx:1.25");
  out = smp(out, R"({"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-01-01T00:00:00Z"}}}}})");
  EXPECT_EQ(out["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"], "2026-01-01T00:00:00Z");
  EXPECT_EQ(out["spec"]["template"]["metadata"]["labels"]["app"], "web");
}

TEST(StrategicMergePatch, NestedListsMergeByTheirKeys) {
  Json out = smp(deployment(), R"({"spec":{"template":{"spec":{"containers":[{"name":"nginx",
    "env":[{"name":"B","value":"20"},{"name":"C","value":"3"}],
    "ports":[{"containerPort":443}],
    "volumeMounts":[{"mountPath":"/data","readOnly":true}]}]}}}})");
  const Json& nginx = podSpec(out)["containers"][0];
  ASSERT_EQ(nginx["env"].size(), 3u);
  EXPECT_EQ(nginx["env"][0]["name"], "A");  // server-only item keeps its place before patched ones
  EXPECT_EQ(nginx["env"][1]["value"], "20");
  EXPECT_EQ(nginx["env"][2]["name"], "C");
  EXPECT_EQ(nginx["ports"].size(), 2u);
  EXPECT_EQ(nginx["volumeMounts"][0]["readOnly"], true);
  EXPECT_EQ(nginx["volumeMounts"][0]["name"], "data");
}

TEST(StrategicMergePatch, NullDeletesAndUnkeyedListsReplace) {
  Json out = smp(deployment(), R"({"metadata":{"labels":{"tier":null,"new":"x"}},
    "spec":{"template":{"spec":{"tolerations":[{"key":"b","operator":"Exists"}]}}}})");
  EXPECT_FALSE(out["metadata"]["labels"].contains("tier"));
  EXPECT_EQ(out["metadata"]["labels"]["new"], "x");
  ASSERT_EQ(podSpec(out)["tolerations"].size(), 1u);
  EXPECT_EQ(podSpec(out)["tolerations"][0]["key"], "b");
  // Nulls for keys that are not there are dropped, not stored.
  out = smp(deployment(), R"({"spec":{"paused":null,"newField":{"a":null,"b":1}}})");
  EXPECT_FALSE(out["spec"].contains("paused"));
  EXPECT_EQ(out["spec"]["newField"], Json::parse(R"({"b":1})"));
}

TEST(StrategicMergePatch, RetainKeysSwitchesStrategy) {
  Json out = smp(deployment(), R"({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":null}}})");
  EXPECT_EQ(out["spec"]["strategy"], Json::parse(R"({"type":"Recreate"})"));
  // Volumes: switching a volume's source.
  out = smp(deployment(), R"({"spec":{"template":{"spec":{"volumes":[{"name":"data","$retainKeys":["configMap","name"],"configMap":{"name":"cfg"}}]}}}})");
  EXPECT_EQ(podSpec(out)["volumes"][0], Json::parse(R"({"name":"data","configMap":{"name":"cfg"}})"));
}

TEST(StrategicMergePatch, PrimitiveListDirectives) {
  Json out = smp(deployment(), R"({"metadata":{"$deleteFromPrimitiveList/finalizers":["a"]}})");
  EXPECT_EQ(out["metadata"]["finalizers"], Json::parse(R"(["b"])"));
  out = smp(deployment(), R"({"metadata":{"finalizers":["c","a"]}})");
  EXPECT_EQ(out["metadata"]["finalizers"], Json::parse(R"(["c","a","b"])"));
  out = smp(deployment(), R"({"metadata":{"$setElementOrder/finalizers":["b","a"]}})");
  EXPECT_EQ(out["metadata"]["finalizers"], Json::parse(R"(["b","a"])"));
}

TEST(StrategicMergePatch, PatchReplaceDirectives) {
  Json out = smp(deployment(), R"({"spec":{"template":{"spec":{"containers":[{"name":"only","image":"x"},{"$patch":"replace"}]}}}})");
  EXPECT_EQ(podSpec(out)["containers"], Json::parse(R"([{"name":"only","image":"x"}])"));
  out = smp(deployment(), R"({"metadata":{"labels":{"$patch":"replace","app":"new"}}})");
  EXPECT_EQ(out["metadata"]["labels"], Json::parse(R"({"app":"new"})"));
  out = smp(deployment(), R"({"spec":{"selector":{"$patch":"delete"}}})");
  EXPECT_EQ(out["spec"]["selector"], Json::object());
}

TEST(StrategicMergePatch, ServicePortsMergeByPort) {
  Json svc = Json::parse(R"({"spec":{"type":"NodePort","ports":[{"port":80,"targetPort":8080,"nodePort":30080,"protocol":"TCP"}]}})");
  Json out = smp(svc, R"({"spec":{"$setElementOrder/ports":[{"port":80},{"port":443}],"ports":[{"port":80,"targetPort":8081},{"port":443,"targetPort":8443}]}})",
                 "services");
  ASSERT_EQ(out["spec"]["ports"].size(), 2u);
  EXPECT_EQ(out["spec"]["ports"][0]["nodePort"], 30080);
  EXPECT_EQ(out["spec"]["ports"][0]["targetPort"], 8081);
  EXPECT_EQ(out["spec"]["ports"][1]["port"], 443);
}

TEST(StrategicMergePatch, NodeConditionsMergeByType) {
  Json node = Json::parse(R"({"status":{"conditions":[{"type":"Ready","status":"False"},{"type":"MemoryPressure","status":"False"}]}})");
  Json out = smp(node, R"({"status":{"conditions":[{"type":"Ready","status":"True"}]}})", "nodes");
  ASSERT_EQ(out["status"]["conditions"].size(), 2u);
  EXPECT_EQ(out["status"]["conditions"][0]["status"], "True");
}

TEST(StrategicMergePatch, ErrorsNameTheField) {
  auto r = strategicMergePatch("deployments.apps", deployment(),
                               Json::parse(R"({"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}})"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("spec.template.spec.containers"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("merge key: name"), std::string::npos) << r.error().message;
  EXPECT_FALSE(strategicMergePatch("pods", Json::object(), Json::array()));
  EXPECT_FALSE(strategicMergePatch("pods", deployment(), Json::parse(R"({"metadata":{"$patch":"bogus"}})")));
}

TEST(StrategicMergePatch, NewKeysDropDirectives) {
  Json out = smp(Json::parse(R"({"metadata":{"name":"p"}})"),
                 R"({"spec":{"$setElementOrder/containers":[{"name":"a"}],"containers":[{"name":"a","image":"x"},{"name":"gone","$patch":"delete"}]}})",
                 "pods");
  EXPECT_EQ(out["spec"], Json::parse(R"({"containers":[{"name":"a","image":"x"}]})"));
}

TEST(JsonMergePatch, Rfc7386Examples) {
  auto r = jsonMergePatch(Json::parse(R"({"a":"b","c":{"d":"e","f":"g"}})"), Json::parse(R"({"a":"z","c":{"f":null}})"));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, Json::parse(R"({"a":"z","c":{"d":"e"}})"));
  EXPECT_EQ(*jsonMergePatch(Json::parse(R"({"a":[{"b":"c"}]})"), Json::parse(R"({"a":[1]})")), Json::parse(R"({"a":[1]})"));
  EXPECT_EQ(*jsonMergePatch(Json::parse(R"(["a","b"])"), Json::parse(R"(["c","d"])")), Json::parse(R"(["c","d"])"));
  EXPECT_EQ(*jsonMergePatch(Json::parse(R"({"a":"foo"})"), Json::parse("null")), Json());
  EXPECT_EQ(*jsonMergePatch(Json::parse(R"({})"), Json::parse(R"({"a":{"bb":{"ccc":null}}})")), Json::parse(R"({"a":{"bb":{}}})"));
  // kubectl scale
  EXPECT_EQ((*jsonMergePatch(deployment(), Json::parse(R"({"spec":{"replicas":5}})")))["spec"]["replicas"], 5);
}

TEST(JsonPatch, Rfc6902Operations) {
  Json doc = Json::parse(R"({"foo":["bar","baz"],"a":{"b":1},"x~y":1,"p/q":2})");
  auto r = jsonPatch(doc, Json::parse(R"([
    {"op":"add","path":"/foo/1","value":"qux"},
    {"op":"add","path":"/foo/-","value":"end"},
    {"op":"remove","path":"/a/b"},
    {"op":"replace","path":"/x~0y","value":10},
    {"op":"copy","from":"/p~1q","path":"/copied"},
    {"op":"move","from":"/foo/0","path":"/first"},
    {"op":"test","path":"/foo","value":["qux","baz","end"]}
  ])"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, Json::parse(R"({"foo":["qux","baz","end"],"a":{},"x~y":10,"p/q":2,"copied":2,"first":"bar"})"));

  auto failedTest = jsonPatch(doc, Json::parse(R"([{"op":"add","path":"/n","value":1},{"op":"test","path":"/a/b","value":2}])"));
  ASSERT_FALSE(failedTest);
  EXPECT_NE(failedTest.error().message.find("operation 1"), std::string::npos) << failedTest.error().message;
  EXPECT_FALSE(jsonPatch(doc, Json::parse(R"([{"op":"remove","path":"/nope"}])")));
  EXPECT_FALSE(jsonPatch(doc, Json::parse(R"([{"op":"add","path":"/foo/5","value":1}])")));
  EXPECT_FALSE(jsonPatch(doc, Json::parse(R"([{"op":"add","path":"/foo/01","value":1}])")));
  EXPECT_FALSE(jsonPatch(doc, Json::parse(R"([{"op":"replace","path":"/missing","value":1}])")));
  EXPECT_FALSE(jsonPatch(doc, Json::parse(R"([{"op":"move","from":"/a","path":"/a/b"}])")));
  EXPECT_FALSE(jsonPatch(doc, Json::parse(R"([{"op":"frobnicate","path":"/a"}])")));
  EXPECT_FALSE(jsonPatch(doc, Json::parse(R"({"op":"add"})")));
  // Whole-document replace and a test on the root.
  EXPECT_EQ(*jsonPatch(doc, Json::parse(R"([{"op":"replace","path":"","value":{"z":1}}])")), Json::parse(R"({"z":1})"));
  // Labels with '/' in their key, as kubectl label --overwrite via json patch would send.
  auto label = jsonPatch(Json::parse(R"({"metadata":{"labels":{}}})"),
                         Json::parse(R"([{"op":"add","path":"/metadata/labels/app.kubernetes.io~1name","value":"web"}])"));
  ASSERT_TRUE(label);
  EXPECT_EQ((*label)["metadata"]["labels"]["app.kubernetes.io/name"], "web");
}
