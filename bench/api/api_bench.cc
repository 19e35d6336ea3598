// bench/api through the API server: HTTPS with the admin client certificate,
// the path kubectl and the agents take. For each client count: `create` of new
// ConfigMaps (POST), then `update` of each client's own ConfigMap (PUT with its
// resourceVersion, i.e. optimistic concurrency), for --seconds each; then watch
// fan-out: N watch streams on ConfigMaps, one write, time until the last stream
// has the event (median of --rounds).
//
// Usage: ferry_api_bench --server https://127.0.0.1:PORT --cert-dir DATA_DIR
//          [--clients 1,16,64] [--seconds 5] [--watchers 1000] [--rounds 5] [--label NAME]
#include <curl/curl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <unistd.h>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

namespace {

struct Options {
  std::string server;
  std::string certDir;
  std::vector<int> clients = {1, 16, 64};
  int seconds = 5;
  int watchers = 1000;
  int rounds = 5;
  std::string label = "ferry";
  int serverPid = 0;  // when set: the server's CPU time per write (user + system), from /proc
};

// utime + stime of `pid` in microseconds (0 when unknown).
double processCpuMicros(int pid) {
  if (pid <= 0) return 0;
  FILE* f = std::fopen(fmt::format("/proc/{}/stat", pid).c_str(), "r");
  if (!f) return 0;
  char buf[4096];
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');  // the command name may hold spaces
  if (!p) return 0;
  unsigned long utime = 0, stime = 0;
  // Fields after ") ": state(3) ... utime(14) stime(15).
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return 0;
  return (utime + stime) * 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::size_t appendBody(char* data, std::size_t size, std::size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

void setTls(CURL* c, const Options& o) {
  std::string ca = o.certDir + "/tls/ca.crt", cert = o.certDir + "/tls/admin.crt", key = o.certDir + "/tls/admin.key";
  curl_easy_setopt(c, CURLOPT_CAINFO, ca.c_str());
  curl_easy_setopt(c, CURLOPT_SSLCERT, cert.c_str());
  curl_easy_setopt(c, CURLOPT_SSLKEY, key.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
}

class Client {
 public:
  explicit Client(const Options& o) : options_(o), curl_(curl_easy_init()) {
    headers_ = curl_slist_append(nullptr, "Content-Type: application/json");
    headers_ = curl_slist_append(headers_, "Accept: application/json");
    patchHeaders_ = curl_slist_append(nullptr, "Content-Type: application/merge-patch+json");
    patchHeaders_ = curl_slist_append(patchHeaders_, "Accept: application/json");
  }
  ~Client() {
    curl_slist_free_all(headers_);
    curl_slist_free_all(patchHeaders_);
    curl_easy_cleanup(curl_);
  }
  long request(const char* method, const std::string& path, const std::string& body, std::string* reply) {
    curl_easy_reset(curl_);
    setTls(curl_, options_);
    std::string url = options_.server + path;
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, std::strcmp(method, "PATCH") == 0 ? patchHeaders_ : headers_);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, appendBody);
    reply->clear();
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, reply);
    if (!body.empty()) {
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    }
    if (curl_easy_perform(curl_) != CURLE_OK) return 0;
    long status = 0;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
    return status;
  }

 private:
  const Options& options_;
  CURL* curl_;
  curl_slist* headers_;
  curl_slist* patchHeaders_;  // PATCH bodies are JSON merge patches
};

std::string payload() { return std::string(900, 'x'); }  // ~1,000-byte objects, as the store bench

struct Outcome {
  std::vector<double> latenciesMs;
  std::size_t errors = 0;
  double seconds = 0;
  double serverCpuMicros = 0;
};

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * (v.size() - 1) + 0.5))];
}

// Runs `clients` threads for `seconds`; each calls `op(client, thread, iteration)` -> ok.
template <typename Op>
Outcome runLoad(const Options& o, int clients, Op op) {
  std::atomic<bool> stop{false};
  std::mutex mu;
  Outcome out;
  std::vector<std::thread> threads;
  double cpuBefore = processCpuMicros(o.serverPid);
  auto started = Clock::now();
  for (int t = 0; t < clients; ++t)
    threads.emplace_back([&, t] {
      Client client(o);
      std::vector<double> mine;
      std::size_t errors = 0;
      for (int i = 0; !stop; ++i) {
        auto begin = Clock::now();
        bool ok = op(client, t, i);
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - begin).count();
        if (ok) mine.push_back(ms);
        else ++errors;
      }
      std::lock_guard lock(mu);
      out.latenciesMs.insert(out.latenciesMs.end(), mine.begin(), mine.end());
      out.errors += errors;
    });
  std::this_thread::sleep_for(std::chrono::seconds(o.seconds));
  stop = true;
  for (auto& t : threads) t.join();
  out.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  out.serverCpuMicros = processCpuMicros(o.serverPid) - cpuBefore;
  return out;
}

void report(const Options& o, const char* op, int clients, Outcome& out) {
  double rate = out.latenciesMs.size() / out.seconds;
  double p50 = percentile(out.latenciesMs, 0.50), p99 = percentile(out.latenciesMs, 0.99);
  std::string cpu = o.serverPid > 0 && !out.latenciesMs.empty()
                        ? fmt::format("{:.0f}", out.serverCpuMicros / out.latenciesMs.size())
                        : std::string("-");
  fmt::print("| {} | {} | {} | {:.0f} | {:.2f} | {:.2f} | {} | {} |\n", o.label, op, clients, rate, p50, p99, cpu,
             out.errors);
  std::fflush(stdout);
}

void benchWrites(const Options& o, int run) {
  for (int clients : o.clients) {
    std::string body = payload();
    auto created = runLoad(o, clients, [&](Client& c, int t, int i) {
      Json cm = {{"apiVersion", "v1"}, {"kind", "ConfigMap"},
                 {"metadata", {{"name", fmt::format("bench-{}-{}-{}-{}", run, clients, t, i)}}},
                 {"data", {{"v", body}}}};
      std::string reply;
      return c.request("POST", "/api/v1/namespaces/default/configmaps", cm.dump(), &reply) == 201;
    });
    report(o, "create", clients, created);

    // update: each client PUTs its own object with the resourceVersion it last got back.
    std::vector<std::string> versions(clients);
    {
      Client c(o);
      for (int t = 0; t < clients; ++t) {
        Json cm = {{"apiVersion", "v1"}, {"kind", "ConfigMap"},
                   {"metadata", {{"name", fmt::format("bench-upd-{}-{}-{}", run, clients, t)}}}, {"data", {{"v", "0"}}}};
        std::string reply;
        if (c.request("POST", "/api/v1/namespaces/default/configmaps", cm.dump(), &reply) == 201)
          versions[t] = Json::parse(reply)["metadata"].value("resourceVersion", "");
      }
    }
    auto updated = runLoad(o, clients, [&](Client& c, int t, int i) {
      std::string name = fmt::format("bench-upd-{}-{}-{}", run, clients, t);
      Json cm = {{"apiVersion", "v1"}, {"kind", "ConfigMap"},
                 {"metadata", {{"name", name}, {"resourceVersion", versions[t]}}},
                 {"data", {{"v", body.substr(0, 890) + std::to_string(i)}}}};
      std::string reply;
      long status = c.request("PUT", "/api/v1/namespaces/default/configmaps/" + name, cm.dump(), &reply);
      if (status != 200) return false;
      versions[t] = Json::parse(reply)["metadata"].value("resourceVersion", "");
      return true;
    });
    report(o, "update (PUT, resourceVersion)", clients, updated);
  }
}

// One HTTP watch stream per watcher in a single curl multi handle; a stream counts as
// "has it" when the name of the write appears in what it received.
struct WatchStream {
  CURL* curl = nullptr;
  std::string received;
  bool opened = false;
  bool got = false;
};

std::size_t watchBody(char* data, std::size_t size, std::size_t count, void* self) {
  auto* w = static_cast<WatchStream*>(self);
  w->opened = true;
  w->received.append(data, size * count);
  return size * count;
}

// The server answers a watch with its headers at once and the first event only when
// something changes: the status line is what says the stream is open.
std::size_t watchHeader(char* data, std::size_t size, std::size_t count, void* self) {
  if (size * count > 12 && std::strncmp(data, "HTTP/", 5) == 0 && std::strstr(data, " 200")) {
    static_cast<WatchStream*>(self)->opened = true;
  }
  return size * count;
}

void benchFanOut(const Options& o) {
  if (o.watchers <= 0) return;
  Client writer(o);
  std::string reply;
  Json seed = {{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", {{"name", "fanout"}}}, {"data", {{"v", "0"}}}};
  writer.request("POST", "/api/v1/namespaces/default/configmaps", seed.dump(), &reply);
  writer.request("GET", "/api/v1/namespaces/default/configmaps/fanout", "", &reply);
  std::string rv = Json::parse(reply)["metadata"].value("resourceVersion", "");

  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
  std::vector<WatchStream> streams(o.watchers);
  std::string url = o.server + "/api/v1/namespaces/default/configmaps?watch=1&fieldSelector=metadata.name%3Dfanout"
                               "&resourceVersion=" + rv + "&timeoutSeconds=600";
  for (auto& s : streams) {
    s.curl = curl_easy_init();
    setTls(s.curl, o);
    curl_easy_setopt(s.curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(s.curl, CURLOPT_WRITEFUNCTION, watchBody);
    curl_easy_setopt(s.curl, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(s.curl, CURLOPT_HEADERFUNCTION, watchHeader);
    curl_easy_setopt(s.curl, CURLOPT_HEADERDATA, &s);
    curl_easy_setopt(s.curl, CURLOPT_FORBID_REUSE, 1L);
    curl_multi_add_handle(multi, s.curl);
  }
  auto pump = [&](int ms) {
    int running = 0;
    curl_multi_perform(multi, &running);
    curl_multi_poll(multi, nullptr, 0, ms, nullptr);
    curl_multi_perform(multi, &running);
    return running;
  };
  auto deadline = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < deadline &&
         std::count_if(streams.begin(), streams.end(), [](auto& s) { return s.opened; }) < o.watchers)
    pump(50);
  int opened = static_cast<int>(std::count_if(streams.begin(), streams.end(), [](auto& s) { return s.opened; }));

  std::vector<double> times;
  for (int round = 0; round < o.rounds; ++round) {
    for (auto& s : streams) s.received.clear(), s.got = false;
    std::string marker = fmt::format("fanout-round-{}", round);
    Json patch = {{"data", {{"v", marker}}}};
    // The write goes out on its own thread; the clock starts when it is sent.
    auto sent = Clock::now();
    std::thread write([&] {
      Client c(o);
      std::string r;
      c.request("PATCH", "/api/v1/namespaces/default/configmaps/fanout", patch.dump(), &r);
    });
    int have = 0;
    auto roundDeadline = Clock::now() + std::chrono::seconds(30);
    Clock::time_point last = sent;
    while (have < opened && Clock::now() < roundDeadline) {
      pump(1);
      for (auto& s : streams)
        if (!s.got && s.received.find(marker) != std::string::npos) {
          s.got = true;
          ++have;
          last = Clock::now();
        }
    }
    write.join();
    if (have < opened) {
      // Who is missing: streams that closed, or open ones that never got it.
      int closed = 0;
      CURLMsg* m;
      int left = 0;
      while ((m = curl_multi_info_read(multi, &left))) if (m->msg == CURLMSG_DONE) ++closed;
      fmt::print("  {} streams finished meanwhile\n", closed);
    }
    double ms = std::chrono::duration<double, std::milli>(last - sent).count();
    times.push_back(ms);
    fmt::print("fan-out round {}: {}/{} watchers had the event after {:.1f} ms\n", round, have, opened, ms);
  }
  fmt::print("| {} | watch fan-out | {} watchers | median {:.1f} ms |\n", o.label, opened, percentile(times, 0.5));
  for (auto& s : streams) {
    curl_multi_remove_handle(multi, s.curl);
    curl_easy_cleanup(s.curl);
  }
  curl_multi_cleanup(multi);
}

std::vector<int> parseList(const std::string& text) {
  std::vector<int> out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    out.push_back(std::atoi(text.substr(start, comma - start).c_str()));
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--server") o.server = next();
    else if (a == "--cert-dir") o.certDir = next();
    else if (a == "--clients") o.clients = parseList(next());
    else if (a == "--seconds") o.seconds = std::atoi(next().c_str());
    else if (a == "--watchers") o.watchers = std::atoi(next().c_str());
    else if (a == "--rounds") o.rounds = std::atoi(next().c_str());
    else if (a == "--label") o.label = next();
    else if (a == "--server-pid") o.serverPid = std::atoi(next().c_str());
    else {
      fmt::print(stderr, "unknown argument {}\n", a);
      return 2;
    }
  }
  if (o.server.empty() || o.certDir.empty()) {
    fmt::print(stderr, "usage: ferry_api_bench --server URL --cert-dir DATA_DIR [--clients 1,16,64] ...\n");
    return 2;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  fmt::print("| server | operation | clients | writes/s | p50 ms | p99 ms | server CPU µs/write | errors |\n"
             "|---|---|---|---|---|---|---|---|\n");
  benchWrites(o, static_cast<int>(std::time(nullptr) % 100000));
  benchFanOut(o);
  curl_global_cleanup();
  return 0;
}
