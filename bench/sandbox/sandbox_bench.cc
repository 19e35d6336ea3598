// bench/sandbox: create+delete latency of a pod sandbox with a short-lived process in it,
// side by side with `runc run` and `crun run` of an equivalent bundle (see run.sh).
//
//   sandbox_bench --count 200 [--bundle DIR]   (root)
//
// Ferry, per iteration: SandboxManager::create (pinned net/ipc/uts namespaces, veth to the
// node bridge with an IP, pod cgroup) + a container cgroup with a 64 MiB memory limit +
// fork/exec of `busybox true` that enters the pod's namespaces and cgroups + wait +
// SandboxManager::remove. The node is a network namespace made by the bench.
// runc/crun, per iteration: `<runtime> run` of DIR (new pid/net/ipc/uts/mount namespaces,
// same memory limit), which creates, runs, waits and deletes.
#include "agent/sandbox/sandbox_manager.h"
#include "netns/namespace_pins.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

using Clock = std::chrono::steady_clock;

namespace {

struct Summary {
  double p50, p99, mean, max;
};

Summary summarize(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<size_t>(q * ms.size()))]; };
  double sum = 0;
  for (double v : ms) sum += v;
  return {at(0.50), at(0.99), sum / ms.size(), ms.back()};
}

void print(const char* name, const std::vector<double>& ms, int failures) {
  Summary s = summarize(ms);
  std::printf("%-6s n=%zu failures=%d  p50=%.2f ms  p99=%.2f ms  mean=%.2f ms  max=%.2f ms\n", name, ms.size(),
              failures, s.p50, s.p99, s.mean, s.max);
}

// The container process: enters the pod's namespaces and cgroups itself, then execs.
pid_t startInSandbox(const ferry::agent::PodSandbox& pod, const std::vector<std::string>& procsFiles) {
  int fds[3] = {::open(pod.netnsPath.c_str(), O_RDONLY | O_CLOEXEC), ::open(pod.ipcnsPath.c_str(), O_RDONLY | O_CLOEXEC),
                ::open(pod.utsnsPath.c_str(), O_RDONLY | O_CLOEXEC)};
  std::vector<int> cgroupFds;
  for (const std::string& file : procsFiles) cgroupFds.push_back(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setns(fds[0], CLONE_NEWNET) || ::setns(fds[1], CLONE_NEWIPC) || ::setns(fds[2], CLONE_NEWUTS)) ::_exit(120);
    for (int fd : cgroupFds) {
      if (::write(fd, "0", 1) != 1) ::_exit(121);
    }
    ::execl("/bin/busybox", "busybox", "true", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  for (int fd : fds) ::close(fd);
  for (int fd : cgroupFds) ::close(fd);
  return pid;
}

int runCommand(const std::vector<std::string>& args) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDWR);
    ::dup2(devnull, 0);
    ::dup2(devnull, 1);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int benchFerry(int count, std::vector<double>& ms) {
  // tmpfs, as the agent's /run is on a systemd host (here /run and /tmp are on the disk).
  char dirTemplate[] = "/dev/shm/ferry-bench-sandbox-XXXXXX";
  std::string dir = ::mkdtemp(dirTemplate);
  std::string nodeNs = dir + "/node";
  if (!ferry::netns::createPinnedNamespaces({.net = nodeNs})) return -1;
  std::string testRoot = "ferry-bench-" + std::to_string(::getpid());
  auto benchTree = ferry::cgroup::CgroupTree::open(testRoot);
  if (!benchTree) {
    std::fprintf(stderr, "%s\n", benchTree.error().message.c_str());
    return -1;
  }
  ferry::agent::SandboxManagerConfig config{.runDir = dir + "/run", .dataDir = dir + "/data",
                                            .cgroupRoot = testRoot + "/node", .nodeNetnsPath = nodeNs,
                                            .podCIDR = "10.42.0.0/16"};
  auto manager = ferry::agent::SandboxManager::open(config);
  if (!manager) {
    std::fprintf(stderr, "%s\n", manager.error().message.c_str());
    return -1;
  }
  int failures = 0;
  double phase[4] = {};
  ferry::cgroup::Limits limits{.memoryLimitBytes = 64 << 20};
  for (int i = 0; i < count; ++i) {
    std::string uid = "bench-" + std::to_string(i);
    auto t0 = Clock::now();
    auto pod = (*manager)->create({.uid = uid, .name = uid, .namespace_ = "bench",
                                   .qos = ferry::cgroup::QosClass::Burstable, .limits = limits});
    bool ok = static_cast<bool>(pod);
    auto t1 = Clock::now();
    auto t2 = t1, t3 = t1;
    if (ok) {
      auto container = (*manager)->cgroups().createContainer(pod->cgroupPath, "main", limits);
      ok = static_cast<bool>(container);
      t2 = Clock::now();
      if (ok) {
        pid_t pid = startInSandbox(*pod, (*manager)->cgroups().procsFiles(*container));
        int status = 0;
        ::waitpid(pid, &status, 0);
        ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      }
      t3 = Clock::now();
    } else {
      std::fprintf(stderr, "%s\n", pod.error().message.c_str());
    }
    ok = static_cast<bool>((*manager)->remove(uid)) && ok;
    auto t4 = Clock::now();
    auto span = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    phase[0] += span(t0, t1);
    phase[1] += span(t1, t2);
    phase[2] += span(t2, t3);
    phase[3] += span(t3, t4);
    ms.push_back(span(t0, t4));
    failures += ok ? 0 : 1;
  }
  std::printf("ferry phases (mean ms): create sandbox %.2f, container cgroup %.2f, run process %.2f, remove %.2f\n",
              phase[0] / count, phase[1] / count, phase[2] / count, phase[3] / count);
  (void)(*manager)->cgroups().destroy();
  manager->reset();
  (void)(*benchTree)->destroy();
  (void)ferry::netns::removePinnedNamespace(nodeNs);
  std::filesystem::remove_all(dir);
  return failures;
}

// The floor under every runtime: fork + exec of `busybox true` and wait, nothing else.
void benchBareProcess(int count, std::vector<double>& ms) {
  for (int i = 0; i < count; ++i) {
    auto t0 = Clock::now();
    pid_t pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/busybox", "busybox", "true", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::waitpid(pid, nullptr, 0);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
}

int benchRuntime(const std::string& runtime, const std::string& bundle, int count, std::vector<double>& ms) {
  std::string state = "/tmp/ferry-bench-" + runtime + "-state-" + std::to_string(::getpid());
  int failures = 0;
  for (int i = 0; i < count; ++i) {
    std::string id = "ferry-bench-" + std::to_string(::getpid()) + "-" + std::to_string(i);
    auto t0 = Clock::now();
    int rc = runCommand({runtime, "--root", state, "run", "--bundle", bundle, id});
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (rc != 0) {
      ++failures;
      runCommand({runtime, "--root", state, "delete", "-f", id});
    }
  }
  std::filesystem::remove_all(state);
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  int count = 200;
  std::string bundle;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--count")) count = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--bundle")) bundle = argv[i + 1];
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "needs root\n");
    return 1;
  }
  std::vector<double> bareMs;
  benchBareProcess(count, bareMs);
  print("bare", bareMs, 0);
  std::vector<double> ferryMs;
  int ferryFailures = benchFerry(count, ferryMs);
  if (ferryFailures < 0) return 1;
  print("ferry", ferryMs, ferryFailures);
  if (bundle.empty()) return 0;

  std::vector<double> runcMs;
  int runcFailures = benchRuntime("runc", bundle, count, runcMs);
  print("runc", runcMs, runcFailures);

  // crun 1.8 refuses hybrid hosts; in a private mount namespace a tmpfs over the v2 tree
  // hides it from crun only (the host's mounts are untouched).
  if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    std::perror("private mount namespace");
    return 1;
  }
  if (std::filesystem::exists("/sys/fs/cgroup/unified") &&
      ::mount("tmpfs", "/sys/fs/cgroup/unified", "tmpfs", 0, "size=1m") != 0) {
    std::perror("tmpfs over /sys/fs/cgroup/unified (private mount namespace)");
    return 1;
  }
  std::vector<double> crunMs;
  int crunFailures = benchRuntime("crun", bundle, count, crunMs);
  print("crun", crunMs, crunFailures);
  return 0;
}
