// Open-loop latency probe for bench/dns: sends UDP queries at a fixed rate
// (not "as fast as answers come back", which hides queueing) and records the
// latency of every one. dnsperf 2.10 reports only min/avg/max, and its -v
// per-query lines make the client the bottleneck. Usage:
//   dns_latency_probe SERVER_IP PORT QUERY_FILE QPS SECONDS
// QUERY_FILE is dnsperf's format ("name TYPE" per line, A/AAAA/SRV/PTR/TXT).
// Prints one line: sent, answered, lost, the rate achieved and latency
// percentiles in microseconds. Unanswered queries count as infinitely slow in
// the percentiles, so loss cannot improve a p99.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::uint16_t typeCode(const std::string& t) {
  if (t == "AAAA") return 28;
  if (t == "SRV") return 33;
  if (t == "PTR") return 12;
  if (t == "TXT") return 16;
  return 1;
}

std::vector<std::uint8_t> wireQuery(const std::string& name, std::uint16_t type) {
  std::vector<std::uint8_t> q = {0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  std::stringstream labels(name);
  for (std::string label; std::getline(labels, label, '.');) {
    if (label.empty()) continue;
    q.push_back(static_cast<std::uint8_t>(label.size()));
    q.insert(q.end(), label.begin(), label.end());
  }
  q.insert(q.end(), {0, static_cast<std::uint8_t>(type >> 8), static_cast<std::uint8_t>(type), 0, 1});
  return q;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s SERVER_IP PORT QUERY_FILE QPS SECONDS\n", argv[0]);
    return 2;
  }
  std::vector<std::vector<std::uint8_t>> queries;
  {
    std::ifstream in(argv[3]);
    std::string name, type;
    while (in >> name >> type) queries.push_back(wireQuery(name, typeCode(type)));
  }
  double qps = std::atof(argv[4]), seconds = std::atof(argv[5]);
  if (queries.empty() || qps <= 0 || seconds <= 0) {
    std::fprintf(stderr, "no queries, or a rate/duration that is not positive\n");
    return 2;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  int buffer = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer);
  sockaddr_in server{};
  server.sin_family = AF_INET;
  server.sin_port = htons(static_cast<std::uint16_t>(std::atoi(argv[2])));
  if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1 ||
      connect(fd, reinterpret_cast<sockaddr*>(&server), sizeof server) != 0) {
    std::perror("server");
    return 1;
  }

  // The query id is the slot of its send time. Ids repeat every 65,536
  // queries (under a second at these rates); answers come within milliseconds,
  // so a slot is free again long before it is reused.
  std::vector<Clock::time_point> sentAt(65536);
  std::vector<bool> waiting(65536, false);
  std::vector<std::uint32_t> latenciesUs;
  const auto total = static_cast<std::uint64_t>(qps * seconds);
  latenciesUs.reserve(total);
  const auto interval = std::chrono::duration<double>(1.0 / qps);
  std::uint64_t sent = 0, answered = 0;
  std::uint8_t reply[4096];
  const auto start = Clock::now();
  const auto stopSending = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  const auto stopWaiting = stopSending + std::chrono::milliseconds(200);  // answers still on their way
  // Between sends the probe sleeps in ppoll (woken by an answer or at the next
  // send's time) instead of spinning: a spinning probe takes its whole core,
  // which under FIFO=1 runs into the kernel's real-time throttling (50 ms off
  // the core every second, the "p99" of every server) and at nice 0 makes it a
  // compiler's equal on a shared core. The timer slack of 1 ns keeps the wake
  // at the send time (50 µs by default outside real-time scheduling).
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);

  while (true) {
    auto now = Clock::now();
    if (now >= stopWaiting) break;
    // Send everything whose time has come (a burst if we fell behind).
    while (sent < total && now >= start + std::chrono::duration_cast<Clock::duration>(interval * sent)) {
      std::uint16_t id = static_cast<std::uint16_t>(sent);
      auto& q = queries[sent % queries.size()];
      q[0] = static_cast<std::uint8_t>(id >> 8);
      q[1] = static_cast<std::uint8_t>(id);
      sentAt[id] = Clock::now();
      waiting[id] = true;
      if (send(fd, q.data(), q.size(), MSG_DONTWAIT) < 0) waiting[id] = false;
      ++sent;
    }
    // Then read what has come back, without blocking.
    while (true) {
      ssize_t n = recv(fd, reply, sizeof reply, MSG_DONTWAIT);
      if (n < 12) break;
      auto got = Clock::now();
      std::uint16_t id = static_cast<std::uint16_t>((reply[0] << 8) | reply[1]);
      if (!waiting[id]) continue;
      waiting[id] = false;
      ++answered;
      latenciesUs.push_back(
          static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::microseconds>(got - sentAt[id]).count()));
    }
    auto next = sent < total ? start + std::chrono::duration_cast<Clock::duration>(interval * sent) : stopWaiting;
    auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(next - Clock::now()).count();
    if (wait > 0) {
      timespec ts{static_cast<time_t>(wait / 1000000000), static_cast<long>(wait % 1000000000)};
      pollfd p{fd, POLLIN, 0};
      ppoll(&p, 1, &ts, nullptr);
    }
  }
  auto elapsed = std::chrono::duration<double>(stopSending - start).count();
  std::uint64_t lost = sent - answered;
  std::sort(latenciesUs.begin(), latenciesUs.end());
  auto percentile = [&](double p) -> std::string {
    auto rank = static_cast<std::uint64_t>(p * static_cast<double>(sent));
    if (rank >= latenciesUs.size()) return "lost";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%u", latenciesUs[rank]);
    return buf;
  };
  // How often the probe itself was taken off its core (a stall here delays the
  // reading of answers and counts against the server).
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("sent %llu answered %llu lost %llu rate %.0f p50_us %s p90_us %s p99_us %s p999_us %s max_us %s "
              "probe_preempted %ld\n",
              static_cast<unsigned long long>(sent), static_cast<unsigned long long>(answered),
              static_cast<unsigned long long>(lost), static_cast<double>(sent) / elapsed, percentile(0.50).c_str(),
              percentile(0.90).c_str(), percentile(0.99).c_str(), percentile(0.999).c_str(),
              latenciesUs.empty() ? "lost" : std::to_string(latenciesUs.back()).c_str(), usage.ru_nivcsw);
  close(fd);
  return 0;
}
