#include "agent/core/pod_manager.h"

#include "agent/runtime/pod_files.h"
#include "api/base64.h"
#include "api/log.h"
#include "api/metrics.h"
#include "api/quantity.h"

#include <fmt/format.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>

namespace fs = std::filesystem;

namespace ferry::agent {
namespace {

std::optional<std::int64_t> quantityAt(const api::Json& resources, const char* kind, const char* name, bool milli) {
  if (!resources.contains(kind) || !resources[kind].is_object() || !resources[kind].contains(name)) return std::nullopt;
  auto q = api::Quantity::fromJson(resources[kind][name]);
  if (!q) return std::nullopt;
  return milli ? q->milliValue() : q->value();
}

// Undecodable data reads as empty: the consumer then reports what is missing.
std::string base64Decode(const std::string& in) { return api::base64Decode(in).value_or(std::string()); }

std::string randomSuffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}", rng());
}

std::string podKey(const api::Json& pod) { return api::namespaceOf(pod) + "/" + api::nameOf(pod); }

// What status writes, Events and volume paths need of a pod: its name, namespace and
// uid. Callbacks that live as long as the pod keep this instead of the whole object (a
// parsed pod is ~20 KB; with several callbacks per pod the copies were a large part of
// the agent's heap at 100 pods, bench/footprint).
api::Json podIdentity(const api::Json& pod) {
  return {{"metadata", {{"name", api::nameOf(pod)}, {"namespace", api::namespaceOf(pod)}, {"uid", api::uidOf(pod)}}}};
}

// The kubelet's metric: from the agent first seeing the pod to the pod running.
metrics::Histogram& podStartDuration() {
  return metrics::registry().histogram("kubelet_pod_start_duration_seconds",
                                       "Duration in seconds from the agent seeing a pod for the first time to the pod "
                                       "starting to run.");
}

// Where a pod start and a pod removal spend their time, phase by phase (bench/podstart
// reads these to say which phase holds the node back):
//   start  queued      the agent first seeing the pod -> its start running on a pool thread
//          sandbox     the sandbox made (netns, veth, cgroup)
//          containers  the worker started -> it reports the pod Running
//   stop   containers  the worker stopped and its containers removed
//          sandbox     the sandbox removed
//          delete      the grace-0 delete that lets the object go
metrics::Histogram& podStartPhase(const char* phase) {
  return metrics::registry().histogram("ferry_agent_pod_start_phase_seconds",
                                       "Duration in seconds of one phase of a pod start on this node.", {{"phase", phase}});
}
metrics::Histogram& podStopPhase(const char* phase) {
  return metrics::registry().histogram("ferry_agent_pod_stop_phase_seconds",
                                       "Duration in seconds of one phase of removing a terminated pod from this node.",
                                       {{"phase", phase}});
}
double secondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

metrics::Histogram& statusQueueDuration() {
  return metrics::registry().histogram("ferry_agent_pod_status_queue_seconds",
                                       "Duration in seconds a pod status waits for a status writer.");
}

metrics::Histogram& statusUpdateDuration() {
  return metrics::registry().histogram("ferry_agent_pod_status_update_duration_seconds",
                                       "Duration in seconds of one pod status write to the API server.");
}

}  // namespace

PodResources podResourcesOf(const api::Json& pod) {
  PodResources r;
  const api::Json spec = pod.value("spec", api::Json::object());
  bool anySet = false, allGuaranteed = true;
  bool allCpuLimited = true, allMemLimited = true;
  std::int64_t cpuLimit = 0, memLimit = 0, cpuRequest = 0;
  for (const auto& c : spec.value("containers", api::Json::array())) {
    const api::Json res = c.value("resources", api::Json::object());
    cgroup::Limits limits;
    limits.cpuLimitMilli = quantityAt(res, "limits", "cpu", true);
    limits.memoryLimitBytes = quantityAt(res, "limits", "memory", false);
    limits.cpuRequestMilli = quantityAt(res, "requests", "cpu", true);
    auto memRequest = quantityAt(res, "requests", "memory", false);
    // Kubernetes defaults a missing request to the limit.
    if (!limits.cpuRequestMilli) limits.cpuRequestMilli = limits.cpuLimitMilli;
    if (!memRequest) memRequest = limits.memoryLimitBytes;
    if (limits.cpuLimitMilli || limits.memoryLimitBytes || limits.cpuRequestMilli || memRequest) anySet = true;
    bool guaranteed = limits.cpuLimitMilli && limits.memoryLimitBytes && limits.cpuRequestMilli == limits.cpuLimitMilli &&
                      memRequest == limits.memoryLimitBytes;
    allGuaranteed = allGuaranteed && guaranteed;
    if (limits.cpuLimitMilli) cpuLimit += *limits.cpuLimitMilli; else allCpuLimited = false;
    if (limits.memoryLimitBytes) memLimit += *limits.memoryLimitBytes; else allMemLimited = false;
    if (limits.cpuRequestMilli) cpuRequest += *limits.cpuRequestMilli;
    r.containerLimits[c.value("name", std::string())] = limits;
  }
  for (const auto& c : spec.value("initContainers", api::Json::array())) {
    const api::Json res = c.value("resources", api::Json::object());
    cgroup::Limits limits;
    limits.cpuLimitMilli = quantityAt(res, "limits", "cpu", true);
    limits.memoryLimitBytes = quantityAt(res, "limits", "memory", false);
    limits.cpuRequestMilli = quantityAt(res, "requests", "cpu", true);
    if (!limits.cpuRequestMilli) limits.cpuRequestMilli = limits.cpuLimitMilli;
    if (limits.cpuLimitMilli || limits.memoryLimitBytes || limits.cpuRequestMilli) anySet = true;
    r.containerLimits[c.value("name", std::string())] = limits;
  }
  r.qos = !anySet ? cgroup::QosClass::BestEffort
                  : (allGuaranteed ? cgroup::QosClass::Guaranteed : cgroup::QosClass::Burstable);
  if (allCpuLimited && cpuLimit > 0) r.podLimits.cpuLimitMilli = cpuLimit;
  if (allMemLimited && memLimit > 0) r.podLimits.memoryLimitBytes = memLimit;
  if (cpuRequest > 0) r.podLimits.cpuRequestMilli = cpuRequest;
  return r;
}

PodManager::PodManager(ApiClient& client, SandboxManager& sandboxes, images::ImageStore& images,
                       runtime::ContainerRuntime& runtime, const AgentConfig& config, std::string nodeName,
                       std::string nodeIP)
    : client_(client), sandboxes_(sandboxes), images_(images), runtime_(runtime), config_(config),
      nodeName_(std::move(nodeName)), nodeIP_(std::move(nodeIP)), podCapacity_(config.maxPods) {
  podStartDuration();  // exported from the start, at 0
  statusUpdateDuration();
  statusQueueDuration();
  for (const char* phase : {"queued", "sandbox", "containers"}) podStartPhase(phase);
  for (const char* phase : {"containers", "sandbox", "delete"}) podStopPhase(phase);
  housekeeping_ = std::thread([this] { housekeepingLoop(); });
  for (int i = 0; i < kStatusWriters; ++i) statusWriters_.emplace_back([this] { statusLoop(); });
  eventWriter_ = std::thread([this] { eventLoop(); });
}

PodManager::~PodManager() {
  stop_ = true;
  outCv_.notify_all();
  if (housekeeping_.joinable()) housekeeping_.join();
  for (auto& t : statusWriters_)
    if (t.joinable()) t.join();
  if (eventWriter_.joinable()) eventWriter_.join();
  // A pod start still running sees stop_ under mu_ and starts no worker; pool_'s
  // destructor then waits for it.
  std::lock_guard lock(mu_);
  for (auto& [uid, entry] : pods_)
    if (entry->worker) entry->worker->stop();
}

void PodManager::onPodUpsert(const api::Json& pod) {
  std::string uid = api::uidOf(pod);
  if (uid.empty()) return;
  std::lock_guard lock(mu_);
  auto it = pods_.find(uid);
  if (it == pods_.end()) {
    auto entry = std::make_unique<PodEntry>();
    entry->pod = pod;
    pods_[uid] = std::move(entry);
    if (api::isTerminating(pod) && !sandboxes_.find(uid)) {
      pods_[uid]->finalizing = true;  // nothing runs here: just let the delete finish
      return;
    }
    // A pod that already ended (e.g. evicted before this agent restarted) is not run again.
    std::string phase = api::at<std::string>(pod, {"status", "phase"});
    if ((phase == "Failed" || phase == "Succeeded") && !sandboxes_.find(uid)) {
      pods_[uid]->terminal = true;
      return;
    }
    auto reject = [&](const std::string& reason, const std::string& message, const std::string& eventMessage) {
      pods_[uid]->terminal = true;
      log::warn("pod {} rejected: {}", podKey(pod), message);
      api::Json status = pod.value("status", api::Json::object());
      status["phase"] = "Failed";
      status["reason"] = reason;
      status["message"] = message;
      queueStatus(pod, status);
      queueEvent(pod, reason, eventMessage, "Warning");
    };
    // The kubelet's resource admission for pods: a pod bound past the node's pods
    // capacity (nodeName set directly, or a scheduler that overcommitted) is refused
    // rather than left waiting for a pod address that may never come. A pod whose sandbox
    // is here already (a restarted agent's relist, in any order) was admitted before.
    if (size_t used = admittedPodsLocked(uid); used >= static_cast<size_t>(podCapacity_) && !sandboxes_.find(uid)) {
      std::string why = fmt::format("Node didn't have enough resource: pods, requested: 1, used: {}, capacity: {}",
                                    used, podCapacity_);
      reject("OutOfpods", "Pod was rejected: " + why, why);
      return;
    }
    if (admit_) {
      if (std::string rejection = admit_(pod); !rejection.empty()) {
        reject("Evicted", rejection, rejection);
        return;
      }
    }
    starting_.insert(uid);
    pool_.schedule([this, uid]() -> std::optional<runtime::TaskPool::Clock::time_point> {
      auto retry = startPod(uid);
      if (!retry) return std::nullopt;
      return runtime::TaskPool::Clock::now() + *retry;
    });
    return;
  }
  PodEntry& entry = *it->second;
  entry.pod = pod;
  if (entry.worker) {
    entry.worker->updatePod(pod);
    // The node lifecycle controller marked the pod Unknown (NodeLost) while this node's
    // heartbeats were late; the worker only reports changes, so say again how it is.
    std::string phase = api::at<std::string>(pod, {"status", "phase"});
    if (phase == "Unknown" && !*entry.statusFrozen && !api::isTerminating(pod) && !entry.worker->finished())
      queueStatus(pod, entry.worker->status());
    if (api::isTerminating(pod) && !entry.worker->terminating()) {
      auto grace = api::at<std::int64_t>(pod, {"metadata", "deletionGracePeriodSeconds"}, -1);
      entry.worker->terminate(grace >= 0 ? std::optional<std::int64_t>(grace) : std::nullopt);
    }
  }
}

void PodManager::onPodDelete(const api::Json& pod) {
  std::lock_guard lock(mu_);
  auto it = pods_.find(api::uidOf(pod));
  if (it == pods_.end()) return;
  // Gone from the API (force delete): stop at once, clean up in housekeeping.
  it->second->finalizing = true;
  it->second->pod["metadata"]["deletionTimestamp"] = api::nowRfc3339();
  if (it->second->worker && !it->second->worker->terminating()) it->second->worker->terminate(0);
}

void PodManager::onPodsSynced(const std::vector<api::Json>& pods) {
  std::set<std::string> live;
  for (const auto& p : pods) live.insert(api::uidOf(p));
  std::vector<std::string> orphans;
  for (const auto& sb : sandboxes_.list()) {
    std::lock_guard lock(mu_);
    if (!live.contains(sb.uid) && !pods_.contains(sb.uid)) orphans.push_back(sb.uid);
  }
  for (const auto& uid : orphans) {
    log::info("removing sandbox of pod {} that the API no longer has", uid);
    for (const auto& c : runtime_.list()) {
      auto l = c.labels.find("io.kubernetes.pod.uid");
      if (l == c.labels.end() || l->second != uid) continue;
      if (auto adopted = runtime_.adopt(c.id)) {
        (*adopted)->signal(SIGKILL);
        (*adopted)->remove();
      }
    }
    if (auto st = sandboxes_.remove(uid); !st) log::warn("remove sandbox {}: {}", uid, st.error().message);
  }
}

std::shared_ptr<runtime::PodWorker> PodManager::worker(const std::string& ns, const std::string& name) {
  std::lock_guard lock(mu_);
  for (auto& [uid, entry] : pods_)
    if (api::namespaceOf(entry->pod) == ns && api::nameOf(entry->pod) == name) return entry->worker;
  return nullptr;
}

size_t PodManager::runningPods() const {
  std::lock_guard lock(mu_);
  return pods_.size();
}

std::vector<PodManager::ActivePod> PodManager::activePods() const {
  std::lock_guard lock(mu_);
  std::vector<ActivePod> out;
  for (const auto& [uid, entry] : pods_) {
    if (!entry->worker || entry->finalizing || entry->terminal || !entry->evictionMessage.empty() ||
        api::isTerminating(entry->pod) || entry->worker->terminating() || entry->worker->finished())
      continue;
    out.push_back({uid, entry->pod, entry->cgroupPath});
  }
  return out;
}

bool PodManager::evict(const std::string& uid, const std::string& message) {
  std::lock_guard lock(mu_);
  auto it = pods_.find(uid);
  if (it == pods_.end() || !it->second->worker || !it->second->evictionMessage.empty() ||
      api::isTerminating(it->second->pod) || it->second->worker->terminating())
    return false;
  it->second->evictionMessage = message;
  *it->second->statusFrozen = true;
  queueEvent(it->second->pod, "Evicted", message, "Warning");
  // The kubelet's hard eviction kills with a 1 s grace period.
  it->second->worker->terminate(1);
  return true;
}

void PodManager::setAdmission(std::function<std::string(const api::Json& pod)> admit) {
  std::lock_guard lock(mu_);
  admit_ = std::move(admit);
}

void PodManager::finishEviction(const std::string& uid) {
  api::Json pod, status;
  std::string message;
  std::shared_ptr<runtime::PodWorker> worker;
  {
    std::lock_guard lock(mu_);
    auto it = pods_.find(uid);
    if (it == pods_.end() || !it->second->worker) return;
    it->second->evictionReported = true;
    pod = it->second->pod;
    message = it->second->evictionMessage;
    worker = it->second->worker;
  }
  // The worker stays (stopped) so that `kubectl logs` of the evicted pod still works;
  // it is only destroyed when the pod object goes (finalize).
  worker->stop();
  status = worker->status();
  if (auto st = worker->removeContainers(); !st) log::warn("pod {}: remove containers: {}", podKey(pod), st.error().message);
  // Removing the sandbox frees what the pod held (its cgroups, emptyDir tmpfs, netns).
  if (auto st = sandboxes_.remove(uid); !st) log::warn("pod {}: remove sandbox: {}", podKey(pod), st.error().message);
  status["phase"] = "Failed";
  status["reason"] = "Evicted";
  status["message"] = message;
  api::Json conditions = api::Json::array();
  for (const auto& c : status.value("conditions", api::Json::array()))
    if (c.value("type", "") != "DisruptionTarget") conditions.push_back(c);
  conditions.push_back({{"type", "DisruptionTarget"}, {"status", "True"}, {"reason", "TerminationByKubelet"},
                        {"message", message}, {"lastTransitionTime", api::nowRfc3339()}});
  status["conditions"] = conditions;
  queueStatus(pod, status);
  log::info("pod {} evicted: {}", podKey(pod), message);
}

size_t PodManager::admittedPodsLocked(const std::string& except) const {
  size_t n = 0;
  for (const auto& [uid, entry] : pods_) {
    // A pod being finalized holds no place: its containers are stopped and its API object
    // is going, so the scheduler may already have bound a pod to the place it frees.
    if (uid == except || entry->terminal || entry->finalizing || !entry->evictionMessage.empty()) continue;
    if (entry->worker && entry->worker->finished()) continue;
    ++n;
  }
  return n;
}

void PodManager::setPodCapacity(int pods) {
  std::lock_guard lock(mu_);
  podCapacity_ = pods;
}

std::optional<std::chrono::seconds> PodManager::startPod(const std::string& uid) {
  api::Json pod;
  std::chrono::steady_clock::time_point firstSeen;
  std::shared_ptr<std::atomic<bool>> statusFrozen;
  {
    std::lock_guard lock(mu_);
    auto it = pods_.find(uid);
    if (it == pods_.end() || stop_) return std::nullopt;
    // A retry after a failed sandbox: a pod deleted meanwhile is not started.
    if (it->second->finalizing || api::isTerminating(it->second->pod)) {
      starting_.erase(uid);
      return std::nullopt;
    }
    starting_.insert(uid);
    pod = it->second->pod;
    firstSeen = it->second->firstSeen;
    statusFrozen = it->second->statusFrozen;
    if (it->second->sandboxFailures == 0) podStartPhase("queued").observe(secondsSince(firstSeen));
  }
  PodResources res = podResourcesOf(pod);
  PodSandboxSpec spec;
  spec.uid = uid;
  spec.name = api::nameOf(pod);
  spec.namespace_ = api::namespaceOf(pod);
  spec.hostname = api::at<std::string>(pod, {"spec", "hostname"}, spec.name);
  spec.qos = res.qos;
  spec.limits = res.podLimits;
  auto sandboxStart = std::chrono::steady_clock::now();
  auto sandbox = sandboxes_.create(spec);
  if (sandbox) podStartPhase("sandbox").observe(secondsSince(sandboxStart));
  if (!sandbox) {
    log::error("pod {}: sandbox: {}", podKey(pod), sandbox.error().message);
    queueEvent(pod, "FailedCreatePodSandBox", "Failed to create pod sandbox: " + sandbox.error().message, "Warning");
    std::lock_guard lock(mu_);
    starting_.erase(uid);
    auto it = pods_.find(uid);
    if (it == pods_.end() || stop_) return std::nullopt;
    // Tried again with the kubelet's back-off (10 s doubling to 5 min): what was missing
    // (a pod address, a cgroup) may come free. A delete meanwhile is finished by
    // housekeeping, as for any pod without a worker, and ends the retries.
    int failures = ++it->second->sandboxFailures;
    return std::chrono::seconds(std::min(300, 10 << std::min(failures - 1, 5)));
  }
  runtime::PodSandboxInfo info;
  info.netnsPath = sandbox->netnsPath;
  info.ipcnsPath = sandbox->ipcnsPath;
  info.utsnsPath = sandbox->utsnsPath;
  info.podIPs = {sandbox->podIP};
  info.hostIP = nodeIP_;
  runtime::PodWorkerConfig wc;
  wc.podDir = config_.dataDir + "/pods/" + uid;
  wc.logDir = config_.dataDir + "/logs/" + spec.namespace_ + "_" + spec.name + "_" + uid;
  wc.dns.clusterDNS = config_.clusterDNS;
  wc.dns.clusterDomain = config_.clusterDomain;
  auto worker = std::make_shared<runtime::PodWorker>(pod, info, wc, depsFor(uid, pod, sandbox->cgroupPath));
  api::Json podRef = podIdentity(pod);
  auto startObserved = std::make_shared<std::atomic<bool>>(false);
  auto workerStart = std::chrono::steady_clock::now();
  worker->onStatusChange([this, podRef, firstSeen, workerStart, startObserved, statusFrozen](const api::Json& status) {
    if (*statusFrozen) return;  // being evicted: finishEviction reports the final status
    if (status.value("phase", "") == "Running" && !startObserved->exchange(true)) {
      podStartDuration().observe(secondsSince(firstSeen));
      podStartPhase("containers").observe(secondsSince(workerStart));
    }
    queueStatus(podRef, status);
  });
  if (auto st = worker->adopt(); !st) log::warn("pod {}: adopt: {}", podKey(pod), st.error().message);
  std::lock_guard lock(mu_);
  starting_.erase(uid);
  auto it = pods_.find(uid);
  if (it == pods_.end() || stop_) return std::nullopt;  // ~PodManager has stopped the workers, or is about to
  it->second->cgroupPath = sandbox->cgroupPath;
  it->second->worker = std::move(worker);
  // The pod may have changed (or started terminating) while the sandbox was made.
  it->second->worker->updatePod(it->second->pod);
  if (api::isTerminating(it->second->pod)) {
    auto grace = api::at<std::int64_t>(it->second->pod, {"metadata", "deletionGracePeriodSeconds"}, -1);
    it->second->worker->terminate(grace >= 0 ? std::optional<std::int64_t>(grace) : std::nullopt);
  }
  it->second->worker->start(pool_);
  log::info("pod {} started in sandbox {} ({})", podKey(pod), sandbox->podIP, sandbox->cgroupPath);
  return std::nullopt;
}

runtime::PodDeps PodManager::depsFor(const std::string& uid, const api::Json& pod, const std::string& podCgroup) {
  runtime::PodDeps d;
  PodResources res = podResourcesOf(pod);
  std::string ns = api::namespaceOf(pod);
  d.now = [] { return std::chrono::system_clock::now(); };
  d.ensureImage = [this, ns](const std::string& image, const std::string& policyText, const api::Json& pullSecrets,
                             const std::function<void()>& pulling)
      -> std::expected<runtime::ImageInfo, runtime::ImagePullFailure> {
    using Failure = std::unexpected<runtime::ImagePullFailure>;
    auto policy = images::parsePullPolicy(policyText.empty() ? images::pullPolicyName(images::defaultPullPolicy(image))
                                                             : policyText);
    if (!policy) return Failure({"ErrImagePull", policy.error().message});
    images::CredentialSet creds;
    if (pullSecrets.is_array()) {
      for (const auto& ref : pullSecrets) {
        std::string name = ref.value("name", std::string());
        auto secret = client_.get("/api/v1/namespaces/" + ns + "/secrets/" + name);
        if (!secret) continue;
        std::string cfg = base64Decode(api::at<std::string>(*secret, {"data", ".dockerconfigjson"}));
        if (auto parsed = images::parseDockerConfigJson(cfg)) creds.append(*parsed);
      }
    }
    bool pulled = false;
    auto pullStart = std::chrono::steady_clock::now();
    auto img = images_.ensure(image, *policy, creds, nullptr, [&] {
      pulled = true;
      pullStart = std::chrono::steady_clock::now();
      if (pulling) pulling();
    });
    if (!img) return Failure({images::imageFailureReasonName(img.error().reason), img.error().error.message});
    runtime::ImageInfo info;
    info.pulled = pulled;
    if (pulled)
      info.pullDuration =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - pullStart);
    info.sizeBytes = img->sizeBytes;
    info.layerDirs = img->layerDirs;
    info.entrypoint = img->config.entrypoint;
    info.cmd = img->config.cmd;
    info.env = img->config.env;
    info.workingDir = img->config.workingDir;
    info.user = img->config.user;
    std::string name = img->references.empty() ? image : img->references.front();
    info.imageID = img->digest.empty() ? img->id : name.substr(0, name.find_last_of(':')) + "@" + img->digest;
    images_.touch(img->id);
    return info;
  };
  d.startContainer = [this](const runtime::ContainerSpec& spec) { return runtime_.start(spec); };
  d.listContainers = [this] { return runtime_.list(); };
  d.adoptContainer = [this](const std::string& id, std::function<Status(pid_t)> join) {
    return runtime_.adopt(id, std::move(join));
  };
  d.joinCgroups = [this, podCgroup, res](const std::string& container, pid_t pid) -> Status {
    auto limits = res.containerLimits.contains(container) ? res.containerLimits.at(container) : cgroup::Limits{};
    auto path = sandboxes_.cgroups().createContainer(podCgroup, container, limits);
    if (!path) return fail(path.error());
    return sandboxes_.cgroups().attach(*path, pid);
  };
  // The worker asks this while holding its own lock, and PodManager calls the worker
  // while holding mu_ (activePods, housekeeping): taking mu_ here deadlocked the agent
  // whenever a container exited during an eviction pass. The pod's ledger has its own lock.
  struct OomLedger {
    std::mutex mu;
    std::map<std::string, uint64_t> seen;  // container → OOM kills already reported
  };
  auto ledger = std::make_shared<OomLedger>();
  d.oomKilled = [this, ledger, podCgroup](const std::string& container) {
    auto stats = sandboxes_.cgroups().stats(podCgroup + "/" + container);
    if (!stats) return false;
    std::lock_guard lock(ledger->mu);
    uint64_t& seen = ledger->seen[container];
    bool fresh = stats->oomKills > seen;
    seen = stats->oomKills;
    return fresh;
  };
  api::Json identity = podIdentity(pod);
  d.emitEvent = [this, identity](const std::string& reason, const std::string& message, const std::string& type) {
    queueEvent(identity, reason, message, type);
  };
  // Env needs the whole pod (labels, annotations, service account, service links): the
  // worker passes its own.
  d.resolveEnv = [this](const api::Json& pod, const api::Json& container) -> Result<std::vector<std::string>> {
    std::string podIP;
    if (auto sb = sandboxes_.find(api::uidOf(pod))) podIP = sb->podIP;
    return resolveEnv(pod, podIP, container);
  };
  d.volumeHostPath = [this, identity](const api::Json& volume) { return writeVolume(identity, volume); };
  return d;
}

Result<std::vector<std::string>> PodManager::resolveEnv(const api::Json& pod, const std::string& podIP,
                                                        const api::Json& container) {
  std::vector<std::string> env;
  std::string ns = api::namespaceOf(pod);
  // Service links: under the container's own variables, usable in their $(VAR)s.
  std::vector<std::string> links;
  if (serviceLister_) links = runtime::serviceLinkVariables(pod, serviceLister_());
  auto expand = [&](const std::string& value) {
    std::vector<std::string> context = links;
    context.insert(context.end(), env.begin(), env.end());
    return runtime::expandVariables(value, context);
  };
  auto fetchKey = [&](const char* resource, const api::Json& ref, bool decode) -> Result<std::optional<std::string>> {
    std::string name = ref.value("name", std::string()), key = ref.value("key", std::string());
    bool optional = ref.value("optional", false);
    auto obj = client_.get(fmt::format("/api/v1/namespaces/{}/{}/{}", ns, resource, name));
    if (!obj) {
      if (optional) return std::optional<std::string>();
      return fail(obj.error().code, fmt::format("{} \"{}\" not found", resource, name));
    }
    const api::Json data = obj->value("data", api::Json::object());
    if (!data.contains(key)) {
      if (optional) return std::optional<std::string>();
      return fail(ENOENT, fmt::format("couldn't find key {} in {} {}/{}", key, resource, ns, name));
    }
    std::string v = data[key].get<std::string>();
    return std::optional<std::string>(decode ? base64Decode(v) : v);
  };
  for (const auto& from : container.value("envFrom", api::Json::array())) {
    std::string prefix = from.value("prefix", std::string());
    bool isSecret = from.contains("secretRef");
    const api::Json ref = isSecret ? from["secretRef"] : from.value("configMapRef", api::Json::object());
    auto obj = client_.get(fmt::format("/api/v1/namespaces/{}/{}/{}", ns, isSecret ? "secrets" : "configmaps",
                                       ref.value("name", std::string())));
    if (!obj) {
      if (ref.value("optional", false)) continue;
      return fail(obj.error());
    }
    for (const auto& [k, v] : obj->value("data", api::Json::object()).items())
      env.push_back(prefix + k + "=" + (isSecret ? base64Decode(v.get<std::string>()) : v.get<std::string>()));
  }
  for (const auto& e : container.value("env", api::Json::array())) {
    std::string name = e.value("name", std::string());
    if (!e.contains("valueFrom")) {
      env.push_back(name + "=" + expand(e.value("value", std::string())));
      continue;
    }
    const api::Json& from = e["valueFrom"];
    std::optional<std::string> value;
    if (from.contains("fieldRef")) {
      std::string path = from["fieldRef"].value("fieldPath", std::string());
      if (path == "metadata.name") value = api::nameOf(pod);
      else if (path == "metadata.namespace") value = ns;
      else if (path == "metadata.uid") value = api::uidOf(pod);
      else if (path == "spec.nodeName") value = nodeName_;
      else if (path == "spec.serviceAccountName") value = api::at<std::string>(pod, {"spec", "serviceAccountName"}, "default");
      else if (path == "status.podIP" || path == "status.podIPs") value = podIP;
      else if (path == "status.hostIP" || path == "status.hostIPs") value = nodeIP_;
      else if (path.rfind("metadata.labels['", 0) == 0 || path.rfind("metadata.annotations['", 0) == 0) {
        bool labels = path[9] == 'l';
        std::string key = path.substr(path.find('\'') + 1);
        key = key.substr(0, key.find('\''));
        value = api::at<std::string>(pod, {"metadata", labels ? "labels" : "annotations", key.c_str()});
      } else {
        return fail(EINVAL, fmt::format("env {}: fieldRef {} is not supported", name, path));
      }
    } else if (from.contains("configMapKeyRef")) {
      auto v = fetchKey("configmaps", from["configMapKeyRef"], false);
      if (!v) return fail(v.error().wrap("env " + name));
      value = *v;
    } else if (from.contains("secretKeyRef")) {
      auto v = fetchKey("secrets", from["secretKeyRef"], true);
      if (!v) return fail(v.error().wrap("env " + name));
      value = *v;
    } else if (from.contains("resourceFieldRef")) {
      value = "0";  // resource fields are reported as 0 (unbounded) for now
    }
    if (value) env.push_back(name + "=" + *value);
  }
  for (const auto& link : links) {
    std::string name = link.substr(0, link.find('='));
    bool defined = std::any_of(env.begin(), env.end(), [&](const std::string& e) { return e.rfind(name + "=", 0) == 0; });
    if (!defined) env.push_back(link);
  }
  return env;
}

Result<std::string> PodManager::writeVolume(const api::Json& pod, const api::Json& volume) {
  std::string name = volume.value("name", std::string());
  std::string dir = config_.dataDir + "/pods/" + api::uidOf(pod) + "/volumes/" + name;
  bool isSecret = volume.contains("secret");
  if (!isSecret && !volume.contains("configMap"))
    return fail(EINVAL, fmt::format("volume {}: this volume type is not supported by Ferry", name));
  const api::Json& src = isSecret ? volume["secret"] : volume["configMap"];
  std::string objName = src.value(isSecret ? "secretName" : "name", std::string());
  auto obj = client_.get(fmt::format("/api/v1/namespaces/{}/{}/{}", api::namespaceOf(pod),
                                     isSecret ? "secrets" : "configmaps", objName));
  if (!obj) {
    if (src.value("optional", false)) {
      fs::create_directories(dir);
      return dir;
    }
    return fail(obj.error().wrap("volume " + name));
  }
  // Written to a fresh dir and swapped in, so a container never sees half a volume.
  std::string tmp = dir + ".tmp-" + randomSuffix();
  std::error_code ec;
  fs::create_directories(tmp, ec);
  if (ec) return fail(EIO, "volume " + name + ": " + ec.message());
  const api::Json data = obj->value("data", api::Json::object());
  auto writeKey = [&](const std::string& key, const std::string& path) -> Status {
    if (!data.contains(key)) return fail(ENOENT, fmt::format("volume {}: key {} not found in {}", name, key, objName));
    if (path.find("..") != std::string::npos || path.empty() || path[0] == '/')
      return fail(EINVAL, fmt::format("volume {}: item path {} is not allowed", name, path));
    fs::create_directories(fs::path(tmp + "/" + path).parent_path());
    std::ofstream out(tmp + "/" + path, std::ios::binary);
    std::string v = data[key].get<std::string>();
    out << (isSecret ? base64Decode(v) : v);
    return {};
  };
  if (src.contains("items")) {
    for (const auto& item : src["items"])
      if (auto st = writeKey(item.value("key", std::string()), item.value("path", std::string())); !st) return fail(st.error());
  } else {
    for (const auto& [key, value] : data.items())
      if (auto st = writeKey(key, key); !st) return fail(st.error());
  }
  fs::remove_all(dir, ec);
  fs::rename(tmp, dir, ec);
  if (ec) return fail(EIO, "volume " + name + ": " + ec.message());
  return dir;
}

void PodManager::queueStatus(const api::Json& pod, const api::Json& status) {
  std::lock_guard lock(outMu_);
  auto [it, added] = pendingStatus_.try_emplace(api::uidOf(pod));
  // A newer status replaces one not yet sent; the wait counts from the first.
  if (added) it->second.queuedAt = std::chrono::steady_clock::now();
  it->second.pod = pod;
  it->second.status = status;
  outCv_.notify_all();
}

void PodManager::queueEvent(const api::Json& pod, const std::string& reason, const std::string& message,
                            const std::string& type) {
  std::string now = api::nowRfc3339();
  api::Json event = {
      {"apiVersion", "v1"},
      {"kind", "Event"},
      {"metadata", {{"name", api::nameOf(pod) + "." + randomSuffix()}, {"namespace", api::namespaceOf(pod)}}},
      {"involvedObject",
       {{"kind", "Pod"}, {"apiVersion", "v1"}, {"name", api::nameOf(pod)}, {"namespace", api::namespaceOf(pod)},
        {"uid", api::uidOf(pod)}}},
      {"reason", reason},
      {"message", message},
      {"type", type},
      {"source", {{"component", "kubelet"}, {"host", nodeName_}}},
      {"reportingComponent", "kubelet"},
      {"reportingInstance", nodeName_},
      {"firstTimestamp", now},
      {"lastTimestamp", now},
      {"count", 1}};
  std::lock_guard lock(outMu_);
  if (pendingEvents_.size() < 1000) pendingEvents_.push_back(std::move(event));
  outCv_.notify_all();
}

// Status writers: several run at once (a PATCH waits on the network, and a burst of pod
// starts would queue behind one writer), but never two for the same pod, so an older
// status cannot land after a newer one.
void PodManager::statusLoop() {
  while (!stop_) {
    std::string uid;
    PendingStatus item;
    {
      std::unique_lock lock(outMu_);
      auto ready = [&] {
        auto now = std::chrono::steady_clock::now();
        for (const auto& [id, pending] : pendingStatus_)
          if (!statusInFlight_.contains(id) && pending.notBefore <= now) return pendingStatus_.find(id);
        return pendingStatus_.end();
      };
      outCv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_ || ready() != pendingStatus_.end(); });
      auto it = ready();
      if (stop_ || it == pendingStatus_.end()) continue;
      uid = it->first;
      item = std::move(it->second);
      pendingStatus_.erase(it);
      statusInFlight_.insert(uid);
    }
    statusQueueDuration().observe(secondsSince(item.queuedAt));
    const api::Json& pod = item.pod;
    const api::Json& status = item.status;
    std::string path = fmt::format("/api/v1/namespaces/{}/pods/{}/status", api::namespaceOf(pod), api::nameOf(pod));
    auto sent = std::chrono::steady_clock::now();
    auto st = client_.patch(path, {{"metadata", {{"uid", uid}}}, {"status", status}}, "application/merge-patch+json");
    statusUpdateDuration().observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count());
    // A pod this agent no longer has (removed, or deleted from the API) gets no retry: the
    // API answers 403 for a pod no longer bound here, and retrying that at once spun the
    // writers (bench/podstart saw 750,000 PATCHes in 20 s).
    bool tracked = false;
    if (!st && st.error().code != ENOENT) {
      std::lock_guard lock(mu_);
      tracked = pods_.contains(uid);
    }
    std::lock_guard lock(outMu_);
    statusInFlight_.erase(uid);
    if (tracked) {
      log::warn("report status of pod {}: {}", podKey(pod), st.error().message);
      item.queuedAt = std::chrono::steady_clock::now();
      item.notBefore = item.queuedAt + kStatusRetryDelay;
      pendingStatus_.try_emplace(uid, item);  // retried unless a newer status came meanwhile
    }
    outCv_.notify_all();
  }
}

// Events go on their own thread: a status update never waits behind them.
void PodManager::eventLoop() {
  while (!stop_) {
    std::deque<api::Json> events;
    {
      std::unique_lock lock(outMu_);
      outCv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_ || !pendingEvents_.empty(); });
      events.swap(pendingEvents_);
    }
    for (const auto& e : events) {
      auto st = client_.post("/api/v1/namespaces/" + api::namespaceOf(e) + "/events", e);
      if (!st) log::debug("event: {}", st.error().message);
    }
  }
}

Status PodManager::finalize(const std::string& uid) {
  api::Json pod;
  std::shared_ptr<runtime::PodWorker> worker;
  {
    std::lock_guard lock(mu_);
    auto it = pods_.find(uid);
    if (it == pods_.end()) return {};
    pod = it->second->pod;
    worker = std::move(it->second->worker);
    it->second->finalizing = true;
  }
  auto phaseStart = std::chrono::steady_clock::now();
  if (worker) {
    worker->stop();
    if (auto st = worker->removeContainers(); !st) log::warn("pod {}: remove containers: {}", podKey(pod), st.error().message);
  }
  podStopPhase("containers").observe(secondsSince(phaseStart));
  phaseStart = std::chrono::steady_clock::now();
  if (auto st = sandboxes_.remove(uid); !st) return fail(st.error().wrap("remove sandbox of " + podKey(pod)));
  podStopPhase("sandbox").observe(secondsSince(phaseStart));
  std::error_code ec;
  fs::remove_all(config_.dataDir + "/pods/" + uid, ec);
  // The node confirms the graceful delete: the object goes away now.
  api::Json options = {{"apiVersion", "v1"}, {"kind", "DeleteOptions"}, {"gracePeriodSeconds", 0},
                       {"preconditions", {{"uid", uid}}}};
  phaseStart = std::chrono::steady_clock::now();
  auto st = client_.remove(fmt::format("/api/v1/namespaces/{}/pods/{}", api::namespaceOf(pod), api::nameOf(pod)), options);
  podStopPhase("delete").observe(secondsSince(phaseStart));
  if (!st && st.error().code != ENOENT && st.error().code != ECANCELED) {
    log::warn("delete pod {}: {}", podKey(pod), st.error().message);
  }
  fs::remove_all(config_.dataDir + "/logs/" + api::namespaceOf(pod) + "_" + api::nameOf(pod) + "_" + uid, ec);
  std::lock_guard lock(mu_);
  pods_.erase(uid);
  {
    std::lock_guard out(outMu_);
    pendingStatus_.erase(uid);  // nothing to report for a pod that is gone
  }
  log::info("pod {} removed", podKey(pod));
  return {};
}

std::set<std::string> PodManager::imagesInUse() const {
  std::set<std::string> used;
  {
    std::lock_guard lock(mu_);
    for (const auto& [uid, entry] : pods_)
      for (const char* key : {"initContainers", "containers"})
        for (const auto& c : api::at<api::Json>(entry->pod, {"spec", key}, api::Json::array()))
          if (c.is_object() && c.contains("image") && c["image"].is_string()) used.insert(c["image"].get<std::string>());
  }
  for (const auto& c : runtime_.list())
    if (auto image = c.labels.find("io.ferry.image-id"); image != c.labels.end()) used.insert(image->second);
  return used;
}

void PodManager::collectImageGarbage() {
  images::ImageGcPolicy policy{config_.imageGcHighThresholdPercent, config_.imageGcLowThresholdPercent,
                               std::chrono::seconds(config_.imageMinimumGcAgeSeconds)};
  auto report = images_.garbageCollect(policy, imagesInUse());
  if (!report) {
    log::warn("image GC: {}", report.error().message);
    return;
  }
  for (const auto& image : report->removed) log::info("image GC removed {}", image);
  if (!report->shortfall.empty()) log::warn("{}", report->shortfall);
  if (report->triggered)
    log::info("image GC: image filesystem {}% used (high threshold {}%), now {}%", report->usagePercentBefore,
              policy.highThresholdPercent, report->usagePercentAfter);
}

void PodManager::housekeepingLoop() {
  auto lastImageGc = std::chrono::steady_clock::now();
  while (!stop_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (std::chrono::steady_clock::now() - lastImageGc >= std::chrono::seconds(std::max(1, config_.imageGcPeriodSeconds))) {
      collectImageGarbage();
      lastImageGc = std::chrono::steady_clock::now();
    }
    std::vector<std::string> done, evicted;
    {
      std::lock_guard lock(mu_);
      for (auto& [uid, entry] : pods_) {
        if (starting_.contains(uid) || removing_.contains(uid)) continue;
        bool terminating = api::isTerminating(entry->pod) || entry->finalizing;
        if (!terminating && !entry->evictionMessage.empty() && !entry->evictionReported && entry->worker &&
            entry->worker->finished())
          evicted.push_back(uid);
        if (!terminating) continue;
        if (!entry->worker || entry->worker->finished()) done.push_back(uid);
      }
    }
    for (const auto& uid : evicted) finishEviction(uid);
    // Removals run on the pool, in parallel: one at a time here (containers, sandbox, the
    // delete: ~30 ms each) fell behind a stream of 50 deletes per second.
    for (const auto& uid : done) {
      {
        std::lock_guard lock(mu_);
        removing_.insert(uid);
      }
      pool_.schedule([this, uid]() -> std::optional<runtime::TaskPool::Clock::time_point> {
        if (auto st = finalize(uid); !st) log::warn("{}", st.error().message);  // tried again by housekeeping
        std::lock_guard lock(mu_);
        removing_.erase(uid);
        return std::nullopt;
      });
    }
  }
}

}  // namespace ferry::agent
