// Real containers from a busybox layer in a pod's namespaces and cgroup made by the test.
#include "agent/runtime/container.h"
#include "agent/runtime/container_logs.h"
#include "agent/runtime/exec.h"
#include "tests/kernel/runtime/test_env.h"

#include <gtest/gtest.h>

#include <sys/wait.h>

using namespace ferry::runtime;
using namespace ferry::runtime::testing;
using namespace std::chrono_literals;

namespace {

class ContainerTest : public ::testing::Test {
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
    for (auto& c : started_) {
      (void)c->signal(SIGKILL);
      waitFor([&] { return c->exitStatus().has_value(); }, 10s);
      (void)c->remove();
    }
    started_.clear();
    runtime_.reset();
    env_.reset();
  }

  ContainerSpec spec(const std::string& name, std::vector<std::string> argv) {
    ContainerSpec s;
    s.id = name + "-" + env_->suffix();
    s.labels = {{"container", name}};
    s.lowerDirs = {env_->layer()};
    s.upperDir = env_->root() + "/upper/" + name;
    s.workDir = env_->root() + "/work/" + name;
    s.argv = std::move(argv);
    s.env = {"GREETING=hello"};
    s.netnsPath = env_->netnsPath();
    s.ipcnsPath = env_->ipcnsPath();
    s.utsnsPath = env_->utsnsPath();
    s.logPath = env_->root() + "/logs/" + name + "/0.log";
    const PodEnvironment* e = env_.get();
    s.joinCgroups = [e](pid_t pid) { return e->joinCgroup(pid); };
    std::filesystem::create_directories(env_->root() + "/files");
    std::ofstream(env_->root() + "/files/resolv.conf") << "nameserver 10.43.0.10\nsearch default.svc.cluster.local\noptions ndots:5\n";
    s.mounts.push_back({env_->root() + "/files/resolv.conf", "/etc/resolv.conf", true});
    return s;
  }

  Container* start(const ContainerSpec& s) {
    auto c = runtime_->start(s);
    EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().message);
    if (!c) return nullptr;
    started_.push_back(std::move(*c));
    return started_.back().get();
  }

  std::optional<ExitStatus> waitExit(Container* c, std::chrono::seconds deadline = 30s) {
    waitFor([&] { return c->exitStatus().has_value(); }, deadline);
    return c->exitStatus();
  }

  std::string logText(const std::string& path) {
    std::string out;
    LogOptions o;
    (void)streamLogs(path, o, [&](std::string_view s) {
      out += s;
      return true;
    });
    return out;
  }

  std::unique_ptr<PodEnvironment> env_;
  std::unique_ptr<ContainerRuntime> runtime_;
  std::vector<std::unique_ptr<Container>> started_;
};

TEST_F(ContainerTest, SeesOwnPidOneHostnameRootfsAndResolvConf) {
  auto s = spec("app", {"sh", "-c",
                        "echo pid=$$; hostname; cat /etc/resolv.conf; ls /bin/busybox; echo env=$GREETING; "
                        "cat /proc/self/cgroup; grep -E 'CapEff|NoNewPrivs|Seccomp:' /proc/self/status; "
                        "touch /written && echo rootfs-writable; exit 4"});
  Container* c = start(s);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(env_->inCgroup(c->pid()) || c->exitStatus().has_value());
  auto st = waitExit(c);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->exitCode, 4);
  EXPECT_EQ(st->signal, 0);
  waitFor([&] { return logText(s.logPath).find("rootfs-writable") != std::string::npos; }, 10s);
  std::string log = logText(s.logPath);
  EXPECT_NE(log.find("pid=1\n"), std::string::npos) << log;
  EXPECT_NE(log.find(env_->podHostname() + "\n"), std::string::npos) << log;
  EXPECT_NE(log.find("nameserver 10.43.0.10"), std::string::npos) << log;
  EXPECT_NE(log.find("options ndots:5"), std::string::npos) << log;
  EXPECT_NE(log.find("/bin/busybox"), std::string::npos) << log;
  EXPECT_NE(log.find("env=hello"), std::string::npos) << log;
  EXPECT_NE(log.find("ferry-test-rt-" + env_->suffix()), std::string::npos) << "not in the pod cgroup: " << log;
  // The container runtime's default capability set, no_new_privs, a seccomp filter.
  EXPECT_NE(log.find("CapEff:\t00000000a80425fb"), std::string::npos) << log;
  EXPECT_NE(log.find("NoNewPrivs:\t1"), std::string::npos) << log;
  EXPECT_NE(log.find("Seccomp:\t2"), std::string::npos) << log;
  // Writes land in the upper dir, not in the image layer.
  EXPECT_TRUE(std::filesystem::exists(s.upperDir + "/written"));
  EXPECT_FALSE(std::filesystem::exists(env_->layer() + "/written"));
  // The raw file is in the CRI format.
  std::string raw = readFile(s.logPath);
  EXPECT_NE(raw.find(" stdout F pid=1\n"), std::string::npos) << raw;
}

TEST_F(ContainerTest, MissingExecutableFailsTheStart) {
  auto s = spec("bad", {"/no/such/program"});
  auto c = runtime_->start(s);
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message.find("/no/such/program"), std::string::npos) << c.error().message;
}

TEST_F(ContainerTest, SeccompAndCapabilitiesDenyDangerousCalls) {
  // mount needs CAP_SYS_ADMIN and is on the deny list; hostname changes need CAP_SYS_ADMIN.
  auto s = spec("locked", {"sh", "-c", "mkdir -p /m; mount -t tmpfs none /m && echo mounted; hostname evil || echo "
                                        "hostname-denied; echo done"});
  Container* c = start(s);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(waitExit(c).has_value());
  waitFor([&] { return logText(s.logPath).find("done") != std::string::npos; }, 10s);
  std::string log = logText(s.logPath);
  EXPECT_EQ(log.find("mounted"), std::string::npos) << log;
  EXPECT_NE(log.find("hostname-denied"), std::string::npos) << log;
}

TEST_F(ContainerTest, RunsAsTheRequestedUser) {
  auto s = spec("user", {"sh", "-c", "echo uid=$(id -u) gid=$(id -g); grep CapEff /proc/self/status"});
  s.uid = 1000;
  s.gid = 3000;
  Container* c = start(s);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(waitExit(c).has_value());
  waitFor([&] { return logText(s.logPath).find("CapEff") != std::string::npos; }, 10s);
  std::string log = logText(s.logPath);
  EXPECT_NE(log.find("uid=1000 gid=3000"), std::string::npos) << log;
  EXPECT_NE(log.find("CapEff:\t0000000000000000"), std::string::npos) << log;
}

TEST_F(ContainerTest, TwoContainersOfOnePodTalkOverLocalhost) {
  auto server = spec("server", {"sh", "-c", "echo hello-from-server | nc -l -p 8080"});
  auto client = spec("client", {"sh", "-c",
                                "for i in $(seq 1 100); do nc 127.0.0.1 8080 && exit 0; sleep 0.1; done; exit 1"});
  Container* a = start(server);
  ASSERT_NE(a, nullptr);
  Container* b = start(client);
  ASSERT_NE(b, nullptr);
  auto st = waitExit(b);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->exitCode, 0);
  waitFor([&] { return logText(client.logPath).find("hello-from-server") != std::string::npos; }, 10s);
  EXPECT_NE(logText(client.logPath).find("hello-from-server"), std::string::npos);
}

TEST_F(ContainerTest, TrappedSigtermIsDelivered) {
  auto s = spec("trap", {"sh", "-c", "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done"});
  Container* c = start(s);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(waitFor([&] { return logText(s.logPath).find("ready") != std::string::npos; }));
  ASSERT_TRUE(c->signal(SIGTERM).has_value());
  auto st = waitExit(c);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->exitCode, 0);
  EXPECT_EQ(st->signal, 0);
  waitFor([&] { return logText(s.logPath).find("got-term") != std::string::npos; }, 10s);
  EXPECT_NE(logText(s.logPath).find("got-term"), std::string::npos);
}

TEST_F(ContainerTest, IgnoredSigtermNeedsSigkill) {
  // A shell as pid 1 without a TERM handler ignores SIGTERM (init semantics).
  auto s = spec("stubborn", {"sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"});
  Container* c = start(s);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(waitFor([&] { return logText(s.logPath).find("ready") != std::string::npos; }));
  ASSERT_TRUE(c->signal(SIGTERM).has_value());
  std::this_thread::sleep_for(1s);
  EXPECT_FALSE(c->exitStatus().has_value()) << "exited on SIGTERM";
  ASSERT_TRUE(c->signal(SIGKILL).has_value());
  auto st = waitExit(c);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->signal, SIGKILL);
  EXPECT_EQ(st->exitCode, 137);
}

TEST_F(ContainerTest, ExecReturnsExitCodeAndSeesTheContainer) {
  auto s = spec("sleeper", {"sleep", "1000"});
  Container* c = start(s);
  ASSERT_NE(c, nullptr);
  auto r = c->exec({"sh", "-c", "exit 3"}, 20s);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->exitCode, 3);
  auto r2 = c->exec({"sh", "-c", "cat /proc/1/cmdline; echo; hostname; echo $GREETING; cat /proc/self/cgroup"}, 20s);
  ASSERT_TRUE(r2.has_value()) << r2.error().message;
  EXPECT_EQ(r2->exitCode, 0);
  EXPECT_NE(r2->output.find("sleep"), std::string::npos) << r2->output;
  EXPECT_NE(r2->output.find(env_->podHostname()), std::string::npos) << r2->output;
  EXPECT_NE(r2->output.find("hello"), std::string::npos) << r2->output;
  EXPECT_NE(r2->output.find("ferry-test-rt-" + env_->suffix()), std::string::npos) << r2->output;
  auto missing = c->exec({"no-such-command"}, 20s);
  ASSERT_TRUE(missing.has_value());
  EXPECT_EQ(missing->exitCode, 127);
  auto slow = c->exec({"sleep", "100"}, 500ms);
  ASSERT_TRUE(slow.has_value());
  EXPECT_TRUE(slow->timedOut);

  // Streams with stdin.
  ExecOptions o;
  o.argv = {"cat"};
  o.stdin = true;
  auto p = c->startProcess(o);
  ASSERT_TRUE(p.has_value()) << p.error().message;
  ASSERT_EQ(write((*p)->stdinFd(), "ping\n", 5), 5);
  (*p)->closeStdin();
  char buf[16] = {};
  ssize_t n = read((*p)->stdoutFd(), buf, sizeof buf - 1);
  EXPECT_EQ(std::string(buf, n > 0 ? n : 0), "ping\n");
  auto code = (*p)->wait();
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0);
}

TEST_F(ContainerTest, ExecWithATerminal) {
  Container* c = start(spec("tty", {"sleep", "1000"}));
  ASSERT_NE(c, nullptr);
  ExecOptions o;
  o.argv = {"sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty; stty size; exit 2"};
  o.tty = true;
  o.stdin = true;
  auto p = c->startProcess(o);
  ASSERT_TRUE(p.has_value()) << p.error().message;
  EXPECT_TRUE((*p)->resizeTerminal(40, 100).has_value());
  std::string out;
  char buf[256];
  for (;;) {  // EIO once the last holder of the terminal is gone
    ssize_t n = read((*p)->stdoutFd(), buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, n);
  }
  auto code = (*p)->wait();
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 2);
  EXPECT_NE(out.find("is-a-tty"), std::string::npos) << out;
}

TEST_F(ContainerTest, StartLatency) {
  // Not a timing assertion (that is bench/'s job): prints what a start costs here.
  std::vector<double> ms;
  for (int i = 0; i < 10; ++i) {
    auto s = spec("quick" + std::to_string(i), {"true"});
    auto begin = std::chrono::steady_clock::now();
    Container* c = start(s);
    ASSERT_NE(c, nullptr);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin).count());
    ASSERT_TRUE(waitExit(c).has_value());
  }
  std::sort(ms.begin(), ms.end());
  std::printf("container start (shim + clone + mounts + exec): p50 %.1f ms, max %.1f ms\n", ms[ms.size() / 2], ms.back());
}

TEST_F(ContainerTest, LogsSupportTailTimestampsAndFollow) {
  auto s = spec("logger", {"sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; echo err >&2; sleep 1; echo late"});
  Container* c = start(s);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(waitFor([&] { return logText(s.logPath).find("err") != std::string::npos; }));
  LogOptions tail;
  tail.tailLines = 2;
  std::string out;
  ASSERT_TRUE(streamLogs(s.logPath, tail, [&](std::string_view v) {
                out += v;
                return true;
              }).has_value());
  EXPECT_EQ(out, "line5\nerr\n");
  LogOptions follow;
  follow.follow = true;
  follow.timestamps = true;
  std::string followed;
  bool sawLate = false;
  auto st = streamLogs(
      s.logPath, follow,
      [&](std::string_view v) {
        followed += v;
        sawLate = followed.find("late") != std::string::npos;
        return !sawLate;
      },
      [&] { return !sawLate; });
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(sawLate) << followed;
  EXPECT_NE(followed.find("Z line1\n"), std::string::npos) << followed;
  waitExit(c);
}

TEST_F(ContainerTest, ContainerOutlivesItsStarterAndIsReadopted) {
  auto longRunning = spec("survivor", {"sh", "-c", "echo started; sleep 3; echo still-here; sleep 1000"});
  auto exitsAlone = spec("quitter", {"sh", "-c", "sleep 2; exit 7"});
  // The "agent": a child process that starts both containers and is then killed -9.
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t agent = fork();
  ASSERT_GE(agent, 0);
  if (agent == 0) {
    ContainerRuntime rt(runtime_->config());
    auto a = rt.start(longRunning);
    auto b = rt.start(exitsAlone);
    char ok = (a && b) ? 'y' : 'n';
    (void)!write(ready[1], &ok, 1);
    pause();
    _exit(0);
  }
  close(ready[1]);
  char ok = 0;
  ASSERT_EQ(read(ready[0], &ok, 1), 1);
  close(ready[0]);
  kill(agent, SIGKILL);
  waitpid(agent, nullptr, 0);
  ASSERT_EQ(ok, 'y');

  // A new runtime object finds both, one still running, the other's exit recorded.
  ContainerRuntime fresh(runtime_->config());
  auto listed = fresh.list();
  EXPECT_EQ(listed.size(), 2u);
  auto survivor = fresh.adopt(longRunning.id);
  ASSERT_TRUE(survivor.has_value()) << survivor.error().message;
  auto quitter = fresh.adopt(exitsAlone.id);
  ASSERT_TRUE(quitter.has_value()) << quitter.error().message;
  started_.push_back(std::move(*survivor));
  started_.push_back(std::move(*quitter));
  Container* s = started_[0].get();
  Container* q = started_[1].get();
  EXPECT_FALSE(s->exitStatus().has_value());
  EXPECT_EQ(s->labels().at("container"), "survivor");
  auto qs = waitExit(q);
  ASSERT_TRUE(qs.has_value());
  EXPECT_EQ(qs->exitCode, 7);
  // The shim kept logging while no agent was around.
  EXPECT_TRUE(waitFor([&] { return logText(longRunning.logPath).find("still-here") != std::string::npos; }));
  EXPECT_FALSE(s->exitStatus().has_value());
  auto r = s->exec({"sh", "-c", "exit 5"}, 20s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->exitCode, 5);
}

}  // namespace
