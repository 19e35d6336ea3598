// PodWorker over real containers (busybox) in namespaces and a cgroup the test made.
#include "agent/runtime/pod_worker.h"
#include "tests/kernel/runtime/test_env.h"

#include <gtest/gtest.h>

using namespace ferry;
using namespace ferry::runtime;
using namespace ferry::runtime::testing;
using namespace std::chrono_literals;
using api::Json;

namespace {

class PodWorkerKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = missingPrerequisite(); !why.empty()) GTEST_SKIP() << why;
    env_ = std::make_unique<PodEnvironment>();
    if (!env_->ready()) GTEST_SKIP() << "could not create test namespaces or cgroup";
    RuntimeConfig config;
    config.stateDir = env_->root() + "/state";
    runtime_ = std::make_unique<ContainerRuntime>(config);
  }

  void TearDown() override {
    // Whatever a failed test left running goes before the namespaces and cgroup do.
    if (runtime_) {
      for (const auto& info : runtime_->list()) {
        if (auto c = runtime_->adopt(info.id)) {
          (void)(*c)->signal(SIGKILL);
          waitFor([&] { return (*c)->exitStatus().has_value(); }, 10s);
          (void)(*c)->remove();
        }
      }
    }
    runtime_.reset();
    env_.reset();
  }

  PodDeps deps() {
    PodDeps d;
    std::string layer = env_->layer();
    d.ensureImage = [layer](const std::string&, const std::string&, const Json&, const std::function<void()>&)
        -> std::expected<ImageInfo, ImagePullFailure> {
      ImageInfo info;
      info.layerDirs = {layer};
      info.cmd = {"sh"};
      info.env = {"PATH=/bin"};
      info.imageID = "sha256:busybox-test";
      return info;
    };
    ContainerRuntime* rt = runtime_.get();
    d.startContainer = [rt](const ContainerSpec& spec) { return rt->start(spec); };
    d.listContainers = [rt] { return rt->list(); };
    d.adoptContainer = [rt](const std::string& id, std::function<Status(pid_t)> join) { return rt->adopt(id, join); };
    const PodEnvironment* e = env_.get();
    d.joinCgroups = [e](const std::string&, pid_t pid) { return e->joinCgroup(pid); };
    d.emitEvent = [this](const std::string& reason, const std::string& message, const std::string&) {
      std::lock_guard lock(eventsMutex_);
      events_.push_back(reason + ": " + message);
    };
    return d;
  }

  std::unique_ptr<PodWorker> worker(const Json& pod) {
    PodWorkerConfig config;
    config.podDir = env_->root() + "/pod";
    config.logDir = env_->root() + "/logs";
    config.dns.clusterDNS = "10.43.0.10";
    PodSandboxInfo sandbox;
    sandbox.netnsPath = env_->netnsPath();
    sandbox.ipcnsPath = env_->ipcnsPath();
    sandbox.utsnsPath = env_->utsnsPath();
    sandbox.podIPs = {"127.0.0.1"};  // only lo exists in the test's namespace
    return std::make_unique<PodWorker>(pod, sandbox, config, deps());
  }

  static Json containerStatus(const Json& status, const std::string& name) {
    for (const auto& c : status.value("containerStatuses", Json::array()))
      if (c["name"] == name) return c;
    return Json::object();
  }
  static std::string condition(const Json& status, const std::string& type) {
    for (const auto& c : status.value("conditions", Json::array()))
      if (c["type"] == type) return c["status"];
    return "";
  }

  std::unique_ptr<PodEnvironment> env_;
  std::unique_ptr<ContainerRuntime> runtime_;
  std::mutex eventsMutex_;
  std::vector<std::string> events_;
  TaskPool pool_;  // the workers' syncs, as the agent's PodManager runs them
};

Json pod(const std::string& uid, Json containers, const std::string& restartPolicy = "Always") {
  return {{"metadata", {{"name", "web"}, {"namespace", "default"}, {"uid", uid}}},
          {"spec", {{"restartPolicy", restartPolicy}, {"terminationGracePeriodSeconds", 30}, {"containers", containers}}}};
}

TEST_F(PodWorkerKernelTest, RunsProbesLogsExecAndTerminatesWithGrace) {
  Json server = {{"name", "server"},
                 {"image", "busybox:test"},
                 {"command", {"sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"}},
                 {"readinessProbe", {{"httpGet", {{"path", "/index.html"}, {"port", 8080}}}, {"periodSeconds", 1}}}};
  Json client = {{"name", "client"},
                 {"image", "busybox:test"},
                 {"command", {"sh", "-c",
                              "trap 'echo term-received; exit 0' TERM; "
                              "until nc 127.0.0.1 8080 </dev/null >/dev/null 2>&1; do sleep 0.1; done; echo "
                              "server-reachable; while true; do sleep 0.1; done"}}};
  auto w = worker(pod("uid-k1-" + env_->suffix(), Json::array({server, client})));
  std::atomic<int> reports{0};
  w->onStatusChange([&](const Json&) { ++reports; });
  w->start(pool_);
  ASSERT_TRUE(waitFor([&] { return condition(w->status(), "Ready") == "True"; }, 60s)) << w->status().dump(2);
  Json st = w->status();
  EXPECT_EQ(st["phase"], "Running");
  EXPECT_TRUE(containerStatus(st, "server")["state"].contains("running"));
  // The callback runs right after the step that changed the status, outside the lock.
  EXPECT_TRUE(waitFor([&] { return reports.load() > 0; }, 10s));

  std::string logs;
  ASSERT_TRUE(waitFor([&] {
    logs.clear();
    (void)w->readLogs("client", false, LogOptions{}, [&](std::string_view s) {
      logs += s;
      return true;
    }, {});
    return logs.find("server-reachable") != std::string::npos;
  }));

  ExecOptions o;
  o.argv = {"sh", "-c", "exit 3"};
  auto p = w->exec("client", o);
  ASSERT_TRUE(p.has_value()) << p.error().message;
  auto code = (*p)->wait();
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 3);

  // The client traps SIGTERM and exits 0; httpd as pid 1 ignores it and is killed at the deadline.
  auto begin = std::chrono::steady_clock::now();
  w->terminate(4);
  ASSERT_TRUE(waitFor([&] { return w->finished(); }, 60s)) << w->status().dump(2);
  auto took = std::chrono::steady_clock::now() - begin;
  EXPECT_GE(took, 3500ms) << "SIGKILL came before the grace period ended";
  st = w->status();
  Json clientState = containerStatus(st, "client")["state"]["terminated"];
  Json serverState = containerStatus(st, "server")["state"]["terminated"];
  EXPECT_EQ(clientState["exitCode"], 0) << st.dump(2);
  EXPECT_EQ(serverState["exitCode"], 137) << st.dump(2);
  EXPECT_EQ(condition(st, "Ready"), "False");
  logs.clear();
  (void)w->readLogs("client", false, LogOptions{}, [&](std::string_view s) {
    logs += s;
    return true;
  }, {});
  EXPECT_NE(logs.find("term-received"), std::string::npos) << logs;
  w->stop();
  EXPECT_TRUE(w->removeContainers().has_value());
  EXPECT_TRUE(runtime_->list().empty());
}

TEST_F(PodWorkerKernelTest, CrashingContainerRestartsWithItsLogsKept) {
  Json crasher = {{"name", "crasher"},
                  {"image", "busybox:test"},
                  {"command", {"sh", "-c", "echo run; exit 1"}}};
  auto w = worker(pod("uid-k2-" + env_->suffix(), Json::array({crasher})));
  w->start(pool_);
  // Restart 1 is immediate, restart 2 after 10 s of back-off.
  ASSERT_TRUE(waitFor([&] {
    Json cs = containerStatus(w->status(), "crasher");
    return cs.value("restartCount", 0) >= 1 && cs["state"].contains("waiting");
  }, 60s)) << w->status().dump(2);
  Json cs = containerStatus(w->status(), "crasher");
  EXPECT_EQ(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
  EXPECT_EQ(cs["lastState"]["terminated"]["exitCode"], 1);
  EXPECT_EQ(cs["lastState"]["terminated"]["reason"], "Error");
  std::string previous;
  ASSERT_TRUE(w->readLogs("crasher", true, LogOptions{}, [&](std::string_view s) {
    previous += s;
    return true;
  }, {}).has_value());
  EXPECT_EQ(previous, "run\n");
  w->terminate(0);
  ASSERT_TRUE(waitFor([&] { return w->finished(); }, 30s));
  w->stop();
  EXPECT_TRUE(w->removeContainers().has_value());
}

TEST_F(PodWorkerKernelTest, NewWorkerAdoptsRunningContainersAndExitsWhileAway) {
  std::string uid = "uid-k3-" + env_->suffix();
  Json app = {{"name", "app"}, {"image", "busybox:test"}, {"command", {"sleep", "1000"}}};
  Json job = {{"name", "job"}, {"image", "busybox:test"}, {"command", {"sh", "-c", "sleep 2; exit 9"}}};
  Json p = pod(uid, Json::array({app, job}), "Never");
  pid_t appPid = 0;
  {
    auto first = worker(p);
    first->start(pool_);
    ASSERT_TRUE(waitFor([&] { return first->status()["phase"] == "Running"; }, 60s));
    first->stop();  // the agent goes away; containers stay
  }
  for (const auto& info : runtime_->list())
    if (info.labels.at("io.kubernetes.container.name") == "app") appPid = (*runtime_->adopt(info.id))->pid();
  ASSERT_GT(appPid, 0);
  std::this_thread::sleep_for(3s);  // the job exits while nobody watches

  auto second = worker(p);
  ASSERT_TRUE(second->adopt().has_value());
  second->sync();
  Json st = second->status();
  Json appStatus = containerStatus(st, "app");
  EXPECT_TRUE(appStatus["state"].contains("running")) << st.dump(2);
  EXPECT_EQ(appStatus["restartCount"], 0);
  EXPECT_EQ(containerStatus(st, "job")["state"]["terminated"]["exitCode"], 9) << st.dump(2);
  EXPECT_EQ(kill(appPid, 0), 0) << "the adopted container was restarted or killed";
  second->terminate(0);
  ASSERT_TRUE(waitFor([&] {
    second->sync();
    return second->finished();
  }, 30s));
  EXPECT_TRUE(second->removeContainers().has_value());
}

TEST_F(PodWorkerKernelTest, ShareProcessNamespaceLetsContainersSeeEachOther) {
  Json a = {{"name", "a"}, {"image", "busybox:test"}, {"command", {"sleep", "1000"}}};
  Json b = {{"name", "b"},
            {"image", "busybox:test"},
            {"command", {"sh", "-c", "until ps | grep -q '[s]leep 1000'; do sleep 0.1; done; echo saw-sleeper; "
                                     "echo my-pid=$$; sleep 1000"}}};
  Json p = pod("uid-k4-" + env_->suffix(), Json::array({a, b}));
  p["spec"]["shareProcessNamespace"] = true;
  auto w = worker(p);
  w->start(pool_);
  std::string logs;
  ASSERT_TRUE(waitFor([&] {
    logs.clear();
    (void)w->readLogs("b", false, LogOptions{}, [&](std::string_view s) {
      logs += s;
      return true;
    }, {});
    return logs.find("my-pid=") != std::string::npos;
  }, 60s)) << logs << w->status().dump(2);
  EXPECT_NE(logs.find("saw-sleeper"), std::string::npos);
  EXPECT_EQ(logs.find("my-pid=1\n"), std::string::npos) << "b has a pid namespace of its own";
  w->terminate(0);
  ASSERT_TRUE(waitFor([&] { return w->finished(); }, 30s));
  w->stop();
  EXPECT_TRUE(w->removeContainers().has_value());
  EXPECT_TRUE(runtime_->list().empty());
}

}  // namespace
