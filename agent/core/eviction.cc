#include "agent/core/eviction.h"

#include "agent/core/pod_manager.h"
#include "agent/sandbox/sandbox_manager.h"
#include "api/log.h"
#include "api/metrics.h"
#include "api/quantity.h"

#include <fmt/format.h>

#include <sys/statvfs.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace ferry::agent {
namespace {

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.erase(s.begin());
  return s;
}

std::optional<EvictionSignal> signalFromName(const std::string& name) {
  for (auto s : {EvictionSignal::MemoryAvailable, EvictionSignal::AllocatableMemoryAvailable,
                 EvictionSignal::NodeFsAvailable, EvictionSignal::NodeFsInodesFree})
    if (signalName(s) == name) return s;
  return std::nullopt;
}

bool isMemorySignal(EvictionSignal s) { return resourceOf(s) == EvictionResource::Memory; }

// Bytes (or a count) as Kubernetes prints a quantity: "100Mi", "51200Ki", "12345".
std::string quantityText(std::int64_t value, EvictionResource resource) {
  if (value < 0) return "-" + quantityText(-value, resource);
  return api::Quantity::fromValue(value, api::Quantity::Format::BinarySI).canonical();
}

std::int64_t quantityAt(const api::Json& resources, const char* kind, const char* name) {
  if (!resources.is_object() || !resources.contains(kind) || !resources[kind].is_object() ||
      !resources[kind].contains(name))
    return -1;
  auto q = api::Quantity::fromJson(resources[kind][name]);
  return q ? q->value() : -1;
}

// A container's request, defaulted to its limit as the API server does.
std::int64_t requestOf(const api::Json& container, const char* name) {
  const api::Json res = container.value("resources", api::Json::object());
  std::int64_t request = quantityAt(res, "requests", name);
  if (request < 0) request = quantityAt(res, "limits", name);
  return std::max<std::int64_t>(0, request);
}

std::int64_t usageAboveRequest(const PodUsage& p, EvictionResource r) {
  return r == EvictionResource::Memory ? p.memoryUsage - p.memoryRequest : p.storageUsage - p.storageRequest;
}

std::string conditionTypeOf(EvictionResource r) { return r == EvictionResource::Memory ? "MemoryPressure" : "DiskPressure"; }

// Bytes under `dir` (regular files, not following links; other mounts are not skipped:
// a pod's emptyDirs count as its storage, as the kubelet's do).
std::int64_t directoryBytes(const std::string& dir) {
  std::int64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code fileEc;
    if (it->is_regular_file(fileEc) && !it->is_symlink(fileEc)) {
      auto size = it->file_size(fileEc);
      if (!fileEc) total += static_cast<std::int64_t>(size);
    }
  }
  return total;
}

bool toleratesTaint(const api::Json& pod, const std::string& key) {
  auto tolerations = api::at<api::Json>(pod, {"spec", "tolerations"}, api::Json::array());
  if (!tolerations.is_array()) return false;
  for (const auto& t : tolerations) {
    std::string op = t.value("operator", std::string("Equal")), tkey = t.value("key", std::string());
    std::string effect = t.value("effect", std::string());
    if (!effect.empty() && effect != "NoSchedule") continue;
    if ((op == "Exists" && (tkey.empty() || tkey == key)) || tkey == key) return true;
  }
  return false;
}

}  // namespace

std::string signalName(EvictionSignal signal) {
  switch (signal) {
    case EvictionSignal::MemoryAvailable: return "memory.available";
    case EvictionSignal::AllocatableMemoryAvailable: return "allocatableMemory.available";
    case EvictionSignal::NodeFsAvailable: return "nodefs.available";
    case EvictionSignal::NodeFsInodesFree: return "nodefs.inodesFree";
  }
  return "unknown";
}

EvictionResource resourceOf(EvictionSignal signal) {
  return signal == EvictionSignal::MemoryAvailable || signal == EvictionSignal::AllocatableMemoryAvailable
             ? EvictionResource::Memory
             : EvictionResource::EphemeralStorage;
}

std::string resourceName(EvictionResource resource) {
  return resource == EvictionResource::Memory ? "memory" : "ephemeral-storage";
}

Result<std::vector<EvictionThreshold>> parseEvictionThresholds(const std::string& spec) {
  std::vector<EvictionThreshold> out;
  std::stringstream ss(spec);
  std::string statement;
  while (std::getline(ss, statement, ',')) {
    statement = trim(statement);
    if (statement.empty()) continue;
    auto lt = statement.find('<');
    if (lt == std::string::npos)
      return fail(EINVAL, fmt::format("--eviction-hard: \"{}\": expected SIGNAL<QUANTITY (only '<' is supported)",
                                      statement));
    std::string name = trim(statement.substr(0, lt)), value = trim(statement.substr(lt + 1));
    auto signal = signalFromName(name);
    if (!signal)
      return fail(EINVAL, fmt::format("--eviction-hard: \"{}\": unknown signal \"{}\" (memory.available, "
                                      "allocatableMemory.available, nodefs.available, nodefs.inodesFree)",
                                      statement, name));
    if (std::any_of(out.begin(), out.end(), [&](const EvictionThreshold& t) { return t.signal == *signal; }))
      return fail(EINVAL, fmt::format("--eviction-hard: signal {} is given twice", name));
    EvictionThreshold t;
    t.signal = *signal;
    if (!value.empty() && value.back() == '%') {
      double pct = 0;
      try {
        size_t used = 0;
        pct = std::stod(value.substr(0, value.size() - 1), &used);
        if (used != value.size() - 1) throw std::invalid_argument(value);
      } catch (const std::exception&) {
        return fail(EINVAL, fmt::format("--eviction-hard: \"{}\": \"{}\" is not a percentage", statement, value));
      }
      if (!(pct > 0 && pct <= 100))
        return fail(EINVAL, fmt::format("--eviction-hard: \"{}\": percentage must be in (0%, 100%]", statement));
      t.percentage = pct / 100.0;
    } else {
      auto q = api::Quantity::parse(value);
      if (!q) return fail(EINVAL, fmt::format("--eviction-hard: \"{}\": {}", statement, q.error().message));
      if (q->sign() < 0)
        return fail(EINVAL, fmt::format("--eviction-hard: \"{}\": the quantity must not be negative", statement));
      t.quantity = q->value();
    }
    out.push_back(t);
  }
  // Node allocatable is enforced for pods: the memory threshold applies to it too.
  bool hasAllocatable = std::any_of(out.begin(), out.end(), [](const EvictionThreshold& t) {
    return t.signal == EvictionSignal::AllocatableMemoryAvailable;
  });
  if (!hasAllocatable)
    for (size_t i = 0, n = out.size(); i < n; ++i)
      if (out[i].signal == EvictionSignal::MemoryAvailable) {
        EvictionThreshold copy = out[i];
        copy.signal = EvictionSignal::AllocatableMemoryAvailable;
        out.push_back(copy);
      }
  return out;
}

std::int64_t reservedMemoryBytes(const std::string& spec) {
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto eq = item.find('=');
    if (eq == std::string::npos || trim(item.substr(0, eq)) != "memory") continue;
    if (auto q = api::Quantity::parse(trim(item.substr(eq + 1)))) return std::max<std::int64_t>(0, q->value());
  }
  return 0;
}

Result<std::chrono::seconds> parseDurationSeconds(const std::string& text) {
  if (text.empty()) return fail(EINVAL, "empty duration");
  std::int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    if (start == i || i == text.size())
      return fail(EINVAL, fmt::format("\"{}\" is not a duration (e.g. 30s, 5m, 1m30s)", text));
    std::int64_t n = std::stoll(text.substr(start, i - start));
    char unit = text[i++];
    if (unit == 'h') total += n * 3600;
    else if (unit == 'm') total += n * 60;
    else if (unit == 's') total += n;
    else return fail(EINVAL, fmt::format("\"{}\" is not a duration (e.g. 30s, 5m, 1m30s)", text));
  }
  return std::chrono::seconds(total);
}

Result<NodeMemory> nodeMemoryFromMeminfo(const std::string& text) {
  std::istringstream in(text);
  std::string key, unit;
  std::int64_t kb = 0;
  std::optional<std::int64_t> total, free, inactiveFile;
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    if (!(f >> key >> kb)) continue;
    if (key == "MemTotal:") total = kb * 1024;
    else if (key == "MemFree:") free = kb * 1024;
    else if (key == "Inactive(file):") inactiveFile = kb * 1024;
  }
  if (!total || !free || !inactiveFile) return fail(EINVAL, "meminfo: MemTotal, MemFree or Inactive(file) missing");
  NodeMemory m;
  m.capacityBytes = *total;
  m.workingSetBytes = std::max<std::int64_t>(0, *total - *free - *inactiveFile);
  return m;
}

std::map<EvictionSignal, SignalValue> signalsOf(const NodeObservation& o) {
  std::map<EvictionSignal, SignalValue> s;
  s[EvictionSignal::MemoryAvailable] = {o.memoryCapacityBytes - o.memoryWorkingSetBytes, o.memoryCapacityBytes};
  s[EvictionSignal::AllocatableMemoryAvailable] = {o.allocatableMemoryBytes - o.podsWorkingSetBytes,
                                                   o.allocatableMemoryBytes};
  if (o.fsCapacityBytes > 0) s[EvictionSignal::NodeFsAvailable] = {o.fsAvailableBytes, o.fsCapacityBytes};
  if (o.inodes > 0) s[EvictionSignal::NodeFsInodesFree] = {o.inodesFree, o.inodes};
  return s;
}

std::vector<ThresholdMet> thresholdsMet(const std::vector<EvictionThreshold>& thresholds,
                                        const std::map<EvictionSignal, SignalValue>& signals) {
  std::vector<ThresholdMet> met;
  for (const auto& t : thresholds) {
    auto it = signals.find(t.signal);
    if (it == signals.end()) continue;
    std::int64_t value = t.percentage > 0
                             ? static_cast<std::int64_t>(std::llround(t.percentage * static_cast<double>(it->second.capacity)))
                             : t.quantity;
    if (it->second.available < value) met.push_back({t, value, it->second.available});
  }
  std::stable_sort(met.begin(), met.end(), [](const ThresholdMet& a, const ThresholdMet& b) {
    return isMemorySignal(a.threshold.signal) && !isMemorySignal(b.threshold.signal);
  });
  return met;
}

PodUsage podUsageSkeleton(const api::Json& pod) {
  PodUsage p;
  p.uid = api::uidOf(pod);
  p.ns = api::namespaceOf(pod);
  p.name = api::nameOf(pod);
  p.priority = api::at<std::int64_t>(pod, {"spec", "priority"}, 0);
  for (const auto& c : api::at<api::Json>(pod, {"spec", "containers"}, api::Json::array())) {
    ContainerUsage cu;
    cu.name = c.value("name", std::string());
    cu.memoryRequest = requestOf(c, "memory");
    cu.storageRequest = requestOf(c, "ephemeral-storage");
    p.memoryRequest += cu.memoryRequest;
    p.storageRequest += cu.storageRequest;
    p.containers.push_back(cu);
  }
  return p;
}

std::vector<PodUsage> rankForEviction(std::vector<PodUsage> pods, EvictionResource resource) {
  std::erase_if(pods, [](const PodUsage& p) { return p.priority >= kSystemCriticalPriority; });
  std::stable_sort(pods.begin(), pods.end(), [resource](const PodUsage& a, const PodUsage& b) {
    bool aExceeds = usageAboveRequest(a, resource) > 0, bExceeds = usageAboveRequest(b, resource) > 0;
    if (aExceeds != bExceeds) return aExceeds;
    if (a.priority != b.priority) return a.priority < b.priority;
    return usageAboveRequest(a, resource) > usageAboveRequest(b, resource);
  });
  return pods;
}

std::string evictionMessage(const ThresholdMet& met, const PodUsage& pod) {
  EvictionResource resource = resourceOf(met.threshold.signal);
  std::string message = fmt::format("The node was low on resource: {}. ", resourceName(resource));
  message += fmt::format("Threshold quantity: {}, available: {}. ", quantityText(met.thresholdValue, resource),
                         quantityText(met.available, resource));
  for (const auto& c : pod.containers) {
    std::int64_t usage = resource == EvictionResource::Memory ? c.memoryUsage : c.storageUsage;
    std::int64_t request = resource == EvictionResource::Memory ? c.memoryRequest : c.storageRequest;
    if (usage > request)
      message += fmt::format("Container {} was using {}, request is {}, has larger consumption of {}. ", c.name,
                             quantityText(usage, resource), quantityText(request, resource), resourceName(resource));
  }
  return message;
}

namespace {

constexpr const char* kEvictionsHelp = "Pods evicted under node pressure, by the signal whose threshold was met.";
constexpr const char* kSyncHelp = "Duration of one eviction pass (observe, conditions, evict) in seconds.";

}  // namespace

EvictionManager::EvictionManager(ApiClient& client, PodManager& pods, SandboxManager& sandboxes, EvictionConfig config)
    : client_(client), pods_(pods), sandboxes_(sandboxes), config_(std::move(config)) {
  // Exported from the start (at 0), so a scrape finds them before the first eviction.
  for (auto s : {EvictionSignal::MemoryAvailable, EvictionSignal::AllocatableMemoryAvailable,
                 EvictionSignal::NodeFsAvailable, EvictionSignal::NodeFsInodesFree})
    metrics::registry().counter("kubelet_evictions", kEvictionsHelp, {{"eviction_signal", signalName(s)}});
  metrics::registry().histogram("ferry_agent_eviction_sync_duration_seconds", kSyncHelp);
  metrics::registry().counter("ferry_agent_pods_rejected_under_pressure_total",
                              "New pods refused because the node reported pressure.");
}

void EvictionManager::run(const std::atomic<bool>& stop) {
  while (!stop) {
    synchronize();
    auto step = std::chrono::milliseconds(100);
    for (auto waited = std::chrono::milliseconds(0); waited < config_.monitoringInterval && !stop; waited += step)
      std::this_thread::sleep_for(step);
  }
}

Result<NodeObservation> EvictionManager::observe(std::vector<PodUsage>& pods) {
  NodeObservation o;
  std::ifstream in("/proc/meminfo");
  std::stringstream text;
  text << in.rdbuf();
  auto memory = nodeMemoryFromMeminfo(text.str());
  if (!memory) return fail(memory.error());
  o.memoryCapacityBytes = memory->capacityBytes;
  o.memoryWorkingSetBytes = memory->workingSetBytes;
  o.allocatableMemoryBytes = config_.allocatableMemoryBytes > 0 ? config_.allocatableMemoryBytes : memory->capacityBytes;
  struct statvfs vfs {};
  if (statvfs(config_.dataDir.c_str(), &vfs) == 0) {
    o.fsCapacityBytes = static_cast<std::int64_t>(vfs.f_blocks) * static_cast<std::int64_t>(vfs.f_frsize);
    o.fsAvailableBytes = static_cast<std::int64_t>(vfs.f_bavail) * static_cast<std::int64_t>(vfs.f_frsize);
    o.inodes = static_cast<std::int64_t>(vfs.f_files);
    o.inodesFree = static_cast<std::int64_t>(vfs.f_favail);
  }
  for (const auto& active : pods_.activePods()) {
    PodUsage p = podUsageSkeleton(active.pod);
    if (!active.cgroupPath.empty()) {
      if (auto st = sandboxes_.cgroups().stats(active.cgroupPath))
        p.memoryUsage = static_cast<std::int64_t>(st->memoryWorkingSetBytes);
      for (auto& c : p.containers)
        if (auto st = sandboxes_.cgroups().stats(active.cgroupPath + "/" + c.name))
          c.memoryUsage = static_cast<std::int64_t>(st->memoryWorkingSetBytes);
    }
    o.podsWorkingSetBytes += p.memoryUsage;
    pods.push_back(std::move(p));
  }
  return o;
}

void EvictionManager::synchronize() {
  auto started = std::chrono::steady_clock::now();
  struct ObserveDuration {
    std::chrono::steady_clock::time_point started;
    ~ObserveDuration() {
      metrics::registry()
          .histogram("ferry_agent_eviction_sync_duration_seconds", kSyncHelp)
          .observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    }
  } observeDuration{started};
  std::vector<PodUsage> pods;
  auto observation = observe(pods);
  if (!observation) {
    log::warn("eviction: cannot observe the node: {}", observation.error().message);
    return;
  }
  auto met = thresholdsMet(config_.hard, signalsOf(*observation));
  auto now = std::chrono::steady_clock::now();
  PressureConditions wanted;
  {
    std::lock_guard lock(mu_);
    for (const auto& m : met) (resourceOf(m.threshold.signal) == EvictionResource::Memory ? memoryLastMet_ : diskLastMet_) = now;
    wanted.memory = memoryLastMet_ && now - *memoryLastMet_ < config_.pressureTransitionPeriod;
    wanted.disk = diskLastMet_ && now - *diskLastMet_ < config_.pressureTransitionPeriod;
    // Admission follows the node's state at once; the API object is written below.
    conditions_ = wanted;
  }
  if (auto st = writeNodeConditions(wanted); !st) log::warn("eviction: node conditions: {}", st.error().message);
  if (met.empty()) return;

  const ThresholdMet& first = met.front();
  EvictionResource resource = resourceOf(first.threshold.signal);
  log::warn("eviction: threshold {}<{} met (available {})", signalName(first.threshold.signal), first.thresholdValue,
            first.available);
  if (resource == EvictionResource::EphemeralStorage) {
    for (auto& p : pods) {
      p.storageUsage = directoryBytes(config_.dataDir + "/pods/" + p.uid) +
                       directoryBytes(config_.dataDir + "/logs/" + p.ns + "_" + p.name + "_" + p.uid);
    }
  }
  // One pod per pass, as the kubelet: the next observation shows whether it was enough.
  for (const auto& candidate : rankForEviction(std::move(pods), resource)) {
    std::string message = evictionMessage(first, candidate);
    if (!pods_.evict(candidate.uid, message)) continue;
    metrics::registry()
        .counter("kubelet_evictions", kEvictionsHelp, {{"eviction_signal", signalName(first.threshold.signal)}})
        .inc();
    log::warn("eviction: evicted pod {}/{}: {}", candidate.ns, candidate.name, message);
    return;
  }
  log::warn("eviction: no pod to evict for {}", signalName(first.threshold.signal));
}

std::string EvictionManager::admissionRejection(const api::Json& pod) const {
  PressureConditions c = conditions();
  if (api::at<std::int64_t>(pod, {"spec", "priority"}, 0) >= kSystemCriticalPriority) return {};
  std::vector<std::string> failed;
  if (c.memory && api::at<std::string>(pod, {"status", "qosClass"}) == "BestEffort" &&
      !toleratesTaint(pod, "node.kubernetes.io/memory-pressure"))
    failed.push_back("MemoryPressure");
  if (c.disk && !toleratesTaint(pod, "node.kubernetes.io/disk-pressure")) failed.push_back("DiskPressure");
  if (failed.empty()) return {};
  std::string list;
  for (const auto& f : failed) list += (list.empty() ? "" : " ") + f;
  metrics::registry()
      .counter("ferry_agent_pods_rejected_under_pressure_total", "New pods refused because the node reported pressure.")
      .inc();
  return fmt::format("Pod was rejected: The node had condition: [{}]. ", list);
}

PressureConditions EvictionManager::conditions() const {
  std::lock_guard lock(mu_);
  return conditions_;
}

Status EvictionManager::writeNodeConditions(const PressureConditions& wanted) {
  std::string path = "/api/v1/nodes/" + config_.nodeName;
  // Written only when the Node does not already say so (a re-registration may have reset it).
  for (int attempt = 0; attempt < 3; ++attempt) {
    // The watch's copy first: an unchanged Node costs no request at all.
    std::optional<api::Json> cached = attempt == 0 && config_.currentNode ? config_.currentNode() : std::nullopt;
    Result<api::Json> node = cached ? Result<api::Json>(std::move(*cached)) : client_.get(path);
    if (!node) return fail(node.error());
    api::Json update = *node;
    api::Json& conditions = update["status"]["conditions"];
    if (!conditions.is_array()) conditions = api::Json::array();
    std::string now = api::nowRfc3339();
    std::vector<std::pair<std::string, bool>> changes;
    for (auto [type, pressure] : {std::pair<std::string, bool>{"MemoryPressure", wanted.memory},
                                  std::pair<std::string, bool>{"DiskPressure", wanted.disk}}) {
      bool memory = type == "MemoryPressure";
      std::string status = pressure ? "True" : "False";
      std::string reason = memory ? (pressure ? "KubeletHasInsufficientMemory" : "KubeletHasSufficientMemory")
                                  : (pressure ? "KubeletHasDiskPressure" : "KubeletHasNoDiskPressure");
      std::string message = memory ? (pressure ? "kubelet has insufficient memory available"
                                               : "kubelet has sufficient memory available")
                                   : (pressure ? "kubelet has disk pressure" : "kubelet has no disk pressure");
      api::Json* found = nullptr;
      for (auto& c : conditions)
        if (c.value("type", "") == type) found = &c;
      if (found && found->value("status", "") == status) continue;
      if (!found) {
        conditions.push_back({{"type", type}});
        found = &conditions.back();
      }
      (*found)["status"] = status;
      (*found)["reason"] = reason;
      (*found)["message"] = message;
      (*found)["lastHeartbeatTime"] = now;
      (*found)["lastTransitionTime"] = now;
      changes.push_back({reason, pressure});
    }
    if (changes.empty()) return {};
    auto written = client_.put(path + "/status", update);
    if (!written) {
      if (written.error().code == ECANCELED) continue;  // the Node changed meanwhile: read it again
      return fail(written.error());
    }
    for (const auto& [reason, pressure] : changes) {
      // The kubelet's node event: "Node n1 status is now: NodeHasInsufficientMemory".
      std::string eventReason = reason == "KubeletHasInsufficientMemory" ? "NodeHasInsufficientMemory"
                                : reason == "KubeletHasSufficientMemory" ? "NodeHasSufficientMemory"
                                : reason == "KubeletHasDiskPressure"     ? "NodeHasDiskPressure"
                                                                         : "NodeHasNoDiskPressure";
      log::info("node {} status is now: {}", config_.nodeName, eventReason);
      api::Json event = {
          {"apiVersion", "v1"},
          {"kind", "Event"},
          {"metadata",
           {{"name", fmt::format("{}.{:x}", config_.nodeName,
                                 std::chrono::system_clock::now().time_since_epoch().count())},
            {"namespace", "default"}}},
          {"involvedObject", {{"kind", "Node"}, {"name", config_.nodeName}, {"uid", config_.nodeName}}},
          {"reason", eventReason},
          {"message", fmt::format("Node {} status is now: {}", config_.nodeName, eventReason)},
          {"type", pressure ? "Warning" : "Normal"},
          {"source", {{"component", "kubelet"}, {"host", config_.nodeName}}},
          {"firstTimestamp", now},
          {"lastTimestamp", now},
          {"count", 1}};
      if (auto st = client_.post("/api/v1/namespaces/default/events", event); !st)
        log::debug("node event: {}", st.error().message);
    }
    return {};
  }
  return fail(ECANCELED, "node " + config_.nodeName + " kept changing while its conditions were written");
}

}  // namespace ferry::agent
