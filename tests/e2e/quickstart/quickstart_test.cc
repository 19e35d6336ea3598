// scripts/quickstart as the README tells a newcomer to run it, then the kubectl
// line it prints. The one-node form makes this machine the node, so the test runs
// it inside a network namespace of its own, with the agent's paths (cgroup root,
// run dir, BPF pins, data dirs) passed as extra flags so nothing of the machine's
// is touched; `--nodes 2` builds its namespaces itself.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>

#include "tests/e2e/harness/cluster.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ferry::e2e::sh;
using ferry::e2e::waitFor;

namespace {

std::string sourceDir() {
  const char* s = std::getenv("FERRY_SOURCE_DIR");
  return s ? s : ".";
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string shortId() {
  std::random_device rd;
  char id[9];
  std::snprintf(id, sizeof id, "%06x", rd() & 0xffffff);
  return id;
}

// The first capture of `pattern` in the file at `path`, or empty.
std::string findInFile(const std::string& path, const std::regex& pattern) {
  std::smatch m;
  std::string text = readFile(path);
  return std::regex_search(text, m, pattern) ? m[1].str() : "";
}

int countReadyNodes(const std::string& getNodesOutput) {
  int ready = 0;
  std::istringstream lines(getNodesOutput);
  for (std::string line; std::getline(lines, line);)
    if (line.find(" Ready ") != std::string::npos) ++ready;
  return ready;
}

// SIGTERM, then SIGKILL if `pid` has not exited after `grace`; returns its wait status.
int stopProcess(pid_t pid, std::chrono::seconds grace) {
  kill(pid, SIGTERM);
  int status = -1;
  if (!waitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, grace)) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  return status;
}

class QuickstartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto reason = ferry::e2e::e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
    if (access((sourceDir() + "/scripts/quickstart").c_str(), X_OK) != 0)
      GTEST_SKIP() << "scripts/quickstart not found under FERRY_SOURCE_DIR=" << sourceDir();
  }
};

}  // namespace

// The README's promise: quickstart starts, prints where the admin kubeconfig is and a
// kubectl line, and that kubectl answers — version, and the node Ready.
TEST_F(QuickstartTest, OneNodeAnswersTheKubectlLineItPrints) {
  std::string id = shortId();
  std::string ns = "fqs-" + id;
  std::string work = "/tmp/ferry-qs-" + id;
  std::string cgroupRoot = "ferry-qs-" + id;
  std::string bpffs = "/sys/fs/bpf/ferry-qs-" + id;
  fs::create_directories(work);
  // One address for the node: a veth pair with both ends in the test's namespace
  // (this kernel has no dummy links).
  auto made = sh("set -e; ip netns add " + ns + "; ip -n " + ns + " link set lo up; ip -n " + ns +
                 " link add qs0 type veth peer name qs1; ip -n " + ns + " addr add 10.252.0.1/24 dev qs0; ip -n " +
                 ns + " link set qs0 up; ip -n " + ns + " link set qs1 up");
  ASSERT_EQ(made.exitCode, 0) << made.output;

  setenv("FERRY_DATA_DIR", (work + "/server").c_str(), 1);
  std::string log = work + "/quickstart.log";
  pid_t pid = ferry::e2e::spawnInNetns(
      ns,
      {sourceDir() + "/scripts/quickstart", "--node-name", "qs-" + id, "--node-ip", "10.252.0.1",
       "--advertise-address", "10.252.0.1", "--agent-data-dir", work + "/agent", "--cgroup-root", cgroupRoot,
       "--run-dir", work + "/run", "--bpffs-dir", bpffs,
       // Never the machine's resolver: an address inside the test's own namespace.
       "--dns-upstream", "127.0.0.1:5353"},
      log);
  unsetenv("FERRY_DATA_DIR");
  ASSERT_GT(pid, 0);

  std::string kubeconfig;
  bool printed = waitFor([&] {
    kubeconfig = findInFile(log, std::regex("admin kubeconfig: (\\S+)"));
    return !kubeconfig.empty() && readFile(log).find("try:") != std::string::npos;
  }, 300s);  // setup and an up-to-date build come first
  std::string kubectlLine = findInFile(log, std::regex("try: +(kubectl [^\\n]+)"));

  ferry::e2e::CommandResult version, nodes;
  if (printed) {
    std::string inNs = "ip netns exec " + ns + " ";
    waitFor([&] {
      version = sh(inNs + "kubectl --kubeconfig " + kubeconfig + " version", 20s);
      return version.exitCode == 0;
    }, 120s);
    waitFor([&] {
      nodes = sh(inNs + kubectlLine + " --no-headers", 20s);
      return nodes.exitCode == 0 && countReadyNodes(nodes.output) == 1;
    }, 120s);
  }
  // The script ends in `exec build/ferry server`, which re-executes itself once (the
  // allocator): under its own name, not "exe" after /proc/self/exe.
  std::string comm = readFile("/proc/" + std::to_string(pid) + "/comm");
  int status = stopProcess(pid, 30s);
  ferry::e2e::removeNodeLeftovers(cgroupRoot, bpffs);
  ferry::e2e::unmountBelow(work);
  sh("ip netns delete " + ns + " 2>/dev/null");
  std::string output = readFile(log);
  fs::remove_all(work);

  ASSERT_TRUE(printed) << "quickstart never printed the kubeconfig and a kubectl line:\n" << output;
  EXPECT_EQ(kubeconfig, work + "/server/kubeconfig");
  EXPECT_EQ(kubectlLine, "kubectl --kubeconfig " + kubeconfig + " get nodes");
  EXPECT_EQ(version.exitCode, 0) << version.output << "\nquickstart:\n" << output;
  EXPECT_NE(version.output.find("Server Version: v1."), std::string::npos) << version.output;
  EXPECT_EQ(countReadyNodes(nodes.output), 1) << nodes.output << "\nquickstart:\n" << output;
  EXPECT_NE(output.find("Ferry is starting"), std::string::npos);
  // `ferry server` re-executed itself with jemalloc's thread caches (cmd/allocator.h).
  EXPECT_TRUE(std::regex_search(output, std::regex("allocator: jemalloc \\S+, [0-9]+ arenas?, thread caches on")))
      << output;
  EXPECT_EQ(comm, "ferry\n");
  // Ctrl-C ends it: the server exits on SIGTERM by itself, not by the SIGKILL fallback.
  EXPECT_TRUE(WIFEXITED(status) || (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM)) << "status " << status;
}

// `--nodes 2`: the e2e harness as a command — both nodes Ready through the printed
// kubectl line, and Ctrl-C (SIGTERM) removes the namespaces and the work dir.
TEST_F(QuickstartTest, NodesFlagBuildsAMultiNodeClusterAndRemovesItOnStop) {
  std::string log = "/tmp/ferry-qs-nodes-" + shortId() + ".log";
  pid_t pid = ferry::e2e::spawnInNetns("", {sourceDir() + "/scripts/quickstart", "--nodes", "2"}, log);
  ASSERT_GT(pid, 0);

  std::string wrapper;
  bool up = waitFor([&] {
    wrapper = findInFile(log, std::regex("try: +(\\S+/kubectl) get nodes"));
    return !wrapper.empty();
  }, 420s);
  std::string netns = findInFile(log, std::regex("node 1: (\\S+)\\)"));
  ferry::e2e::CommandResult nodes, pod;
  if (up) {
    waitFor([&] {
      nodes = sh(wrapper + " get nodes --no-headers", 20s);
      return countReadyNodes(nodes.output) == 2;
    }, 120s);
    // The imported image runs: a pod on the cluster prints what it was told to.
    pod = sh(wrapper + " run hello --image=docker.io/library/busybox:1.35 --image-pull-policy=Never "
                       "--restart=Never -- echo hello-from-ferry",
             60s);
    waitFor([&] { return sh(wrapper + " logs hello", 20s).output.find("hello-from-ferry") != std::string::npos; },
            120s);
  }
  std::string podLogs = up ? sh(wrapper + " logs hello", 20s).output : "";
  int status = stopProcess(pid, 90s);
  std::string output = readFile(log);
  fs::remove(log);

  ASSERT_TRUE(up) << "quickstart --nodes 2 never printed its kubectl line:\n" << output;
  EXPECT_EQ(countReadyNodes(nodes.output), 2) << nodes.output << "\n" << output;
  EXPECT_EQ(pod.exitCode, 0) << pod.output;
  EXPECT_NE(podLogs.find("hello-from-ferry"), std::string::npos) << podLogs;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << "\n" << output;
  ASSERT_FALSE(netns.empty()) << output;
  EXPECT_EQ(sh("ip netns list").output.find(netns), std::string::npos) << "namespace " << netns << " left behind";
  EXPECT_FALSE(fs::exists(fs::path(wrapper).parent_path())) << "work dir left behind";
}
