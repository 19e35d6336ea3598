// Serves a synthetic cluster zone of N Services with Ferry's DNS server, one UDP
// thread, for dnsperf (bench/dns/run). Usage:
//   ferry_dns_bench_server LISTEN_IP:PORT NAMES [UPSTREAM_IP:PORT]
#include "dns/cluster_dns.h"

#include <fmt/format.h>

#include <atomic>
#include <csignal>
#include <thread>

namespace {
std::atomic<bool> stop{false};
void onSignal(int) { stop = true; }
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fmt::print(stderr, "usage: {} LISTEN_IP:PORT NAMES [UPSTREAM_IP:PORT]\n", argv[0]);
    return 2;
  }
  int names = std::atoi(argv[2]);
  ferry::dns::DnsConfig config;
  config.listen = {argv[1]};
  config.udpThreads = 1;
  if (argc > 3) config.upstreams = {argv[3]};
  auto dns = ferry::dns::ClusterDns::start(config);
  if (!dns) {
    fmt::print(stderr, "{}\n", dns.error().message);
    return 1;
  }
  {
    // The Services are input only: like the agent's watch cache they are not the
    // DNS server's memory, so they go once the zone is built.
    std::vector<ferry::api::Service> services;
    for (int i = 0; i < names; ++i) {
      ferry::api::Service s;
      s.name = fmt::format("svc-{}", i);
      s.ns = "bench";
      s.clusterIP = fmt::format("10.43.{}.{}", (i / 250) % 256, i % 250 + 1);
      s.ports.push_back({"http", "TCP", 80, {}, 0});
      services.push_back(std::move(s));
    }
    auto zone = ferry::dns::buildZone("cluster.local", services, {});
    fmt::print("zone: {} names in {} KB\n", zone->nameCount(), zone->storageBytes() / 1024);
    (*dns)->publish(std::move(zone));
  }
  std::signal(SIGTERM, onSignal);
  std::signal(SIGINT, onSignal);
  fmt::print("ready\n");
  std::fflush(stdout);
  while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto c = (*dns)->counters();
  fmt::print("queries {} cluster {} forwarded {} cache-hits {}\n", c.queries, c.clusterAnswers, c.forwarded, c.cacheHits);
  return 0;
}
