#include "agent/core/node_registration.h"
#include "agent/sandbox/ipam.h"

#include "api/log.h"

#include <fmt/format.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace ferry::agent {
namespace {

std::string firstGlobalIPv4() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return {};
  std::string found;
  for (ifaddrs* it = list; it != nullptr && found.empty(); it = it->ifa_next) {
    if (it->ifa_addr == nullptr || it->ifa_addr->sa_family != AF_INET) continue;
    auto* sin = reinterpret_cast<sockaddr_in*>(it->ifa_addr);
    uint32_t addr = ntohl(sin->sin_addr.s_addr);
    if ((addr >> 24) == 127) continue;
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
    found = buf;
  }
  freeifaddrs(list);
  return found;
}

std::int64_t memTotalBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::int64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemTotal:") return kb * 1024;
  return 0;
}

std::string osImage() {
  std::ifstream in("/etc/os-release");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("PRETTY_NAME=", 0) == 0) {
      std::string v = line.substr(12);
      if (v.size() >= 2 && v.front() == '"') v = v.substr(1, v.size() - 2);
      return v;
    }
  return "Linux";
}

// "cpu=100m,memory=256Mi" -> reserved millicores and bytes (the common suffixes only).
void parseReserved(const std::string& spec, std::int64_t& milli, std::int64_t& bytes) {
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto eq = item.find('=');
    if (eq == std::string::npos) continue;
    std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    try {
      if (key == "cpu") {
        milli += value.back() == 'm' ? std::stoll(value.substr(0, value.size() - 1)) : std::stoll(value) * 1000;
      } else if (key == "memory") {
        static const std::pair<const char*, std::int64_t> units[] = {
            {"Ki", 1LL << 10}, {"Mi", 1LL << 20}, {"Gi", 1LL << 30}, {"k", 1000}, {"M", 1000000}, {"G", 1000000000}};
        std::int64_t mult = 1;
        for (auto [suffix, m] : units) {
          std::string s = suffix;
          if (value.size() > s.size() && value.compare(value.size() - s.size(), s.size(), s) == 0) {
            mult = m;
            value = value.substr(0, value.size() - s.size());
            break;
          }
        }
        bytes += std::stoll(value) * mult;
      }
    } catch (const std::exception&) {
      log::warn("ignoring reserved resource \"{}\": not a quantity", item);
    }
  }
}

std::string microTimeNow() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  std::string base = api::toRfc3339(secs);
  return fmt::format("{}.{:06d}Z", base.substr(0, base.size() - 1), micros);
}

}  // namespace

NodeFacts discoverNodeFacts(const AgentConfig& config) {
  NodeFacts f;
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  f.hostname = host;
  f.name = config.nodeName.empty() ? f.hostname : config.nodeName;
  f.internalIP = config.nodeIP.empty() ? firstGlobalIPv4() : config.nodeIP;
  f.cpuCores = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  f.memoryBytes = memTotalBytes();
  utsname u{};
  uname(&u);
  f.kernelVersion = u.release;
  f.osImage = osImage();
  return f;
}

int podCapacity(int maxPods, const std::string& podCIDR) {
  if (podCIDR.empty()) return maxPods;
  auto cidr = Ipv4Cidr::parse(podCIDR);
  if (!cidr) return maxPods;
  return static_cast<int>(std::min<std::int64_t>(maxPods, Ipam(*cidr).capacity()));
}

api::Json buildNodeObject(const NodeFacts& f, const AgentConfig& config, const std::string& podCIDR) {
  const std::string pods = std::to_string(podCapacity(config.maxPods, podCIDR));
  std::int64_t reservedMilli = 0, reservedBytes = 0;
  parseReserved(config.systemReserved, reservedMilli, reservedBytes);
  parseReserved(config.kubeReserved, reservedMilli, reservedBytes);
  std::int64_t allocMilli = std::max<std::int64_t>(0, f.cpuCores * 1000LL - reservedMilli);
  std::int64_t allocBytes = std::max<std::int64_t>(0, f.memoryBytes - reservedBytes);
  std::string now = api::nowRfc3339();
  auto condition = [&](const char* type, const char* status, const char* reason, const char* message) {
    return api::Json{{"type", type}, {"status", status}, {"reason", reason}, {"message", message},
                     {"lastHeartbeatTime", now}, {"lastTransitionTime", now}};
  };
  api::Json addresses = api::Json::array();
  if (!f.internalIP.empty()) addresses.push_back({{"type", "InternalIP"}, {"address", f.internalIP}});
  addresses.push_back({{"type", "Hostname"}, {"address", f.hostname}});
  return api::Json{
      {"apiVersion", "v1"},
      {"kind", "Node"},
      {"metadata",
       {{"name", f.name},
        {"labels",
         {{"kubernetes.io/hostname", f.name}, {"kubernetes.io/os", "linux"}, {"kubernetes.io/arch", "amd64"},
          {"beta.kubernetes.io/os", "linux"}, {"beta.kubernetes.io/arch", "amd64"}}}}},
      {"spec", api::Json::object()},
      {"status",
       {{"capacity",
         {{"cpu", std::to_string(f.cpuCores)}, {"memory", fmt::format("{}Ki", f.memoryBytes / 1024)},
          {"pods", pods}}},
        {"allocatable",
         {{"cpu", fmt::format("{}m", allocMilli)}, {"memory", fmt::format("{}Ki", allocBytes / 1024)},
          {"pods", pods}}},
        {"addresses", addresses},
        {"conditions",
         {condition("Ready", "True", "KubeletReady", "ferry agent is posting ready status"),
          condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "node has sufficient memory available"),
          condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "node has no disk pressure"),
          condition("PIDPressure", "False", "KubeletHasSufficientPID", "node has sufficient PID available")}},
        // Where the API server reaches the node API (agent/server/node_api.h): the --listen port.
        {"daemonEndpoints",
         {{"kubeletEndpoint", {{"Port", std::atoi(config.listen.substr(config.listen.rfind(':') + 1).c_str())}}}}},
        {"nodeInfo",
         {{"machineID", ""}, {"systemUUID", ""}, {"bootID", ""}, {"kernelVersion", f.kernelVersion},
          {"osImage", f.osImage}, {"containerRuntimeVersion", "ferry://0.1.0"}, {"kubeletVersion", "v1.32.0-ferry"},
          {"kubeProxyVersion", "v1.32.0-ferry"}, {"operatingSystem", "linux"}, {"architecture", "amd64"}}}}}};
}

NodeRegistration::NodeRegistration(ApiClient& client, NodeFacts facts, const AgentConfig& config)
    : client_(client), facts_(std::move(facts)), config_(config) {}

Result<std::string> NodeRegistration::registerAndWaitForPodCIDR(int timeoutSeconds, const std::atomic<bool>& stop) {
  // Like the kubelet, keep trying while the API server cannot be reached (it may still be
  // starting, or the node's link just came back); any answer from it is final.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutSeconds);
  for (;;) {
    auto attempt = registerOnce();
    if (attempt || attempt.error().code != ECONNREFUSED || stop || std::chrono::steady_clock::now() >= deadline) {
      if (!attempt) return fail(attempt.error());
      break;
    }
    log::warn("{} (retrying)", attempt.error().message);
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  std::string path = "/api/v1/nodes/" + facts_.name;
  for (int waited = 0; waited < timeoutSeconds * 10 && !stop; ++waited) {
    auto node = client_.get(path);
    if (node) {
      std::string cidr = api::at<std::string>(*node, {"spec", "podCIDR"});
      if (!cidr.empty()) {
        if (auto st = capPodsToCidr(cidr); !st) return fail(st.error());
        return cidr;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return fail(ETIMEDOUT, "node " + facts_.name + ": no podCIDR assigned by the control plane");
}

Status NodeRegistration::registerOnce() {
  api::Json desired = buildNodeObject(facts_, config_);
  std::string path = "/api/v1/nodes/" + facts_.name;
  auto created = client_.post("/api/v1/nodes", desired);
  if (!created && created.error().code != EEXIST) return fail(created.error().wrap("register node " + facts_.name));
  if (!created) {
    // Re-registration after a restart: refresh status, keep spec (podCIDR, taints, unschedulable).
    auto existing = client_.get(path);
    if (!existing) return fail(existing.error().wrap("register node " + facts_.name));
    api::Json update = *existing;
    update["status"] = buildNodeObject(facts_, config_, api::at<std::string>(*existing, {"spec", "podCIDR"}))["status"];
    if (auto st = client_.put(path + "/status", update); !st)
      return fail(st.error().wrap("update status of node " + facts_.name));
  } else {
    // Status is ignored on create by a server with a status subresource; set it now.
    api::Json update = *created;
    // The podCIDR is usually assigned on create already.
    update["status"] = buildNodeObject(facts_, config_, api::at<std::string>(*created, {"spec", "podCIDR"}))["status"];
    if (auto st = client_.put(path + "/status", update); !st)
      log::warn("set initial status of node {}: {}", facts_.name, st.error().message);
  }
  return {};
}

Status NodeRegistration::capPodsToCidr(const std::string& podCIDR) {
  int pods = podCapacity(config_.maxPods, podCIDR);
  if (pods == config_.maxPods) return {};
  log::warn("--max-pods {} is more than pod CIDR {} has addresses for: the node holds {} pods", config_.maxPods,
            podCIDR, pods);
  std::string path = "/api/v1/nodes/" + facts_.name;
  for (int attempt = 0;; ++attempt) {
    auto node = client_.get(path);
    if (!node) return fail(node.error().wrap("cap pods of node " + facts_.name));
    if (api::at<std::string>(*node, {"status", "allocatable", "pods"}) == std::to_string(pods) &&
        api::at<std::string>(*node, {"status", "capacity", "pods"}) == std::to_string(pods))
      return {};
    api::Json update = *node;
    update["status"]["capacity"]["pods"] = std::to_string(pods);
    update["status"]["allocatable"]["pods"] = std::to_string(pods);
    auto st = client_.put(path + "/status", update);
    if (st) return {};
    // A conflict: the node lifecycle controller wrote the Node meanwhile; read it again.
    if (st.error().code != ECANCELED || attempt >= 5) return fail(st.error().wrap("cap pods of node " + facts_.name));
  }
}

Status NodeRegistration::renewLease() {
  std::string path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/" + facts_.name;
  api::Json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                     {"kind", "Lease"},
                     {"metadata", {{"name", facts_.name}, {"namespace", "kube-node-lease"}}},
                     {"spec", {{"holderIdentity", facts_.name}, {"leaseDurationSeconds", 40}, {"renewTime", microTimeNow()}}}};
  if (!leaseResourceVersion_.empty()) {
    lease["metadata"]["resourceVersion"] = leaseResourceVersion_;
    auto updated = client_.put(path, lease);
    if (updated) {
      leaseResourceVersion_ = api::resourceVersionOf(*updated);
      return {};
    }
    leaseResourceVersion_.clear();
    if (updated.error().code != ECANCELED && updated.error().code != ENOENT) return fail(updated.error());
  }
  auto existing = client_.get(path);
  if (existing) {
    lease["metadata"]["resourceVersion"] = api::resourceVersionOf(*existing);
    auto updated = client_.put(path, lease);
    if (!updated) return fail(updated.error());
    leaseResourceVersion_ = api::resourceVersionOf(*updated);
    return {};
  }
  lease["metadata"].erase("resourceVersion");
  auto created = client_.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease);
  if (!created) return fail(created.error());
  leaseResourceVersion_ = api::resourceVersionOf(*created);
  return {};
}

Status NodeRegistration::reportReady(bool ready, const std::string& reason, const std::string& message) {
  std::string path = "/api/v1/nodes/" + facts_.name;
  auto node = client_.get(path);
  if (!node) return fail(node.error());
  api::Json update = *node;
  std::string now = api::nowRfc3339();
  bool changed = false;
  for (auto& c : update["status"]["conditions"]) {
    if (c.value("type", "") != "Ready") continue;
    std::string status = ready ? "True" : "False";
    if (c.value("status", "") != status) {
      c["status"] = status;
      c["lastTransitionTime"] = now;
      changed = true;
    }
    c["reason"] = reason;
    c["message"] = message;
    c["lastHeartbeatTime"] = now;
  }
  if (!changed) return {};
  auto st = client_.put(path + "/status", update);
  if (!st) return fail(st.error());
  return {};
}

}  // namespace ferry::agent
