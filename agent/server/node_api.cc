#include "agent/server/node_api.h"

#include "agent/core/pod_manager.h"
#include "agent/runtime/container.h"
#include "agent/runtime/exec.h"
#include "agent/sandbox/sandbox_manager.h"
#include "agent/server/websocket.h"
#include "api/metrics.h"
#include "api/log.h"
#include "controlplane-lite/certs.h"
#include "controlplane-lite/http_server.h"

#include <fmt/format.h>

#include <atomic>
#include <csignal>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <poll.h>
#include <unistd.h>

namespace ferry::agent {
namespace {

using cp::HttpRequest;
using cp::HttpResponse;
using Clock = std::chrono::steady_clock;

// Counters for /metrics (one agent per process).
std::atomic<std::uint64_t> logRequests{0};
std::atomic<std::uint64_t> execSessions{0};
std::atomic<std::uint64_t> execSessionsActive{0};
std::atomic<std::uint64_t> statsRequests{0};
std::atomic<std::uint64_t> refusedRequests{0};

HttpResponse status(int code, const std::string& reason, const std::string& message) {
  HttpResponse r;
  r.status = code;
  r.body = api::Json{{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", api::Json::object()}, {"status", "Failure"},
                     {"message", message}, {"reason", reason}, {"code", code}}
               .dump();
  return r;
}

HttpResponse errorResponse(const Error& error) {
  switch (error.code) {
    case ENOENT: return status(404, "NotFound", error.message);
    case EINVAL: return status(400, "BadRequest", error.message);
    default: return status(500, "InternalError", error.message);
  }
}

bool isTrue(const std::string& v) { return v == "true" || v == "1"; }

std::optional<std::int64_t> intParam(const HttpRequest& req, const std::string& name) {
  std::string v = req.param(name);
  if (v.empty()) return std::nullopt;
  char* end = nullptr;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (!end || *end != '\0') return std::nullopt;
  return n;
}

// "2026-11-25T12:00:00Z" or with fractional seconds.
std::optional<std::chrono::system_clock::time_point> parseRfc3339(const std::string& text) {
  std::tm tm{};
  const char* rest = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) return std::nullopt;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// One exec session over the upgraded connection, served from this one thread: the
// connection (a TLS stream) must not be read and written from two threads at once.
void runExecSession(cp::UpgradedConnection& conn, runtime::ExecProcess& process, bool v5) {
  ++execSessions;
  ++execSessionsActive;
  WsDecoder decoder;
  int outFd = process.stdoutFd();
  int errFd = process.stderrFd();
  bool clientGone = false;
  std::vector<char> buffer(32 * 1024);
  auto send = [&](std::uint8_t channel, std::string_view data) {
    if (!conn.write(encodeWsFrame(WsOpcode::Binary, channelPayload(channel, data)))) clientGone = true;
  };
  // kubectl (client-go) starts reading frames before it has registered its stdout and
  // stderr streams, and drops a frame for a stream it does not know yet ("Unknown stream
  // id 1, discarding message"). A real kubelet answers only after a SPDY round trip, so
  // the race is never lost there; our process is already running and its output is
  // waiting in the pipe. Hold the first frame back briefly, it stays in the pipe meanwhile.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  while (!clientGone && (outFd >= 0 || errFd >= 0)) {
    std::vector<pollfd> fds;
    fds.push_back({conn.pollFd(), POLLIN, 0});
    if (outFd >= 0) fds.push_back({outFd, POLLIN, 0});
    if (errFd >= 0) fds.push_back({errFd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), 200) < 0 && errno != EINTR) break;

    // From the client: stdin, resize, close-stdin, pings, close.
    while (true) {
      long n = conn.readAvailable(buffer.data(), buffer.size());
      if (n < 0) clientGone = true;
      if (n <= 0) break;
      decoder.feed(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
    }
    while (!clientGone) {
      auto message = decoder.next();
      if (!message) {
        log::debug("exec: {}", message.error().message);
        clientGone = true;
        break;
      }
      if (!*message) break;
      WsMessage& m = **message;
      if (m.opcode == WsOpcode::Ping) {
        conn.write(encodeWsFrame(WsOpcode::Pong, m.payload));
        continue;
      }
      if (m.opcode == WsOpcode::Close) {
        conn.write(encodeWsFrame(WsOpcode::Close, std::string("\x03\xe8", 2)));
        clientGone = true;
        break;
      }
      if (m.opcode == WsOpcode::Pong || m.payload.empty()) continue;
      auto channel = static_cast<std::uint8_t>(m.payload[0]);
      std::string_view data = std::string_view(m.payload).substr(1);
      if (channel == kChannelStdin && process.stdinFd() >= 0) {
        if (!writeAll(process.stdinFd(), data)) process.closeStdin();
      } else if (channel == kChannelResize) {
        if (auto size = parseTerminalSize(data)) process.resizeTerminal(size->height, size->width);
      } else if (channel == kChannelClose && v5 && !data.empty() && data[0] == kChannelStdin) {
        // With a tty, stdin is the pty master that also carries stdout: keep it.
        if (process.stdinFd() != process.stdoutFd()) process.closeStdin();
      }
    }
    if (clientGone) break;

    // From the process: stdout and stderr.
    for (int* fd : {&outFd, &errFd}) {
      if (*fd < 0) continue;
      pollfd p{*fd, POLLIN, 0};
      if (::poll(&p, 1, 0) <= 0) continue;
      ssize_t n = ::read(*fd, buffer.data(), buffer.size());
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {  // EOF, or EIO from a pty whose other side is gone
        *fd = -1;
        continue;
      }
      send(fd == &outFd ? kChannelStdout : kChannelStderr, std::string_view(buffer.data(), static_cast<std::size_t>(n)));
    }
  }
  if (clientGone) process.signal(SIGKILL);
  auto exit = process.wait();
  if (!clientGone) {
    conn.write(encodeWsFrame(WsOpcode::Binary,
                             channelPayload(kChannelStatus, exit ? execStatusJson(*exit) : execErrorStatusJson(exit.error().message))));
    conn.write(encodeWsFrame(WsOpcode::Close, std::string("\x03\xe8", 2)));
  }
  --execSessionsActive;
}

// Node CPU from /proc/stat: everything but idle and iowait, in nanoseconds.
std::optional<std::uint64_t> nodeCpuUsageNs() {
  std::ifstream in("/proc/stat");
  std::string label;
  in >> label;
  if (label != "cpu") return std::nullopt;
  std::uint64_t values[10] = {};
  for (auto& v : values) in >> v;
  std::uint64_t busy = 0;
  for (int i = 0; i < 10; ++i)
    if (i != 3 && i != 4 && i < 8) busy += values[i];  // user nice system [idle iowait] irq softirq steal
  long hz = ::sysconf(_SC_CLK_TCK);
  if (hz <= 0) hz = 100;
  return busy * (1'000'000'000ull / static_cast<std::uint64_t>(hz));
}

struct NodeMemory {
  std::uint64_t total = 0, available = 0;
};
NodeMemory nodeMemory() {
  NodeMemory m;
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::uint64_t value = 0;
  std::string unit;
  while (in >> key >> value) {
    std::getline(in, unit);
    if (key == "MemTotal:") m.total = value * 1024;
    if (key == "MemAvailable:") m.available = value * 1024;
  }
  return m;
}

}  // namespace

NodeApiPath parseNodeApiPath(std::string_view path) {
  NodeApiPath out;
  if (path == "/healthz") out.kind = NodeApiPath::Kind::Healthz;
  else if (path == "/stats/summary" || path == "/stats/summary/") out.kind = NodeApiPath::Kind::StatsSummary;
  else if (path == "/metrics") out.kind = NodeApiPath::Kind::Metrics;
  if (out.kind != NodeApiPath::Kind::Unknown) return out;
  std::vector<std::string> parts;
  std::string_view rest = path;
  while (!rest.empty()) {
    if (rest.front() == '/') {
      rest.remove_prefix(1);
      continue;
    }
    auto slash = rest.find('/');
    parts.emplace_back(rest.substr(0, slash));
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  }
  if (parts.size() != 4) return out;
  for (std::size_t i = 1; i < 4; ++i)
    if (parts[i].empty() || parts[i] == "." || parts[i] == "..") return out;
  if (parts[0] == "containerLogs") out.kind = NodeApiPath::Kind::ContainerLogs;
  else if (parts[0] == "exec") out.kind = NodeApiPath::Kind::Exec;
  else return out;
  out.ns = parts[1];
  out.pod = parts[2];
  out.container = parts[3];
  return out;
}

std::vector<std::string> queryValues(std::string_view rawQuery, std::string_view name) {
  if (!rawQuery.empty() && rawQuery.front() == '?') rawQuery.remove_prefix(1);
  std::vector<std::string> out;
  while (!rawQuery.empty()) {
    auto amp = rawQuery.find('&');
    std::string_view part = rawQuery.substr(0, amp);
    rawQuery = amp == std::string_view::npos ? std::string_view() : rawQuery.substr(amp + 1);
    auto eq = part.find('=');
    if (cp::percentDecode(part.substr(0, eq), true) != name) continue;
    out.push_back(eq == std::string_view::npos ? std::string() : cp::percentDecode(part.substr(eq + 1), true));
  }
  return out;
}

std::optional<std::uint64_t> CpuRateTracker::observe(const std::string& key, Clock::time_point when,
                                                      std::uint64_t cumulativeNs) {
  std::lock_guard lock(mu_);
  auto [it, inserted] = samples_.try_emplace(key);
  Pair& p = it->second;
  p.lastSeen = when;
  if (inserted) {
    p.latest = {when, cumulativeNs};
  } else if (when - p.latest.when >= minInterval_) {
    if (cumulativeNs < p.latest.usageNs) p.previous.reset();  // counter reset: the cgroup was remade
    else p.previous = p.latest;
    p.latest = {when, cumulativeNs};
  }
  if (!p.previous) return std::nullopt;
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(p.latest.when - p.previous->when).count();
  if (ns <= 0) return std::nullopt;
  long double rate = static_cast<long double>(p.latest.usageNs - p.previous->usageNs) * 1e9L / static_cast<long double>(ns);
  return static_cast<std::uint64_t>(rate);
}

void CpuRateTracker::forgetOlderThan(Clock::time_point before) {
  std::lock_guard lock(mu_);
  std::erase_if(samples_, [&](const auto& kv) { return kv.second.lastSeen < before; });
}

NodeApi::NodeApi(NodeApiConfig config, PodManager& pods, SandboxManager& sandboxes, runtime::ContainerRuntime& runtime)
    : config_(std::move(config)), pods_(pods), sandboxes_(sandboxes), runtime_(runtime),
      startTime_(std::chrono::system_clock::now()) {}

NodeApi::~NodeApi() {
  if (server_) server_->stop();
}

int NodeApi::port() const { return server_ ? server_->port() : 0; }

Result<std::unique_ptr<NodeApi>> NodeApi::start(const NodeApiConfig& config, PodManager& pods, SandboxManager& sandboxes,
                                                runtime::ContainerRuntime& runtime) {
  if (config.clusterCaPem.empty()) return fail(EINVAL, "node API: the cluster CA is needed to check callers");
  std::unique_ptr<NodeApi> nodeApi(new NodeApi(config, pods, sandboxes, runtime));
  auto colon = config.listen.rfind(':');
  if (colon == std::string::npos) return fail(EINVAL, "--listen: want host:port, got \"" + config.listen + "\"");
  std::string host = config.listen.substr(0, colon);
  if (host.empty() || host == "0.0.0.0") host = config.nodeIP.empty() ? "0.0.0.0" : config.nodeIP;
  cp::HttpsServerOptions options;
  options.listen = host + config.listen.substr(colon);
  if (!config.servingCertPem.empty()) {
    options.certPem = config.servingCertPem;
    options.keyPem = config.servingKeyPem;
  } else {
    // No certificate from the cluster: a self-signed one for this node's name and address.
    auto ca = cp::makeCertificateAuthority();
    if (!ca) return fail(ca.error().wrap("node API serving certificate"));
    cp::SubjectAltNames sans;
    sans.dnsNames = {config.nodeName};
    if (!config.nodeIP.empty()) sans.ips = {config.nodeIP};
    auto serving = cp::issueCertificate(*ca, "system:node:" + config.nodeName, {"system:nodes"}, sans, true, 3650);
    if (!serving) return fail(serving.error().wrap("node API serving certificate"));
    options.certPem = serving->certPem + ca->certPem;
    options.keyPem = serving->keyPem;
  }
  options.clientCaPem = config.clusterCaPem;
  options.maxBodyBytes = 64 * 1024;
  NodeApi* self = nodeApi.get();
  auto server = cp::startHttpsServer(options, [self](HttpRequest& req) { return self->handle(req); });
  if (!server) return fail(server.error().wrap("node API"));
  nodeApi->server_ = std::move(*server);
  return nodeApi;
}

HttpResponse NodeApi::handle(HttpRequest& req) {
  NodeApiPath path = parseNodeApiPath(req.path);
  if (path.kind == NodeApiPath::Kind::Healthz) {
    HttpResponse r;
    r.contentType = "text/plain";
    r.body = "ok";
    return r;
  }
  if (!req.clientCertVerified) {
    ++refusedRequests;
    return status(401, "Unauthorized", "Unauthorized");
  }
  bool master = false;
  for (const auto& o : req.clientCertOrganizations) master = master || o == "system:masters";
  if (!master) {
    ++refusedRequests;
    return status(403, "Forbidden",
                  fmt::format("user \"{}\" may not use the node API of {}", req.clientCertCommonName, config_.nodeName));
  }
  switch (path.kind) {
    case NodeApiPath::Kind::ContainerLogs:
      if (req.method != "GET") break;
      return serveLogs(req, path);
    case NodeApiPath::Kind::Exec:
      if (req.method != "GET" && req.method != "POST") break;
      return serveExec(req, path);
    case NodeApiPath::Kind::StatsSummary:
      if (req.method != "GET") break;
      return serveStats();
    case NodeApiPath::Kind::Metrics:
      if (req.method != "GET") break;
      return serveMetrics();
    default:
      return status(404, "NotFound", "no such path: " + req.path);
  }
  return status(405, "MethodNotAllowed", req.method + " is not allowed on " + req.path);
}

HttpResponse NodeApi::serveLogs(const HttpRequest& req, const NodeApiPath& path) {
  ++logRequests;
  std::shared_ptr<runtime::PodWorker> worker = pods_.worker(path.ns, path.pod);
  if (!worker) return status(404, "NotFound", fmt::format("pod {}/{} is not on node {}", path.ns, path.pod, config_.nodeName));
  bool previous = isTrue(req.param("previous"));
  if (auto p = worker->logPath(path.container, previous); !p) return errorResponse(p.error());
  runtime::LogOptions options;
  options.follow = isTrue(req.param("follow"));
  options.timestamps = isTrue(req.param("timestamps"));
  options.tailLines = intParam(req, "tailLines");
  options.sinceSeconds = intParam(req, "sinceSeconds");
  options.limitBytes = intParam(req, "limitBytes");
  if (req.hasParam("sinceTime")) {
    options.sinceTime = parseRfc3339(req.param("sinceTime"));
    if (!options.sinceTime) return status(400, "BadRequest", "sinceTime: not an RFC 3339 time");
  }
  for (auto* v : {&options.tailLines, &options.sinceSeconds, &options.limitBytes})
    if (*v && **v < 0) return status(400, "BadRequest", "tailLines, sinceSeconds and limitBytes must not be negative");
  HttpResponse r;
  r.contentType = "text/plain";
  r.stream = [this, worker, path, previous, options](cp::ResponseStream& out) {
    // A follow can outlast the pod: stop as soon as its worker is no longer registered
    // (the stream's reference keeps the stopped worker alive until then).
    auto keepFollowing = [&] { return !out.stopping() && pods_.worker(path.ns, path.pod) == worker; };
    auto st = worker->readLogs(
        path.container, previous, options, [&out](std::string_view chunk) { return out.write(chunk); }, keepFollowing);
    if (!st) log::debug("logs of {}/{}/{}: {}", path.ns, path.pod, path.container, st.error().message);
  };
  return r;
}

HttpResponse NodeApi::serveExec(const HttpRequest& req, const NodeApiPath& path) {
  // A wrong pod or container name first: kubectl falls back to SPDY after any failed
  // WebSocket upgrade, and the user should see this error rather than the SPDY one.
  std::shared_ptr<runtime::PodWorker> worker = pods_.worker(path.ns, path.pod);
  if (!worker) return status(404, "NotFound", fmt::format("pod {}/{} is not on node {}", path.ns, path.pod, config_.nodeName));
  if (auto known = worker->logPath(path.container, false); !known && known.error().code == ENOENT)
    return errorResponse(known.error());
  std::string protocol = chooseStreamProtocol(req.header("sec-websocket-protocol"));
  std::string key = req.header("sec-websocket-key");
  std::string upgrade = req.header("upgrade");
  for (auto& c : upgrade) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (upgrade != "websocket" || key.empty())
    return status(400, "BadRequest", "exec needs a WebSocket upgrade (SPDY is not supported)");
  if (protocol.empty())
    return status(400, "BadRequest", "exec needs the v5.channel.k8s.io or v4.channel.k8s.io WebSocket protocol");
  auto queryStart = req.target.find('?');
  std::string_view rawQuery = queryStart == std::string::npos ? std::string_view() : std::string_view(req.target).substr(queryStart + 1);
  runtime::ExecOptions options;
  options.argv = queryValues(rawQuery, "command");
  if (options.argv.empty()) return status(400, "BadRequest", "exec: no command given");
  options.stdin = isTrue(req.param("stdin")) || isTrue(req.param("input"));
  options.tty = isTrue(req.param("tty"));
  auto process = worker->exec(path.container, options);
  if (!process) return errorResponse(process.error());
  HttpResponse r;
  r.status = 101;
  r.headers = {{"Upgrade", "websocket"},
               {"Connection", "Upgrade"},
               {"Sec-WebSocket-Accept", webSocketAccept(key)},
               {"Sec-WebSocket-Protocol", protocol}};
  bool v5 = protocol == kStreamProtocolV5;
  std::shared_ptr<runtime::ExecProcess> shared(std::move(*process));
  r.upgrade = [shared, v5](cp::UpgradedConnection& conn) { runExecSession(conn, *shared, v5); };
  return r;
}

void NodeApi::sampleCpu() {
  auto now = Clock::now();
  if (auto node = nodeCpuUsageNs()) rates_.observe("node", now, *node);
  for (const auto& sb : sandboxes_.list())
    if (auto st = sandboxes_.cgroups().stats(sb.cgroupPath)) rates_.observe(sb.cgroupPath, now, st->cpuUsageNs);
  for (const auto& c : runtime_.list()) {
    auto uid = c.labels.find("io.kubernetes.pod.uid");
    auto name = c.labels.find("io.kubernetes.container.name");
    if (uid == c.labels.end() || name == c.labels.end()) continue;
    for (const auto& sb : sandboxes_.list()) {
      if (sb.uid != uid->second) continue;
      std::string path = sb.cgroupPath + "/" + name->second;
      if (auto st = sandboxes_.cgroups().stats(path)) rates_.observe(path, now, st->cpuUsageNs);
    }
  }
  rates_.forgetOlderThan(now - std::chrono::minutes(5));
}

api::Json NodeApi::summary() {
  auto now = Clock::now();
  std::string time = rfc3339(std::chrono::system_clock::now());
  auto cpuJson = [&](const std::string& key, std::uint64_t usageNs) {
    api::Json cpu = {{"time", time}, {"usageCoreNanoSeconds", usageNs}};
    if (auto rate = rates_.observe(key, now, usageNs)) cpu["usageNanoCores"] = *rate;
    return cpu;
  };
  api::Json node = {{"nodeName", config_.nodeName}, {"startTime", rfc3339(startTime_)}};
  if (auto usage = nodeCpuUsageNs()) node["cpu"] = cpuJson("node", *usage);
  NodeMemory mem = nodeMemory();
  if (mem.total > 0) {
    std::uint64_t used = mem.total - std::min(mem.total, mem.available);
    node["memory"] = {{"time", time}, {"availableBytes", mem.available}, {"usageBytes", used}, {"workingSetBytes", used}};
  }

  // Container names by pod uid, from the runtime's labels.
  std::map<std::string, std::set<std::string>> containersByPod;
  for (const auto& c : runtime_.list()) {
    auto uid = c.labels.find("io.kubernetes.pod.uid");
    auto name = c.labels.find("io.kubernetes.container.name");
    if (uid != c.labels.end() && name != c.labels.end()) containersByPod[uid->second].insert(name->second);
  }
  api::Json pods = api::Json::array();
  for (const auto& sb : sandboxes_.list()) {
    auto st = sandboxes_.cgroups().stats(sb.cgroupPath);
    if (!st) continue;
    api::Json pod = {{"podRef", {{"name", sb.name}, {"namespace", sb.namespace_}, {"uid", sb.uid}}},
                     {"cpu", cpuJson(sb.cgroupPath, st->cpuUsageNs)},
                     {"memory", {{"time", time}, {"usageBytes", st->memoryUsageBytes}, {"workingSetBytes", st->memoryWorkingSetBytes}}}};
    api::Json containers = api::Json::array();
    for (const auto& name : containersByPod[sb.uid]) {
      std::string path = sb.cgroupPath + "/" + name;
      auto cst = sandboxes_.cgroups().stats(path);
      if (!cst) continue;
      containers.push_back({{"name", name},
                            {"cpu", cpuJson(path, cst->cpuUsageNs)},
                            {"memory", {{"time", time}, {"usageBytes", cst->memoryUsageBytes}, {"workingSetBytes", cst->memoryWorkingSetBytes}}}});
    }
    pod["containers"] = std::move(containers);
    pods.push_back(std::move(pod));
  }
  return {{"node", std::move(node)}, {"pods", std::move(pods)}};
}

HttpResponse NodeApi::serveStats() {
  ++statsRequests;
  HttpResponse r;
  r.body = summary().dump();
  return r;
}

HttpResponse NodeApi::serveMetrics() {
  std::size_t sandboxes = sandboxes_.list().size();
  std::size_t containers = runtime_.list().size();
  std::string out;
  auto gauge = [&](const char* name, const char* help, std::uint64_t value, const char* type = "gauge") {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
  };
  gauge("ferry_agent_pods", "Pods this agent manages.", pods_.runningPods());
  gauge("ferry_agent_sandboxes", "Pod sandboxes on this node.", sandboxes);
  gauge("ferry_agent_containers", "Containers known to the runtime (running or exited, not yet removed).", containers);
  gauge("ferry_agent_exec_sessions_active", "kubectl exec sessions open now.", execSessionsActive.load());
  gauge("ferry_agent_exec_sessions_total", "kubectl exec sessions started.", execSessions.load(), "counter");
  gauge("ferry_agent_log_requests_total", "Container log requests served.", logRequests.load(), "counter");
  gauge("ferry_agent_stats_requests_total", "/stats/summary requests served.", statsRequests.load(), "counter");
  gauge("ferry_agent_refused_requests_total", "Node API requests refused for missing or wrong credentials.",
        refusedRequests.load(), "counter");
  auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - startTime_).count();
  gauge("ferry_agent_uptime_seconds", "Seconds since the node API started.", static_cast<std::uint64_t>(uptime));
  out += metrics::registry().render();  // pod start latency, sync durations, proxy maps, DNS, eviction
  HttpResponse r;
  r.contentType = "text/plain; version=0.0.4";
  r.body = std::move(out);
  return r;
}

}  // namespace ferry::agent
