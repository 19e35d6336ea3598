#include "controlplane-lite/discovery.h"

#include "controlplane-lite/resources.h"

#include <fmt/format.h>

#include <functional>

namespace ferry::cp {

using api::Json;

namespace {

Json subresourceVerbs(const std::string& sub) {
  if (sub == "status" || sub == "scale") return Json::array({"get", "patch", "update"});
  if (sub == "binding" || sub == "eviction") return Json::array({"create"});
  if (sub == "log") return Json::array({"get"});
  if (sub == "exec") return Json::array({"create", "get"});
  if (sub == "ephemeralcontainers") return Json::array({"get", "patch", "update"});
  if (sub == "proxy") return Json::array({"create", "delete", "get", "patch", "update"});
  return Json::array({"get"});
}

Json subresourceKind(const Resource& r, const std::string& sub) {
  if (sub == "scale") return {{"group", "autoscaling"}, {"version", "v1"}, {"kind", "Scale"}};
  if (sub == "binding") return {{"group", ""}, {"version", "v1"}, {"kind", "Binding"}};
  if (sub == "eviction") return {{"group", "policy"}, {"version", "v1"}, {"kind", "Eviction"}};
  if (sub == "log" || sub == "exec" || sub == "proxy") return {{"group", ""}, {"version", "v1"}, {"kind", sub == "exec" ? "PodExecOptions" : (sub == "log" ? "Pod" : "NodeProxyOptions")}};
  return {{"group", r.group}, {"version", r.version}, {"kind", r.kind}};
}

std::string hashOf(const Json& doc) {
  return fmt::format("{:016X}", std::hash<std::string>{}(doc.dump()));
}

}  // namespace

Json versionDocument() {
  return {{"major", "1"},
          {"minor", "32"},
          {"gitVersion", "v1.32.0-ferry"},
          {"gitCommit", "ferry"},
          {"gitTreeState", "clean"},
          {"buildDate", "2026-01-01T00:00:00Z"},
          {"goVersion", "go1.23.0"},
          {"compiler", "gc"},
          {"platform", "linux/amd64"}};
}

Json aggregatedDiscovery(bool core, const std::string& apiVersion) {
  Json items = Json::array();
  for (const auto& gv : servedGroupVersions()) {
    if ((gv.group.empty()) != core) continue;
    Json* group = nullptr;
    for (auto& g : items)
      if (g["metadata"]["name"] == gv.group) group = &g;
    if (!group) {
      items.push_back({{"metadata", {{"name", gv.group}, {"creationTimestamp", nullptr}}}, {"versions", Json::array()}});
      group = &items.back();
    }
    Json resources = Json::array();
    for (const auto& r : servedResources()) {
      if (r.group != gv.group || r.version != gv.version) continue;
      Json res = {{"resource", r.plural},
                  {"responseKind", {{"group", r.group}, {"version", r.version}, {"kind", r.kind}}},
                  {"scope", r.namespaced ? "Namespaced" : "Cluster"},
                  {"singularResource", r.singular},
                  {"verbs", r.verbs}};
      if (!r.shortNames.empty()) res["shortNames"] = r.shortNames;
      if (!r.categories.empty()) res["categories"] = r.categories;
      if (!r.subresources.empty()) {
        Json subs = Json::array();
        for (const auto& s : r.subresources)
          subs.push_back({{"subresource", s}, {"responseKind", subresourceKind(r, s)}, {"verbs", subresourceVerbs(s)}});
        res["subresources"] = subs;
      }
      resources.push_back(res);
    }
    (*group)["versions"].push_back({{"version", gv.version}, {"resources", resources}, {"freshness", "Current"}});
  }
  return {{"kind", "APIGroupDiscoveryList"}, {"apiVersion", apiVersion}, {"metadata", Json::object()}, {"items", items}};
}

Json legacyApiVersions() {
  return {{"kind", "APIVersions"},
          {"versions", Json::array({"v1"})},
          {"serverAddressByClientCIDRs", Json::array({{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", ""}}})}};
}

static Json groupEntry(const std::string& group) {
  Json versions = Json::array();
  for (const auto& gv : servedGroupVersions())
    if (gv.group == group) versions.push_back({{"groupVersion", group + "/" + gv.version}, {"version", gv.version}});
  return {{"name", group}, {"versions", versions}, {"preferredVersion", versions.empty() ? Json() : versions[0]}};
}

Json legacyApiGroupList() {
  Json groups = Json::array();
  std::vector<std::string> seen;
  for (const auto& gv : servedGroupVersions()) {
    if (gv.group.empty() || std::find(seen.begin(), seen.end(), gv.group) != seen.end()) continue;
    seen.push_back(gv.group);
    groups.push_back(groupEntry(gv.group));
  }
  return {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", groups}};
}

std::optional<Json> legacyApiGroup(const std::string& group) {
  for (const auto& gv : servedGroupVersions())
    if (!group.empty() && gv.group == group) {
      Json g = groupEntry(group);
      g["kind"] = "APIGroup";
      g["apiVersion"] = "v1";
      return g;
    }
  return std::nullopt;
}

std::optional<Json> legacyResourceList(const std::string& group, const std::string& version) {
  Json resources = Json::array();
  bool found = false;
  for (const auto& r : servedResources()) {
    if (r.group != group || r.version != version) continue;
    found = true;
    Json res = {{"name", r.plural}, {"singularName", r.singular}, {"namespaced", r.namespaced},
                {"kind", r.kind},   {"verbs", r.verbs}};
    if (!r.shortNames.empty()) res["shortNames"] = r.shortNames;
    if (!r.categories.empty()) res["categories"] = r.categories;
    resources.push_back(res);
    for (const auto& s : r.subresources) {
      Json kind = subresourceKind(r, s);
      Json sub = {{"name", r.plural + "/" + s}, {"singularName", ""}, {"namespaced", r.namespaced},
                  {"kind", kind["kind"]},       {"verbs", subresourceVerbs(s)}};
      if (!kind["group"].get<std::string>().empty()) {
        sub["group"] = kind["group"];
        sub["version"] = kind["version"];
      }
      resources.push_back(sub);
    }
  }
  if (!found) return std::nullopt;
  return Json{{"kind", "APIResourceList"},
              {"apiVersion", "v1"},
              {"groupVersion", group.empty() ? version : group + "/" + version},
              {"resources", resources}};
}

std::optional<Json> openApiV3GroupVersion(const std::string& group, const std::string& version) {
  Json paths = Json::object();
  bool found = false;
  for (const auto& r : servedResources()) {
    if (r.group != group || r.version != version) continue;
    found = true;
    Json gvk = {{"group", r.group}, {"version", r.version}, {"kind", r.kind}};
    Json params = Json::array({{{"name", "fieldValidation"}, {"in", "query"}, {"schema", {{"type", "string"}}},
                                {"description", "Strict, Warn or Ignore"}},
                               {{"name", "dryRun"}, {"in", "query"}, {"schema", {{"type", "string"}}}},
                               {{"name", "fieldManager"}, {"in", "query"}, {"schema", {{"type", "string"}}}}});
    Json ok = {{"200", {{"description", "OK"}}}, {"201", {{"description", "Created"}}}};
    Json op = {{"x-kubernetes-group-version-kind", gvk}, {"parameters", params}, {"responses", ok},
               {"x-kubernetes-action", "patch"}};
    std::string base = r.pathPrefix() + (r.namespaced ? "/namespaces/{namespace}/" : "/") + r.plural;
    Json getOp = op;
    getOp["x-kubernetes-action"] = "get";
    Json putOp = op;
    putOp["x-kubernetes-action"] = "put";
    Json deleteOp = op;
    deleteOp["x-kubernetes-action"] = "delete";
    paths[base + "/{name}"] = {{"get", getOp}, {"put", putOp}, {"patch", op}, {"delete", deleteOp}};
    Json postOp = op;
    postOp["x-kubernetes-action"] = "post";
    Json listOp = op;
    listOp["x-kubernetes-action"] = "list";
    paths[base] = {{"get", listOp}, {"post", postOp}};
  }
  if (!found) return std::nullopt;
  return Json{{"openapi", "3.0.0"},
              {"info", {{"title", "Kubernetes"}, {"version", "v1.32.0-ferry"}}},
              {"paths", paths},
              {"components", {{"schemas", Json::object()}}}};
}

Json openApiV3Root() {
  Json paths = Json::object();
  for (const auto& gv : servedGroupVersions()) {
    auto doc = openApiV3GroupVersion(gv.group, gv.version);
    std::string key = gv.group.empty() ? "api/" + gv.version : "apis/" + gv.group + "/" + gv.version;
    paths[key] = {{"serverRelativeURL", "/openapi/v3/" + key + "?hash=" + hashOf(*doc)}};
  }
  return {{"paths", paths}};
}

}  // namespace ferry::cp
