// Image pulls as a user sees them through kubectl, on a one-node cluster with a registry
// (Debian's docker-registry) the test starts inside the node's network namespace: the
// Pulling/Pulled events (downloaded, or already present on the machine), ErrImagePull
// then ImagePullBackOff with a back-off before the next pull, ErrImageNeverPull and
// InvalidImageName, each with the kubelet's Events. Then the agent's image GC (thresholds
// from its flags): an image no pod uses is removed, the ones pods use are kept. And a
// private registry (htpasswd): a pod pulls with its imagePullSecrets (a Secret made by
// `kubectl create secret docker-registry`) or with the node's credential file
// (--registry-config), and without either the pull is refused.
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;
using namespace ferry::e2e;
using namespace std::chrono_literals;
using Json = nlohmann::json;

namespace {

constexpr const char* kPods = R"(apiVersion: v1
kind: Pod
metadata: {name: pulled}
spec:
  containers:
  - {name: main, image: "127.0.0.1:5000/busybox:1", command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: present}
spec:
  containers:
  - {name: main, image: "docker.io/library/busybox:1.35", command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: missing}
spec:
  containers:
  - {name: main, image: "127.0.0.1:5000/missing:1", command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: never}
spec:
  containers:
  - {name: main, image: "127.0.0.1:5000/never-here:1", imagePullPolicy: Never, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: invalid}
spec:
  containers:
  - {name: main, image: "127.0.0.1:5000/BusyBox:1", command: [sleep, "3600"]}
)";

bool haveProgram(const std::string& name) { return sh("command -v " + name + " >/dev/null 2>&1").exitCode == 0; }

long long epochSeconds(const std::string& text) {
  std::tm tm{};
  if (text.empty() || strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm) == nullptr) return -1;
  return static_cast<long long>(timegm(&tm));
}

struct Event {
  std::string reason, message, type;
  long long time = -1;
};

class ImagesE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (auto reason = e2eUnavailableReason(); !reason.empty()) {
      skip_ = reason;
      return;
    }
    for (const char* tool : {"docker-registry", "skopeo", "curl", "htpasswd"})
      if (!haveProgram(tool)) {
        skip_ = std::string(tool) + " is not installed";
        return;
      }
    // The node's registry credentials (--registry-config → credentialFile): scoped to
    // the private registry's "node/" repositories, so "team/" ones need a pod's pull secret.
    char authTemplate[] = "/tmp/ferry-images-e2e-auth-XXXXXX";
    if (!mkdtemp(authTemplate)) {
      failure_ = "mkdtemp failed";
      return;
    }
    authDir_ = authTemplate;
    std::ofstream(authDir_ + "/node-auth.json")
        << R"({"auths": {"127.0.0.1:5001/node": {"auth": "YWxpY2U6d29uZGVybGFuZA=="}}})";  // alice:wonderland
    std::ofstream(authDir_ + "/registries.json") << R"({"credentialFile": ")" << authDir_ << R"(/node-auth.json"})";
    ClusterOptions options;
    // GC every second; an image is kept 30 s after its last use (the import), so the
    // pods below are created before any image they use could go. A 1% high threshold is
    // crossed on any disk; 0% is never reached: every unused image goes.
    options.agentFlags = {"--image-gc-period", "1", "--image-minimum-gc-age", "30", "--image-gc-high-threshold", "1",
                          "--image-gc-low-threshold", "0", "--registry-config", authDir_ + "/registries.json"};
    cluster_ = new Cluster(options);
    if (auto err = cluster_->start(); !err.empty()) {
      failure_ = err;
      return;
    }
    std::string images = cluster_->workDir() + "/images";
    fs::create_directories(images);
    std::string busybox = makeBusyboxImage(images);
    const char* source = std::getenv("FERRY_SOURCE_DIR");
    std::string make = std::string(source ? source : ".") + "/tests/images/make-busybox-oci ";
    if (busybox.empty() ||
        sh(make + images + "/unused.tar --ref example.com/unused:1 --marker unused").exitCode != 0) {
      failure_ = "could not build the busybox test images";
      return;
    }
    // The registry listens on 127.0.0.1:5000 inside node 1's network namespace, where
    // the agent pulls from it (plain HTTP for a loopback registry).
    std::string reg = cluster_->workDir() + "/registry";
    fs::create_directories(reg + "/storage");
    std::ofstream(reg + "/config.yml") << "version: 0.1\nlog: {level: warn}\nstorage: {filesystem: {rootdirectory: "
                                       << reg << "/storage}, delete: {enabled: true}}\nhttp: {addr: 127.0.0.1:5000}\n";
    registryPid_ = startRegistry(reg);
    // A private one (htpasswd) on 127.0.0.1:5001.
    std::string priv = cluster_->workDir() + "/private-registry";
    fs::create_directories(priv + "/storage");
    if (sh("htpasswd -Bbn alice wonderland > " + priv + "/htpasswd").exitCode != 0) {
      failure_ = "htpasswd failed";
      return;
    }
    std::ofstream(priv + "/config.yml") << "version: 0.1\nlog: {level: warn}\nstorage: {filesystem: {rootdirectory: "
                                        << priv << "/storage}, delete: {enabled: true}}\nhttp: {addr: 127.0.0.1:5001}\n"
                                        << "auth: {htpasswd: {realm: test, path: " << priv << "/htpasswd}}\n";
    privateRegistryPid_ = startRegistry(priv);
    if (!waitFor([&] { return cluster_->inNode(1, "curl -sf http://127.0.0.1:5000/v2/ >/dev/null").exitCode == 0; }, 60s)) {
      failure_ = "the registry did not come up";
      return;
    }
    // 401 without credentials: it is up and asks for them.
    if (!waitFor([&] {
          return cluster_->inNode(1, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5001/v2/").output == "401";
        }, 60s)) {
      failure_ = "the private registry did not come up";
      return;
    }
    for (const std::string& destination :
         {std::string("127.0.0.1:5000/busybox:1"), std::string("127.0.0.1:5001/node/busybox:1 --dest-creds alice:wonderland"),
          std::string("127.0.0.1:5001/team/secret:1 --dest-creds alice:wonderland")}) {
      auto space = destination.find(' ');
      std::string where = destination.substr(0, space), creds = space == std::string::npos ? "" : destination.substr(space);
      auto pushed = cluster_->inNode(1, "skopeo copy --insecure-policy --dest-tls-verify=false" + creds + " oci-archive:" +
                                            busybox + " docker://" + where);
      if (pushed.exitCode != 0) {
        failure_ = "push " + where + ": " + pushed.output;
        return;
      }
    }
    for (const auto& archive : {busybox, images + "/unused.tar"})
      if (auto err = cluster_->importImage(archive); !err.empty()) {
        failure_ = err;
        return;
      }
    auto applied = cluster_->kubectl("apply -f -", 60s, kPods);
    if (applied.exitCode != 0) failure_ = "apply: " + applied.output;
  }

  // docker-registry serving `dir`/config.yml inside node 1's network namespace.
  static pid_t startRegistry(const std::string& dir) {
    pid_t pid = fork();
    if (pid == 0) {
      int nsfd = open(("/run/netns/" + cluster_->nodeNamespace(1)).c_str(), O_RDONLY | O_CLOEXEC);
      if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) _exit(126);
      int log = open((dir + "/registry.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      dup2(log, 1);
      dup2(log, 2);
      execlp("docker-registry", "docker-registry", "serve", (dir + "/config.yml").c_str(), nullptr);
      _exit(127);
    }
    return pid;
  }

  static void TearDownTestSuite() {
    for (pid_t pid : {registryPid_, privateRegistryPid_})
      if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    delete cluster_;
    cluster_ = nullptr;
    if (!authDir_.empty()) fs::remove_all(authDir_);
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(failure_.empty()) << failure_;
  }

  static std::vector<Event> events(const std::string& pod) {
    auto r = cluster_->kubectl("get events --field-selector involvedObject.name=" + pod + " -o json", 30s);
    std::vector<Event> out;
    Json list = Json::parse(r.output, nullptr, false);
    if (list.is_discarded()) return out;
    for (const auto& e : list.value("items", Json::array()))
      out.push_back({e.value("reason", ""), e.value("message", ""), e.value("type", ""),
                     epochSeconds(e.value("firstTimestamp", ""))});
    std::stable_sort(out.begin(), out.end(), [](const Event& a, const Event& b) { return a.time < b.time; });
    return out;
  }
  static std::string describe(const std::vector<Event>& list) {
    std::string s;
    for (const auto& e : list) s += std::to_string(e.time) + " " + e.type + " " + e.reason + ": " + e.message + "\n";
    return s;
  }
  static bool has(const std::vector<Event>& list, const std::string& reason, const std::string& messagePart,
                  const std::string& type = "") {
    for (const auto& e : list)
      if (e.reason == reason && e.message.find(messagePart) != std::string::npos && (type.empty() || e.type == type))
        return true;
    return false;
  }
  static std::string waitingReason(const std::string& pod) {
    return cluster_->kubectl("get pod " + pod + " -o jsonpath={.status.containerStatuses[0].state.waiting.reason}", 20s)
        .output;
  }
  static std::string phase(const std::string& pod) {
    return cluster_->kubectl("get pod " + pod + " -o jsonpath={.status.phase}", 20s).output;
  }

  static inline Cluster* cluster_ = nullptr;
  static inline std::string skip_, failure_;
  static inline pid_t registryPid_ = -1, privateRegistryPid_ = -1;
  static inline std::string authDir_;
};

TEST_F(ImagesE2E, PullEventsAndFailuresAsKubernetesShowsThem) {
  // Pulled from the registry.
  ASSERT_TRUE(waitFor([] { return phase("pulled") == "Running"; }, 90s))
      << cluster_->kubectl("describe pod pulled").output;
  auto pulled = events("pulled");
  EXPECT_TRUE(has(pulled, "Pulling", "Pulling image \"127.0.0.1:5000/busybox:1\"", "Normal")) << describe(pulled);
  EXPECT_TRUE(has(pulled, "Pulled", "Successfully pulled image \"127.0.0.1:5000/busybox:1\" in ", "Normal"))
      << describe(pulled);

  // Imported beforehand: no pull.
  ASSERT_TRUE(waitFor([] { return phase("present") == "Running"; }, 90s))
      << cluster_->kubectl("describe pod present").output;
  auto present = events("present");
  EXPECT_TRUE(has(present, "Pulled", "Container image \"docker.io/library/busybox:1.35\" already present on machine"))
      << describe(present);
  EXPECT_FALSE(has(present, "Pulling", "")) << describe(present);

  // Not in the registry: ErrImagePull, then ImagePullBackOff, and the next pull only after
  // the back-off.
  ASSERT_TRUE(waitFor([] { return waitingReason("missing") == "ImagePullBackOff"; }, 90s))
      << cluster_->kubectl("get pod missing -o yaml").output;
  auto table = cluster_->kubectl("get pod missing --no-headers");
  EXPECT_TRUE(table.output.find("ImagePullBackOff") != std::string::npos ||
              table.output.find("ErrImagePull") != std::string::npos)
      << table.output;
  std::vector<Event> missing;
  bool secondPull = waitFor([&] {
    missing = events("missing");
    int pulls = 0;
    for (const auto& e : missing) pulls += e.reason == "Pulling";
    return pulls >= 2;
  }, 90s);
  ASSERT_TRUE(secondPull) << describe(missing);
  EXPECT_TRUE(has(missing, "Failed", "Failed to pull image \"127.0.0.1:5000/missing:1\"", "Warning")) << describe(missing);
  EXPECT_TRUE(has(missing, "Failed", "Error: ErrImagePull", "Warning")) << describe(missing);
  EXPECT_TRUE(has(missing, "BackOff", "Back-off pulling image \"127.0.0.1:5000/missing:1\"")) << describe(missing);
  EXPECT_TRUE(has(missing, "Failed", "Error: ImagePullBackOff", "Warning")) << describe(missing);
  std::vector<long long> pullTimes;
  for (const auto& e : missing)
    if (e.reason == "Pulling") pullTimes.push_back(e.time);
  // The kubelet's first image back-off is 10 s (timestamps have seconds).
  ASSERT_GE(pullTimes.size(), 2u);
  EXPECT_GE(pullTimes[1] - pullTimes[0], 9) << describe(missing);
  EXPECT_EQ(phase("missing"), "Pending");

  // Never, and not on the node.
  ASSERT_TRUE(waitFor([] { return waitingReason("never") == "ErrImageNeverPull"; }, 60s))
      << cluster_->kubectl("get pod never -o yaml").output;
  auto never = events("never");
  EXPECT_TRUE(has(never, "ErrImageNeverPull",
                  "Container image \"127.0.0.1:5000/never-here:1\" is not present with pull policy of Never", "Warning"))
      << describe(never);
  EXPECT_TRUE(has(never, "Failed", "Error: ErrImageNeverPull")) << describe(never);
  EXPECT_FALSE(has(never, "Pulling", "")) << describe(never);

  // Not a valid reference.
  ASSERT_TRUE(waitFor([] { return waitingReason("invalid") == "InvalidImageName"; }, 60s))
      << cluster_->kubectl("get pod invalid -o yaml").output;
  auto invalid = events("invalid");
  EXPECT_TRUE(has(invalid, "InspectFailed", "Failed to apply default image tag \"127.0.0.1:5000/BusyBox:1\"", "Warning"))
      << describe(invalid);
  EXPECT_TRUE(has(invalid, "Failed", "Error: InvalidImageName")) << describe(invalid);
  auto rows = cluster_->kubectl("get pods never invalid --no-headers");
  EXPECT_NE(rows.output.find("ErrImageNeverPull"), std::string::npos) << rows.output;
  EXPECT_NE(rows.output.find("InvalidImageName"), std::string::npos) << rows.output;
}

TEST_F(ImagesE2E, PrivateRegistryWithThePodsPullSecretOrTheNodesCredentials) {
  // A kubernetes.io/dockerconfigjson Secret made by stock kubectl.
  auto secret = cluster_->kubectl("create secret docker-registry regcred --docker-server=127.0.0.1:5001 "
                                  "--docker-username=alice --docker-password=wonderland");
  ASSERT_EQ(secret.exitCode, 0) << secret.output;
  // Always: each pod goes to the registry, so the one without a secret cannot ride on the
  // image another pod pulled (which IfNotPresent would allow, as in Kubernetes).
  constexpr const char* kPrivatePods = R"(apiVersion: v1
kind: Pod
metadata: {name: with-secret}
spec:
  imagePullSecrets: [{name: regcred}]
  containers:
  - {name: main, image: "127.0.0.1:5001/team/secret:1", imagePullPolicy: Always, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: without-secret}
spec:
  containers:
  - {name: main, image: "127.0.0.1:5001/team/secret:1", imagePullPolicy: Always, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: node-credentials}
spec:
  containers:
  - {name: main, image: "127.0.0.1:5001/node/busybox:1", imagePullPolicy: Always, command: [sleep, "3600"]}
)";
  auto applied = cluster_->kubectl("apply -f -", 60s, kPrivatePods);
  ASSERT_EQ(applied.exitCode, 0) << applied.output;
  for (const char* pod : {"with-secret", "node-credentials"}) {
    EXPECT_TRUE(waitFor([&] { return phase(pod) == "Running"; }, 90s))
        << cluster_->kubectl(std::string("describe pod ") + pod).output;
    EXPECT_TRUE(has(events(pod), "Pulled", "Successfully pulled image")) << describe(events(pod));
  }
  ASSERT_TRUE(waitFor([] {
    std::string r = waitingReason("without-secret");
    return r == "ErrImagePull" || r == "ImagePullBackOff";
  }, 90s)) << cluster_->kubectl("get pod without-secret -o yaml").output;
  std::vector<Event> refused;
  EXPECT_TRUE(waitFor([&] {
    refused = events("without-secret");
    return has(refused, "Failed", "Failed to pull image \"127.0.0.1:5001/team/secret:1\"", "Warning");
  }, 60s)) << describe(refused);
  EXPECT_EQ(phase("without-secret"), "Pending");
}

TEST_F(ImagesE2E, ImageGcRemovesTheUnusedImageAndKeepsTheUsedOnes) {
  std::string dataDir = cluster_->workDir() + "/n1/agent";
  auto list = [&] { return run({std::getenv("FERRY_BINARY") ? std::getenv("FERRY_BINARY") : "build/ferry", "image", "ls",
                                "--data-dir", dataDir}).output; };
  bool removed = waitFor([&] { return list().find("example.com/unused") == std::string::npos; }, 120s);
  std::string images = list();
  ASSERT_TRUE(removed) << images << "\n" << cluster_->serverLog().substr(0, 4000);
  EXPECT_NE(images.find("busybox"), std::string::npos) << images;
  EXPECT_NE(images.find("127.0.0.1:5000/busybox"), std::string::npos) << images;
  std::string log = cluster_->serverLog(), gcLines;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);)
    if (line.find("image GC") != std::string::npos && gcLines.size() < 2000) gcLines += line + "\n";
  EXPECT_NE(log.find("image GC removed example.com/unused:1"), std::string::npos) << gcLines;
  // The pods using the kept images still run.
  EXPECT_EQ(phase("present"), "Running");
  EXPECT_EQ(phase("pulled"), "Running");
}

}  // namespace
