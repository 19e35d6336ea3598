// bench/footprint: resident memory (RSS and PSS, from /proc/PID/smaps_rollup) of
// `ferry server` and of each node's `ferry agent`, idle and with P pods per node,
// on an N-node cluster made by the e2e harness (each node a network namespace,
// `ferry server --no-agent` and one agent process per node, so each figure is one
// process alone). The pods are busybox `sleep` (BestEffort), P per node through one
// Deployment per node pinned by nodeSelector. The per-container shims are separate
// processes and are reported apart (their sum per node), as are the mappings that
// hold most of an agent's memory.
//
// It also counts the API requests the idle agents make (server /metrics, before and
// after --idle-load-seconds): the write load per node with nothing changing.
//
// Usage (root): footprint_bench [--nodes 3] [--pods-per-node 100] [--settle 30] [--idle-load-seconds 120]
// FERRY_BINARY and FERRY_SOURCE_DIR as for the e2e tests (bench/footprint/run sets them).
#include "tests/e2e/harness/cluster.h"

#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace ferry::e2e;
using namespace std::chrono_literals;

namespace {

struct Memory {
  long rssKb = 0, pssKb = 0, privateDirtyKb = 0;
  int threads = 0;
};

Memory memoryOf(int pid) {
  Memory m;
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string key;
  long value;
  std::string unit;
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    if (!(f >> key >> value)) continue;
    if (key == "Rss:") m.rssKb = value;
    else if (key == "Pss:") m.pssKb = value;
    else if (key == "Private_Dirty:") m.privateDirtyKb = value;
  }
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("Threads:", 0) == 0) m.threads = std::atoi(line.c_str() + 8);
  return m;
}

std::string cmdlineOf(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::replace(s.begin(), s.end(), '\0', ' ');
  return s;
}

// Shim processes of node `index` (their command line names the node's run dir).
Memory shimsOf(const std::string& runDir, int& count) {
  Memory total;
  count = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    int pid = std::atoi(name.c_str());
    std::string cmd = cmdlineOf(pid);
    if (cmd.find("__container-shim") == std::string::npos || cmd.find(runDir + "/") == std::string::npos) continue;
    Memory m = memoryOf(pid);
    total.rssKb += m.rssKb;
    total.pssKb += m.pssKb;
    total.privateDirtyKb += m.privateDirtyKb;
    ++count;
  }
  return total;
}

// The largest mappings of a process by RSS ("[heap]", anonymous, the binary...).
std::string topMappings(int pid, int n) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  std::map<std::string, long> byName;
  std::string current;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') < 17) {
      std::istringstream f(line);
      std::string range, perms, offset, dev, inode, path;
      f >> range >> perms >> offset >> dev >> inode;
      std::getline(f, path);
      path.erase(0, path.find_first_not_of(' '));
      current = path.empty() ? "[anon]" : path;
      if (current.find('/') != std::string::npos) current = current.substr(current.rfind('/') + 1);
    } else if (line.rfind("Rss:", 0) == 0) {
      byName[current] += std::atol(line.c_str() + 4);
    }
  }
  std::vector<std::pair<long, std::string>> sorted;
  for (const auto& [name, kb] : byName) sorted.push_back({kb, name});
  std::sort(sorted.rbegin(), sorted.rend());
  std::string out;
  for (int i = 0; i < n && i < static_cast<int>(sorted.size()); ++i)
    out += (i ? ", " : "") + sorted[i].second + " " + std::to_string(sorted[i].first / 1024) + " MB";
  return out;
}

std::string loadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// Anonymous memory by kind, from smaps: thread stacks (glibc puts a 4 KB PROT_NONE guard
// just below each), malloc arenas (the used part of a 64 MB reservation, the PROT_NONE
// rest just above), the main [heap] and the rest.
std::string anonymousBreakdown(int pid) {
  struct Mapping {
    unsigned long start, end;
    std::string perms, name;
    long rssKb = 0;
  };
  std::vector<Mapping> maps;
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') < 17) {
      std::istringstream f(line);
      std::string range, perms, offset, dev, inode, path;
      f >> range >> perms >> offset >> dev >> inode;
      std::getline(f, path);
      path.erase(0, path.find_first_not_of(' '));
      maps.push_back({std::stoul(range.substr(0, range.find('-')), nullptr, 16),
                      std::stoul(range.substr(range.find('-') + 1), nullptr, 16), perms, path});
    } else if (line.rfind("Rss:", 0) == 0 && !maps.empty()) {
      maps.back().rssKb = std::atol(line.c_str() + 4);
    }
  }
  long heap = 0, stacks = 0, arenas = 0, other = 0;
  int stackCount = 0, arenaCount = 0;
  for (size_t i = 0; i < maps.size(); ++i) {
    const auto& m = maps[i];
    if (m.name == "[heap]") heap += m.rssKb;
    else if (m.name == "[stack]") stacks += m.rssKb, ++stackCount;
    else if (!m.name.empty() || m.perms.rfind("rw", 0) != 0) continue;
    else if (i > 0 && maps[i - 1].end == m.start && maps[i - 1].perms.rfind("---", 0) == 0 &&
             maps[i - 1].end - maps[i - 1].start == 4096)
      stacks += m.rssKb, ++stackCount;
    else if (i + 1 < maps.size() && maps[i + 1].start == m.end && maps[i + 1].perms.rfind("---", 0) == 0)
      arenas += m.rssKb, ++arenaCount;
    else other += m.rssKb;
  }
  char buf[256];
  std::snprintf(buf, sizeof buf, "heap %.1f MB, %d thread stacks %.1f MB, %d arenas %.1f MB, other anonymous %.1f MB",
                heap / 1024.0, stackCount, stacks / 1024.0, arenaCount, arenas / 1024.0, other / 1024.0);
  return buf;
}

void report(Cluster& cluster, int nodes, const std::string& phase) {
  std::printf("\n%s (load average %s)\n", phase.c_str(), loadAverage().c_str());
  std::printf("%-10s %9s %9s %9s %8s\n", "process", "RSS MB", "PSS MB", "Priv MB", "threads");
  auto line = [](const std::string& name, const Memory& m) {
    std::printf("%-10s %9.1f %9.1f %9.1f %8d\n", name.c_str(), m.rssKb / 1024.0, m.pssKb / 1024.0,
                m.privateDirtyKb / 1024.0, m.threads);
  };
  line("server", memoryOf(cluster.serverPid()));
  for (int i = 1; i <= nodes; ++i) line("agent-" + std::to_string(i), memoryOf(cluster.agentPid(i)));
  for (int i = 1; i <= nodes; ++i) {
    int count = 0;
    Memory shims = shimsOf(cluster.workDir() + "/n" + std::to_string(i) + "/run", count);
    std::printf("%-10s %9.1f %9.1f %9.1f %8s  (%d shims, %.0f KB PSS each)\n", ("shims-" + std::to_string(i)).c_str(),
                shims.rssKb / 1024.0, shims.pssKb / 1024.0, shims.privateDirtyKb / 1024.0, "-", count,
                count ? static_cast<double>(shims.pssKb) / count : 0.0);
  }
  std::printf("agent-1 largest mappings: %s\n", topMappings(cluster.agentPid(1), 5).c_str());
  std::printf("server  largest mappings: %s\n", topMappings(cluster.serverPid(), 5).c_str());
  std::printf("agent-1 anonymous: %s\n", anonymousBreakdown(cluster.agentPid(1)).c_str());
  std::printf("server  anonymous: %s\n", anonymousBreakdown(cluster.serverPid()).c_str());
  // FOOTPRINT_DUMP_DIR: the full smaps of both, for a closer look.
  if (const char* dir = std::getenv("FOOTPRINT_DUMP_DIR")) {
    std::string tag = phase.substr(0, phase.find(' '));
    fs::create_directories(dir);
    for (auto [who, pid] : {std::pair<std::string, int>{"agent-1", cluster.agentPid(1)}, {"server", cluster.serverPid()}})
    {  // /proc files have no size: read, not copy_file
      std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
      std::ofstream(std::string(dir) + "/" + who + "-" + tag + ".smaps") << in.rdbuf();
    }
  }
  std::fflush(stdout);
}

// apiserver_request_total by "VERB resource[/subresource]", from the server's /metrics.
std::map<std::string, double> requestCounts(Cluster& cluster) {
  std::map<std::string, double> counts;
  auto r = cluster.kubectl("get --raw /metrics", std::chrono::seconds(30));
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("apiserver_request_total{", 0) != 0) continue;
    auto label = [&](const std::string& name) {
      auto at = line.find(name + "=\"");
      if (at == std::string::npos) return std::string();
      at += name.size() + 2;
      return line.substr(at, line.find('"', at) - at);
    };
    std::string key = label("verb") + " " + label("resource");
    if (!label("subresource").empty()) key += "/" + label("subresource");
    counts[key] += std::atof(line.substr(line.rfind(' ') + 1).c_str());
  }
  return counts;
}

// Requests per minute per node while nothing changes: everything the agents send
// (the server runs no agent, kubectl's scrapes are the only other client).
void reportIdleWriteLoad(Cluster& cluster, int nodes, int seconds) {
  auto before = requestCounts(cluster);
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  auto after = requestCounts(cluster);
  std::printf("\nidle API requests over %d s, per node per minute (%d agents; GET /metrics scrapes left out):\n",
              seconds, nodes);
  double writes = 0, all = 0;
  for (const auto& [key, value] : after) {
    double delta = value - (before.count(key) ? before[key] : 0);
    if (delta <= 0 || key == "GET ") continue;  // "GET " with no resource: the /metrics scrapes themselves
    double perMinute = delta / nodes * 60.0 / seconds;
    std::printf("  %-40s %7.2f\n", key.c_str(), perMinute);
    all += perMinute;
    if (key.rfind("GET ", 0) != 0 && key.rfind("LIST ", 0) != 0 && key.rfind("WATCH ", 0) != 0) writes += perMinute;
  }
  std::printf("  all requests %.2f/min per node, of which writes %.2f/min\n", all, writes);
  std::fflush(stdout);
}

std::string deployment(int node, int replicas) {
  return "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: load-n" + std::to_string(node) +
         "\nspec:\n  replicas: " + std::to_string(replicas) +
         "\n  selector: {matchLabels: {app: load-n" + std::to_string(node) +
         "}}\n  template:\n    metadata:\n      labels: {app: load-n" + std::to_string(node) +
         "}\n    spec:\n      nodeSelector: {kubernetes.io/hostname: node-" + std::to_string(node) +
         "}\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: sleep\n"
         "        image: docker.io/library/busybox:1.35\n        imagePullPolicy: Never\n"
         "        command: [\"sleep\", \"36000\"]\n---\n";
}

}  // namespace

int main(int argc, char** argv) {
  int nodes = 3, podsPerNode = 100, settleSeconds = 30, idleLoadSeconds = 120;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--nodes") nodes = std::atoi(argv[i + 1]);
    else if (flag == "--pods-per-node") podsPerNode = std::atoi(argv[i + 1]);
    else if (flag == "--settle") settleSeconds = std::atoi(argv[i + 1]);
    else if (flag == "--idle-load-seconds") idleLoadSeconds = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown flag %s\nusage: footprint_bench [--nodes N] [--pods-per-node P] [--settle S] [--idle-load-seconds T]\n",
                   flag.c_str());
      return 2;
    }
  }
  if (auto reason = e2eUnavailableReason(); !reason.empty()) {
    std::fprintf(stderr, "cannot run: %s\n", reason.c_str());
    return 77;
  }
  ClusterOptions options;
  options.nodes = nodes;
  options.separateServerProcess = true;
  options.agentFlags = {"--max-pods", std::to_string(std::max(110, podsPerNode + 10))};
  Cluster cluster(options);
  if (auto err = cluster.start(); !err.empty()) {
    std::fprintf(stderr, "cluster: %s\n", err.c_str());
    return 1;
  }
  fs::create_directories(cluster.workDir() + "/images");
  std::string image = makeBusyboxImage(cluster.workDir() + "/images");
  if (image.empty() || !cluster.importImage(image).empty()) {
    std::fprintf(stderr, "could not build or import the busybox image\n");
    return 1;
  }
  std::printf("footprint: %d nodes, %d pods per node (server --no-agent + %d agent processes)\n", nodes, podsPerNode,
              nodes);
  std::this_thread::sleep_for(std::chrono::seconds(settleSeconds));
  report(cluster, nodes, "idle");
  reportIdleWriteLoad(cluster, nodes, idleLoadSeconds);

  std::string manifests;
  for (int i = 1; i <= nodes; ++i) manifests += deployment(i, podsPerNode);
  auto applied = cluster.kubectl("apply -f -", 120s, manifests);
  if (applied.exitCode != 0) {
    std::fprintf(stderr, "apply: %s\n", applied.output.c_str());
    return 1;
  }
  auto started = std::chrono::steady_clock::now();
  int running = 0;
  bool all = waitFor([&] {
    auto r = cluster.kubectl("get pods --no-headers --field-selector status.phase=Running", 60s);
    running = static_cast<int>(std::count(r.output.begin(), r.output.end(), '\n'));
    return running >= nodes * podsPerNode;
  }, std::chrono::seconds(1800));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("\n%d of %d pods Running after %.0f s\n", running, nodes * podsPerNode, seconds);
  if (!all) return 1;
  std::this_thread::sleep_for(std::chrono::seconds(settleSeconds));
  report(cluster, nodes, std::to_string(podsPerNode) + " pods per node, " + std::to_string(nodes * podsPerNode) + " pods");
  // FOOTPRINT_HOLD_SECONDS: keep the cluster up for a look with gdb or heaptrack.
  if (const char* hold = std::getenv("FOOTPRINT_HOLD_SECONDS")) {
    std::printf("holding %s s: server pid %d, agent-1 pid %d\n", hold, cluster.serverPid(), cluster.agentPid(1));
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(std::atoi(hold)));
  }
  return 0;
}
