#include "api/defaulting.h"

#include <gtest/gtest.h>

using ferry::api::applyDefaults;
using ferry::api::defaultImagePullPolicy;
using ferry::api::Json;

TEST(Defaulting, ImagePullPolicyFromTag) {
  EXPECT_EQ(defaultImagePullPolicy("nginx"), "Always");
  EXPECT_EQ(defaultImagePullPolicy("nginx:latest"), "Always");
  EXPECT_EQ(defaultImagePullPolicy("nginx:1.25"), "IfNotPresent");
  EXPECT_EQ(defaultImagePullPolicy("registry.local:5000/team/app"), "Always");
  EXPECT_EQ(defaultImagePullPolicy("registry.local:5000/team/app:v2"), "IfNotPresent");
  EXPECT_EQ(defaultImagePullPolicy("nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
            "IfNotPresent");
  EXPECT_EQ(defaultImagePullPolicy("nginx:latest@sha256:abc"), "IfNotPresent");
}

TEST(Defaulting, PodAsKubernetesDoes) {
  Json pod = Json::parse(R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},
    "spec":{"containers":[{"name":"web","image":"nginx","ports":[{"containerPort":80}],
                           "resources":{"limits":{"cpu":"500m","memory":"128Mi"},"requests":{"cpu":"100m"}},
                           "readinessProbe":{"httpGet":{"port":80}},
                           "env":[{"name":"POD","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}]}],
            "initContainers":[{"name":"init","image":"busybox:1.36","imagePullPolicy":"Never"}],
            "volumes":[{"name":"scratch"},{"name":"cfg","configMap":{"name":"c"}},{"name":"h","hostPath":{"path":"/tmp"}}],
            "restartPolicy":"Never"}})");
  applyDefaults("pods", pod);
  const Json& spec = pod["spec"];
  EXPECT_EQ(spec["restartPolicy"], "Never");  // user value kept
  EXPECT_EQ(spec["dnsPolicy"], "ClusterFirst");
  EXPECT_EQ(spec["terminationGracePeriodSeconds"], 30);
  EXPECT_EQ(spec["schedulerName"], "default-scheduler");
  EXPECT_EQ(spec["enableServiceLinks"], true);
  EXPECT_EQ(spec["securityContext"], Json::object());
  const Json& c = spec["containers"][0];
  EXPECT_EQ(c["imagePullPolicy"], "Always");
  EXPECT_EQ(c["terminationMessagePath"], "/dev/termination-log");
  EXPECT_EQ(c["terminationMessagePolicy"], "File");
  EXPECT_EQ(c["ports"][0]["protocol"], "TCP");
  EXPECT_EQ(c["resources"]["requests"]["cpu"], "100m");
  EXPECT_EQ(c["resources"]["requests"]["memory"], "128Mi");
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"], "/");
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["scheme"], "HTTP");
  EXPECT_EQ(c["readinessProbe"]["timeoutSeconds"], 1);
  EXPECT_EQ(c["readinessProbe"]["periodSeconds"], 10);
  EXPECT_EQ(c["readinessProbe"]["successThreshold"], 1);
  EXPECT_EQ(c["readinessProbe"]["failureThreshold"], 3);
  EXPECT_EQ(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
  EXPECT_EQ(spec["initContainers"][0]["imagePullPolicy"], "Never");
  EXPECT_EQ(spec["initContainers"][0]["terminationMessagePolicy"], "File");
  EXPECT_EQ(spec["volumes"][0]["emptyDir"], Json::object());
  EXPECT_EQ(spec["volumes"][1]["configMap"]["defaultMode"], 420);
  EXPECT_EQ(spec["volumes"][2]["hostPath"]["type"], "");
  EXPECT_FALSE(c.contains("hostPort"));
}

TEST(Defaulting, HostNetworkPodGetsHostPorts) {
  Json pod = Json::parse(R"({"spec":{"hostNetwork":true,"containers":[{"name":"a","image":"x:1","ports":[{"containerPort":53}]}]}})");
  applyDefaults("pods", pod);
  EXPECT_EQ(pod["spec"]["containers"][0]["ports"][0]["hostPort"], 53);
}

TEST(Defaulting, Service) {
  Json svc = Json::parse(R"({"metadata":{"name":"web"},"spec":{"selector":{"app":"web"},
    "ports":[{"port":80},{"port":443,"targetPort":"https","protocol":"UDP"},{"port":81,"targetPort":0}]}})");
  applyDefaults("services", svc);
  const Json& spec = svc["spec"];
  EXPECT_EQ(spec["type"], "ClusterIP");
  EXPECT_EQ(spec["sessionAffinity"], "None");
  EXPECT_EQ(spec["internalTrafficPolicy"], "Cluster");
  EXPECT_FALSE(spec.contains("externalTrafficPolicy"));
  EXPECT_FALSE(spec.contains("sessionAffinityConfig"));
  EXPECT_EQ(spec["ports"][0]["protocol"], "TCP");
  EXPECT_EQ(spec["ports"][0]["targetPort"], 80);
  EXPECT_EQ(spec["ports"][1]["targetPort"], "https");
  EXPECT_EQ(spec["ports"][1]["protocol"], "UDP");
  EXPECT_EQ(spec["ports"][2]["targetPort"], 81);

  Json np = Json::parse(R"({"spec":{"type":"NodePort","sessionAffinity":"ClientIP","ports":[{"port":80}]}})");
  applyDefaults("services", np);
  EXPECT_EQ(np["spec"]["externalTrafficPolicy"], "Cluster");
  EXPECT_EQ(np["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"], 10800);

  Json lb = Json::parse(R"({"spec":{"type":"LoadBalancer","externalTrafficPolicy":"Local"}})");
  applyDefaults("services", lb);
  EXPECT_EQ(lb["spec"]["externalTrafficPolicy"], "Local");
  EXPECT_EQ(lb["spec"]["allocateLoadBalancerNodePorts"], true);

  Json ext = Json::parse(R"({"spec":{"type":"ExternalName","externalName":"example.com"}})");
  applyDefaults("services", ext);
  EXPECT_FALSE(ext["spec"].contains("internalTrafficPolicy"));
}

TEST(Defaulting, DeploymentAndReplicaSet) {
  Json d = Json::parse(R"({"spec":{"selector":{"matchLabels":{"app":"web"}},
    "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","image":"nginx:1.25"}]}}}})");
  applyDefaults("deployments.apps", d);
  EXPECT_EQ(d["spec"]["replicas"], 1);
  EXPECT_EQ(d["spec"]["strategy"]["type"], "RollingUpdate");
  EXPECT_EQ(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], "25%");
  EXPECT_EQ(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
  EXPECT_EQ(d["spec"]["revisionHistoryLimit"], 10);
  EXPECT_EQ(d["spec"]["progressDeadlineSeconds"], 600);
  const Json& podSpec = d["spec"]["template"]["spec"];
  EXPECT_EQ(podSpec["restartPolicy"], "Always");
  EXPECT_EQ(podSpec["containers"][0]["imagePullPolicy"], "IfNotPresent");

  Json recreate = Json::parse(R"({"spec":{"replicas":0,"strategy":{"type":"Recreate"}}})");
  applyDefaults("deployments", recreate);
  EXPECT_EQ(recreate["spec"]["replicas"], 0);
  EXPECT_FALSE(recreate["spec"]["strategy"].contains("rollingUpdate"));

  Json rs = Json::parse(R"({"spec":{"template":{"spec":{"containers":[{"name":"a","image":"a"}]}}}})");
  applyDefaults("replicasets.apps", rs);
  EXPECT_EQ(rs["spec"]["replicas"], 1);
  EXPECT_EQ(rs["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
  // Requests are copied from limits only for pods, not templates.
  Json withLimits = Json::parse(R"({"spec":{"template":{"spec":{"containers":[{"name":"a","image":"a","resources":{"limits":{"cpu":"1"}}}]}}}})");
  applyDefaults("replicasets.apps", withLimits);
  EXPECT_FALSE(withLimits["spec"]["template"]["spec"]["containers"][0]["resources"].contains("requests"));
}

TEST(Defaulting, OtherKinds) {
  Json secret = Json::parse(R"({"metadata":{"name":"s"},"data":{}})");
  applyDefaults("secrets", secret);
  EXPECT_EQ(secret["type"], "Opaque");

  Json ns = Json::parse(R"({"metadata":{"name":"team-a"}})");
  applyDefaults("namespaces", ns);
  EXPECT_EQ(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "team-a");
  EXPECT_EQ(ns["spec"]["finalizers"][0], "kubernetes");

  Json slice = Json::parse(R"({"addressType":"IPv4","ports":[{"port":80}],"endpoints":[{"addresses":["10.0.0.1"]}]})");
  applyDefaults("endpointslices.discovery.k8s.io", slice);
  EXPECT_EQ(slice["ports"][0]["protocol"], "TCP");
  EXPECT_FALSE(slice["endpoints"][0].contains("conditions"));

  Json hpa = Json::parse(R"({"spec":{"maxReplicas":5,"behavior":{"scaleDown":{"stabilizationWindowSeconds":60}}}})");
  applyDefaults("horizontalpodautoscalers.autoscaling", hpa);
  EXPECT_EQ(hpa["spec"]["minReplicas"], 1);
  EXPECT_EQ(hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 80);
  EXPECT_EQ(hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 60);
  EXPECT_EQ(hpa["spec"]["behavior"]["scaleDown"]["selectPolicy"], "Max");
  EXPECT_EQ(hpa["spec"]["behavior"]["scaleUp"]["policies"].size(), 2u);

  Json node = Json::parse(R"({"status":{"capacity":{"cpu":"2"}}})");
  applyDefaults("nodes", node);
  EXPECT_EQ(node["status"]["allocatable"]["cpu"], "2");

  Json cm = Json::parse(R"({"data":{"a":"b"}})");
  Json before = cm;
  applyDefaults("configmaps", cm);
  EXPECT_EQ(cm, before);
  // Garbage shapes are left for validation to report, never crash.
  Json weird = Json::parse(R"({"spec":{"containers":"nope","volumes":[1,2],"hostNetwork":"yes"}})");
  applyDefaults("pods", weird);
  EXPECT_EQ(weird["spec"]["containers"], "nope");
  Json notObject = Json::array();
  applyDefaults("pods", notObject);
}
