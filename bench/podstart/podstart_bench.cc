// bench/podstart: API create → Running of pods on one Ferry node, beside `runc run -d`
// and `crun run -d` of the same image in the same run (see run.sh, which builds the
// image and the runc/crun bundles).
//
//   podstart_bench --image IMAGE.tar --bundles DIR [--pods 100] [--stream-pods N] [--stream-rate R]   (root)
//
// Ferry: a one-node cluster from the e2e harness (`ferry server` with its agent in a
// network namespace of its own), the image imported locally. The bench talks to the API
// server over HTTPS with the admin kubeconfig and watches the pods; a pod's latency is
// from just before its POST to the watch event that first shows status.phase Running
// (what `kubectl get -w` would show). Pods go through the scheduler (no nodeName).
//   sequential: one pod at a time (create, wait Running, next) — the single-pod latency;
//   burst:      all pods created back to back — pods/s = pods / (last Running − first POST);
//   sustained:  --stream-pods (default 5 × pods) POSTed at --stream-rate (default 50/s),
//               each POST deleting the pod `pods` before it (about `pods` live; the deletes
//               are sent from a thread of their own); pods/s =
//               Running events per second from 2 s after the first POST to the last POST.
// Pods of both phases keep running until the phase ends (100 pods on the node).
// runc / crun: `<runtime> run -d` of a bundle per container (same rootfs, `sleep 3600`,
// new pid/net/ipc/uts/mount namespaces, 64 MiB memory limit): the time until the command
// returns with the process running, one at a time; they are deleted at the end, untimed.
// crun runs in a forked child with a private mount namespace and a tmpfs over
// /sys/fs/cgroup/unified (crun 1.8 refuses hybrid hosts; the host's mounts are untouched).
#include "agent/core/api_client.h"
#include "api/object.h"
#include "tests/e2e/harness/cluster.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;
namespace api = ferry::api;

namespace {

// Set by SIGINT/SIGTERM (e.g. `timeout` around run.sh): every wait ends early and the bench
// returns through its normal path, so the harness's Cluster destructor stops the processes
// it started (by PID) and removes its own netns, cgroups and work dir, and the runc/crun
// containers are deleted. Nothing else is touched.
std::atomic<bool> interrupted{false};
void onSignal(int) { interrupted = true; }

struct Summary {
  double p50 = 0, p99 = 0, mean = 0, max = 0;
};

Summary summarize(std::vector<double> ms) {
  if (ms.empty()) return {};
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<size_t>(q * ms.size()))]; };
  double sum = 0;
  for (double v : ms) sum += v;
  return {at(0.50), at(0.99), sum / ms.size(), ms.back()};
}

void print(const std::string& name, const std::vector<double>& ms, int failures, double podsPerSecond) {
  Summary s = summarize(ms);
  std::printf("%-18s n=%zu failures=%d  p50=%.1f ms  p99=%.1f ms  mean=%.1f ms  max=%.1f ms  %.1f pods/s\n",
              name.c_str(), ms.size(), failures, s.p50, s.p99, s.mean, s.max, podsPerSecond);
  std::fflush(stdout);
}

std::string loadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

double msBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

int runQuiet(const std::vector<std::string>& args) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDWR);
    ::dup2(devnull, 0);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
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

// `runtime run -d` of bundles DIR/c0..c<count-1>, one after the other; then deleted.
void benchRuntime(const std::string& runtime, const std::string& bundles, int count) {
  std::string state = "/tmp/ferry-podstart-" + runtime + "-" + std::to_string(::getpid());
  std::vector<double> ms;
  int failures = 0;
  auto first = Clock::now();
  for (int i = 0; i < count && !interrupted; ++i) {
    std::string id = "ferry-podstart-" + std::to_string(::getpid()) + "-" + std::to_string(i);
    auto t0 = Clock::now();
    int rc = runQuiet({runtime, "--root", state, "run", "-d", "--bundle", bundles + "/c" + std::to_string(i), id});
    ms.push_back(msBetween(t0, Clock::now()));
    if (rc != 0) ++failures;
  }
  double seconds = msBetween(first, Clock::now()) / 1000;
  if (!interrupted) print(runtime + " run -d", ms, failures, count / seconds);
  for (int i = 0; i < count; ++i)
    runQuiet({runtime, "--root", state, "delete", "-f", "ferry-podstart-" + std::to_string(::getpid()) + "-" + std::to_string(i)});
  fs::remove_all(state);
}

// The pods the watch has seen, by name: when first seen bound and Running.
struct PodTimes {
  std::mutex mu;
  std::condition_variable changed;
  std::map<std::string, Clock::time_point> bound, running;
  std::map<std::string, bool> present;
};

api::Json podManifest(const std::string& name) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", "default"}, {"labels", {{"app", "podstart"}}}}},
          {"spec",
           {{"terminationGracePeriodSeconds", 1},
            {"containers",
             {{{"name", "main"},
               {"image", "docker.io/library/busybox:1.35"},
               {"imagePullPolicy", "IfNotPresent"},
               {"command", {"sleep", "3600"}}}}}}}};
}

struct PhaseResult {
  std::vector<double> createToRunning, createToBound, boundToRunning, postMs;
  int failures = 0;
  double podsPerSecond = 0;
  std::vector<std::string> neverRunning;  // created but not seen Running before the deadline
};

class FerryBench {
 public:
  FerryBench(ferry::agent::ApiClient& client, PodTimes& times) : client_(client), times_(times) {}

  // POSTs one pod, recording the POST's time and, when it was taken, when it was made.
  bool post(const std::string& name, PhaseResult& r, std::vector<std::pair<std::string, Clock::time_point>>& created) {
    auto t0 = Clock::now();
    auto posted = client_.post("/api/v1/namespaces/default/pods", podManifest(name));
    r.postMs.push_back(msBetween(t0, Clock::now()));
    if (!posted) {
      std::fprintf(stderr, "create %s: %s\n", name.c_str(), posted.error().message.c_str());
      ++r.failures;
      return false;
    }
    created.emplace_back(name, t0);
    return true;
  }

  // Creates pods `prefix`-0..count-1; sequential: waits for each to run before the next.
  PhaseResult run(const std::string& prefix, int count, bool sequential) {
    PhaseResult r;
    std::vector<std::pair<std::string, Clock::time_point>> created;
    auto first = Clock::now();
    for (int i = 0; i < count && !interrupted; ++i) {
      std::string name = prefix + "-" + std::to_string(i);
      if (!post(name, r, created)) continue;
      // A pod that does not start within a minute ends the phase: waiting a minute for
      // each further pod (e.g. beyond the node's pods allocatable) would look like a hang.
      if (sequential && !waitRunning({name}, std::chrono::seconds(60))) break;
    }
    std::vector<std::string> names;
    for (const auto& [name, t0] : created) names.push_back(name);
    waitRunning(names, std::chrono::seconds(180));
    Clock::time_point last = first;
    std::lock_guard lock(times_.mu);
    for (const auto& [name, t0] : created) {
      auto running = times_.running.find(name);
      if (running == times_.running.end()) {
        ++r.failures;
        r.neverRunning.push_back(name);
        continue;
      }
      last = std::max(last, running->second);
      r.createToRunning.push_back(msBetween(t0, running->second));
      if (auto bound = times_.bound.find(name); bound != times_.bound.end()) {
        r.createToBound.push_back(msBetween(t0, bound->second));
        r.boundToRunning.push_back(msBetween(bound->second, running->second));
      }
    }
    double seconds = msBetween(first, last) / 1000;
    r.podsPerSecond = seconds > 0 ? r.createToRunning.size() / seconds : 0;
    return r;
  }

  // Deletes pods `prefix`-0..count-1 and waits until the API no longer has them (the
  // agent has stopped them and confirmed the delete).
  bool removeAll(const std::string& prefix, int count) {
    std::vector<std::string> names;
    for (int i = 0; i < count; ++i) {
      names.push_back(prefix + "-" + std::to_string(i));
      (void)client_.remove("/api/v1/namespaces/default/pods/" + names.back());
    }
    std::unique_lock lock(times_.mu);
    return waitFor(lock, std::chrono::seconds(300), [&] {
      for (const auto& n : names)
        if (times_.present[n]) return false;
      return true;
    });
  }

  // Sustained: pods `prefix`-0..total-1 POSTed at a fixed rate (open loop: pod i at
  // start + i/rate, whatever the cluster does), with churn: creating pod i deletes pod
  // i-window, so the node holds about `window` pods and the stream can run longer than the
  // node's capacity (and the /24's 253 addresses) would allow. The rate is measured over
  // the steady part: Running events from 2 s after the first POST to the last POST, per
  // second. If the node keeps up, that is the offered rate and the latencies stay flat;
  // if not, Running falls behind and the latency grows through the stream.
  struct StreamResult {
    PhaseResult phase;
    double offered = 0, steadySeconds = 0, steadyRate = 0;
    Summary firstQuarter, lastQuarter;
  };
  StreamResult stream(const std::string& prefix, int total, double rate, int window) {
    StreamResult s;
    PhaseResult& r = s.phase;
    std::vector<std::pair<std::string, Clock::time_point>> created;
    // The deletes go on a thread of their own: a POST and a DELETE one after the other on
    // this thread (10-20 ms each on a loaded node) held the offered rate near 30/s.
    std::mutex deleteMu;
    std::condition_variable deleteCv;
    std::deque<std::string> toDelete;
    bool posting = true;
    std::thread deleter([&] {
      std::unique_lock lock(deleteMu);
      for (;;) {
        deleteCv.wait(lock, [&] { return !toDelete.empty() || !posting; });
        if (toDelete.empty()) return;
        std::string name = std::move(toDelete.front());
        toDelete.pop_front();
        lock.unlock();
        (void)client_.remove("/api/v1/namespaces/default/pods/" + name);
        lock.lock();
      }
    });
    auto start = Clock::now();
    auto period = std::chrono::duration<double>(1.0 / rate);
    for (int i = 0; i < total && !interrupted; ++i) {
      std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(period * i));
      std::string name = prefix + "-" + std::to_string(i);
      if (!post(name, r, created)) continue;
      if (i >= window) {
        std::lock_guard lock(deleteMu);
        toDelete.push_back(prefix + "-" + std::to_string(i - window));
        deleteCv.notify_one();
      }
    }
    {
      std::lock_guard lock(deleteMu);
      posting = false;
      deleteCv.notify_one();
    }
    deleter.join();
    auto lastPost = created.empty() ? start : created.back().second;
    s.offered = created.size() > 1 ? (created.size() - 1) / (msBetween(start, lastPost) / 1000) : 0;
    // Each pod must have been seen Running (a deleted pod was Running before its delete
    // unless it never started: then it counts as a failure).
    std::vector<std::string> names;
    for (const auto& [name, t0] : created) names.push_back(name);
    waitRunning(names, std::chrono::seconds(120));
    auto steadyFrom = start + std::chrono::seconds(2);
    int steadyRunning = 0;
    std::vector<double> first, last;
    std::lock_guard lock(times_.mu);
    for (size_t k = 0; k < created.size(); ++k) {
      const auto& [name, t0] = created[k];
      auto running = times_.running.find(name);
      if (running == times_.running.end()) {
        ++r.failures;
        r.neverRunning.push_back(name);
        continue;
      }
      double ms = msBetween(t0, running->second);
      r.createToRunning.push_back(ms);
      if (k < created.size() / 4) first.push_back(ms);
      if (k >= created.size() * 3 / 4) last.push_back(ms);
      if (running->second >= steadyFrom && running->second <= lastPost) ++steadyRunning;
      if (auto bound = times_.bound.find(name); bound != times_.bound.end()) {
        r.createToBound.push_back(msBetween(t0, bound->second));
        r.boundToRunning.push_back(msBetween(bound->second, running->second));
      }
    }
    s.steadySeconds = msBetween(steadyFrom, lastPost) / 1000;
    s.steadyRate = s.steadySeconds > 0 ? steadyRunning / s.steadySeconds : 0;
    r.podsPerSecond = s.steadyRate;
    s.firstQuarter = summarize(first);
    s.lastQuarter = summarize(last);
    return s;
  }

 private:
  // Waits for `done` until the deadline or a signal; true when done.
  template <typename Done>
  bool waitFor(std::unique_lock<std::mutex>& lock, std::chrono::seconds timeout, Done done) {
    auto deadline = Clock::now() + timeout;
    while (!done()) {
      if (interrupted || Clock::now() >= deadline) return false;
      times_.changed.wait_for(lock, std::chrono::milliseconds(200));
    }
    return true;
  }

  bool waitRunning(const std::vector<std::string>& names, std::chrono::seconds timeout) {
    std::unique_lock lock(times_.mu);
    return waitFor(lock, timeout, [&] {
      for (const auto& n : names)
        if (!times_.running.contains(n)) return false;
      return true;
    });
  }

  ferry::agent::ApiClient& client_;
  PodTimes& times_;
};

void printPhase(const std::string& name, const PhaseResult& r) {
  print("ferry " + name, r.createToRunning, r.failures, r.podsPerSecond);
  Summary bound = summarize(r.createToBound), agent = summarize(r.boundToRunning), post = summarize(r.postMs);
  std::printf("  %s phases: POST p50 %.1f ms; create→bound p50 %.1f / p99 %.1f ms; bound→Running p50 %.1f / p99 %.1f ms\n",
              name.c_str(), post.p50, bound.p50, bound.p99, agent.p50, agent.p99);
  if (!r.neverRunning.empty()) {
    std::string names;
    for (const auto& n : r.neverRunning) names += " " + n;
    std::printf("  %s: %zu pod(s) never reached Running:%s\n", name.c_str(), r.neverRunning.size(), names.c_str());
  }
  std::fflush(stdout);
}

// CPU time so far in ms: of the whole machine (all CPUs, busy = not idle/iowait), and of
// one process (all its threads).
struct CpuSample {
  double machineMs = 0, processMs = 0;
};
CpuSample sampleCpu(int pid) {
  CpuSample c;
  double tick = 1000.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
  std::ifstream stat("/proc/stat");
  std::string cpu;
  unsigned long long v[10] = {};
  stat >> cpu;
  for (auto& x : v) stat >> x;
  // user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
  c.machineMs = static_cast<double>(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * tick;
  std::ifstream self("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(self)), std::istreambuf_iterator<char>());
  // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
  if (auto close = text.rfind(')'); close != std::string::npos) {
    std::istringstream rest(text.substr(close + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 1; i <= 13 && rest >> field; ++i) {
      if (i == 12) utime = std::stoull(field);
      if (i == 13) stime = std::stoull(field);
    }
    c.processMs = static_cast<double>(utime + stime) * tick;
  }
  return c;
}

void printCpu(const std::string& name, const CpuSample& before, const CpuSample& after, int pods) {
  if (pods <= 0) return;
  std::printf("  %s CPU per pod: %.1f ms on the machine, %.1f ms in the ferry server process (agent included)\n",
              name.c_str(), (after.machineMs - before.machineMs) / pods, (after.processMs - before.processMs) / pods);
  std::fflush(stdout);
}

// The server's /metrics (one process: the API server and the node's agent), as
// "name{labels}" -> value.
std::map<std::string, double> scrapeMetrics(ferry::e2e::Cluster& cluster) {
  std::map<std::string, double> samples;
  auto r = cluster.kubectl("get --raw /metrics", std::chrono::seconds(60));
  if (r.exitCode != 0) return samples;
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);) {
    auto space = line.rfind(' ');
    if (line.empty() || line[0] == '#' || space == std::string::npos) continue;
    try {
      samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
    } catch (const std::exception&) {
    }
  }
  return samples;
}

// Where a phase's pods spent their time, from the histograms' sums and counts between two
// scrapes: the agent's start and stop phases, its status queue and writes, and the API
// server's pod, binding and event requests. Means, not percentiles (the buckets are coarse).
void printTimeBreakdown(const std::string& name, const std::map<std::string, double>& before,
                        const std::map<std::string, double>& after) {
  static const char* kFamilies[] = {"kubelet_pod_start_duration_seconds", "ferry_agent_pod_start_phase_seconds",
                                    "ferry_agent_pod_stop_phase_seconds", "ferry_agent_pod_status_queue_seconds",
                                    "ferry_agent_pod_status_update_duration_seconds", "apiserver_request_duration_seconds"};
  auto delta = [&](const std::string& key) {
    auto a = after.find(key);
    auto b = before.find(key);
    return (a == after.end() ? 0 : a->second) - (b == before.end() ? 0 : b->second);
  };
  std::printf("  %s time per operation (mean over the phase; count):\n", name.c_str());
  for (const auto& [key, value] : after) {
    std::string family = key.substr(0, key.find('{'));
    if (!family.ends_with("_count")) continue;
    family.resize(family.size() - 6);
    if (std::find(std::begin(kFamilies), std::end(kFamilies), family) == std::end(kFamilies)) continue;
    std::string labels = key.substr(family.size() + 6);
    if (family == "apiserver_request_duration_seconds" && labels.find("resource=\"pods\"") == std::string::npos &&
        labels.find("resource=\"events\"") == std::string::npos)
      continue;
    double count = delta(key);
    if (count <= 0) continue;
    std::printf("    %s%s: %.1f ms (%.0f)\n", family.c_str(), labels.c_str(), delta(family + "_sum" + labels) / count * 1000,
                count);
  }
  std::fflush(stdout);
}

int benchFerry(const std::string& image, int count, int streamPods, double streamRate) {
  ferry::e2e::ClusterOptions options;
  options.nodes = 1;
  // The node accepts every pod of a phase (the default, like the kubelet's, is 110; the
  // scheduler leaves pods beyond the node's pods allocatable Pending).
  // The stream holds `count` pods plus those being deleted.
  options.agentFlags = {"--max-pods", std::to_string(std::max(110, count * 2 + 20))};
  ferry::e2e::Cluster cluster(options);
  if (auto err = cluster.start(); !err.empty()) {
    std::fprintf(stderr, "cluster: %s\n", err.c_str());
    return 1;
  }
  if (auto err = cluster.importImage(image); !err.empty()) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 1;
  }
  // The API server listens in the node's network namespace: this thread (and the watch
  // thread made from it) enter it; the harness starts its own processes explicitly.
  int nsfd = ::open(("/run/netns/" + cluster.nodeNamespace(1)).c_str(), O_RDONLY | O_CLOEXEC);
  if (nsfd < 0 || ::setns(nsfd, CLONE_NEWNET) != 0) {
    std::perror("setns into the node's network namespace");
    return 1;
  }
  ::close(nsfd);
  auto credentials = ferry::agent::loadKubeconfig(cluster.dataDir() + "/kubeconfig");
  if (!credentials) {
    std::fprintf(stderr, "%s\n", credentials.error().message.c_str());
    return 1;
  }
  ferry::agent::ApiClient client(*credentials);
  auto list = client.get("/api/v1/namespaces/default/pods");
  if (!list) {
    std::fprintf(stderr, "list pods: %s\n", list.error().message.c_str());
    return 1;
  }
  PodTimes times;
  std::atomic<bool> stop{false};
  std::string resourceVersion = api::at<std::string>(*list, {"metadata", "resourceVersion"});
  std::thread watcher([&] {
    auto onEvent = [&](const std::string& type, const api::Json& pod) {
      auto now = Clock::now();
      std::string name = api::nameOf(pod);
      std::lock_guard lock(times.mu);
      resourceVersion = api::at<std::string>(pod, {"metadata", "resourceVersion"}, resourceVersion);
      times.present[name] = type != "DELETED";
      if (!api::at<std::string>(pod, {"spec", "nodeName"}).empty()) times.bound.try_emplace(name, now);
      if (api::at<std::string>(pod, {"status", "phase"}) == "Running") times.running.try_emplace(name, now);
      times.changed.notify_all();
    };
    while (!stop) {
      std::string rv;
      {
        std::lock_guard lock(times.mu);
        rv = resourceVersion;
      }
      auto st = client.watch("/api/v1/namespaces/default/pods?watch=true&resourceVersion=" + rv, onEvent, stop);
      if (!st && !stop) {
        std::fprintf(stderr, "watch: %s\n", st.error().message.c_str());
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    }
  });
  FerryBench bench(client, times);
  // One pod first, not counted: the first container start warms the page cache and the
  // agent's image lookup (as on a node that has run pods before).
  (void)bench.run("warmup", 1, true);
  bool removed = bench.removeAll("warmup", 1);
  int serverPid = cluster.agentPid(1);
  auto metricsBefore = scrapeMetrics(cluster);
  auto cpuBefore = sampleCpu(serverPid);
  PhaseResult sequential = bench.run("seq", count, true);
  auto cpuAfter = sampleCpu(serverPid);
  printPhase("sequential", sequential);
  printCpu("sequential", cpuBefore, cpuAfter, count);
  auto metricsAfter = scrapeMetrics(cluster);
  printTimeBreakdown("sequential", metricsBefore, metricsAfter);
  removed = bench.removeAll("seq", count) && removed;
  PhaseResult burst;
  if (!interrupted && sequential.failures == 0) {
    metricsBefore = scrapeMetrics(cluster);
    cpuBefore = sampleCpu(serverPid);
    burst = bench.run("burst", count, false);
    cpuAfter = sampleCpu(serverPid);
    printPhase("burst", burst);
    printCpu("burst", cpuBefore, cpuAfter, count);
    metricsAfter = scrapeMetrics(cluster);
    printTimeBreakdown("burst", metricsBefore, metricsAfter);
    removed = bench.removeAll("burst", count) && removed;
  }
  int streamFailures = 0;
  if (!interrupted && sequential.failures == 0 && streamPods > 0) {
    metricsBefore = scrapeMetrics(cluster);
    cpuBefore = sampleCpu(serverPid);
    auto st = bench.stream("stream", streamPods, streamRate, count);
    cpuAfter = sampleCpu(serverPid);
    printPhase("sustained", st.phase);
    // Each stream pod is started and (all but the last window) deleted: CPU per start + delete.
    printCpu("sustained (start + delete)", cpuBefore, cpuAfter, streamPods);
    metricsAfter = scrapeMetrics(cluster);
    printTimeBreakdown("sustained", metricsBefore, metricsAfter);
    std::printf("  sustained: offered %.1f pods/s (%d pods, window %d live, older ones deleted as it goes); "
                "Running %.1f pods/s over the steady %.1f s; create→Running p99 first quarter %.1f ms, last quarter %.1f ms\n",
                st.offered, streamPods, count, st.steadyRate, st.steadySeconds, st.firstQuarter.p99, st.lastQuarter.p99);
    std::fflush(stdout);
    streamFailures = st.phase.failures;
    removed = bench.removeAll("stream", streamPods) && removed;
  }
  if (interrupted) std::fprintf(stderr, "interrupted: stopping the cluster and removing what the bench made\n");
  if (!removed) std::fprintf(stderr, "some pods were not removed in time (the cluster's teardown stops them)\n");
  stop = true;
  watcher.join();
  return sequential.failures + burst.failures + streamFailures > 0 ? 2 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  int count = 100, streamPods = -1;
  double streamRate = 50;
  std::string image, bundles;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--pods")) count = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--stream-pods")) streamPods = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--stream-rate")) streamRate = std::atof(argv[i + 1]);
    if (!std::strcmp(argv[i], "--image")) image = argv[i + 1];
    if (!std::strcmp(argv[i], "--bundles")) bundles = argv[i + 1];
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "podstart_bench needs root\n");
    return 1;
  }
  if (image.empty()) {
    std::fprintf(stderr, "usage: podstart_bench --image IMAGE.tar [--bundles DIR] [--pods N]\n");
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  std::printf("load average at start: %s\n", loadAverage().c_str());
  if (!bundles.empty()) {
    benchRuntime("runc", bundles, count);
    // crun in a child with a private mount namespace (see the top of the file).
    std::fflush(stdout);
    pid_t child = ::fork();
    if (child == 0) {
      if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
        std::perror("private mount namespace");
        ::_exit(1);
      }
      if (fs::exists("/sys/fs/cgroup/unified") &&
          ::mount("tmpfs", "/sys/fs/cgroup/unified", "tmpfs", 0, "size=1m") != 0) {
        std::perror("tmpfs over /sys/fs/cgroup/unified (private mount namespace)");
        ::_exit(1);
      }
      benchRuntime("crun", bundles, count);
      std::fflush(stdout);
      ::_exit(0);
    }
    // A signal interrupts this wait: pass it on so the child deletes its crun containers.
    while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR)
      if (interrupted) ::kill(child, SIGTERM);
  }
  if (streamPods < 0) streamPods = count * 5;
  int rc = interrupted ? 3 : benchFerry(image, count, streamPods, streamRate);
  std::printf("load average at end: %s\n", loadAverage().c_str());
  return rc;
}
