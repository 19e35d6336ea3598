// The HorizontalPodAutoscaler end to end with real agents: pods burn CPU, the agent's
// /stats/summary reports it, the API server's metrics.k8s.io serves it, the HPA
// controller reads it (through MetricsApi, not the store) and scales the Deployment.
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace fs = std::filesystem;
using ferry::e2e::Cluster;
using ferry::e2e::ClusterOptions;
using namespace std::chrono_literals;

namespace {

// Each replica asks for 100m and may use 200m (a busy loop): utilization ~200% of the
// request against a 50% target, so the HPA wants 4 and stops at maxReplicas 3. The
// limit keeps the test from taking the machine's cores.
constexpr const char* kManifests = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: burner
spec:
  replicas: 1
  selector:
    matchLabels: {app: burner}
  template:
    metadata:
      labels: {app: burner}
    spec:
      containers:
      - name: main
        image: docker.io/library/busybox:1.35
        imagePullPolicy: Never
        command: ["sh", "-c", "while true; do :; done"]
        resources:
          requests: {cpu: 100m, memory: 16Mi}
          limits: {cpu: 200m, memory: 32Mi}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: burner
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burner}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {type: Utilization, averageUtilization: 50}
)";

}  // namespace

TEST(Hpa, ScalesADeploymentOnCpuReportedByTheAgents) {
  if (auto reason = ferry::e2e::e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  Cluster cluster(ClusterOptions{.nodes = 1});
  ASSERT_EQ(cluster.start(), "");
  ASSERT_EQ(cluster.importBusybox(), "");

  auto applied = cluster.kubectl("apply -f -", 60s, kManifests);
  ASSERT_EQ(applied.exitCode, 0) << applied.output;

  // The agent needs two CPU samples for a rate, metrics are cached a few seconds and the
  // HPA syncs every 15 s: generous deadlines.
  ferry::e2e::CommandResult hpa;
  bool measured = ferry::e2e::waitFor([&] {
    hpa = cluster.kubectl("get hpa burner -o jsonpath={.status.currentMetrics[0].resource.current.averageUtilization}");
    return hpa.exitCode == 0 && !hpa.output.empty() && std::stoi(hpa.output) > 50;
  }, 240s);
  ASSERT_TRUE(measured) << "utilization: " << hpa.output << "\n"
                        << cluster.kubectl("describe hpa burner").output << "\n"
                        << cluster.kubectl("top pods").output << "\n" << cluster.serverLog();

  ferry::e2e::CommandResult replicas;
  bool scaled = ferry::e2e::waitFor([&] {
    replicas = cluster.kubectl("get deployment burner -o jsonpath={.spec.replicas}");
    return replicas.exitCode == 0 && replicas.output == "3";
  }, 180s);
  EXPECT_TRUE(scaled) << "replicas: " << replicas.output << "\n" << cluster.kubectl("describe hpa burner").output;

  // Never above maxReplicas, and the scaling is recorded as Kubernetes does.
  auto described = cluster.kubectl("describe hpa burner");
  EXPECT_NE(described.output.find("SuccessfulRescale"), std::string::npos) << described.output;
  auto table = cluster.kubectl("get hpa burner");
  EXPECT_NE(table.output.find("/50%"), std::string::npos) << table.output;
  EXPECT_EQ(cluster.kubectl("get deployment burner -o jsonpath={.spec.replicas}").output, "3");
}
