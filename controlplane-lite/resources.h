// The table of resources the API server serves: one row per resource with what
// discovery, routing, the store layout and `kubectl get` need to know about it.
#pragma once

#include <string>
#include <vector>

namespace ferry::cp {

struct Resource {
  std::string group;     // "" for core
  std::string version;   // v1, v2, v1beta1
  std::string kind;      // Pod
  std::string plural;    // pods
  std::string singular;  // pod
  bool namespaced = true;
  std::vector<std::string> shortNames;
  std::vector<std::string> categories;  // "all" makes `kubectl get all` include it
  std::vector<std::string> verbs;
  std::vector<std::string> subresources;  // status, scale, binding, eviction, log, exec
  bool hasStatusSubresource = false;
  bool servedVirtually = false;  // no store behind it (metrics)

  // "pods", "deployments.apps": the name the ObjectClient takes.
  std::string qualifiedName() const { return group.empty() ? plural : plural + "." + group; }
  std::string apiVersion() const { return group.empty() ? version : group + "/" + version; }
  std::string groupVersion() const { return apiVersion(); }
  // "/api/v1" or "/apis/apps/v1".
  std::string pathPrefix() const { return group.empty() ? "/api/" + version : "/apis/" + group + "/" + version; }
};

// Every served resource, in discovery order (core first).
const std::vector<Resource>& servedResources();
// By qualified name ("pods", "deployments.apps"); also accepts the bare plural when unique.
const Resource* findResource(const std::string& qualifiedName);
// By group, version and plural as they appear in a URL.
const Resource* findResource(const std::string& group, const std::string& version, const std::string& plural);
// By apiVersion ("apps/v1") and kind ("Deployment").
const Resource* findResourceByKind(const std::string& apiVersion, const std::string& kind);

struct GroupVersion {
  std::string group;
  std::string version;
};
// Distinct (group, version) pairs in discovery order.
std::vector<GroupVersion> servedGroupVersions();

}  // namespace ferry::cp
