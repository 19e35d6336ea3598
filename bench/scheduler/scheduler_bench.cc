// bench/scheduler: N nodes and M pods as API objects in the real registry on
// SQLite (no agents), the scheduler binding them through the ObjectClient.
// Reports pods/s from the first pod's creation to the last pod bound, and
// placement quality: no node over allocatable, spread of the (single, uniform)
// owner within one pod of even. Binds go through Registry::create("bindings"),
// the route the server's scheduler takes.
//
// With --precreate every pod exists before the scheduler starts, and the figure
// is from the scheduler's start to the last bind: the scheduler's own rate,
// without the pod creations competing for the store.
//
//   scheduler_bench [--nodes 5000] [--pods 50000] [--creators 4] [--binders 32] [--no-events] [--precreate]
#include "api/log.h"
#include "cmd/allocator.h"
#include "controlplane-lite/controllers/controller_context.h"
#include "controlplane-lite/registry.h"
#include "controlplane-lite/scheduler/pod_resources.h"
#include "controlplane-lite/scheduler/scheduler.h"
#include "controlplane-lite/store.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

using namespace ferry;
using namespace ferry::cp;
using Clock = std::chrono::steady_clock;

namespace {

api::Json benchNode(int i) {
  std::string name = fmt::format("node-{:05d}", i);
  return {{"apiVersion", "v1"},
          {"kind", "Node"},
          {"metadata", {{"name", name}, {"labels", {{"kubernetes.io/hostname", name}}}}},
          {"spec", api::Json::object()},
          {"status",
           {{"allocatable", {{"cpu", "32"}, {"memory", "128Gi"}, {"pods", "110"}}},
            {"capacity", {{"cpu", "32"}, {"memory", "128Gi"}, {"pods", "110"}}},
            {"conditions", {{{"type", "Ready"}, {"status", "True"}}}}}}};
}

api::Json benchPod(int i, const std::string& ownerUid) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata",
           {{"name", fmt::format("web-{:06d}", i)},
            {"namespace", "default"},
            {"labels", {{"app", "web"}}},
            {"ownerReferences",
             {{{"apiVersion", "apps/v1"}, {"kind", "ReplicaSet"}, {"name", "web"}, {"uid", ownerUid}, {"controller", true}}}}}},
          {"spec",
           {{"containers",
             {{{"name", "web"}, {"image", "nginx"}, {"resources", {{"requests", {{"cpu", "100m"}, {"memory", "128Mi"}}}}}}}}}}};
}

}  // namespace

int main(int argc, char** argv) {
  // The bench stands for `ferry server`: the same allocator configuration.
  ferry::cmd::reexecWithServerAllocator(argv);
  int nodes = 5000, pods = 50000, creators = 4, binders = SchedulerOptions{}.binderThreads;
  bool events = true, precreate = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--nodes" && i + 1 < argc) nodes = std::atoi(argv[++i]);
    else if (a == "--pods" && i + 1 < argc) pods = std::atoi(argv[++i]);
    else if (a == "--creators" && i + 1 < argc) creators = std::atoi(argv[++i]);
    else if (a == "--binders" && i + 1 < argc) binders = std::atoi(argv[++i]);
    else if (a == "--no-events") events = false;
    else if (a == "--precreate") precreate = true;
  }
  log::init("warn");
  std::string dir = fmt::format("/tmp/ferry-bench-scheduler-{}", getpid());
  std::filesystem::create_directories(dir);
  ServerConfig config;
  config.dataDir = dir;
  config.clusterCIDR = "10.0.0.0/8";  // a /24 per node: room for 5,000 nodes
  auto store = openStore("sqlite", dir);
  if (!store) {
    fmt::print(stderr, "open store: {}\n", store.error().message);
    return 1;
  }
  int rc = 0;
  {
    Registry registry(**store, config);
    if (auto st = registry.bootstrap("127.0.0.1", 6443); !st) {
      fmt::print(stderr, "bootstrap: {}\n", st.error().message);
      return 1;
    }
    Registry& client = registry;

    auto t0 = Clock::now();
    for (int i = 0; i < nodes; ++i) {
      auto st = client.create("nodes", benchNode(i));
      if (!st) {
        fmt::print(stderr, "create node: {}\n", st.error().message);
        return 1;
      }
    }
    double nodeSeconds = std::chrono::duration<double>(Clock::now() - t0).count();

    const std::string ownerUid = "bench-replicaset-uid";
    std::atomic<int> next{0}, failed{0};
    auto createPods = [&] {
      std::vector<std::thread> threads;
      for (int t = 0; t < creators; ++t)
        threads.emplace_back([&] {
          for (int i = next++; i < pods; i = next++)
            if (!client.create("pods", benchPod(i, ownerUid))) failed++;
        });
      for (auto& t : threads) t.join();
    };
    double createSeconds = 0;
    if (precreate) {
      auto t1 = Clock::now();
      createPods();
      createSeconds = std::chrono::duration<double>(Clock::now() - t1).count();
    }

    InformerSet informers(client);
    EventRecorder recorder(client, "bench");
    ControllerContext context{client, informers, recorder, config};
    SchedulerOptions options;
    options.recordScheduledEvents = events;
    options.binderThreads = binders;
    Scheduler scheduler(context, options);
    recorder.start();
    informers.start();
    informers.waitForSync(std::chrono::seconds(120));

    auto start = Clock::now();
    scheduler.start();
    if (!precreate) {
      createPods();
      createSeconds = std::chrono::duration<double>(Clock::now() - start).count();
    }
    auto deadline = Clock::now() + std::chrono::minutes(20);
    while (scheduler.boundCount() < static_cast<std::uint64_t>(pods - failed) && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    double boundSeconds = std::chrono::duration<double>(Clock::now() - start).count();
    scheduler.stop();
    informers.stop();
    recorder.stop();

    // Placement quality, read back from the registry.
    auto listedPods = client.list("pods", "default", {});
    auto listedNodes = client.list("nodes", "", {});
    std::map<std::string, ResourceList> used;
    std::map<std::string, int> perNode;
    int unbound = 0;
    for (const auto& pod : listedPods->items) {
      std::string node = api::at<std::string>(pod, {"spec", "nodeName"});
      if (node.empty()) {
        unbound++;
        continue;
      }
      used[node].add(podRequests(pod));
      perNode[node]++;
    }
    int over = 0, lo = 1 << 30, hi = 0;
    for (const auto& node : listedNodes->items) {
      ResourceList alloc = nodeAllocatable(node);
      const ResourceList& u = used[api::nameOf(node)];
      if (u.milliCpu > alloc.milliCpu || u.memoryMilli > alloc.memoryMilli || u.podsMilli > alloc.podsMilli) over++;
      lo = std::min(lo, perNode[api::nameOf(node)]);
      hi = std::max(hi, perNode[api::nameOf(node)]);
    }
    fmt::print("nodes {} (created in {:.1f} s), pods {} ({} failed to create), events {}, {} creators, {} binders\n",
               nodes, nodeSeconds, pods, failed.load(), events ? "on" : "off", creators, binders);
    fmt::print("allocator: {}\n", ferry::cmd::allocatorSummary());
    fmt::print("pods created in {:.2f} s ({:.0f}/s){}\n", createSeconds, pods / createSeconds,
               precreate ? ", before the scheduler started" : "");
    fmt::print("all bound {:.2f} s after {}: {:.0f} pods/s {}\n", boundSeconds,
               precreate ? "the scheduler started" : "the first creation", (pods - failed) / boundSeconds,
               precreate ? "scheduler-only" : "creation-to-bound");
    fmt::print("placement: {} unbound, {} nodes over allocatable, pods per node min {} max {} (spread {})\n", unbound,
               over, lo, hi, hi - lo);
    if (unbound || over || hi - lo > 1) rc = 2;
  }
  store->reset();
  std::filesystem::remove_all(dir);
  return rc;
}
