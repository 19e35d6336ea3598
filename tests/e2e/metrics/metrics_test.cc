// Prometheus /metrics on an agent (node 2, its own process) and on the API server:
// pod start latency, sync durations, BPF map sizes, DNS queries and their rate,
// eviction, and the API server's request latency are each exported, with values
// that show the work the test made happen (a pod started, a Service programmed,
// DNS lookups from a pod, requests to the API).
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

namespace fs = std::filesystem;
using namespace ferry::e2e;
using namespace std::chrono_literals;

namespace {

constexpr const char* kWorkload = R"(apiVersion: v1
kind: Pod
metadata:
  name: asker
  labels: {app: asker}
spec:
  nodeSelector: {kubernetes.io/hostname: node-2}
  containers:
  - name: asker
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: ["sh", "-c", "while true; do nslookup kubernetes.default.svc.cluster.local >/dev/null 2>&1; sleep 1; done"]
---
apiVersion: v1
kind: Service
metadata:
  name: asker
spec:
  selector: {app: asker}
  ports:
  - {port: 80, targetPort: 8080}
)";

// The value of the first sample line matching `series` (a regex of the name and labels).
double sample(const std::string& text, const std::string& series) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex("(^|\n)" + series + " ([0-9.eE+-]+)\n"))) return -1;
  return std::stod(m[2].str());
}

}  // namespace

TEST(Metrics, AgentAndServerExportWhatOperatorsWatch) {
  if (auto reason = e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  ClusterOptions options;
  options.nodes = 2;
  Cluster cluster(options);
  ASSERT_EQ(cluster.start(), "");
  ASSERT_EQ(cluster.importBusybox(), "");
  auto applied = cluster.kubectl("apply -f -", 60s, kWorkload);
  ASSERT_EQ(applied.exitCode, 0) << applied.output;
  ASSERT_TRUE(waitFor([&] {
    return cluster.kubectl("get pod asker -o jsonpath={.status.phase}", 30s).output == "Running";
  }, 120s)) << cluster.kubectl("describe pod asker").output;

  std::string curl = "curl -sk --cert " + cluster.dataDir() + "/tls/admin.crt --key " + cluster.dataDir() +
                     "/tls/admin.key https://10.250.0.12:10250/metrics";
  std::string agent;
  // The DNS and proxy gauges are sampled every 10 s: wait until lookups were counted.
  bool counted = waitFor([&] {
    agent = cluster.inNode(2, curl, 30s).output;
    return sample(agent, "ferry_dns_queries_total") > 0 && sample(agent, "ferry_dns_queries_per_second") > 0;
  }, 120s);
  EXPECT_TRUE(counted) << agent;

  // Pod start latency (the kubelet's metric): the asker pod was seen and started.
  EXPECT_GE(sample(agent, "kubelet_pod_start_duration_seconds_count"), 1) << agent;
  EXPECT_GT(sample(agent, "kubelet_pod_start_duration_seconds_sum"), 0) << agent;
  EXPECT_GE(sample(agent, R"(kubelet_pod_start_duration_seconds_bucket\{le="\+Inf"\})"), 1) << agent;
  // Sync durations: the proxy's resync at start and the Service/EndpointSlice updates;
  // eviction passes; pod status writes.
  EXPECT_GE(sample(agent, R"(ferry_proxy_sync_duration_seconds_count\{operation="resync"\})"), 1) << agent;
  EXPECT_GE(sample(agent, R"(ferry_proxy_sync_duration_seconds_count\{operation="service"\})"), 1) << agent;
  EXPECT_GE(sample(agent, R"(ferry_proxy_sync_duration_seconds_count\{operation="endpointslice"\})"), 1) << agent;
  EXPECT_GE(sample(agent, "ferry_agent_eviction_sync_duration_seconds_count"), 1) << agent;
  EXPECT_GE(sample(agent, "ferry_agent_pod_status_update_duration_seconds_count"), 1) << agent;
  // BPF map sizes and what they hold (kubernetes, kube-dns and asker at least).
  EXPECT_GT(sample(agent, "ferry_proxy_bpf_map_memory_bytes"), 0) << agent;
  EXPECT_GE(sample(agent, "ferry_proxy_services"), 3) << agent;
  // Eviction counters exist before anything is evicted.
  EXPECT_EQ(sample(agent, R"(kubelet_evictions\{eviction_signal="memory.available"\})"), 0) << agent;
  // The agent's own process has no API server in it.
  EXPECT_EQ(agent.find("apiserver_request_total"), std::string::npos);

  // The API server: request counts and latency by verb and resource.
  // A node renews its Lease every 10 s: on a quick run the first PUT may still be coming.
  ferry::e2e::CommandResult server;
  waitFor([&] {
    server = cluster.kubectl("get --raw /metrics", 30s);
    return server.exitCode == 0 &&
           sample(server.output, R"(apiserver_request_total\{verb="PUT",resource="leases",subresource="",code="200"\})") >= 1;
  }, 60s);
  ASSERT_EQ(server.exitCode, 0) << server.output;
  const std::string& s = server.output;
  EXPECT_NE(s.find("# TYPE apiserver_request_duration_seconds histogram"), std::string::npos);
  EXPECT_GE(sample(s, R"(apiserver_request_duration_seconds_count\{verb="LIST",resource="pods",subresource=""\})"), 1) << s;
  EXPECT_GE(sample(s, R"(apiserver_request_duration_seconds_count\{verb="PATCH",resource="pods",subresource="status"\})"), 1)
      << s;
  EXPECT_GE(sample(s, R"(apiserver_request_total\{verb="PUT",resource="leases",subresource="",code="200"\})"), 1) << s;
  EXPECT_GE(sample(s, R"(apiserver_request_total\{verb="WATCH",resource="pods",subresource="",code="200"\})"), 1) << s;
}
