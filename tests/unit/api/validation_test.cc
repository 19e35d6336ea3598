#include "api/validation.h"

#include "api/defaulting.h"

#include <gtest/gtest.h>

using ferry::api::Cause;
using ferry::api::Json;
using ferry::api::validate;

namespace {

std::vector<Cause> check(const char* resource, const std::string& text, const Json* old = nullptr) {
  Json obj = Json::parse(text);
  ferry::api::applyDefaults(resource, obj);
  return validate(resource, obj, old);
}

std::string dump(const std::vector<Cause>& causes) {
  std::string out;
  for (const auto& c : causes) out += "  * " + c.toString() + " [" + c.reason + "]\n";
  return out;
}

// True when some cause has this field, reason and a message containing `fragment`.
bool hasCause(const std::vector<Cause>& causes, const std::string& field, const char* reason, const std::string& fragment = "") {
  for (const auto& c : causes) {
    if (c.field == field && c.reason == reason && c.message.find(fragment) != std::string::npos) return true;
  }
  return false;
}

const char* kGoodPod = R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-1","namespace":"default","labels":{"app":"web"}},
  "spec":{"containers":[{"name":"nginx","image":"nginx:1.25","ports":[{"containerPort":80,"name":"http"}],
          "resources":{"requests":{"cpu":"100m","memory":"64Mi"},"limits":{"cpu":"500m","memory":"128Mi"}},
          "volumeMounts":[{"name":"data","mountPath":"/data"}]}],
          "volumes":[{"name":"data","emptyDir":{}}]}})";

}  // namespace

TEST(Validation, GoodPodHasNoCauses) {
  auto causes = check("pods", kGoodPod);
  EXPECT_TRUE(causes.empty()) << dump(causes);
}

TEST(Validation, PodErrorsWithKubernetesFieldPaths) {
  auto causes = check("pods", R"({"metadata":{"name":"Web_1","labels":{"-bad":"ok","app":"-x"}},
    "spec":{"restartPolicy":"Sometimes",
      "containers":[{"name":"a","image":"x","ports":[{"containerPort":70000,"protocol":"HTTP"}]},
                    {"name":"a","ports":[{"containerPort":80,"name":"p"},{"containerPort":81,"name":"p"}]},
                    {"image":"y","resources":{"limits":{"cpu":"1"},"requests":{"cpu":"2","memory":"abc"}},
                     "volumeMounts":[{"name":"missing","mountPath":"/m"}]}],
      "volumes":[{"name":"v","emptyDir":{},"hostPath":{"path":"/x"}},{"name":"v","configMap":{}}]}})");
  EXPECT_TRUE(hasCause(causes, "metadata.name", Cause::kInvalid, "Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain"))
      << dump(causes);
  EXPECT_TRUE(hasCause(causes, "metadata.labels", Cause::kInvalid, "\"-bad\"")) << dump(causes);
  EXPECT_TRUE(hasCause(causes, "metadata.labels", Cause::kInvalid, "\"-x\": a valid label must be")) << dump(causes);
  EXPECT_TRUE(hasCause(causes, "spec.restartPolicy", Cause::kNotSupported,
                       "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""))
      << dump(causes);
  EXPECT_TRUE(hasCause(causes, "spec.containers[0].ports[0].containerPort", Cause::kInvalid,
                       "Invalid value: 70000: must be between 1 and 65535, inclusive"))
      << dump(causes);
  EXPECT_TRUE(hasCause(causes, "spec.containers[0].ports[0].protocol", Cause::kNotSupported,
                       "supported values: \"SCTP\", \"TCP\", \"UDP\""))
      << dump(causes);
  EXPECT_TRUE(hasCause(causes, "spec.containers[1].name", Cause::kDuplicate, "Duplicate value: \"a\"")) << dump(causes);
  EXPECT_TRUE(hasCause(causes, "spec.containers[1].image", Cause::kRequired, "Required value")) << dump(causes);
  EXPECT_TRUE(hasCause(causes, "spec.containers[1].ports[1].name", Cause::kDuplicate)) << dump(causes);
  EXPECT_TRUE(hasCause(causes, "spec.containers[2].name", Cause::kRequired)) << dump(causes);
  EXPECT_TRUE(hasCause(causes, "spec.containers[2].resources.requests[cpu]", Cause::kInvalid,
                       "must be less than or equal to cpu limit of 1"))
      << dump(causes);
  EXPECT_TRUE(hasCause(causes, "spec.containers[2].resources.requests[memory]", Cause::kInvalid, "quantities must match"))
      << dump(causes);
  EXPECT_TRUE(hasCause(causes, "spec.containers[2].volumeMounts[0].name", Cause::kNotFound, "Not found: \"missing\""))
      << dump(causes);
  EXPECT_TRUE(hasCause(causes, "spec.volumes[0]", Cause::kForbidden, "may not specify more than 1 volume type"))
      << dump(causes);
  EXPECT_TRUE(hasCause(causes, "spec.volumes[1].name", Cause::kDuplicate)) << dump(causes);
  EXPECT_TRUE(hasCause(causes, "spec.volumes[1].configMap.name", Cause::kRequired)) << dump(causes);
}

TEST(Validation, PodRequiresContainersAndName) {
  auto causes = check("pods", R"({"metadata":{},"spec":{}})");
  EXPECT_TRUE(hasCause(causes, "metadata.name", Cause::kRequired, "name or generateName is required")) << dump(causes);
  EXPECT_TRUE(hasCause(causes, "spec.containers", Cause::kRequired)) << dump(causes);
  auto generated = check("pods", R"({"metadata":{"generateName":"web-"},"spec":{"containers":[{"name":"a","image":"a"}]}})");
  EXPECT_TRUE(generated.empty()) << dump(generated);
}

TEST(Validation, PodUpdateAllowsOnlyImageChanges) {
  Json old = Json::parse(kGoodPod);
  ferry::api::applyDefaults("pods", old);
  Json newImage = old;
  newImage["spec"]["containers"][0]["image"] = "nginx:1.26";
  EXPECT_TRUE(validate("pods", newImage, &old).empty()) << dump(validate("pods", newImage, &old));
  Json newPorts = old;
  newPorts["spec"]["containers"][0]["ports"][0]["containerPort"] = 81;
  auto causes = validate("pods", newPorts, &old);
  EXPECT_TRUE(hasCause(causes, "spec", Cause::kForbidden, "pod updates may not change fields")) << dump(causes);
  Json labelsOnly = old;
  labelsOnly["metadata"]["labels"]["tier"] = "frontend";
  EXPECT_TRUE(validate("pods", labelsOnly, &old).empty());
  Json renamed = old;
  renamed["metadata"]["name"] = "web-2";
  EXPECT_TRUE(hasCause(validate("pods", renamed, &old), "metadata.name", Cause::kInvalid, "field is immutable"));
}

const char* kGoodDeployment = R"({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},
  "spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},
    "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","image":"nginx:1.25"}]}}}})";

TEST(Validation, Deployment) {
  auto good = check("deployments.apps", kGoodDeployment);
  EXPECT_TRUE(good.empty()) << dump(good);

  auto mismatch = check("deployments.apps", R"({"metadata":{"name":"web"},"spec":{"selector":{"matchLabels":{"app":"web"}},
    "template":{"metadata":{"labels":{"app":"api"}},"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"i"}]}},
    "replicas":-1,"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":0,"maxUnavailable":"0%"}}}})");
  EXPECT_TRUE(hasCause(mismatch, "spec.template.metadata.labels", Cause::kInvalid, "`selector` does not match template `labels`"))
      << dump(mismatch);
  EXPECT_TRUE(hasCause(mismatch, "spec.template.spec.restartPolicy", Cause::kNotSupported, "supported values: \"Always\""))
      << dump(mismatch);
  EXPECT_TRUE(hasCause(mismatch, "spec.replicas", Cause::kInvalid, "must be greater than or equal to 0")) << dump(mismatch);
  EXPECT_TRUE(hasCause(mismatch, "spec.strategy.rollingUpdate.maxUnavailable", Cause::kInvalid, "may not be 0 when `maxSurge` is 0"))
      << dump(mismatch);

  auto noSelector = check("deployments.apps", R"({"metadata":{"name":"web"},"spec":{"template":{"spec":{"containers":[{"name":"c","image":"i"}]}}}})");
  EXPECT_TRUE(hasCause(noSelector, "spec.selector", Cause::kRequired)) << dump(noSelector);
  auto emptySelector = check("deployments.apps", R"({"metadata":{"name":"web"},"spec":{"selector":{},"template":{"spec":{"containers":[{"name":"c","image":"i"}]}}}})");
  EXPECT_TRUE(hasCause(emptySelector, "spec.selector", Cause::kInvalid, "empty selector is invalid for deployment"))
      << dump(emptySelector);
  auto badOp = check("deployments.apps", R"({"metadata":{"name":"web"},"spec":{"selector":{"matchExpressions":[{"key":"a","operator":"Maybe"}]},"template":{"spec":{"containers":[{"name":"c","image":"i"}]}}}})");
  EXPECT_TRUE(hasCause(badOp, "spec.selector.matchExpressions[0].operator", Cause::kNotSupported)) << dump(badOp);

  Json old = Json::parse(kGoodDeployment);
  ferry::api::applyDefaults("deployments.apps", old);
  Json changed = old;
  changed["spec"]["selector"]["matchLabels"]["tier"] = "x";
  changed["spec"]["template"]["metadata"]["labels"]["tier"] = "x";
  EXPECT_TRUE(hasCause(validate("deployments.apps", changed, &old), "spec.selector", Cause::kInvalid, "field is immutable"));
  Json scaled = old;
  scaled["spec"]["replicas"] = 5;
  scaled["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26";
  EXPECT_TRUE(validate("deployments.apps", scaled, &old).empty());
}

TEST(Validation, ReplicaSet) {
  auto good = check("replicasets.apps", R"({"metadata":{"name":"web-abc"},"spec":{"selector":{"matchLabels":{"app":"web"}},
    "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}})");
  EXPECT_TRUE(good.empty()) << dump(good);
}

TEST(Validation, Service) {
  auto good = check("services", R"({"metadata":{"name":"web"},"spec":{"selector":{"app":"web"},"ports":[{"port":80,"targetPort":"http"}]}})");
  EXPECT_TRUE(good.empty()) << dump(good);

  auto bad = check("services", R"({"metadata":{"name":"1web"},"spec":{"type":"Fancy","clusterIP":"10.0.0.300",
    "ports":[{"port":0},{"name":"b","port":80,"protocol":"ICMP","targetPort":70000},{"name":"b","port":80,"nodePort":30080}],
    "sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":0}},"externalTrafficPolicy":"Local"}})");
  EXPECT_TRUE(hasCause(bad, "metadata.name", Cause::kInvalid, "a DNS-1035 label")) << dump(bad);
  EXPECT_TRUE(hasCause(bad, "spec.type", Cause::kNotSupported)) << dump(bad);
  EXPECT_TRUE(hasCause(bad, "spec.clusterIP", Cause::kInvalid, "must be empty, 'None', or a valid IP address")) << dump(bad);
  EXPECT_TRUE(hasCause(bad, "spec.ports[0].name", Cause::kRequired)) << dump(bad);
  EXPECT_TRUE(hasCause(bad, "spec.ports[0].port", Cause::kInvalid, "must be between 1 and 65535")) << dump(bad);
  EXPECT_TRUE(hasCause(bad, "spec.ports[1].protocol", Cause::kNotSupported)) << dump(bad);
  EXPECT_TRUE(hasCause(bad, "spec.ports[1].targetPort", Cause::kInvalid)) << dump(bad);
  EXPECT_TRUE(hasCause(bad, "spec.ports[2].name", Cause::kDuplicate)) << dump(bad);
  EXPECT_TRUE(hasCause(bad, "spec.ports[2].nodePort", Cause::kForbidden)) << dump(bad);
  EXPECT_TRUE(hasCause(bad, "spec.sessionAffinityConfig.clientIP.timeoutSeconds", Cause::kInvalid)) << dump(bad);
  EXPECT_TRUE(hasCause(bad, "spec.externalTrafficPolicy", Cause::kInvalid, "externally-accessible")) << dump(bad);

  auto headless = check("services", R"({"metadata":{"name":"db"},"spec":{"clusterIP":"None","selector":{"app":"db"}}})");
  EXPECT_TRUE(headless.empty()) << dump(headless);
  auto external = check("services", R"({"metadata":{"name":"ext"},"spec":{"type":"ExternalName"}})");
  EXPECT_TRUE(hasCause(external, "spec.externalName", Cause::kRequired)) << dump(external);
  auto noPorts = check("services", R"({"metadata":{"name":"web"},"spec":{"selector":{"app":"web"}}})");
  EXPECT_TRUE(hasCause(noPorts, "spec.ports", Cause::kRequired)) << dump(noPorts);

  Json old = Json::parse(R"({"metadata":{"name":"web"},"spec":{"clusterIP":"10.43.0.20","clusterIPs":["10.43.0.20"],"ports":[{"port":80}]}})");
  ferry::api::applyDefaults("services", old);
  Json moved = old;
  moved["spec"]["clusterIP"] = "10.43.0.21";
  moved["spec"]["clusterIPs"] = {"10.43.0.21"};
  EXPECT_TRUE(hasCause(validate("services", moved, &old), "spec.clusterIP", Cause::kInvalid, "field is immutable"));
  // A replace without clusterIP keeps the allocated one.
  Json replaced = Json::parse(R"({"metadata":{"name":"web"},"spec":{"ports":[{"port":80}]}})");
  ferry::api::applyDefaults("services", replaced);
  ferry::api::carryOverAllocatedFields("services", replaced, old);
  EXPECT_EQ(replaced["spec"]["clusterIP"], "10.43.0.20");
  EXPECT_TRUE(validate("services", replaced, &old).empty()) << dump(validate("services", replaced, &old));
}

TEST(Validation, SmallKinds) {
  auto cm = check("configmaps", R"({"metadata":{"name":"c"},"data":{"good.key":"v","bad key":"v","n":1}})");
  EXPECT_TRUE(hasCause(cm, "data[bad key]", Cause::kInvalid, "a valid config key")) << dump(cm);
  EXPECT_TRUE(hasCause(cm, "data[n]", Cause::kInvalid)) << dump(cm);

  auto tls = check("secrets", R"({"metadata":{"name":"s"},"type":"kubernetes.io/tls","data":{"tls.crt":"eA=="}})");
  EXPECT_TRUE(hasCause(tls, "data[tls.key]", Cause::kRequired)) << dump(tls);
  Json oldSecret = Json::parse(R"({"metadata":{"name":"s"},"type":"Opaque","immutable":true,"data":{"a":"eA=="}})");
  Json newSecret = Json::parse(R"({"metadata":{"name":"s"},"type":"Opaque","immutable":true,"data":{"a":"eQ=="}})");
  EXPECT_TRUE(hasCause(validate("secrets", newSecret, &oldSecret), "data", Cause::kForbidden));

  auto ns = check("namespaces", R"({"metadata":{"name":"Team.A"}})");
  EXPECT_TRUE(hasCause(ns, "metadata.name", Cause::kInvalid, "RFC 1123 label")) << dump(ns);
  auto nsWithNs = check("namespaces", R"({"metadata":{"name":"a","namespace":"b"}})");
  EXPECT_TRUE(hasCause(nsWithNs, "metadata.namespace", Cause::kForbidden)) << dump(nsWithNs);

  auto node = check("nodes", R"({"metadata":{"name":"node-a"},"spec":{"podCIDR":"10.42.0.0/24","taints":[{"key":"k","effect":"Sometimes"}]}})");
  EXPECT_TRUE(hasCause(node, "spec.taints[0].effect", Cause::kNotSupported)) << dump(node);
  EXPECT_EQ(node.size(), 1u) << dump(node);

  auto slice = check("endpointslices.discovery.k8s.io", R"({"metadata":{"name":"web-abc"},"addressType":"IPv4",
    "endpoints":[{"addresses":["10.42.0.5"]},{"addresses":["nope"]},{"addresses":[]}],"ports":[{"port":80,"name":"http"}]})");
  EXPECT_TRUE(hasCause(slice, "endpoints[1].addresses[0]", Cause::kInvalid, "must be a valid IPv4 address")) << dump(slice);
  EXPECT_TRUE(hasCause(slice, "endpoints[2].addresses", Cause::kRequired)) << dump(slice);
  EXPECT_EQ(slice.size(), 2u) << dump(slice);

  auto lease = check("leases.coordination.k8s.io", R"({"metadata":{"name":"node-a","namespace":"kube-node-lease"},"spec":{"holderIdentity":"node-a","leaseDurationSeconds":40}})");
  EXPECT_TRUE(lease.empty()) << dump(lease);

  auto hpa = check("horizontalpodautoscalers.autoscaling", R"({"metadata":{"name":"web"},"spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"minReplicas":3,"maxReplicas":2}})");
  EXPECT_TRUE(hasCause(hpa, "spec.maxReplicas", Cause::kInvalid, "must be greater than or equal to `minReplicas`")) << dump(hpa);
  EXPECT_EQ(hpa.size(), 1u) << dump(hpa);

  auto event = check("events", R"({"metadata":{"name":"web-1.17a","namespace":"default"},"involvedObject":{"kind":"Pod","name":"web-1","namespace":"default"},"type":"Normal","reason":"Pulled"})");
  EXPECT_TRUE(event.empty()) << dump(event);
  auto endpoints = check("endpoints", R"({"metadata":{"name":"web"},"subsets":[{"addresses":[{"ip":"10.42.0.5"},{"ip":"x"}],"ports":[{"port":80}]}]})");
  EXPECT_TRUE(hasCause(endpoints, "subsets[0].addresses[1].ip", Cause::kInvalid)) << dump(endpoints);
}

TEST(Validation, NeverThrowsOnGarbage) {
  for (const char* text : {R"([])", R"({"metadata":7})", R"({"metadata":{"name":5,"labels":[1]},"spec":"x"})",
                           R"({"spec":{"containers":[1,"x",{"name":3,"ports":"p","env":{}}],"volumes":{"a":1}}})",
                           R"({"spec":{"selector":[],"template":7,"strategy":"x","replicas":"3"}})",
                           R"({"spec":{"ports":[{"port":"80"}],"sessionAffinityConfig":5}})"}) {
    for (const char* resource : {"pods", "services", "deployments.apps", "replicasets.apps", "configmaps", "secrets",
                                 "namespaces", "nodes", "events", "leases", "endpointslices", "endpoints",
                                 "horizontalpodautoscalers"}) {
      Json obj = Json::parse(text);
      ferry::api::applyDefaults(resource, obj);
      EXPECT_NO_THROW(validate(resource, obj, &obj)) << resource << " " << text;
      EXPECT_FALSE(validate(resource, obj, nullptr).empty()) << resource << " " << text;
    }
  }
}

TEST(Validation, InvalidMessageAsKubernetesWritesIt) {
  std::vector<Cause> one{{"spec.containers[0].image", "Required value", Cause::kRequired}};
  EXPECT_EQ(ferry::api::invalidMessage("Pod", "web", one), "Pod \"web\" is invalid: spec.containers[0].image: Required value");
  one.push_back({"metadata.name", "Required value", Cause::kRequired});
  EXPECT_EQ(ferry::api::invalidMessage("Deployment.apps", "web", one),
            "Deployment.apps \"web\" is invalid: [spec.containers[0].image: Required value, metadata.name: Required value]");
}

TEST(Validation, UnsupportedFieldWarnings) {
  Json pod = Json::parse(R"({"spec":{"containers":[{"name":"a","image":"a"}],
    "volumes":[{"name":"d","persistentVolumeClaim":{"claimName":"c"}},{"name":"e","emptyDir":{}},{"name":"f","cinder":{"volumeID":"x"}}],
    "ephemeralContainers":[{"name":"dbg","image":"busybox"}]}})");
  auto warnings = ferry::api::unsupportedFieldWarnings("pods", pod);
  ASSERT_EQ(warnings.size(), 3u);
  EXPECT_NE(warnings[0].find("spec.volumes[0].persistentVolumeClaim"), std::string::npos);
  EXPECT_NE(warnings[1].find("spec.volumes[2].cinder"), std::string::npos);
  EXPECT_NE(warnings[2].find("spec.ephemeralContainers"), std::string::npos);
  EXPECT_TRUE(ferry::api::unsupportedFieldWarnings("pods", Json::parse(kGoodPod)).empty());
  Json deploy = Json::parse(R"({"spec":{"template":{"spec":{"volumes":[{"name":"p","projected":{}}]}}}})");
  auto dw = ferry::api::unsupportedFieldWarnings("deployments.apps", deploy);
  ASSERT_EQ(dw.size(), 1u);
  EXPECT_NE(dw[0].find("spec.template.spec.volumes[0].projected"), std::string::npos);
}
