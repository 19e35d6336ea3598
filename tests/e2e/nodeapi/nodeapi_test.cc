// kubectl logs, exec and top through the API server to the node's agent API, with
// stock kubectl on a one-node cluster running busybox pods.
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

namespace fs = std::filesystem;
using ferry::e2e::Cluster;
using ferry::e2e::ClusterOptions;
using namespace std::chrono_literals;

namespace {

// Prints three numbered lines, then "later" each time /tmp/go appears; burns a little CPU
// so that `kubectl top` has something to show.
constexpr const char* kPods = R"(apiVersion: v1
kind: Pod
metadata:
  name: talker
  labels: {app: talker}
spec:
  containers:
  - name: main
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: ["sh", "-c", "echo line-1; echo line-2; echo line-3; while true; do if [ -f /tmp/go ]; then rm /tmp/go; echo later; fi; i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 0.2; done"]
)";

}  // namespace

TEST(NodeApi, KubectlLogsExecTopThroughTheAgent) {
  if (auto reason = ferry::e2e::e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  Cluster cluster(ClusterOptions{.nodes = 1});
  ASSERT_EQ(cluster.start(), "");
  ASSERT_EQ(cluster.importBusybox(), "");

  auto applied = cluster.kubectl("apply -f -", 60s, kPods);
  ASSERT_EQ(applied.exitCode, 0) << applied.output;
  bool running = ferry::e2e::waitFor([&] {
    auto r = cluster.kubectl("get pod talker -o jsonpath={.status.phase}");
    return r.exitCode == 0 && r.output == "Running";
  }, 180s);
  ASSERT_TRUE(running) << cluster.kubectl("describe pod talker").output << "\n" << cluster.serverLog();

  // ---- logs ----
  ferry::e2e::CommandResult logs;
  bool allLines = ferry::e2e::waitFor([&] {
    logs = cluster.kubectl("logs talker", 30s);
    return logs.exitCode == 0 && logs.output.find("line-3") != std::string::npos;
  }, 60s);
  ASSERT_TRUE(allLines) << logs.output << "\n" << cluster.serverLog();
  EXPECT_EQ(logs.output, "line-1\nline-2\nline-3\n");
  auto tail = cluster.kubectl("logs --tail=2 talker", 30s);
  EXPECT_EQ(tail.exitCode, 0) << tail.output;
  EXPECT_EQ(tail.output, "line-2\nline-3\n");
  auto stamped = cluster.kubectl("logs --timestamps --tail=1 talker", 30s);
  EXPECT_TRUE(std::regex_search(stamped.output, std::regex(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z line-3\n$)")))
      << stamped.output;
  auto noSuchContainer = cluster.kubectl("logs talker -c nope", 30s);
  EXPECT_NE(noSuchContainer.exitCode, 0) << noSuchContainer.output;

  // ---- exec ----
  auto hostname = cluster.kubectl("exec talker -- cat /etc/hostname", 30s);
  EXPECT_EQ(hostname.exitCode, 0) << hostname.output << "\n" << cluster.serverLog();
  EXPECT_EQ(hostname.output, "talker\n");
  auto both = cluster.kubectl("exec talker -- sh -c 'echo to-out; echo to-err >&2'", 30s);
  EXPECT_EQ(both.exitCode, 0) << both.output;
  EXPECT_NE(both.output.find("to-out"), std::string::npos) << both.output;
  EXPECT_NE(both.output.find("to-err"), std::string::npos) << both.output;
  auto wrongContainer = cluster.kubectl("exec talker -c nope -- true", 30s);
  EXPECT_NE(wrongContainer.exitCode, 0) << wrongContainer.output;
  EXPECT_NE(wrongContainer.output.find("nope"), std::string::npos) << wrongContainer.output;
  auto exit3 = cluster.kubectl("exec talker -- sh -c 'exit 3'", 30s);
  EXPECT_EQ(exit3.exitCode, 3) << exit3.output;
  auto withStdin = cluster.kubectl("exec -i talker -- sh -c 'tr a-z A-Z'", 30s, "hello from stdin\n");
  EXPECT_EQ(withStdin.exitCode, 0) << withStdin.output;
  EXPECT_EQ(withStdin.output, "HELLO FROM STDIN\n");

  // A terminal: kubectl -it needs one itself, so it runs under script(1).
  auto tty = cluster.inNode(1, "script -qec \"kubectl --kubeconfig " + cluster.dataDir() +
                                   "/kubeconfig exec -it talker -- sh -c 'test -t 0 && test -t 1 && echo on-a-terminal; echo tty-done'\" /dev/null", 60s);
  EXPECT_EQ(tty.exitCode, 0) << tty.output;
  EXPECT_NE(tty.output.find("on-a-terminal"), std::string::npos) << tty.output;
  EXPECT_NE(tty.output.find("tty-done"), std::string::npos) << tty.output;

  // ---- logs -f: a line written after the follow started arrives, then kubectl is killed ----
  std::string followOut = cluster.workDir() + "/follow.out";
  std::string kubectl = "kubectl --kubeconfig " + cluster.dataDir() + "/kubeconfig ";
  auto follow = cluster.inNode(1,
      kubectl + "logs -f talker > " + followOut + " 2>&1 & KPID=$!; "
      "for i in $(seq 100); do grep -q line-3 " + followOut + " && break; sleep 0.2; done; " +
      kubectl + "exec talker -- touch /tmp/go; "
      "for i in $(seq 150); do grep -q later " + followOut + " && break; sleep 0.2; done; "
      "kill $KPID; wait $KPID; cat " + followOut,
      90s);
  EXPECT_NE(follow.output.find("line-1\nline-2\nline-3\n"), std::string::npos) << follow.output;
  EXPECT_NE(follow.output.find("later\n"), std::string::npos) << follow.output;

  // ---- the agent port refuses callers without the API server's certificate ----
  auto nodeIP = cluster.kubectl("get node " + cluster.nodeName(1) +
                                " -o jsonpath='{.status.addresses[?(@.type==\"InternalIP\")].address}'");
  ASSERT_EQ(nodeIP.exitCode, 0) << nodeIP.output;
  auto port = cluster.kubectl("get node " + cluster.nodeName(1) + " -o jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}");
  EXPECT_EQ(port.output, "10250");
  std::string base = "https://" + nodeIP.output + ":10250";
  auto anonymous = cluster.inNode(1, "curl -sk -o /dev/null -w '%{http_code}' " + base + "/containerLogs/default/talker/main", 30s);
  EXPECT_EQ(anonymous.output, "401") << anonymous.output;
  auto anonymousExec = cluster.inNode(1, "curl -sk -o /dev/null -w '%{http_code}' '" + base + "/exec/default/talker/main?command=id'", 30s);
  EXPECT_EQ(anonymousExec.output, "401") << anonymousExec.output;
  auto health = cluster.inNode(1, "curl -sk " + base + "/healthz", 30s);
  EXPECT_EQ(health.output, "ok");
  // An admin's certificate (O=system:masters, signed by the cluster CA) is let in.
  std::string adminCurl = "curl -sk --cert " + cluster.dataDir() + "/tls/admin.crt --key " + cluster.dataDir() + "/tls/admin.key ";
  auto metrics = cluster.inNode(1, adminCurl + base + "/metrics", 30s);
  EXPECT_NE(metrics.output.find("\nferry_agent_pods 1\n"), std::string::npos) << metrics.output;
  EXPECT_NE(metrics.output.find("# TYPE ferry_agent_exec_sessions_total counter"), std::string::npos) << metrics.output;
  auto summary = cluster.inNode(1, adminCurl + base + "/stats/summary", 30s);
  EXPECT_NE(summary.output.find(R"("podRef":{"name":"talker","namespace":"default")"), std::string::npos) << summary.output;
  EXPECT_NE(summary.output.find(R"("workingSetBytes":)"), std::string::npos) << summary.output;

  // ---- top: needs two CPU samples on the agent ----
  ferry::e2e::CommandResult topPods, topNodes;
  bool podNumbers = ferry::e2e::waitFor([&] {
    topPods = cluster.kubectl("top pods", 30s);
    return topPods.exitCode == 0 && std::regex_search(topPods.output, std::regex(R"(talker\s+\d+m\s+\d+Mi)"));
  }, 120s);
  EXPECT_TRUE(podNumbers) << topPods.output;
  bool nodeNumbers = ferry::e2e::waitFor([&] {
    topNodes = cluster.kubectl("top nodes", 30s);
    return topNodes.exitCode == 0 &&
           std::regex_search(topNodes.output, std::regex(cluster.nodeName(1) + R"(\s+\d+m\s+\d+%\s+\d+Mi\s+\d+%)"));
  }, 120s);
  EXPECT_TRUE(nodeNumbers) << topNodes.output;
}
