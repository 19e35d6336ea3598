// Pod lifecycle as a user sees it through stock kubectl, on a one-node cluster:
// - a container trapping SIGTERM gets it and finishes its handler within its grace; one
//   ignoring it is killed at the deadline `kubectl delete --grace-period=N` set (well
//   before its own 60 s);
// - a failing readiness probe takes the pod out of its Service's EndpointSlice (listed
//   not ready) and a passing one puts it back;
// - emptyDir with medium Memory is a tmpfs, hostPath shows the node's directory;
// - service link variables of a Service created before the pod;
// - kubectl logs -c CONTAINER and --previous after a restart.
#include "tests/e2e/cluster/cluster_checks.h"
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace ferry::e2e;
using namespace std::chrono_literals;

namespace {

std::string manifests(const std::string& hostDir) {
  return R"(apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  selector: {app: ready}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: trapper}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: main
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: [sh, -c, "trap 'echo got-term; sleep 2; echo handler-done; exit 0' TERM; echo ready; while true; do sleep 1; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 60
  containers:
  - name: main
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: [sh, -c, "trap '' TERM; echo ignoring; while true; do sleep 1; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: ready, labels: {app: ready}}
spec:
  containers:
  - name: web
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: [sh, -c, "mkdir -p /www && echo ok > /www/index.html && touch /tmp/healthy && exec httpd -f -p 8080 -h /www"]
    ports: [{containerPort: 8080}]
    readinessProbe:
      exec: {command: [test, -f, /tmp/healthy]}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {name: volumes}
spec:
  restartPolicy: Always
  volumes:
  - {name: scratch, emptyDir: {medium: Memory}}
  - {name: host, hostPath: {path: )" + hostDir + R"(, type: Directory}}
  containers:
  - name: main
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: [sh, -c, "grep ' /scratch ' /proc/mounts; cat /host/marker; env | grep ^BACKEND_ | sort; echo run; sleep 3; exit 1"]
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
    - {name: host, mountPath: /host, readOnly: true}
  - name: side
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: [sh, -c, "echo from-the-sidecar; sleep 3600"]
)";
}

std::string jsonpath(Cluster& c, const std::string& pod, const std::string& path) {
  return c.kubectl("get pod " + pod + " -o 'jsonpath={" + path + "}'", 20s).output;
}

}  // namespace

TEST(RuntimeLifecycle, TerminationReadinessVolumesServiceLinksAndLogs) {
  if (auto reason = e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  Cluster cluster(ClusterOptions{.nodes = 1});
  ASSERT_EQ(cluster.start(), "");
  ASSERT_EQ(cluster.importBusybox(), "");
  std::string hostDir = cluster.workDir() + "/hostdir";
  fs::create_directories(hostDir);
  std::ofstream(hostDir + "/marker") << "from-the-node\n";

  // The Service first: its variables are in the pods created after it.
  auto applied = cluster.kubectl("apply -f -", 60s, manifests(hostDir));
  ASSERT_EQ(applied.exitCode, 0) << applied.output;
  for (const char* pod : {"trapper", "stubborn", "ready", "volumes"})
    ASSERT_TRUE(waitFor([&] { return jsonpath(cluster, pod, ".status.phase") == "Running"; }, 120s))
        << pod << "\n" << cluster.kubectl(std::string("describe pod ") + pod).output;

  // ---- volumes and service links (the first run of "volumes"' main container) ----
  std::string out;
  ASSERT_TRUE(waitFor([&] {
    out = cluster.kubectl("logs volumes -c main", 20s).output;
    return out.find("run") != std::string::npos;
  }, 60s)) << out;
  EXPECT_NE(out.find(" /scratch tmpfs "), std::string::npos) << out;
  EXPECT_NE(out.find("from-the-node"), std::string::npos) << out;
  std::string backendIp = cluster.kubectl("get service backend -o jsonpath={.spec.clusterIP}").output;
  ASSERT_FALSE(backendIp.empty());
  EXPECT_NE(out.find("BACKEND_SERVICE_HOST=" + backendIp), std::string::npos) << out;
  EXPECT_NE(out.find("BACKEND_SERVICE_PORT=80"), std::string::npos) << out;
  EXPECT_NE(out.find("BACKEND_SERVICE_PORT_HTTP=80"), std::string::npos) << out;
  EXPECT_NE(out.find("BACKEND_PORT=tcp://" + backendIp + ":80"), std::string::npos) << out;
  EXPECT_NE(out.find("BACKEND_PORT_80_TCP_ADDR=" + backendIp), std::string::npos) << out;
  // -c picks the container.
  auto side = cluster.kubectl("logs volumes -c side", 20s);
  EXPECT_EQ(side.output, "from-the-sidecar\n");
  // --previous: the instance before the restart.
  ASSERT_TRUE(waitFor([&] { return jsonpath(cluster, "volumes", ".status.containerStatuses[?(@.name==\"main\")].restartCount") >= "1"; }, 90s))
      << cluster.kubectl("get pod volumes -o yaml").output;
  auto previous = cluster.kubectl("logs volumes -c main --previous", 20s);
  EXPECT_EQ(previous.exitCode, 0) << previous.output;
  EXPECT_NE(previous.output.find("from-the-node"), std::string::npos) << previous.output;
  auto noPrevious = cluster.kubectl("logs volumes -c side --previous", 20s);
  EXPECT_NE(noPrevious.exitCode, 0) << noPrevious.output;

  // ---- readiness drives the EndpointSlice ----
  std::string readyIp = jsonpath(cluster, "ready", ".status.podIP");
  ASSERT_TRUE(waitFor([&] { return readyEndpoints(cluster, "backend") == std::vector<std::string>{readyIp}; }, 60s))
      << cluster.kubectl("get endpointslices -o yaml").output;
  ASSERT_EQ(cluster.kubectl("exec ready -- rm /tmp/healthy", 30s).exitCode, 0);
  ASSERT_TRUE(waitFor([&] {
    return jsonpath(cluster, "ready", ".status.conditions[?(@.type==\"Ready\")].status") == "False" &&
           readyEndpoints(cluster, "backend").empty();
  }, 60s)) << cluster.kubectl("get endpointslices -o yaml").output;
  EXPECT_EQ(jsonpath(cluster, "ready", ".status.phase"), "Running");
  ASSERT_EQ(cluster.kubectl("exec ready -- touch /tmp/healthy", 30s).exitCode, 0);
  EXPECT_TRUE(waitFor([&] { return readyEndpoints(cluster, "backend") == std::vector<std::string>{readyIp}; }, 60s))
      << cluster.kubectl("get endpointslices -o yaml").output;

  // ---- graceful termination ----
  // The trapping container runs its handler (2 s) and exits within its 30 s grace.
  auto started = std::chrono::steady_clock::now();
  auto del = cluster.kubectl("delete pod trapper --wait=false", 30s);
  ASSERT_EQ(del.exitCode, 0) << del.output;
  ASSERT_TRUE(waitFor([&] { return cluster.kubectl("get pod trapper", 20s).exitCode != 0; }, 60s));
  // Its log is removed with the pod: the handler's output is checked through the time it
  // took — at least its 2 s sleep, far less than the 30 s grace.
  auto trapperTook = std::chrono::steady_clock::now() - started;
  EXPECT_GE(trapperTook, 2s);
  EXPECT_LT(trapperTook, 28s);
  // The one ignoring SIGTERM (grace 60 s) is killed at the 3 s the delete asked for.
  started = std::chrono::steady_clock::now();
  del = cluster.kubectl("delete pod stubborn --grace-period=3 --wait=false", 30s);
  ASSERT_EQ(del.exitCode, 0) << del.output;
  EXPECT_EQ(cluster.kubectl("get pod stubborn -o jsonpath={.metadata.deletionGracePeriodSeconds}").output, "3");
  ASSERT_TRUE(waitFor([&] { return cluster.kubectl("get pod stubborn", 20s).exitCode != 0; }, 50s))
      << "not killed at the 3 s deadline";
  auto stubbornTook = std::chrono::steady_clock::now() - started;
  EXPECT_GE(stubbornTook, 2s) << "killed before its grace period";
}
