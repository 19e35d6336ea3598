// Node credentials on a 2-node cluster, with stock kubectl and openssl:
// each joined node holds a client and a serving certificate signed by the cluster CA
// in its data dir (0600); the join token alone only reaches the certificate endpoint;
// a node's certificate cannot change another node's pod (403); a restarted agent reuses
// its certificate without the token; kubectl logs/exec go through the API server's
// verified TLS to the agent; an impostor at the node's address (self-signed, or another
// node's CA-signed certificate) is refused with the reason in kubectl's output.
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;
using ferry::e2e::Cluster;
using ferry::e2e::ClusterOptions;
using ferry::e2e::CommandResult;
using namespace std::chrono_literals;

namespace {

std::string readText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

unsigned modeOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 0777;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\'')) s.pop_back();
  while (!s.empty() && s.front() == '\'') s.erase(s.begin());
  return s;
}

std::string pod(const std::string& name, const std::string& node) {
  return R"(apiVersion: v1
kind: Pod
metadata:
  name: )" + name + R"(
spec:
  nodeName: )" + node + R"(
  containers:
  - name: main
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: ["sh", "-c", "echo hello-from-)" + name + R"(; while true; do sleep 1; done"]
)";
}

}  // namespace

TEST(NodeCredentials, JoinedNodesUseCaSignedCertificatesAndTheApiServerVerifiesThem) {
  if (auto reason = ferry::e2e::e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  Cluster cluster(ClusterOptions{.nodes = 2});
  ASSERT_EQ(cluster.start(), "");
  const std::string ca = cluster.dataDir() + "/tls/ca.crt";
  const std::string pki2 = cluster.workDir() + "/n2/agent/pki";
  const std::string pki1 = cluster.workDir() + "/n1/agent/pki";
  const std::string node1 = cluster.nodeName(1), node2 = cluster.nodeName(2);

  // ---- each node's data dir holds its certificates, signed by the cluster CA ----
  // (the serving one is asked for after registration, so it may follow Ready by a moment)
  bool serving = ferry::e2e::waitFor([&] {
    return fs::exists(pki1 + "/node-serving.crt") && fs::exists(pki2 + "/node-serving.crt");
  }, 60s);
  ASSERT_TRUE(serving) << "node 1:\n" << cluster.serverLog() << "\nnode 2:\n" << cluster.agentLog(2);
  for (const auto& [pki, node] : {std::pair{pki1, node1}, std::pair{pki2, node2}}) {
    for (const char* file : {"/node-client.crt", "/node-client.key", "/node-serving.crt", "/node-serving.key"})
      EXPECT_EQ(modeOf(pki + file), 0600u) << pki + file;
    auto verified = ferry::e2e::run({"openssl", "verify", "-CAfile", ca, pki + "/node-client.crt", pki + "/node-serving.crt"});
    EXPECT_EQ(verified.exitCode, 0) << verified.output;
    auto subject = ferry::e2e::run({"openssl", "x509", "-noout", "-subject", "-in", pki + "/node-client.crt"});
    EXPECT_NE(subject.output.find("O = system:nodes, CN = system:node:" + node), std::string::npos) << subject.output;
  }
  auto ip2 = cluster.kubectl("get node " + node2 + " -o jsonpath='{.status.addresses[?(@.type==\"InternalIP\")].address}'");
  ASSERT_EQ(ip2.exitCode, 0) << ip2.output;
  const std::string nodeIP2 = trimmed(ip2.output);
  auto sans = ferry::e2e::run({"openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", pki2 + "/node-serving.crt"});
  EXPECT_NE(sans.output.find("IP Address:" + nodeIP2), std::string::npos) << sans.output;
  EXPECT_NE(sans.output.find("DNS:" + node2), std::string::npos) << sans.output;
  // The agent's port shows that certificate, for its address.
  auto shown = cluster.inNode(1, "openssl s_client -connect " + nodeIP2 + ":10250 -CAfile " + ca + " -verify_ip " + nodeIP2 +
                                     " -verify_return_error </dev/null 2>&1 | grep -E 'Verify return code|subject='", 30s);
  EXPECT_NE(shown.output.find("Verify return code: 0 (ok)"), std::string::npos) << shown.output;

  // ---- the join token alone only reaches the certificate endpoint ----
  std::string token = trimmed(readText(cluster.dataDir() + "/token"));
  std::string withToken = "curl -s --cacert " + ca + " -H 'Authorization: Bearer " + node2 + ":" + token + "' ";
  auto tokenPods = cluster.inNode(1, withToken + "-w ' %{http_code}' https://10.250.0.11:6443/api/v1/pods", 30s);
  EXPECT_NE(tokenPods.output.find(" 403"), std::string::npos) << tokenPods.output;
  EXPECT_NE(tokenPods.output.find("join token only"), std::string::npos) << tokenPods.output;

  // ---- workloads on both nodes; logs and exec through the verified TLS ----
  ASSERT_EQ(cluster.importBusybox(), "");
  ASSERT_EQ(cluster.kubectl("apply -f -", 60s, pod("on-one", node1) + "---\n" + pod("on-two", node2)).exitCode, 0);
  bool running = ferry::e2e::waitFor([&] {
    auto r = cluster.kubectl("get pods on-one on-two -o jsonpath={.items[*].status.phase}");
    return r.exitCode == 0 && r.output == "Running Running";
  }, 180s);
  ASSERT_TRUE(running) << cluster.kubectl("describe pods").output << "\n" << cluster.serverLog();
  auto logsWork = [&](const std::string& name) {
    CommandResult logs;
    bool ok = ferry::e2e::waitFor([&] {
      logs = cluster.kubectl("logs " + name, 30s);
      return logs.exitCode == 0 && logs.output.find("hello-from-" + name) != std::string::npos;
    }, 60s);
    EXPECT_TRUE(ok) << name << ": " << logs.output << "\n" << cluster.serverLog();
    auto exec = cluster.kubectl("exec " + name + " -- cat /etc/hostname", 30s);
    EXPECT_EQ(exec.exitCode, 0) << exec.output;
    EXPECT_EQ(exec.output, name + "\n");
  };
  logsWork("on-one");
  logsWork("on-two");

  // ---- node 2's certificate: reads, its own pod's status, not node 1's pod ----
  std::string asNode2 = "kubectl --server https://10.250.0.11:6443 --certificate-authority " + ca +
                        " --client-certificate " + pki2 + "/node-client.crt --client-key " + pki2 + "/node-client.key ";
  auto read = cluster.inNode(1, asNode2 + "get pods -o name", 30s);
  EXPECT_EQ(read.exitCode, 0) << read.output;
  EXPECT_NE(read.output.find("pod/on-one"), std::string::npos) << read.output;
  std::string statusPatch = " --subresource=status --type=merge -p '{\"status\":{\"message\":\"from node 2\"}}'";
  auto own = cluster.inNode(1, asNode2 + "patch pod on-two" + statusPatch, 30s);
  EXPECT_EQ(own.exitCode, 0) << own.output;
  auto other = cluster.inNode(1, asNode2 + "patch pod on-one" + statusPatch, 30s);
  EXPECT_NE(other.exitCode, 0) << other.output;
  EXPECT_NE(other.output.find("Forbidden"), std::string::npos) << other.output;
  EXPECT_NE(other.output.find("not bound to node " + node2), std::string::npos) << other.output;
  auto deleteOther = cluster.inNode(1, asNode2 + "delete pod on-one --wait=false", 30s);
  EXPECT_NE(deleteOther.exitCode, 0) << deleteOther.output;
  EXPECT_NE(deleteOther.output.find("Forbidden"), std::string::npos) << deleteOther.output;
  auto otherNode = cluster.inNode(1, asNode2 + "label node " + node1 + " stolen=yes", 30s);
  EXPECT_NE(otherNode.exitCode, 0) << otherNode.output;
  EXPECT_NE(otherNode.output.find("Forbidden"), std::string::npos) << otherNode.output;

  // ---- a restarted agent reuses its certificate, with no token in reach ----
  std::string clientBefore = readText(pki2 + "/node-client.crt");
  std::string servingBefore = readText(pki2 + "/node-serving.crt");
  cluster.killAgent(2);
  std::size_t logMark = cluster.agentLog(2).size();  // the log file is appended to
  auto sinceRestart = [&] { return cluster.agentLog(2).substr(std::min(logMark, cluster.agentLog(2).size())); };
  fs::rename(cluster.dataDir() + "/token", cluster.dataDir() + "/token.away");
  ASSERT_EQ(cluster.restartAgent(2), "");
  bool ready = ferry::e2e::waitFor([&] {
    std::string log = sinceRestart();
    return log.find("node " + node2 + " ready") != std::string::npos &&
           log.find("using the node client certificate") != std::string::npos;
  }, 120s);
  fs::rename(cluster.dataDir() + "/token.away", cluster.dataDir() + "/token");
  ASSERT_TRUE(ready) << sinceRestart();
  EXPECT_EQ(sinceRestart().find("joining with the token"), std::string::npos) << sinceRestart();
  EXPECT_EQ(readText(pki2 + "/node-client.crt"), clientBefore);
  EXPECT_EQ(readText(pki2 + "/node-serving.crt"), servingBefore);
  logsWork("on-two");

  // ---- an impostor at node 2's address: refused, and kubectl says why ----
  cluster.killAgent(2);
  std::string fake = cluster.workDir() + "/impostor";
  fs::create_directories(fake);
  auto made = ferry::e2e::run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                               "-keyout", fake + "/self.key", "-out", fake + "/self.crt", "-days", "1", "-subj",
                               "/CN=system:node:" + node2, "-addext", "subjectAltName=IP:" + nodeIP2});
  ASSERT_EQ(made.exitCode, 0) << made.output;
  auto impostor = [&](const std::string& cert, const std::string& key) {
    auto started = cluster.inNode(2, "openssl s_server -quiet -accept " + nodeIP2 + ":10250 -cert " + cert + " -key " +
                                         key + " </dev/null >" + fake + "/s_server.log 2>&1 & echo $!", 30s);
    int pid = std::atoi(started.output.c_str());
    EXPECT_GT(pid, 0) << started.output;
    // Until it listens, kubectl sees "connection refused" instead.
    CommandResult logs;
    ferry::e2e::waitFor([&] {
      logs = cluster.kubectl("logs on-two", 30s);
      return logs.output.find("not trusted") != std::string::npos;
    }, 30s);
    if (pid > 0) ::kill(pid, SIGKILL);
    return logs;
  };
  auto selfSigned = impostor(fake + "/self.crt", fake + "/self.key");
  EXPECT_NE(selfSigned.exitCode, 0) << selfSigned.output;
  EXPECT_NE(selfSigned.output.find("the agent's serving certificate at " + nodeIP2 + ":10250 is not trusted"),
            std::string::npos)
      << selfSigned.output;
  EXPECT_NE(selfSigned.output.find("signed by the cluster CA"), std::string::npos) << selfSigned.output;
  // Node 1's genuine, CA-signed certificate does not name node 2's address.
  auto borrowed = impostor(pki1 + "/node-serving.crt", pki1 + "/node-serving.key");
  EXPECT_NE(borrowed.exitCode, 0) << borrowed.output;
  EXPECT_NE(borrowed.output.find("IP address mismatch"), std::string::npos) << borrowed.output;

  // The real agent again: logs and exec work as before.
  ASSERT_EQ(cluster.restartAgent(2), "");
  logsWork("on-two");
}
