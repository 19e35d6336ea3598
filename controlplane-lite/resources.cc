#include "controlplane-lite/resources.h"

namespace ferry::cp {

namespace {

const std::vector<std::string> kAllVerbs = {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"};

Resource row(std::string group, std::string version, std::string kind, std::string plural, std::string singular,
             bool namespaced, std::vector<std::string> shortNames, std::vector<std::string> categories,
             std::vector<std::string> subresources) {
  Resource r;
  r.group = std::move(group);
  r.version = std::move(version);
  r.kind = std::move(kind);
  r.plural = std::move(plural);
  r.singular = std::move(singular);
  r.namespaced = namespaced;
  r.shortNames = std::move(shortNames);
  r.categories = std::move(categories);
  r.verbs = kAllVerbs;
  r.subresources = std::move(subresources);
  for (const auto& s : r.subresources)
    if (s == "status") r.hasStatusSubresource = true;
  return r;
}

std::vector<Resource> buildTable() {
  std::vector<Resource> t;
  t.push_back(row("", "v1", "Namespace", "namespaces", "namespace", false, {"ns"}, {}, {"status"}));
  t.push_back(row("", "v1", "Node", "nodes", "node", false, {"no"}, {}, {"status", "proxy"}));
  t.push_back(row("", "v1", "Pod", "pods", "pod", true, {"po"}, {"all"},
                  {"status", "binding", "eviction", "log", "exec", "ephemeralcontainers"}));
  t.push_back(row("", "v1", "Service", "services", "service", true, {"svc"}, {"all"}, {"status"}));
  t.push_back(row("", "v1", "Endpoints", "endpoints", "endpoints", true, {"ep"}, {}, {}));
  t.push_back(row("", "v1", "ConfigMap", "configmaps", "configmap", true, {"cm"}, {}, {}));
  t.push_back(row("", "v1", "Secret", "secrets", "secret", true, {}, {}, {}));
  t.push_back(row("", "v1", "Event", "events", "event", true, {"ev"}, {}, {}));
  t.push_back(row("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, {"sa"}, {}, {}));
  t.push_back(row("apps", "v1", "Deployment", "deployments", "deployment", true, {"deploy"}, {"all"}, {"status", "scale"}));
  t.push_back(row("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, {"rs"}, {"all"}, {"status", "scale"}));
  t.push_back(row("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, {}, {}, {}));
  t.push_back(row("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, {}, {}, {}));
  t.push_back(row("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
                  "horizontalpodautoscaler", true, {"hpa"}, {"all"}, {"status"}));
  Resource podMetrics = row("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", "", true, {}, {}, {});
  podMetrics.verbs = {"get", "list"};
  podMetrics.servedVirtually = true;
  t.push_back(podMetrics);
  Resource nodeMetrics = row("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", "", false, {}, {}, {});
  nodeMetrics.verbs = {"get", "list"};
  nodeMetrics.servedVirtually = true;
  t.push_back(nodeMetrics);
  return t;
}

}  // namespace

const std::vector<Resource>& servedResources() {
  static const std::vector<Resource> table = buildTable();
  return table;
}

const Resource* findResource(const std::string& qualifiedName) {
  for (const auto& r : servedResources())
    if (!r.servedVirtually && r.qualifiedName() == qualifiedName) return &r;
  for (const auto& r : servedResources())
    if (!r.servedVirtually && r.plural == qualifiedName) return &r;
  return nullptr;
}

const Resource* findResource(const std::string& group, const std::string& version, const std::string& plural) {
  for (const auto& r : servedResources())
    if (r.group == group && r.version == version && r.plural == plural) return &r;
  return nullptr;
}

const Resource* findResourceByKind(const std::string& apiVersion, const std::string& kind) {
  for (const auto& r : servedResources())
    if (r.apiVersion() == apiVersion && r.kind == kind) return &r;
  return nullptr;
}

std::vector<GroupVersion> servedGroupVersions() {
  std::vector<GroupVersion> out;
  for (const auto& r : servedResources()) {
    bool seen = false;
    for (const auto& gv : out)
      if (gv.group == r.group && gv.version == r.version) seen = true;
    if (!seen) out.push_back({r.group, r.version});
  }
  return out;
}

}  // namespace ferry::cp
