#include "controlplane-lite/metrics_api.h"

#include "api/log.h"
#include "controlplane-lite/api_handler.h"
#include "controlplane-lite/node_proxy.h"
#include "controlplane-lite/registry.h"

#include <fmt/format.h>

#include <set>

namespace ferry::cp {
namespace {

using api::Json;

constexpr auto kSummaryMaxAge = std::chrono::seconds(5);
constexpr const char* kWindow = "5s";

HttpResponse json(int code, const Json& body) {
  HttpResponse r;
  r.status = code;
  r.body = body.dump();
  return r;
}

std::optional<std::uint64_t> unsignedAt(const Json& j, std::initializer_list<const char*> path) {
  const Json* at = &j;
  for (const char* key : path) {
    if (!at->is_object()) return std::nullopt;
    auto it = at->find(key);
    if (it == at->end()) return std::nullopt;
    at = &*it;
  }
  if (!at->is_number_integer() && !at->is_number_unsigned()) return std::nullopt;
  return at->get<std::uint64_t>();
}

Json metadataFor(const Json& object, bool withNamespace) {
  Json m = {{"name", api::nameOf(object)}, {"creationTimestamp", api::at<std::string>(object, {"metadata", "creationTimestamp"})}};
  if (withNamespace) m["namespace"] = api::namespaceOf(object);
  auto labels = api::at<Json>(object, {"metadata", "labels"});
  if (labels.is_object()) m["labels"] = labels;
  return m;
}

}  // namespace

std::string cpuQuantity(std::uint64_t nanoCores) { return fmt::format("{}n", nanoCores); }
std::string memoryQuantity(std::uint64_t bytes) { return fmt::format("{}Ki", bytes / 1024); }

std::optional<Json> nodeMetricsFromSummary(const Json& node, const Json& summary) {
  auto cpu = unsignedAt(summary, {"node", "cpu", "usageNanoCores"});
  auto memory = unsignedAt(summary, {"node", "memory", "workingSetBytes"});
  if (!cpu || !memory) return std::nullopt;
  return Json{{"kind", "NodeMetrics"},
              {"apiVersion", "metrics.k8s.io/v1beta1"},
              {"metadata", metadataFor(node, false)},
              {"timestamp", api::at<std::string>(summary, {"node", "cpu", "time"})},
              {"window", kWindow},
              {"usage", {{"cpu", cpuQuantity(*cpu)}, {"memory", memoryQuantity(*memory)}}}};
}

std::vector<Json> podMetricsFromSummary(const Json& summary) {
  std::vector<Json> out;
  for (const auto& pod : api::at<Json>(summary, {"pods"}, Json::array())) {
    Json containers = Json::array();
    bool complete = true;
    for (const auto& c : api::at<Json>(pod, {"containers"}, Json::array())) {
      auto cpu = unsignedAt(c, {"cpu", "usageNanoCores"});
      auto memory = unsignedAt(c, {"memory", "workingSetBytes"});
      if (!cpu || !memory) {
        complete = false;
        break;
      }
      containers.push_back({{"name", c.value("name", "")}, {"usage", {{"cpu", cpuQuantity(*cpu)}, {"memory", memoryQuantity(*memory)}}}});
    }
    if (!complete || containers.empty()) continue;
    out.push_back({{"kind", "PodMetrics"},
                   {"apiVersion", "metrics.k8s.io/v1beta1"},
                   {"metadata",
                    {{"name", api::at<std::string>(pod, {"podRef", "name"})},
                     {"namespace", api::at<std::string>(pod, {"podRef", "namespace"})}}},
                   {"timestamp", api::at<std::string>(pod, {"cpu", "time"})},
                   {"window", kWindow},
                   {"containers", std::move(containers)}});
  }
  return out;
}

MetricsApi::MetricsApi(Registry& registry, NodeProxy& nodes) : registry_(registry), nodes_(nodes) {}

std::optional<Json> MetricsApi::summaryOf(const Json& node) {
  std::string name = api::nameOf(node);
  auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(name);
    if (it != cache_.end() && now - it->second.fetched < kSummaryMaxAge) return it->second.summary;
  }
  std::optional<Json> summary;
  std::string endpoint = nodeApiEndpoint(node);
  if (!endpoint.empty()) {
    auto body = nodes_.get(endpoint, "/stats/summary", std::chrono::seconds(5));
    if (body) {
      auto parsed = Json::parse(*body, nullptr, false);
      if (!parsed.is_discarded() && parsed.is_object()) summary = std::move(parsed);
    } else {
      log::debug("metrics: node {}: {}", name, body.error().message);
    }
  }
  std::lock_guard lock(mu_);
  cache_[name] = {now, summary};
  return summary;
}

std::vector<Json> MetricsApi::listNodeMetrics(const std::string& labelSelector, const std::string& onlyName) {
  std::vector<Json> out;
  auto nodes = registry_.list("nodes", "", ListOptions{labelSelector, ""});
  if (!nodes) return out;
  for (const auto& node : nodes->items) {
    if (!onlyName.empty() && api::nameOf(node) != onlyName) continue;
    auto summary = summaryOf(node);
    if (!summary) continue;
    if (auto m = nodeMetricsFromSummary(node, *summary)) out.push_back(std::move(*m));
  }
  return out;
}

std::vector<Json> MetricsApi::listPodMetrics(const std::string& ns, const std::string& labelSelector,
                                             const std::string& onlyName) {
  std::vector<Json> out;
  auto pods = registry_.list("pods", ns, ListOptions{labelSelector, ""});
  if (!pods) return out;
  // Which nodes to ask, and the pods (by namespace/name) the selection allows.
  std::map<std::string, const Json*> wanted;
  std::set<std::string> nodeNames;
  for (const auto& pod : pods->items) {
    if (!onlyName.empty() && api::nameOf(pod) != onlyName) continue;
    std::string node = api::at<std::string>(pod, {"spec", "nodeName"});
    if (node.empty()) continue;
    wanted[api::namespaceOf(pod) + "/" + api::nameOf(pod)] = &pod;
    nodeNames.insert(node);
  }
  for (const auto& nodeName : nodeNames) {
    auto node = registry_.get("nodes", "", nodeName);
    if (!node) continue;
    auto summary = summaryOf(*node);
    if (!summary) continue;
    for (auto& m : podMetricsFromSummary(*summary)) {
      auto it = wanted.find(api::namespaceOf(m) + "/" + api::nameOf(m));
      if (it == wanted.end()) continue;
      m["metadata"] = metadataFor(*it->second, true);
      out.push_back(std::move(m));
    }
  }
  return out;
}

HttpResponse MetricsApi::serve(const HttpRequest& req, const std::string& plural, const std::string& ns,
                               const std::string& name) {
  if (req.method != "GET") return statusResponse(405, "MethodNotAllowed", "metrics are read-only");
  if (req.param("watch") == "true" || req.param("watch") == "1")
    return statusResponse(405, "MethodNotAllowed", "metrics cannot be watched");
  std::string selector = req.param("labelSelector");
  bool nodes = plural == "nodes";
  std::vector<Json> items = nodes ? listNodeMetrics(selector, name) : listPodMetrics(ns, selector, name);
  if (!name.empty()) {
    if (items.empty())
      return statusResponse(404, "NotFound", fmt::format("{}.metrics.k8s.io \"{}\" not found", plural, name));
    return json(200, items.front());
  }
  return json(200, {{"kind", nodes ? "NodeMetricsList" : "PodMetricsList"},
                    {"apiVersion", "metrics.k8s.io/v1beta1"},
                    {"metadata", Json::object()},
                    {"items", items}});
}

std::optional<Json> MetricsApi::podMetrics(const std::string& ns, const std::string& name) {
  auto items = listPodMetrics(ns, "", name);
  if (items.empty()) return std::nullopt;
  return items.front();
}

}  // namespace ferry::cp
