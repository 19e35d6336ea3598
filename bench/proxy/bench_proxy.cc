// bench/proxy: Service proxy cost at 10 .. 100,000 Services, ebpf vs nftables
// mode vs connecting to the backend directly. Run as root:
//   build/bench/proxy/bench_proxy [--sizes=10,1000,10000,100000] [--modes=ebpf,nftables]
//                                 [--seconds=2] [--rounds=3] [--nft-max=10000]
//                                 [--client=pod|node] [--masquerade-client]
// --seconds is the length of one connect round, --rounds the number of (via
// ClusterIP, direct) pairs per size; nftables is not run above --nft-max Services.
// --client=pod (default): the client has its own namespace on a veth to the node,
// inside the cluster CIDR, as a pod has it; --client=node: it runs in the node's
// namespace and reaches backends on the node's loopback.
// Prints a Markdown table for bench/RESULTS.md.
#include "proxy/service_proxy.h"
#include "tests/kernel/proxy/proxy_test_env.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

using namespace ferry;
using namespace ferry::proxy;
using namespace ferry::proxy::testing;
using Clock = std::chrono::steady_clock;

namespace {

std::string addressAt(uint32_t base, uint32_t offset) {
  in_addr a{htonl(base + offset)};
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

constexpr uint32_t kServiceBase = (10u << 24) | (96u << 16);  // 10.96.0.0
constexpr uint32_t kPodBase = (10u << 24) | (128u << 16);     // 10.128.0.0 (unreachable filler backends)

api::Service serviceNo(int i) {
  api::Service s;
  s.ns = "bench";
  s.name = fmt::format("svc-{}", i);
  s.clusterIP = addressAt(kServiceBase, static_cast<uint32_t>(i + 1));
  s.ports.push_back({"http", "TCP", 80, {false, kBackendPort, ""}, 0});
  return s;
}

// Service 0 is the measured one (backends that answer); the others get three
// distinct filler backends each, so maps and rulesets grow like a real cluster.
api::EndpointSlice sliceNo(int i, int endpoints = 3) {
  api::EndpointSlice e;
  e.ns = "bench";
  e.name = fmt::format("svc-{}-abc", i);
  e.serviceName = fmt::format("svc-{}", i);
  e.ports = {{"http", "TCP", kBackendPort}};
  for (int j = 0; j < endpoints; ++j) {
    std::string address = i == 0 ? kBackends[j] : addressAt(kPodBase, static_cast<uint32_t>(3 * i + j));
    e.endpoints.push_back({{address}, true, true, false, "node-a", "", ""});
  }
  return e;
}

double threadCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Busy time of the whole machine (all CPUs: user, nice, system, irq, softirq, steal)
// from /proc/stat, in milliseconds. A connect's cost lands in the client, the
// backend and softirq on either core; only the machine-wide figure holds all of it.
double machineBusyMs() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  unsigned long long v[8] = {};
  stat >> cpu;
  for (auto& x : v) stat >> x;
  return static_cast<double>(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * 1000.0 /
         static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

struct Row {
  std::string mode;
  int services = 0;
  double syncSeconds = 0;
  double syncCpuSeconds = 0;  // user + system time of the syncing thread
  double changeP50Ms = 0, changeP99Ms = 0;
  int changes = 0;
  double rate = 0, directRate = 0;
  double cpuUs = 0, directCpuUs = 0;  // machine CPU per connect (µs), medians of the rounds
  double ratio = 0, ratioMin = 0, ratioMax = 0;  // via / direct: median (and range) of the rounds' ratios
  uint64_t mapBytes = 0;
  int failures = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> sizes = {10, 1000, 10000, 100000};
  double seconds = 2;
  int nftMax = 10000;  // a full nftables load grows superlinearly: ~110 s at 10,000 here
  int rounds = 3;
  std::vector<std::string> modes = {"ebpf", "nftables"};
  // The measured client stands for a pod: nftables mode does not masquerade it
  // (no cluster CIDR given, so no "saddr outside the pod network" rule), as
  // kube-proxy leaves pod -> Service traffic alone. With masquerading (a host
  // client), every connect takes a random NAT source port towards the one
  // backend and TIME_WAIT conntrack entries hold them 120 s: on a long run the
  // port space fills and nftables' rate collapses (SYNs dropped), which measures
  // conntrack, not the ruleset. --masquerade-client shows that case.
  bool masqueradeClient = false;
  std::string client = "pod";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--sizes=", 0) == 0) {
      sizes.clear();
      std::string list = a.substr(8);
      size_t pos = 0;
      while (pos < list.size()) {
        size_t comma = list.find(',', pos);
        sizes.push_back(std::stoi(list.substr(pos, comma - pos)));
        pos = comma == std::string::npos ? list.size() : comma + 1;
      }
    } else if (a.rfind("--seconds=", 0) == 0) {
      seconds = std::stod(a.substr(10));
    } else if (a.rfind("--rounds=", 0) == 0) {
      rounds = std::stoi(a.substr(9));
    } else if (a.rfind("--modes=", 0) == 0) {
      modes.clear();
      std::string list = a.substr(8);
      size_t pos = 0;
      while (pos < list.size()) {
        size_t comma = list.find(',', pos);
        modes.push_back(list.substr(pos, comma - pos));
        pos = comma == std::string::npos ? list.size() : comma + 1;
      }
    } else if (a.rfind("--nft-max=", 0) == 0) {
      nftMax = std::stoi(a.substr(10));
    } else if (a == "--masquerade-client") {
      masqueradeClient = true;
    } else if (a == "--client=pod" || a == "--client=node") {
      client = a.substr(9);
    } else {
      std::cerr << "bench_proxy: unknown flag " << a
                << " (flags: --sizes=N,N.. --modes=ebpf,nftables --seconds=S --rounds=N --nft-max=N --client=pod|node "
                   "--masquerade-client)\n";
      return 2;
    }
  }
  if (masqueradeClient && client == "pod") {
    std::cerr << "bench_proxy: --masquerade-client is for --client=node (a pod inside the cluster CIDR is not masqueraded)\n";
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  ProxyTestEnv env;
  if (std::string reason = env.setUp(); !reason.empty()) {
    std::cerr << "cannot run: " << reason << "\n";
    return 2;
  }
  // Pod clients: one for the direct rounds and one per mode for the rounds via the
  // ClusterIP. A client that alternated paths would reuse its source ports towards
  // the same backend from different paths: the backend's TIME_WAIT sockets then hold
  // timestamps of the other path (the kernel derives a connection's timestamp offset
  // from its destination address, the ClusterIP under nftables' DNAT, the backend's
  // under ebpf and direct), PAWS drops the new SYN and the connect waits a 1 s
  // retransmission — the bench would measure its own alternation. Real clients of a
  // Service always take one path.
  std::string directNetns = env.nodeNetns();
  std::map<std::string, std::string> viaNetns;
  for (const std::string& mode : modes) viaNetns[mode] = env.nodeNetns();
  if (client == "pod") {
    std::string reason = env.addPodNetns(directNetns);
    for (const std::string& mode : modes)
      if (reason.empty()) reason = env.addPodNetns(viaNetns[mode]);
    if (!reason.empty()) {
      std::cerr << "cannot run: " << reason << "\n";
      env.tearDown();
      return 2;
    }
  }
  struct RoundResult {
    double rate = 0;   // connects per second
    double cpuUs = 0;  // machine CPU per connect
  };
  auto connectRate = [&](const std::string& netns, const std::string& address, int port, int& failures) {
    double busy0 = machineBusyMs();
    ClientProcess client(env.cgroupDir(), netns, {ClientJob::TcpConnect, address, port, 0, false});
    auto start = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    client.stop();
    ClientResult r = client.wait();
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    double busyMs = machineBusyMs() - busy0;
    for (auto& [_, n] : r.errors) failures += n;
    RoundResult result;
    result.rate = static_cast<double>(r.total()) / elapsed;
    result.cpuUs = r.total() > 0 ? busyMs * 1000.0 / static_cast<double>(r.total()) : 0;
    return result;
  };

  std::vector<Row> rows;
  for (const std::string& mode : modes) {
    std::unique_ptr<ServiceProxy> proxy;
    ProxyConfig config;
    config.mode = mode;
    config.cgroupV2Path = env.cgroupDir();
    config.bpffsDir = env.bpffsDir();
    config.nodeIP = kNodeIP;
    // A pod client: the node has the cluster CIDR and its pod egress masquerade
    // table, as the agent sets it up in both modes (so conntrack runs on the node
    // in both); pod -> Service traffic stays unmasqueraded.
    config.clusterCIDR = client == "pod" || masqueradeClient ? kClusterCIDR : "";
    config.serviceCIDR = "10.96.0.0/12";
    config.nodeName = "node-a";
    bool ok = true;
    env.nodeWorker().run([&] {
      auto p = ServiceProxy::start(config);
      if (!p) {
        std::cerr << "start " << mode << ": " << p.error().message << "\n";
        ok = false;
        return;
      }
      proxy = std::move(*p);
      if (client == "pod") {
        if (auto st = proxy->ensureMasquerade(); !st) {
          std::cerr << "masquerade " << mode << ": " << st.error().message << "\n";
          ok = false;
        }
      }
    });
    if (!ok) return 1;
    for (int n : sizes) {
      if (mode == "nftables" && n > nftMax) continue;
      Row row;
      row.mode = mode;
      row.services = n;
      std::vector<api::Service> services;
      std::vector<api::EndpointSlice> slices;
      for (int i = 0; i < n; ++i) {
        services.push_back(serviceNo(i));
        slices.push_back(sliceNo(i));
      }
      env.nodeWorker().run([&] {
        auto t0 = Clock::now();
        double cpu0 = threadCpuSeconds();
        rusage before{}, after{};
        getrusage(RUSAGE_THREAD, &before);
        auto st = proxy->resync(services, slices);
        row.syncSeconds = std::chrono::duration<double>(Clock::now() - t0).count();
        row.syncCpuSeconds = threadCpuSeconds() - cpu0;
        getrusage(RUSAGE_THREAD, &after);
        // Where wall time goes besides CPU: page faults (costly in this VM),
        // blocking (voluntary switches) and preemption (involuntary).
        std::cerr << fmt::format("{} {}: sync {:.3f}s wall {:.3f}s cpu ({:.3f}s user), {} minor faults, {} voluntary / {} involuntary switches\n",
                                 mode, n, row.syncSeconds, row.syncCpuSeconds,
                                 static_cast<double>(after.ru_utime.tv_sec - before.ru_utime.tv_sec) +
                                     static_cast<double>(after.ru_utime.tv_usec - before.ru_utime.tv_usec) / 1e6,
                                 after.ru_minflt - before.ru_minflt,
                                 after.ru_nvcsw - before.ru_nvcsw, after.ru_nivcsw - before.ru_nivcsw);
        if (!st) {
          std::cerr << mode << " resync " << n << ": " << st.error().message << "\n";
          ok = false;
        }
      });
      if (!ok) break;
      // One endpoint change of one Service (the last one), alternating 3 <-> 2 endpoints.
      int changes = mode == "ebpf" ? 200 : std::max(3, std::min(50, 20000 / std::max(1, n)));
      std::vector<double> ms;
      env.nodeWorker().run([&] {
        for (int k = 0; k < changes; ++k) {
          auto slice = sliceNo(n - 1, k % 2 ? 3 : 2);
          auto t0 = Clock::now();
          auto st = proxy->upsertEndpointSlice(slice);
          ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
          if (!st) std::cerr << "change: " << st.error().message << "\n";
        }
        auto bytes = proxy->mapMemoryBytes();
        row.mapBytes = bytes ? *bytes : 0;
      });
      row.changes = changes;
      row.changeP50Ms = percentile(ms, 0.5);
      row.changeP99Ms = percentile(ms, 0.99);
      // The machine is shared and noisy: rounds are pairs (via the ClusterIP,
      // direct) taken back to back, in alternating order (ABBA) so a load that
      // rises or falls during the run hits both sides alike; the ratio reported
      // is the median of the per-pair ratios, not a ratio of medians.
      std::vector<double> via, direct, ratios, viaCpu, directCpu;
      for (int r = 0; r < rounds; ++r) {
        RoundResult v, d;
        auto viaRound = [&] { return connectRate(viaNetns[mode], addressAt(kServiceBase, 1), 80, row.failures); };
        auto directRound = [&] { return connectRate(directNetns, kBackends[0], kBackendPort, row.failures); };
        if (r % 2 == 0) {
          v = viaRound();
          d = directRound();
        } else {
          d = directRound();
          v = viaRound();
        }
        via.push_back(v.rate);
        direct.push_back(d.rate);
        viaCpu.push_back(v.cpuUs);
        directCpu.push_back(d.cpuUs);
        ratios.push_back(d.rate > 0 ? v.rate / d.rate : 0);
        std::cerr << fmt::format("{} {} round {}: via {:.0f}/s ({:.1f} µs CPU) direct {:.0f}/s ({:.1f} µs CPU) ratio {:.3f}\n",
                                 mode, n, r, v.rate, v.cpuUs, d.rate, d.cpuUs, ratios.back());
      }
      row.rate = percentile(via, 0.5);
      row.directRate = percentile(direct, 0.5);
      row.cpuUs = percentile(viaCpu, 0.5);
      row.directCpuUs = percentile(directCpu, 0.5);
      row.ratio = percentile(ratios, 0.5);
      row.ratioMin = *std::min_element(ratios.begin(), ratios.end());
      row.ratioMax = *std::max_element(ratios.begin(), ratios.end());
      std::cerr << fmt::format("{} {}: sync {:.3f}s change p99 {:.3f}ms rate {:.0f}/s direct {:.0f}/s ratio {:.3f}\n", mode,
                               n, row.syncSeconds, row.changeP99Ms, row.rate, row.directRate, row.ratio);
      rows.push_back(row);
    }
    env.nodeWorker().run([&] {
      if (auto st = proxy->uninstall(); !st) std::cerr << "uninstall: " << st.error().message << "\n";
      proxy.reset();
    });
  }
  env.tearDown();

  std::cout << "| mode | Services | full sync (CPU) | one endpoint change p50 / p99 (n) | connects/s via ClusterIP | connects/s direct | "
               "via/direct: median of rounds (range) | machine CPU per connect via / direct | map memory | failed connects |\n";
  std::cout << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const Row& r : rows) {
    std::cout << fmt::format("| {} | {} | {:.3f} s ({:.3f} s) | {:.3f} / {:.3f} ms ({}) | {:.0f} | {:.0f} | {:.3f} ({:.3f}–{:.3f}) | {:.1f} / {:.1f} µs | {} | {} |\n",
                             r.mode, r.services, r.syncSeconds, r.syncCpuSeconds, r.changeP50Ms, r.changeP99Ms, r.changes,
                             r.rate, r.directRate, r.ratio, r.ratioMin, r.ratioMax, r.cpuUs, r.directCpuUs,
                             r.mode == "ebpf" ? fmt::format("{:.1f} MiB", static_cast<double>(r.mapBytes) / 1048576.0) : "n/a",
                             r.failures);
  }
  // ebpf against nftables: the modes run minutes apart, so each is taken
  // relative to its own direct rounds (the same backend, the same moment) and
  // the two ratios are compared.
  for (const Row& e : rows) {
    if (e.mode != "ebpf") continue;
    for (const Row& f : rows)
      if (f.mode == "nftables" && f.services == e.services && f.ratio > 0)
        std::cout << fmt::format("\nebpf / nftables at {} Services: {:.2f}x (via/direct {:.3f} vs {:.3f}); CPU per connect "
                                 "{:.1f} vs {:.1f} µs (direct {:.1f} vs {:.1f})",
                                 e.services, e.ratio / f.ratio, e.ratio, f.ratio, e.cpuUs, f.cpuUs, e.directCpuUs, f.directCpuUs);
  }
  std::cout << "\n";
  return 0;
}
