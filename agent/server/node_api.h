// The agent's own HTTPS API — the kubelet's :10250 role — for the API server:
//   GET /healthz                                  "ok" (anyone)
//   GET /containerLogs/{ns}/{pod}/{container}     ?follow&tailLines&timestamps&previous&sinceSeconds&limitBytes
//   GET /exec/{ns}/{pod}/{container}              ?command=..(repeated)&stdin&stdout&stderr&tty, WebSocket
//                                                 v5.channel.k8s.io (v4 too), see websocket.h
//   GET /stats/summary                            node and per-pod/container cpu and memory (kubelet's shape)
//   GET /metrics                                  Prometheus text
// Everything but /healthz needs a client certificate signed by the cluster CA with
// O=system:masters (the API server's, or an admin's); anyone else gets 401/403.
// The serving certificate is the node's, signed by the cluster CA for its addresses
// (agent/core/node_credentials.h); the API server verifies it. Without one the agent
// serves a self-signed certificate, which the API server refuses (so logs/exec fail
// with that reason instead of silently trusting an unproven agent).
#pragma once

#include "api/error.h"
#include "api/object.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::cp {
struct HttpRequest;
struct HttpResponse;
class HttpsServer;
}  // namespace ferry::cp

namespace ferry::runtime {
class ContainerRuntime;
}

namespace ferry::agent {

class PodManager;
class SandboxManager;

// A node API path, split.
struct NodeApiPath {
  enum class Kind { Unknown, Healthz, ContainerLogs, Exec, StatsSummary, Metrics };
  Kind kind = Kind::Unknown;
  std::string ns, pod, container;
};
NodeApiPath parseNodeApiPath(std::string_view path);

// Every value of `name` in a raw query string ("a=1&command=ls&command=-l"), decoded.
// exec repeats `command` once per argv element.
std::vector<std::string> queryValues(std::string_view rawQuery, std::string_view name);

// CPU usage as a rate from cumulative counters: keeps the two latest samples of each
// key at least `minInterval` apart and answers the rate between them.
class CpuRateTracker {
 public:
  explicit CpuRateTracker(std::chrono::milliseconds minInterval = std::chrono::seconds(1)) : minInterval_(minInterval) {}
  // Records a reading; returns nanocores between the two latest samples, nullopt until there are two.
  std::optional<std::uint64_t> observe(const std::string& key, std::chrono::steady_clock::time_point when,
                                       std::uint64_t cumulativeNs);
  // Drops keys not observed since `before`.
  void forgetOlderThan(std::chrono::steady_clock::time_point before);

 private:
  struct Sample {
    std::chrono::steady_clock::time_point when;
    std::uint64_t usageNs = 0;
  };
  struct Pair {
    std::optional<Sample> previous;
    Sample latest;
    std::chrono::steady_clock::time_point lastSeen;
  };
  std::chrono::milliseconds minInterval_;
  std::mutex mu_;
  std::map<std::string, Pair> samples_;
};

struct NodeApiConfig {
  std::string listen;       // host:port; empty host or 0.0.0.0 binds the node's address
  std::string nodeIP;
  std::string nodeName;
  std::string clusterCaPem;  // client certificates must chain to it
  std::string servingCertPem;  // signed by the cluster CA; empty: self-signed
  std::string servingKeyPem;
};

class NodeApi {
 public:
  // Starts serving; the sandbox manager gives pod cgroups, the pod manager logs and exec.
  static Result<std::unique_ptr<NodeApi>> start(const NodeApiConfig& config, PodManager& pods,
                                                SandboxManager& sandboxes, runtime::ContainerRuntime& runtime);
  ~NodeApi();
  int port() const;
  // Takes a CPU sample of every pod now (the agent calls this every few seconds so that
  // the first /stats/summary already has a rate).
  void sampleCpu();
  cp::HttpResponse handle(cp::HttpRequest& request);

 private:
  NodeApi(NodeApiConfig config, PodManager& pods, SandboxManager& sandboxes, runtime::ContainerRuntime& runtime);
  cp::HttpResponse serveLogs(const cp::HttpRequest& request, const NodeApiPath& path);
  cp::HttpResponse serveExec(const cp::HttpRequest& request, const NodeApiPath& path);
  cp::HttpResponse serveStats();
  cp::HttpResponse serveMetrics();
  api::Json summary();

  NodeApiConfig config_;
  PodManager& pods_;
  SandboxManager& sandboxes_;
  runtime::ContainerRuntime& runtime_;
  CpuRateTracker rates_;
  std::chrono::system_clock::time_point startTime_;
  std::unique_ptr<cp::HttpsServer> server_;
};

}  // namespace ferry::agent
