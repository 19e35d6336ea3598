// The pod state machine with fake containers and a fake clock: no processes, no sleeping.
#include "agent/runtime/pod_worker.h"

#include <gtest/gtest.h>

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>

using namespace ferry;
using namespace ferry::runtime;
using namespace std::chrono_literals;
using api::Json;

namespace {

// What happened, in order, across all fake containers: "start app 0", "exec app ...", "signal app 15".
using Journal = std::vector<std::string>;

struct FakeProcess {
  std::string name;
  int attempt = 0;
  ContainerSpec spec;
  std::optional<ExitStatus> exit;
  std::vector<int> signals;
  bool exitOnTerm = true;  // false: ignores SIGTERM, only SIGKILL ends it
  Timestamp startedAt;
  std::function<Timestamp()> now;
  std::function<ExecResult(const std::vector<std::string>&)> onExec;
  Journal* journal = nullptr;

  void end(int code, int sig = 0) { exit = ExitStatus{code, sig, now()}; }
};

class FakeContainer : public Container {
 public:
  explicit FakeContainer(std::shared_ptr<FakeProcess> p) : p_(std::move(p)) {}
  const std::string& id() const override { return p_->spec.id; }
  const std::map<std::string, std::string>& labels() const override { return p_->spec.labels; }
  pid_t pid() const override { return 4242; }
  Timestamp startedAt() const override { return p_->startedAt; }
  std::optional<ExitStatus> exitStatus() override { return p_->exit; }
  Status signal(int sig) override {
    if (p_->exit) return {};
    p_->signals.push_back(sig);
    p_->journal->push_back(fmt::format("signal {} {}", p_->name, sig));
    if (sig == SIGKILL) p_->end(137, SIGKILL);
    if (sig == SIGTERM && p_->exitOnTerm) p_->end(143, SIGTERM);
    return {};
  }
  Result<ExecResult> exec(const std::vector<std::string>& argv, std::chrono::milliseconds) override {
    std::string line = "exec " + p_->name;
    for (const auto& a : argv) line += " " + a;
    p_->journal->push_back(line);
    if (p_->onExec) return p_->onExec(argv);
    return ExecResult{0, "", false};
  }
  Result<std::unique_ptr<ExecProcess>> startProcess(const ExecOptions&) override {
    return fail(Error{ENOSYS, "fake"});
  }
  std::string logPath() const override { return p_->spec.logPath; }
  Status remove(bool) override {
    removed = true;
    return {};
  }
  bool removed = false;

 private:
  std::shared_ptr<FakeProcess> p_;
};

class PodWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("ferry-podworker-" + std::to_string(getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    now_ = Timestamp(std::chrono::seconds(1'800'000'000));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  Json pod(const std::string& restartPolicy, Json containers, Json initContainers = Json::array()) {
    Json p = {{"metadata", {{"name", "web"}, {"namespace", "default"}, {"uid", "uid-1"}}},
              {"spec", {{"restartPolicy", restartPolicy}, {"containers", containers}}}};
    if (!initContainers.empty()) p["spec"]["initContainers"] = initContainers;
    return p;
  }
  static Json container(const std::string& name) { return {{"name", name}, {"image", "busybox:1.36"}}; }

  PodDeps deps() {
    PodDeps d;
    d.now = [this] { return now_; };
    d.ensureImage = [this](const std::string& image, const std::string& policy, const Json&,
                           const std::function<void()>& pulling) -> std::expected<ImageInfo, ImagePullFailure> {
      pulls.push_back(image + " " + policy);
      // The fake "has" busybox:1.36 locally: IfNotPresent and Never use it, Always pulls.
      bool download = policy == "Always" || (imageFailure && imageFailure->reason == "ErrImagePull");
      if (download && pulling) pulling();
      if (imageFailure) return std::unexpected(*imageFailure);
      ImageInfo info;
      info.pulled = download;
      info.pullDuration = 1500ms;
      info.sizeBytes = 1234567;
      info.layerDirs = {"/layers/1"};
      info.cmd = {"sh"};
      info.env = {"PATH=/bin", "FROM_IMAGE=1"};
      info.imageID = "docker.io/library/busybox@sha256:abc";
      return info;
    };
    d.startContainer = [this](const ContainerSpec& spec) -> Result<std::unique_ptr<Container>> {
      if (startFailure) return fail(Error{ENOENT, *startFailure});
      auto p = std::make_shared<FakeProcess>();
      p->name = spec.labels.at("io.kubernetes.container.name");
      p->attempt = std::stoi(spec.labels.at("io.ferry.attempt"));
      p->spec = spec;
      p->startedAt = now_;
      p->now = [this] { return now_; };
      p->journal = &journal;
      p->onExec = onExec;
      p->exitOnTerm = exitOnTerm;
      processes[p->name].push_back(p);
      journal.push_back(fmt::format("start {} {}", p->name, p->attempt));
      return std::unique_ptr<Container>(std::make_unique<FakeContainer>(p));
    };
    d.joinCgroups = [](const std::string&, pid_t) { return Status{}; };
    d.oomKilled = [this](const std::string& name) { return oomKilled.count(name) > 0; };
    d.emitEvent = [this](const std::string& reason, const std::string& message, const std::string& type) {
      events.push_back(reason + ": " + message);
    };
    d.networkProbe = [this](const Json&, const std::string&, std::chrono::milliseconds) {
      return networkOutcome;
    };
    return d;
  }

  std::unique_ptr<PodWorker> worker(const Json& p) {
    PodWorkerConfig config;
    config.podDir = (dir_ / "pod").string();
    config.logDir = (dir_ / "logs").string();
    config.dns.clusterDNS = "10.43.0.10";
    PodSandboxInfo sandbox;
    sandbox.podIPs = {"10.42.0.7"};
    sandbox.hostIP = "192.168.1.10";
    return std::make_unique<PodWorker>(p, sandbox, config, deps());
  }

  std::shared_ptr<FakeProcess> latest(const std::string& name) {
    auto& v = processes[name];
    return v.empty() ? nullptr : v.back();
  }
  static Json containerStatus(const Json& status, const std::string& name, const char* key = "containerStatuses") {
    for (const auto& c : status[key])
      if (c["name"] == name) return c;
    return Json();
  }
  static std::string condition(const Json& status, const std::string& type) {
    for (const auto& c : status["conditions"])
      if (c["type"] == type) return c["status"];
    return "";
  }

  std::filesystem::path dir_;
  Timestamp now_;
  std::map<std::string, std::vector<std::shared_ptr<FakeProcess>>> processes;
  std::vector<std::string> pulls, events;
  Journal journal;
  std::optional<ImagePullFailure> imageFailure;
  std::optional<std::string> startFailure;
  std::set<std::string> oomKilled;
  std::function<ExecResult(const std::vector<std::string>&)> onExec;
  bool exitOnTerm = true;
  ProbeOutcome networkOutcome{true, ""};
};

// ---- restart policy matrix ----

struct PolicyCase {
  std::string policy;
  int exitCode;
  std::string phase;
  int restartCount;
  std::string state;  // running | terminated
};

class RestartPolicyMatrix : public PodWorkerTest, public ::testing::WithParamInterface<PolicyCase> {};

TEST_P(RestartPolicyMatrix, PhaseAndRestartCountAsKubernetes) {
  const auto& c = GetParam();
  auto w = worker(pod(c.policy, Json::array({container("app")})));
  w->sync();
  ASSERT_NE(latest("app"), nullptr);
  EXPECT_EQ(w->status()["phase"], "Running");
  now_ += 5s;
  latest("app")->end(c.exitCode);
  w->sync();
  Json st = w->status();
  EXPECT_EQ(st["phase"], c.phase);
  Json cs = containerStatus(st, "app");
  EXPECT_EQ(cs["restartCount"], c.restartCount);
  EXPECT_TRUE(cs["state"].contains(c.state)) << cs.dump();
  if (c.state == "terminated") {
    EXPECT_EQ(cs["state"]["terminated"]["exitCode"], c.exitCode);
    EXPECT_EQ(cs["state"]["terminated"]["reason"], c.exitCode == 0 ? "Completed" : "Error");
    EXPECT_TRUE(w->finished());
  } else {
    EXPECT_EQ(cs["lastState"]["terminated"]["exitCode"], c.exitCode);
    EXPECT_FALSE(w->finished());
  }
}

INSTANTIATE_TEST_SUITE_P(Matrix, RestartPolicyMatrix,
                         ::testing::Values(PolicyCase{"Always", 0, "Running", 1, "running"},
                                           PolicyCase{"Always", 1, "Running", 1, "running"},
                                           PolicyCase{"OnFailure", 0, "Succeeded", 0, "terminated"},
                                           PolicyCase{"OnFailure", 1, "Running", 1, "running"},
                                           PolicyCase{"Never", 0, "Succeeded", 0, "terminated"},
                                           PolicyCase{"Never", 1, "Failed", 0, "terminated"}));

TEST_F(PodWorkerTest, TwoContainersOneDoneOneRunningUnderOnFailureStayRunning) {
  auto w = worker(pod("OnFailure", Json::array({container("a"), container("b")})));
  w->sync();
  latest("a")->end(0);
  w->sync();
  EXPECT_EQ(w->status()["phase"], "Running");
  latest("b")->end(0);
  w->sync();
  EXPECT_EQ(w->status()["phase"], "Succeeded");
}

TEST_F(PodWorkerTest, CrashLoopBackOffDoublesToFiveMinutesAndResetsAfterTenMinutesRunning) {
  auto w = worker(pod("Always", Json::array({container("app")})));
  w->sync();
  // First crash: restarted at once (the kubelet's first back-off step is zero).
  latest("app")->end(1);
  w->sync();
  ASSERT_EQ(processes["app"].size(), 2u);
  std::vector<int> expected = {10, 20, 40, 80, 160, 300, 300};
  for (size_t i = 0; i < expected.size(); ++i) {
    now_ += 1s;
    latest("app")->end(1);
    w->sync();
    Json cs = containerStatus(w->status(), "app");
    ASSERT_TRUE(cs["state"].contains("waiting")) << cs.dump();
    EXPECT_EQ(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
    EXPECT_NE(cs["state"]["waiting"]["message"].get<std::string>().find(fmt::format("back-off {}s", expected[i])),
              std::string::npos)
        << cs.dump();
    EXPECT_EQ(cs["lastState"]["terminated"]["exitCode"], 1);
    EXPECT_EQ(w->status()["phase"], "Running");  // Kubernetes: crash-looping pods stay Running
    size_t before = processes["app"].size();
    now_ += std::chrono::seconds(expected[i]) - 1s;
    w->sync();
    EXPECT_EQ(processes["app"].size(), before) << "restarted before its back-off of " << expected[i] << "s";
    now_ += 1s;
    w->sync();
    ASSERT_EQ(processes["app"].size(), before + 1) << "not restarted after " << expected[i] << "s";
    EXPECT_EQ(containerStatus(w->status(), "app")["restartCount"], static_cast<int>(before));
  }
  // Ten minutes of running resets the back-off: the next crash restarts at once.
  now_ += 11min;
  size_t before = processes["app"].size();
  latest("app")->end(1);
  w->sync();
  EXPECT_EQ(processes["app"].size(), before + 1);
  EXPECT_TRUE(containerStatus(w->status(), "app")["state"].contains("running"));
}

TEST_F(PodWorkerTest, OomKilledIsReported) {
  auto w = worker(pod("Never", Json::array({container("app")})));
  w->sync();
  oomKilled.insert("app");
  latest("app")->end(137, SIGKILL);
  w->sync();
  Json cs = containerStatus(w->status(), "app");
  EXPECT_EQ(cs["state"]["terminated"]["reason"], "OOMKilled");
  EXPECT_EQ(cs["state"]["terminated"]["exitCode"], 137);
  EXPECT_EQ(w->status()["phase"], "Failed");
}

// ---- init containers ----

TEST_F(PodWorkerTest, InitContainersRunInOrderBeforeAppContainers) {
  auto w = worker(pod("Always", Json::array({container("app")}), Json::array({container("init1"), container("init2")})));
  w->sync();
  EXPECT_EQ(journal, (Journal{"start init1 0"}));
  Json st = w->status();
  EXPECT_EQ(st["phase"], "Pending");
  EXPECT_EQ(condition(st, "Initialized"), "False");
  EXPECT_EQ(containerStatus(st, "app")["state"]["waiting"]["reason"], "PodInitializing");
  latest("init1")->end(0);
  w->sync();
  EXPECT_EQ(journal.back(), "start init2 0");
  latest("init2")->end(0);
  w->sync();
  EXPECT_EQ(journal.back(), "start app 0");
  st = w->status();
  EXPECT_EQ(st["phase"], "Running");
  EXPECT_EQ(condition(st, "Initialized"), "True");
  EXPECT_EQ(containerStatus(st, "init1", "initContainerStatuses")["state"]["terminated"]["reason"], "Completed");
  EXPECT_EQ(containerStatus(st, "init1", "initContainerStatuses")["ready"], true);
}

TEST_F(PodWorkerTest, FailedInitContainerFailsPodUnderNeverAndRetriesOtherwise) {
  auto never = worker(pod("Never", Json::array({container("app")}), Json::array({container("init")})));
  never->sync();
  latest("init")->end(2);
  never->sync();
  EXPECT_EQ(never->status()["phase"], "Failed");
  EXPECT_EQ(processes["app"].size(), 0u);

  processes.clear();
  auto always = worker(pod("Always", Json::array({container("app")}), Json::array({container("init")})));
  always->sync();
  latest("init")->end(2);
  always->sync();
  EXPECT_EQ(processes["init"].size(), 2u);
  EXPECT_EQ(always->status()["phase"], "Pending");
  EXPECT_EQ(processes["app"].size(), 0u);
}

// ---- probes ----

TEST_F(PodWorkerTest, ReadinessProbeDrivesReadyCondition) {
  Json c = container("app");
  c["readinessProbe"] = {{"exec", {{"command", {"check"}}}}, {"periodSeconds", 5}, {"failureThreshold", 2}};
  bool healthy = false;
  onExec = [&](const std::vector<std::string>&) { return ExecResult{healthy ? 0 : 1, "", false}; };
  auto w = worker(pod("Always", Json::array({c})));
  w->sync();
  Json st = w->status();
  EXPECT_EQ(condition(st, "Ready"), "False");
  EXPECT_EQ(containerStatus(st, "app")["ready"], false);
  healthy = true;
  now_ += 5s;
  w->sync();
  st = w->status();
  EXPECT_EQ(condition(st, "Ready"), "True");
  EXPECT_EQ(condition(st, "ContainersReady"), "True");
  EXPECT_EQ(containerStatus(st, "app")["ready"], true);
  std::string readySince;
  for (const auto& cond : st["conditions"])
    if (cond["type"] == "Ready") readySince = cond["lastTransitionTime"];
  // One failure is below the threshold of two.
  healthy = false;
  now_ += 5s;
  w->sync();
  EXPECT_EQ(condition(w->status(), "Ready"), "True");
  for (const auto& cond : w->status()["conditions"]) {
    if (cond["type"] == "Ready") {
      EXPECT_EQ(cond["lastTransitionTime"], readySince);
    }
  }
  now_ += 5s;
  w->sync();
  st = w->status();
  EXPECT_EQ(condition(st, "Ready"), "False");
  EXPECT_NE(st["conditions"][1].value("message", "").find("[app]"), std::string::npos) << st.dump();
  EXPECT_EQ(latest("app")->signals.size(), 0u) << "readiness failures must not restart";
}

TEST_F(PodWorkerTest, LivenessFailureRestartsTheContainer) {
  Json c = container("app");
  c["livenessProbe"] = {{"httpGet", {{"path", "/healthz"}, {"port", 8080}}},
                        {"initialDelaySeconds", 3},
                        {"periodSeconds", 10},
                        {"failureThreshold", 3}};
  auto w = worker(pod("Always", Json::array({c})));
  w->sync();
  networkOutcome = {false, "HTTP probe failed with statuscode: 500"};
  now_ += 3s;
  w->sync();  // failure 1
  now_ += 10s;
  w->sync();  // failure 2
  EXPECT_TRUE(latest("app")->signals.empty());
  now_ += 10s;
  w->sync();  // failure 3: killed
  ASSERT_EQ(latest("app")->signals, (std::vector<int>{SIGTERM}));
  bool killing = false;
  for (const auto& e : events) killing |= e.find("failed liveness probe, will be restarted") != std::string::npos;
  EXPECT_TRUE(killing);
  w->sync();  // notices the exit and restarts at once
  EXPECT_EQ(processes["app"].size(), 2u);
  Json cs = containerStatus(w->status(), "app");
  EXPECT_EQ(cs["restartCount"], 1);
  EXPECT_EQ(cs["lastState"]["terminated"]["exitCode"], 143);
}

TEST_F(PodWorkerTest, StartupProbeHoldsBackLivenessUntilItSucceeds) {
  Json c = container("app");
  c["startupProbe"] = {{"tcpSocket", {{"port", 80}}}, {"periodSeconds", 1}, {"failureThreshold", 30}};
  c["livenessProbe"] = {{"exec", {{"command", {"live"}}}}, {"periodSeconds", 1}};
  networkOutcome = {false, "connection refused"};
  auto w = worker(pod("Always", Json::array({c})));
  w->sync();
  for (int i = 0; i < 5; ++i) {
    now_ += 1s;
    w->sync();
  }
  for (const auto& j : journal) EXPECT_EQ(j.find("exec app live"), std::string::npos) << "liveness ran before startup";
  Json cs = containerStatus(w->status(), "app");
  EXPECT_EQ(cs["started"], false);
  EXPECT_EQ(cs["ready"], false);
  networkOutcome = {true, ""};
  now_ += 1s;
  w->sync();
  cs = containerStatus(w->status(), "app");
  EXPECT_EQ(cs["started"], true);
  EXPECT_EQ(cs["ready"], true);
  now_ += 1s;
  w->sync();
  EXPECT_EQ(journal.back(), "exec app live");
}

// ---- termination ----

TEST_F(PodWorkerTest, TerminationRunsPreStopThenSigtermThenSigkillAtTheDeadline) {
  Json c = container("app");
  c["lifecycle"] = {{"preStop", {{"exec", {{"command", {"/bin/drain"}}}}}}};
  Json p = pod("Always", Json::array({c, container("sidecar")}));
  p["spec"]["terminationGracePeriodSeconds"] = 20;
  exitOnTerm = false;
  auto w = worker(p);
  w->sync();
  journal.clear();
  w->terminate();
  w->sync();
  // preStop first, then SIGTERM; the sidecar gets SIGTERM too.
  ASSERT_GE(journal.size(), 3u);
  EXPECT_EQ(journal[0], "exec app /bin/drain");
  EXPECT_EQ(journal[1], "signal app 15");
  EXPECT_EQ(journal[2], "signal sidecar 15");
  EXPECT_EQ(condition(w->status(), "Ready"), "False");
  now_ += 19s;
  w->sync();
  EXPECT_EQ(latest("app")->signals, (std::vector<int>{SIGTERM}));
  EXPECT_FALSE(w->finished());
  now_ += 1s;
  w->sync();
  EXPECT_EQ(latest("app")->signals, (std::vector<int>{SIGTERM, SIGKILL}));
  w->sync();
  EXPECT_TRUE(w->finished());
  Json st = w->status();
  EXPECT_EQ(st["phase"], "Failed");
  EXPECT_EQ(containerStatus(st, "app")["state"]["terminated"]["exitCode"], 137);
  // Nothing restarts a pod that is going away.
  EXPECT_EQ(processes["app"].size(), 1u);
}

TEST_F(PodWorkerTest, DeleteGracePeriodOverridesThePodsOwn) {
  exitOnTerm = false;
  auto w = worker(pod("Always", Json::array({container("app")})));
  w->sync();
  Json updated = pod("Always", Json::array({container("app")}));
  updated["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z";
  updated["metadata"]["deletionGracePeriodSeconds"] = 3;
  w->updatePod(updated);
  w->sync();
  EXPECT_EQ(latest("app")->signals, (std::vector<int>{SIGTERM}));
  now_ += 3s;
  w->sync();
  EXPECT_EQ(latest("app")->signals, (std::vector<int>{SIGTERM, SIGKILL}));
}

TEST_F(PodWorkerTest, ContainerTrappingSigtermEndsCleanly) {
  auto w = worker(pod("Always", Json::array({container("app")})));
  w->sync();
  w->terminate(30);
  w->sync();
  // The fake exits on SIGTERM like a trapping shell with `exit 0` would.
  latest("app")->exit = ExitStatus{0, 0, now_};
  w->sync();
  EXPECT_TRUE(w->finished());
  EXPECT_EQ(w->status()["phase"], "Succeeded");
  EXPECT_EQ(latest("app")->signals, (std::vector<int>{SIGTERM}));
}

// ---- images, start errors ----

TEST_F(PodWorkerTest, ImagePullFailureBecomesImagePullBackOff) {
  imageFailure = ImagePullFailure{"ErrImagePull", "pull busybox:1.36: 401 Unauthorized"};
  auto w = worker(pod("Always", Json::array({container("app")})));
  w->sync();
  Json cs = containerStatus(w->status(), "app");
  EXPECT_EQ(cs["state"]["waiting"]["reason"], "ErrImagePull");
  EXPECT_EQ(cs["state"]["waiting"]["message"], "pull busybox:1.36: 401 Unauthorized");
  EXPECT_EQ(w->status()["phase"], "Pending");
  EXPECT_EQ(events, (std::vector<std::string>{"Pulling: Pulling image \"busybox:1.36\"",
                                              "Failed: Failed to pull image \"busybox:1.36\": pull busybox:1.36: 401 Unauthorized",
                                              "Failed: Error: ErrImagePull"}));
  // Waiting out the back-off: ImagePullBackOff, no pull.
  events.clear();
  now_ += 1s;
  w->sync();
  cs = containerStatus(w->status(), "app");
  EXPECT_EQ(cs["state"]["waiting"]["reason"], "ImagePullBackOff");
  EXPECT_EQ(cs["state"]["waiting"]["message"], "Back-off pulling image \"busybox:1.36\"");
  EXPECT_EQ(events, (std::vector<std::string>{"BackOff: Back-off pulling image \"busybox:1.36\"",
                                              "Failed: Error: ImagePullBackOff"}));
  EXPECT_EQ(pulls.size(), 1u);
  now_ += 8s;
  w->sync();
  EXPECT_EQ(pulls.size(), 1u) << "pulled again before the 10 s back-off";
  // 10 s after the failure: pulled again, fails again, waits 20 s this time.
  now_ += 1s;
  w->sync();
  EXPECT_EQ(pulls.size(), 2u);
  EXPECT_EQ(containerStatus(w->status(), "app")["state"]["waiting"]["reason"], "ErrImagePull");
  w->sync();
  EXPECT_EQ(containerStatus(w->status(), "app")["state"]["waiting"]["reason"], "ImagePullBackOff");
  now_ += 19s;
  w->sync();
  EXPECT_EQ(pulls.size(), 2u) << "pulled again before the 20 s back-off";
  imageFailure.reset();
  events.clear();
  now_ += 1s;
  w->sync();
  EXPECT_EQ(pulls.size(), 3u);
  EXPECT_TRUE(containerStatus(w->status(), "app")["state"].contains("running"));
  EXPECT_EQ(pulls.back(), "busybox:1.36 IfNotPresent");
  ASSERT_GE(events.size(), 1u);
  EXPECT_EQ(events[0], "Pulled: Container image \"busybox:1.36\" already present on machine");
}

TEST_F(PodWorkerTest, PulledEventsSayWhetherTheImageWasDownloaded) {
  Json always = container("fresh");
  always["imagePullPolicy"] = "Always";
  auto w = worker(pod("Always", Json::array({always, container("local")})));
  w->sync();
  std::vector<std::string> imageEvents;
  for (const auto& e : events)
    if (e.rfind("Pull", 0) == 0) imageEvents.push_back(e);
  EXPECT_EQ(imageEvents,
            (std::vector<std::string>{
                "Pulling: Pulling image \"busybox:1.36\"",
                "Pulled: Successfully pulled image \"busybox:1.36\" in 1.500s (1.500s including waiting). Image size: 1234567 bytes.",
                "Pulled: Container image \"busybox:1.36\" already present on machine"}));
}

TEST_F(PodWorkerTest, NeverPullAndInvalidNameAreReportedWithTheirReasons) {
  imageFailure = ImagePullFailure{"ErrImageNeverPull", "Container image \"busybox:1.36\" is not present with pull policy of Never"};
  auto w = worker(pod("Always", Json::array({container("app")})));
  w->sync();
  Json cs = containerStatus(w->status(), "app");
  EXPECT_EQ(cs["state"]["waiting"]["reason"], "ErrImageNeverPull");
  EXPECT_EQ(events, (std::vector<std::string>{
                        "ErrImageNeverPull: Container image \"busybox:1.36\" is not present with pull policy of Never",
                        "Failed: Error: ErrImageNeverPull"}));
  // Not an ErrImagePull: no ImagePullBackOff while it waits.
  now_ += 1s;
  w->sync();
  EXPECT_EQ(containerStatus(w->status(), "app")["state"]["waiting"]["reason"], "ErrImageNeverPull");

  events.clear();
  imageFailure = ImagePullFailure{"InvalidImageName", "invalid reference format: repository name must be lowercase"};
  Json bad = container("bad");
  bad["image"] = "BusyBox:1";
  auto w2 = worker(pod("Always", Json::array({bad})));
  w2->sync();
  cs = containerStatus(w2->status(), "bad");
  EXPECT_EQ(cs["state"]["waiting"]["reason"], "InvalidImageName");
  EXPECT_EQ(cs["state"]["waiting"]["message"],
            "Failed to apply default image tag \"BusyBox:1\": invalid reference format: repository name must be lowercase");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].rfind("InspectFailed: Failed to apply default image tag", 0), 0u) << events[0];
  EXPECT_EQ(events[1], "Failed: Error: InvalidImageName");
  EXPECT_EQ(w2->status()["phase"], "Pending");
}

TEST_F(PodWorkerTest, PullPolicyDefaultsFromTheTag) {
  Json latestTag = container("a");
  latestTag["image"] = "busybox:latest";
  Json untagged = container("b");
  untagged["image"] = "registry.local:5000/busybox";
  auto w = worker(pod("Always", Json::array({latestTag, untagged})));
  w->sync();
  EXPECT_EQ(pulls, (std::vector<std::string>{"busybox:latest Always", "registry.local:5000/busybox Always"}));
}

TEST_F(PodWorkerTest, StartErrorCountsAsACrash) {
  startFailure = "exec \"/nope\": No such file or directory";
  auto w = worker(pod("Always", Json::array({container("app")})));
  w->sync();
  Json cs = containerStatus(w->status(), "app");
  // First failure restarts at once, the second waits in CrashLoopBackOff.
  w->sync();
  cs = containerStatus(w->status(), "app");
  EXPECT_EQ(cs["state"]["waiting"]["reason"], "CrashLoopBackOff") << cs.dump();
  EXPECT_EQ(cs["lastState"]["terminated"]["reason"], "StartError");
  EXPECT_EQ(cs["lastState"]["terminated"]["exitCode"], 128);
}

// ---- status shape ----

TEST_F(PodWorkerTest, StatusHasTheKubernetesShapeAndReportsOnlyChanges) {
  Json c = container("app");
  c["command"] = {"sh", "-c"};
  c["args"] = {"echo $(GREETING)"};
  c["env"] = {{{"name", "GREETING"}, {"value", "hi"}}};
  c["resources"] = {{"limits", {{"cpu", "100m"}, {"memory", "64Mi"}}}};
  auto w = worker(pod("Always", Json::array({c})));
  std::vector<Json> reported;
  w->onStatusChange([&](const Json& s) { reported.push_back(s); });
  w->sync();
  ASSERT_EQ(reported.size(), 1u);
  w->sync();
  now_ += 1s;
  w->sync();
  EXPECT_EQ(reported.size(), 1u) << "status reported without a change";
  const Json& st = reported[0];
  EXPECT_EQ(st["phase"], "Running");
  EXPECT_EQ(st["podIP"], "10.42.0.7");
  EXPECT_EQ(st["podIPs"][0]["ip"], "10.42.0.7");
  EXPECT_EQ(st["hostIP"], "192.168.1.10");
  EXPECT_EQ(st["qosClass"], "Guaranteed");
  EXPECT_EQ(st["startTime"], "2027-01-15T08:00:00Z");
  std::set<std::string> types;
  for (const auto& cond : st["conditions"]) {
    types.insert(cond["type"]);
    EXPECT_TRUE(cond.contains("lastTransitionTime"));
  }
  EXPECT_EQ(types, (std::set<std::string>{"PodScheduled", "Initialized", "ContainersReady", "Ready"}));
  Json cs = containerStatus(st, "app");
  EXPECT_EQ(cs["image"], "busybox:1.36");
  EXPECT_EQ(cs["imageID"], "docker.io/library/busybox@sha256:abc");
  EXPECT_EQ(cs["containerID"].get<std::string>().rfind("ferry://", 0), 0u);
  EXPECT_EQ(cs["state"]["running"]["startedAt"], "2027-01-15T08:00:00Z");
  EXPECT_EQ(cs["ready"], true);
  EXPECT_EQ(cs["started"], true);
  EXPECT_EQ(cs["restartCount"], 0);
  // The spec the runtime got: command+args with $(VAR) expanded, env merged over the image's.
  const ContainerSpec& spec = latest("app")->spec;
  EXPECT_EQ(spec.argv, (std::vector<std::string>{"sh", "-c", "echo hi"}));
  EXPECT_NE(std::find(spec.env.begin(), spec.env.end(), "FROM_IMAGE=1"), spec.env.end());
  EXPECT_NE(std::find(spec.env.begin(), spec.env.end(), "GREETING=hi"), spec.env.end());
  bool resolv = false;
  for (const auto& m : spec.mounts) resolv |= m.destination == "/etc/resolv.conf";
  EXPECT_TRUE(resolv);
  EXPECT_NE(spec.logPath.find("/app/0.log"), std::string::npos);
  std::string resolvConf;
  {
    std::ifstream in(dir_ / "pod/etc/resolv.conf");
    std::stringstream ss;
    ss << in.rdbuf();
    resolvConf = ss.str();
  }
  EXPECT_EQ(resolvConf,
            "nameserver 10.43.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n");

  latest("app")->end(1);
  w->sync();
  EXPECT_EQ(reported.size(), 2u);
}

TEST_F(PodWorkerTest, AdoptKeepsRestartCountsAndNoticesExitsWhileAway) {
  // Two containers left behind by an earlier agent: one running (attempt 4), one exited.
  auto running = std::make_shared<FakeProcess>();
  running->name = "app";
  running->spec.id = "uid-1_app_4";
  running->spec.labels = {{"io.kubernetes.pod.uid", "uid-1"}, {"io.kubernetes.container.name", "app"},
                          {"io.ferry.attempt", "4"}, {"io.ferry.image-id", "sha256:img"}};
  running->startedAt = now_ - 1h;
  running->now = [this] { return now_; };
  running->journal = &journal;
  auto exited = std::make_shared<FakeProcess>(*running);
  exited->name = "side";
  exited->spec.id = "uid-1_side_0";
  exited->spec.labels["io.kubernetes.container.name"] = "side";
  exited->spec.labels["io.ferry.attempt"] = "0";
  exited->exit = ExitStatus{3, 0, now_ - 10min};
  PodWorkerConfig config;
  config.podDir = (dir_ / "pod").string();
  config.logDir = (dir_ / "logs").string();
  PodDeps d = deps();
  d.listContainers = [&] {
    return std::vector<ContainerInfo>{{running->spec.id, running->spec.labels}, {exited->spec.id, exited->spec.labels},
                                      {"other", {{"io.kubernetes.pod.uid", "someone-else"}}}};
  };
  d.adoptContainer = [&](const std::string& id, std::function<Status(pid_t)>) -> Result<std::unique_ptr<Container>> {
    if (id == running->spec.id) return std::unique_ptr<Container>(std::make_unique<FakeContainer>(running));
    if (id == exited->spec.id) return std::unique_ptr<Container>(std::make_unique<FakeContainer>(exited));
    return fail(Error{ENOENT, "no such container"});
  };
  PodWorker w(pod("Never", Json::array({container("app"), container("side")})), PodSandboxInfo{}, config, d);
  ASSERT_TRUE(w.adopt().has_value());
  w.sync();
  Json st = w.status();
  EXPECT_TRUE(processes["app"].empty()) << "restarted a running container";
  Json app = containerStatus(st, "app");
  EXPECT_EQ(app["restartCount"], 4);
  EXPECT_TRUE(app["state"].contains("running"));
  EXPECT_EQ(app["imageID"], "sha256:img");
  Json side = containerStatus(st, "side");
  EXPECT_EQ(side["state"]["terminated"]["exitCode"], 3);
  EXPECT_EQ(st["phase"], "Running");
}

// ---- pod files ----

TEST(PodFiles, CommandAndArgsOverEntrypointAndCmd) {
  std::vector<std::string> ep = {"/entry"}, cmd = {"default-arg"}, env = {"X=1"};
  EXPECT_EQ(combineCommand({}, {}, ep, cmd, env), (std::vector<std::string>{"/entry", "default-arg"}));
  EXPECT_EQ(combineCommand({}, {"a", "$(X)"}, ep, cmd, env), (std::vector<std::string>{"/entry", "a", "1"}));
  EXPECT_EQ(combineCommand({"/bin/sh"}, {}, ep, cmd, env), (std::vector<std::string>{"/bin/sh"}));
  EXPECT_EQ(combineCommand({"/bin/sh"}, {"-c", "$$(X) $(Y)"}, ep, cmd, env),
            (std::vector<std::string>{"/bin/sh", "-c", "$(X) $(Y)"}));
}

TEST(PodFiles, ResolvConfHonoursDnsPolicyAndDnsConfig) {
  ClusterDnsSettings dns;
  dns.clusterDNS = "10.43.0.10";
  Json p = {{"metadata", {{"name", "x"}, {"namespace", "shop"}}}, {"spec", Json::object()}};
  EXPECT_EQ(*resolvConfFor(p, dns),
            "nameserver 10.43.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n");
  p["spec"]["dnsConfig"] = {{"nameservers", {"1.2.3.4"}},
                            {"searches", {"example.com"}},
                            {"options", {{{"name", "ndots"}, {"value", "2"}}, {{"name", "edns0"}}}}};
  EXPECT_EQ(*resolvConfFor(p, dns),
            "nameserver 10.43.0.10\nnameserver 1.2.3.4\nsearch shop.svc.cluster.local svc.cluster.local "
            "cluster.local example.com\noptions ndots:2 edns0\n");
  p["spec"]["dnsPolicy"] = "None";
  EXPECT_EQ(*resolvConfFor(p, dns), "nameserver 1.2.3.4\nsearch example.com\noptions ndots:2 edns0\n");
  p["spec"].erase("dnsConfig");
  auto bad = resolvConfFor(p, dns);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("spec.dnsConfig"), std::string::npos);
}

TEST(PodFiles, EtcHostsHasPodAndAliases) {
  Json p = {{"metadata", {{"name", "web-0"}, {"namespace", "shop"}}},
            {"spec", {{"subdomain", "web"}, {"hostAliases", {{{"ip", "1.1.1.1"}, {"hostnames", {"one"}}}}}}}};
  std::string hosts = etcHostsFor(p, {"10.42.0.9"}, "cluster.local");
  EXPECT_NE(hosts.find("127.0.0.1\tlocalhost\n"), std::string::npos);
  EXPECT_NE(hosts.find("10.42.0.9\tweb-0.web.shop.svc.cluster.local\tweb-0\n"), std::string::npos) << hosts;
  EXPECT_NE(hosts.find("1.1.1.1\tone\n"), std::string::npos);
}

}  // namespace

namespace {

TEST(PodFiles, ServiceLinkVariablesAsTheKubeletWritesThem) {
  auto service = [](const std::string& ns, const std::string& name, const std::string& ip, Json ports) {
    return Json{{"metadata", {{"name", name}, {"namespace", ns}}}, {"spec", {{"clusterIP", ip}, {"ports", ports}}}};
  };
  std::vector<Json> services = {
      service("shop", "redis-primary", "10.43.0.20", Json::array({{{"name", "db"}, {"port", 6379}, {"protocol", "TCP"}}})),
      service("shop", "web", "10.43.0.21",
              Json::array({{{"name", "http"}, {"port", 80}}, {{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}}})),
      service("shop", "headless", "None", Json::array({{{"port", 80}}})),
      service("other", "elsewhere", "10.43.0.30", Json::array({{{"port", 80}}})),
      service("default", "kubernetes", "10.43.0.1", Json::array({{{"name", "https"}, {"port", 443}}}))};
  Json pod = {{"metadata", {{"name", "p"}, {"namespace", "shop"}}}, {"spec", Json::object()}};
  auto env = serviceLinkVariables(pod, services);
  auto has = [&](const std::string& e) { return std::find(env.begin(), env.end(), e) != env.end(); };
  EXPECT_TRUE(has("REDIS_PRIMARY_SERVICE_HOST=10.43.0.20"));
  EXPECT_TRUE(has("REDIS_PRIMARY_SERVICE_PORT=6379"));
  EXPECT_TRUE(has("REDIS_PRIMARY_SERVICE_PORT_DB=6379"));
  EXPECT_TRUE(has("REDIS_PRIMARY_PORT=tcp://10.43.0.20:6379"));
  EXPECT_TRUE(has("REDIS_PRIMARY_PORT_6379_TCP=tcp://10.43.0.20:6379"));
  EXPECT_TRUE(has("REDIS_PRIMARY_PORT_6379_TCP_PROTO=tcp"));
  EXPECT_TRUE(has("REDIS_PRIMARY_PORT_6379_TCP_PORT=6379"));
  EXPECT_TRUE(has("REDIS_PRIMARY_PORT_6379_TCP_ADDR=10.43.0.20"));
  EXPECT_TRUE(has("WEB_PORT_53_UDP=udp://10.43.0.21:53"));
  EXPECT_TRUE(has("WEB_SERVICE_PORT_DNS=53"));
  EXPECT_TRUE(has("KUBERNETES_SERVICE_HOST=10.43.0.1"));
  EXPECT_TRUE(has("KUBERNETES_SERVICE_PORT_HTTPS=443"));
  for (const auto& e : env) {
    EXPECT_EQ(e.find("HEADLESS"), std::string::npos) << e;
    EXPECT_EQ(e.find("ELSEWHERE"), std::string::npos) << e;
  }
  // enableServiceLinks: false keeps only the kubernetes Service's.
  pod["spec"]["enableServiceLinks"] = false;
  env = serviceLinkVariables(pod, services);
  ASSERT_FALSE(env.empty());
  for (const auto& e : env) EXPECT_EQ(e.rfind("KUBERNETES_", 0), 0u) << e;
}

}  // namespace
