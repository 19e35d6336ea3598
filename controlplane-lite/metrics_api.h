// metrics.k8s.io/v1beta1 (what metrics-server serves, so `kubectl top` and the HPA
// work): NodeMetrics and PodMetrics, list and get, computed from the agents'
// /stats/summary (agent/server/node_api.h). CPU is the agents' rate (usageNanoCores);
// memory the working set. A node or pod without a rate yet (an agent's first
// sample) is left out, as metrics-server does.
#pragma once

#include "api/object.h"
#include "controlplane-lite/http_server.h"

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace ferry::cp {

class Registry;
class NodeProxy;

// "1234n" (nanocores) and "5678Ki" (bytes / 1024), as metrics-server writes them.
std::string cpuQuantity(std::uint64_t nanoCores);
std::string memoryQuantity(std::uint64_t bytes);

// NodeMetrics for `node` (a Node object) from its agent's summary; nullopt without usage.
std::optional<api::Json> nodeMetricsFromSummary(const api::Json& node, const api::Json& summary);
// PodMetrics of every pod in a summary that has a rate for each of its containers.
std::vector<api::Json> podMetricsFromSummary(const api::Json& summary);

class MetricsApi {
 public:
  MetricsApi(Registry& registry, NodeProxy& nodes);
  // GET /apis/metrics.k8s.io/v1beta1/{nodes[/N] | [namespaces/NS/]pods[/N]}; `plural` is
  // "nodes" or "pods". labelSelector is honoured (from the Node/Pod objects).
  HttpResponse serve(const HttpRequest& request, const std::string& plural, const std::string& ns, const std::string& name);
  // One pod's PodMetrics object (what the HPA reads), or nullopt when it has no sample yet.
  std::optional<api::Json> podMetrics(const std::string& ns, const std::string& name);

 private:
  // The node's summary, fetched at most every few seconds.
  std::optional<api::Json> summaryOf(const api::Json& node);
  std::vector<api::Json> listNodeMetrics(const std::string& labelSelector, const std::string& onlyName);
  std::vector<api::Json> listPodMetrics(const std::string& ns, const std::string& labelSelector, const std::string& onlyName);

  Registry& registry_;
  NodeProxy& nodes_;
  std::mutex mu_;
  struct Cached {
    std::chrono::steady_clock::time_point fetched;
    std::optional<api::Json> summary;
  };
  std::map<std::string, Cached> cache_;  // by node name
};

}  // namespace ferry::cp
