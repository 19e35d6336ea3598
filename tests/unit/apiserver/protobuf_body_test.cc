// Protobuf request bodies as stock kubectl 1.33 sends them. The files in
// testdata/ are the exact bodies captured (kubectl -v=9) from:
//   configmap:         kubectl create configmap web-config --from-literal=greeting=hello --from-literal=mode=prod
//   secret:            kubectl create secret generic db-pass --from-literal=user=admin --from-literal=password='s3cr3t!'
//   namespace:         kubectl create namespace team-a
//   deployment:        kubectl create deployment web --image=nginx:1.25 --replicas=3 --port=80
//   service_clusterip: kubectl create service clusterip web --tcp=80:8080
//   service_nodeport:  kubectl create service nodeport web-np --tcp=80:8080 --node-port=30080
//   serviceaccount:    kubectl create serviceaccount builder
//   hpa_autoscale:     kubectl autoscale deployment as --min=1 --max=3 --cpu-percent=50
#include "api/base64.h"
#include "controlplane-lite/protobuf_body.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

using ferry::api::Json;
using ferry::cp::decodeProtobufObject;

namespace {

std::string captured(const std::string& name) {
  // CTest runs the test in its build directory, where a relative __FILE__ does not resolve.
  const char* source = std::getenv("FERRY_SOURCE_DIR");
  auto dir = source ? std::filesystem::path(source) / "tests" / "unit" / "apiserver"
                    : std::filesystem::path(__FILE__).parent_path();
  auto path = dir / "testdata" / (name + ".kubectl133.pb");
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

Json decoded(const std::string& name) {
  auto r = decodeProtobufObject(captured(name));
  EXPECT_TRUE(r) << name << ": " << r.error().message;
  return r ? *r : Json();
}

}  // namespace

TEST(ProtobufBody, ConfigMap) {
  Json cm = decoded("configmap");
  EXPECT_EQ(cm, Json::parse(R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"web-config"},
    "data":{"greeting":"hello","mode":"prod"}})"));
}

TEST(ProtobufBody, SecretDataIsBase64InJson) {
  Json s = decoded("secret");
  EXPECT_EQ(s["kind"], "Secret");
  EXPECT_EQ(s["metadata"]["name"], "db-pass");
  EXPECT_EQ(ferry::api::base64Decode(s["data"]["user"].get<std::string>()).value_or("?"), "admin");
  EXPECT_EQ(ferry::api::base64Decode(s["data"]["password"].get<std::string>()).value_or("?"), "s3cr3t!");
  EXPECT_FALSE(s.contains("type"));  // kubectl leaves it empty; the server defaults Opaque
}

TEST(ProtobufBody, NamespaceAndServiceAccount) {
  Json ns = decoded("namespace");
  EXPECT_EQ(ns["apiVersion"], "v1");
  EXPECT_EQ(ns["kind"], "Namespace");
  EXPECT_EQ(ns["metadata"]["name"], "team-a");
  EXPECT_FALSE(ns.contains("status"));  // server-owned
  Json sa = decoded("serviceaccount");
  EXPECT_EQ(sa["kind"], "ServiceAccount");
  EXPECT_EQ(sa["metadata"]["name"], "builder");
}

TEST(ProtobufBody, Deployment) {
  Json d = decoded("deployment");
  EXPECT_EQ(d["apiVersion"], "apps/v1");
  EXPECT_EQ(d["kind"], "Deployment");
  EXPECT_EQ(d["metadata"]["name"], "web");
  EXPECT_EQ(d["metadata"]["labels"], Json::parse(R"({"app":"web"})"));
  EXPECT_EQ(d["spec"]["replicas"], 3);
  EXPECT_EQ(d["spec"]["selector"], Json::parse(R"({"matchLabels":{"app":"web"}})"));
  EXPECT_EQ(d["spec"]["template"]["metadata"]["labels"], Json::parse(R"({"app":"web"})"));
  const Json& containers = d["spec"]["template"]["spec"]["containers"];
  ASSERT_EQ(containers.size(), 1u);
  EXPECT_EQ(containers[0]["name"], "nginx");
  EXPECT_EQ(containers[0]["image"], "nginx:1.25");
  EXPECT_EQ(containers[0]["ports"], Json::parse(R"([{"containerPort":80}])"));
  EXPECT_EQ(containers[0]["resources"], Json::object());
  EXPECT_FALSE(d.contains("status"));
  // Zero-valued non-pointer fields Go wrote are left out, as Go's JSON omits them.
  EXPECT_FALSE(containers[0].contains("imagePullPolicy"));
  EXPECT_FALSE(d["spec"]["template"]["spec"].contains("restartPolicy"));
  EXPECT_FALSE(d["metadata"].contains("creationTimestamp"));
}

TEST(ProtobufBody, Services) {
  Json c = decoded("service_clusterip");
  EXPECT_EQ(c["kind"], "Service");
  EXPECT_EQ(c["spec"]["type"], "ClusterIP");
  EXPECT_EQ(c["spec"]["selector"], Json::parse(R"({"app":"web"})"));
  EXPECT_EQ(c["spec"]["ports"], Json::parse(R"([{"name":"80-8080","protocol":"TCP","port":80,"targetPort":8080}])"));
  Json n = decoded("service_nodeport");
  EXPECT_EQ(n["spec"]["type"], "NodePort");
  EXPECT_EQ(n["spec"]["ports"][0]["nodePort"], 30080);
  EXPECT_EQ(n["spec"]["ports"][0]["targetPort"], 8080);
}

TEST(ProtobufBody, HorizontalPodAutoscaler) {
  Json h = decoded("hpa_autoscale");
  EXPECT_EQ(h["apiVersion"], "autoscaling/v2");
  EXPECT_EQ(h["kind"], "HorizontalPodAutoscaler");
  EXPECT_EQ(h["metadata"]["name"], "as");
  EXPECT_EQ(h["spec"], Json::parse(R"({"scaleTargetRef":{"kind":"Deployment","name":"as","apiVersion":"apps/v1"},
    "minReplicas":1,"maxReplicas":3,"metrics":[{"type":"Resource","resource":{"name":"cpu",
    "target":{"type":"Utilization","averageUtilization":50}}}]})"));
}

TEST(ProtobufBody, PointerFieldsKeepZero) {
  // kubectl create deployment --replicas=0: DeploymentSpec.replicas is *int32, so a 0 on the wire is meant.
  std::string body = captured("deployment");
  auto at = body.find(std::string("\x08\x03", 2));  // replicas = 3
  ASSERT_NE(at, std::string::npos);
  body[at + 1] = '\0';
  auto d = decodeProtobufObject(body);
  ASSERT_TRUE(d) << d.error().message;
  ASSERT_TRUE((*d)["spec"].contains("replicas"));
  EXPECT_EQ((*d)["spec"]["replicas"], 0);
}

TEST(ProtobufBody, BadInputIsRefusedWithAReason) {
  auto notMagic = decodeProtobufObject("{\"kind\":\"ConfigMap\"}");
  ASSERT_FALSE(notMagic);
  EXPECT_EQ(notMagic.error().code, EBADMSG);
  EXPECT_NE(notMagic.error().message.find("magic"), std::string::npos);

  std::string cm = captured("configmap");
  for (std::size_t cut : {5u, 20u, 40u, static_cast<unsigned>(cm.size() - 6)}) {
    auto truncated = decodeProtobufObject(cm.substr(0, cut));
    ASSERT_FALSE(truncated) << "cut at " << cut;
    EXPECT_EQ(truncated.error().code, EBADMSG) << truncated.error().message;
  }

  // A set field Ferry has no table entry for is refused, naming it, not dropped.
  std::string ns = captured("namespace");
  // Append to the Namespace message (inside the envelope's raw field) field 9, a string "x":
  // rebuild the envelope by hand: magic, typeMeta, raw.
  std::string typeMeta = std::string("\x0a\x02v1\x12\x09Namespace", 15);
  std::string raw = std::string("\x0a\x08\x0a\x06team-a", 10) + std::string("\x4a\x01x", 3);
  std::string body = std::string("k8s\0", 4) + "\x0a" + static_cast<char>(typeMeta.size()) + typeMeta + "\x12" +
                     static_cast<char>(raw.size()) + raw;
  auto unknown = decodeProtobufObject(body);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, EBADMSG);
  EXPECT_NE(unknown.error().message.find("field number 9 of Namespace"), std::string::npos) << unknown.error().message;

  // The same field carrying its zero value (as Go writes unset fields) is fine.
  std::string zeroRaw = std::string("\x0a\x08\x0a\x06team-a", 10) + std::string("\x4a\x00", 2);
  std::string zeroBody = std::string("k8s\0", 4) + "\x0a" + static_cast<char>(typeMeta.size()) + typeMeta + "\x12" +
                         static_cast<char>(zeroRaw.size()) + zeroRaw;
  auto zero = decodeProtobufObject(zeroBody);
  ASSERT_TRUE(zero) << zero.error().message;
  EXPECT_EQ((*zero)["metadata"]["name"], "team-a");

  // A set metav1.Time {1: seconds} becomes RFC 3339 (1700000000 = 2023-11-14T22:13:20Z).
  std::string timed = std::string("\x0a\x0b\x0a\x01t\x42\x06\x08\x80\xe2\xcf\xaa\x06", 13);
  std::string timedBody = std::string("k8s\0", 4) + "\x0a" + static_cast<char>(typeMeta.size()) + typeMeta + "\x12" +
                          static_cast<char>(timed.size()) + timed;
  auto withTime = decodeProtobufObject(timedBody);
  ASSERT_TRUE(withTime) << withTime.error().message;
  EXPECT_EQ((*withTime)["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");

  // A kind without a table: 415, not a guess.
  std::string podMeta = std::string("\x0a\x02v1\x12\x03Pod", 9);
  std::string podBody = std::string("k8s\0", 4) + "\x0a" + static_cast<char>(podMeta.size()) + podMeta + std::string("\x12\x00", 2);
  auto pod = decodeProtobufObject(podBody);
  ASSERT_FALSE(pod);
  EXPECT_EQ(pod.error().code, ENOTSUP);
}
