#include "agent/runtime/pod_worker.h"

#include "api/qos.h"

#include <fmt/format.h>

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ferry::runtime {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using api::Json;

namespace {

constexpr const char* kLabelPodUid = "io.kubernetes.pod.uid";
constexpr const char* kLabelPodName = "io.kubernetes.pod.name";
constexpr const char* kLabelPodNamespace = "io.kubernetes.pod.namespace";
constexpr const char* kLabelContainerName = "io.kubernetes.container.name";
constexpr const char* kLabelAttempt = "io.ferry.attempt";
constexpr const char* kLabelInit = "io.ferry.init";
constexpr const char* kLabelImageID = "io.ferry.image-id";
constexpr const char* kContainerIdPrefix = "ferry://";
// The container-name label of a pod's pause container (as dockershim named its sandbox).
constexpr const char* kPauseContainerName = "POD";

std::string rfc3339(Timestamp t) {
  return api::toRfc3339(std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count());
}

std::vector<std::string> stringArray(const Json& j, const char* key) {
  std::vector<std::string> out;
  if (!j.is_object() || !j.contains(key) || !j[key].is_array()) return out;
  for (const auto& v : j[key])
    if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

int intField(const Json& j, const char* key, int fallback) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number_integer()) return fallback;
  return j[key].get<int>();
}

std::string safeName(std::string s) {
  for (char& c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) c = '_';
  return s;
}

// "NAME=value" list with later entries replacing earlier ones of the same name.
void setEnv(std::vector<std::string>& env, const std::string& entry) {
  auto eq = entry.find('=');
  std::string name = entry.substr(0, eq);
  for (auto& e : env)
    if (e.compare(0, name.size() + 1, name + "=") == 0) {
      e = entry;
      return;
    }
  env.push_back(entry);
}

// Numeric "uid[:gid]", or a name looked up in the image's /etc/passwd (top layer first).
std::optional<std::pair<uid_t, std::optional<gid_t>>> resolveUser(const std::string& user,
                                                                  const std::vector<std::string>& layers) {
  if (user.empty()) return std::pair<uid_t, std::optional<gid_t>>{0, std::nullopt};
  std::string u = user, g;
  if (auto colon = user.find(':'); colon != std::string::npos) {
    u = user.substr(0, colon);
    g = user.substr(colon + 1);
  }
  auto numeric = [](const std::string& s) { return !s.empty() && std::all_of(s.begin(), s.end(), ::isdigit); };
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  if (numeric(u)) uid = std::stoul(u);
  if (numeric(g)) gid = std::stoul(g);
  if (!uid) {
    for (auto it = layers.rbegin(); it != layers.rend() && !uid; ++it) {
      std::ifstream in(*it + "/etc/passwd");
      std::string line;
      while (std::getline(in, line)) {
        std::vector<std::string> f;
        std::stringstream ss(line);
        std::string part;
        while (std::getline(ss, part, ':')) f.push_back(part);
        if (f.size() >= 4 && f[0] == u && numeric(f[2])) {
          uid = std::stoul(f[2]);
          if (!gid && g.empty() && numeric(f[3])) gid = std::stoul(f[3]);
          break;
        }
      }
    }
  }
  if (!uid) return std::nullopt;
  return std::pair<uid_t, std::optional<gid_t>>{*uid, gid};
}

}  // namespace

struct PodWorker::ProbeState {
  Json spec;
  std::chrono::seconds initialDelay{0}, period{10}, timeout{1};
  int successThreshold = 1, failureThreshold = 3;
  Timestamp nextRun{};
  int successes = 0, failures = 0;

  static std::optional<ProbeState> from(const Json& container, const char* key, Timestamp startedAt) {
    if (!container.contains(key) || !container[key].is_object()) return std::nullopt;
    ProbeState p;
    p.spec = container[key];
    p.initialDelay = std::chrono::seconds(intField(p.spec, "initialDelaySeconds", 0));
    p.period = std::chrono::seconds(std::max(1, intField(p.spec, "periodSeconds", 10)));
    p.timeout = std::chrono::seconds(std::max(1, intField(p.spec, "timeoutSeconds", 1)));
    p.successThreshold = std::max(1, intField(p.spec, "successThreshold", 1));
    p.failureThreshold = std::max(1, intField(p.spec, "failureThreshold", 3));
    p.nextRun = startedAt + p.initialDelay;
    return p;
  }
};

struct PodWorker::ContainerState {
  Json spec;
  std::string name;
  bool init = false;
  std::string image;

  enum class Phase { Waiting, Running, Terminated };
  Phase phase = Phase::Waiting;
  std::string waitingReason = "ContainerCreating";
  std::string waitingMessage;

  std::unique_ptr<Container> container;
  std::string containerID;
  std::string imageID;
  int attempt = -1;       // attempt number of `container`; restartCount reports it
  Timestamp startedAt{}, finishedAt{};
  int exitCode = 0;
  int signal = 0;
  std::string terminatedReason, terminatedMessage;
  std::optional<Json> lastTerminated;

  bool done = false;  // terminated for good
  Timestamp nextStartAt{};
  std::chrono::seconds backOff{0};
  std::chrono::seconds imageBackOff{0};

  std::optional<ProbeState> startup, liveness, readiness;
  bool started = false;
  bool ready = false;

  bool stopping = false;
  bool killSent = false;
  Timestamp killAt{};

  bool completed() const { return phase == Phase::Terminated && done && exitCode == 0; }

  Json terminatedJson() const {
    Json t = {{"exitCode", exitCode},
              {"reason", terminatedReason},
              {"startedAt", rfc3339(startedAt)},
              {"finishedAt", rfc3339(finishedAt)}};
    if (signal) t["signal"] = signal;
    if (!terminatedMessage.empty()) t["message"] = terminatedMessage;
    if (!containerID.empty()) t["containerID"] = containerID;
    return t;
  }
};

PodWorker::PodWorker(Json pod, PodSandboxInfo sandbox, PodWorkerConfig config, PodDeps deps)
    : pod_(std::move(pod)), sandbox_(std::move(sandbox)), config_(std::move(config)), deps_(std::move(deps)) {
  if (!deps_.now) deps_.now = [] { return std::chrono::system_clock::now(); };
  startTime_ = deps_.now();
  if (auto st = api::at<std::string>(pod_, {"status", "startTime"}); !st.empty()) {
    if (auto secs = api::parseRfc3339(st); secs >= 0) startTime_ = Timestamp(std::chrono::seconds(secs));
  }
  auto add = [&](const char* key, bool init, auto& into) {
    const Json containers = api::at<Json>(pod_, {"spec", key}, Json::array());
    if (!containers.is_array()) return;
    for (const auto& c : containers) {
      auto cs = std::make_unique<ContainerState>();
      cs->spec = c;
      cs->name = c.value("name", std::string());
      cs->init = init;
      cs->image = c.value("image", std::string());
      if (!init) cs->waitingReason = containers.empty() ? "ContainerCreating" : "ContainerCreating";
      into.push_back(std::move(cs));
    }
  };
  add("initContainers", true, init_);
  add("containers", false, app_);
  if (!init_.empty())
    for (auto& cs : app_) cs->waitingReason = "PodInitializing";
  if (!deps_.resolveEnv) {
    deps_.resolveEnv = [](const Json&, const Json& container) -> Result<std::vector<std::string>> {
      std::vector<std::string> env;
      for (const auto& e : container.value("env", Json::array())) {
        std::string name = e.value("name", std::string());
        if (name.empty()) continue;
        if (e.contains("valueFrom"))
          return fail(Error::invalid(fmt::format("env {}: valueFrom is not resolved by this agent", name)));
        setEnv(env, name + "=" + expandVariables(e.value("value", std::string()), env));
      }
      return env;
    };
  }
  if (!deps_.networkProbe) {
    std::string netns = sandbox_.netnsPath;
    deps_.networkProbe = [netns](const Json& handler, const std::string& podIP, std::chrono::milliseconds timeout) {
      if (handler.contains("tcpSocket")) {
        const auto& t = handler["tcpSocket"];
        std::string host = t.value("host", podIP.empty() ? std::string("127.0.0.1") : podIP);
        return probeTcp(netns, host, t.value("port", 0), timeout);
      }
      const auto& h = handler["httpGet"];
      std::string host = h.value("host", podIP.empty() ? std::string("127.0.0.1") : podIP);
      std::vector<std::pair<std::string, std::string>> headers;
      for (const auto& hh : h.value("httpHeaders", Json::array()))
        headers.emplace_back(hh.value("name", std::string()), hh.value("value", std::string()));
      return probeHttpGet(netns, h.value("scheme", std::string("HTTP")), host, h.value("port", 0),
                          h.value("path", std::string("/")), headers, timeout);
    };
  }
  for (const auto& c : api::at<Json>(pod_, {"status", "conditions"}, Json::array()))
    if (c.value("type", "") == "PodScheduled") scheduledCondition_ = c;
}

PodWorker::~PodWorker() { stop(); }

Status PodWorker::adopt() {
  std::lock_guard lock(mutex_);
  if (!deps_.listContainers || !deps_.adoptContainer) return {};
  std::string uid = api::uidOf(pod_);
  std::map<std::string, std::vector<std::pair<int, std::string>>> byName;  // name → (attempt, id)
  for (const auto& info : deps_.listContainers()) {
    auto it = info.labels.find(kLabelPodUid);
    if (it == info.labels.end() || it->second != uid) continue;
    auto name = info.labels.find(kLabelContainerName);
    auto attempt = info.labels.find(kLabelAttempt);
    if (name == info.labels.end() || attempt == info.labels.end()) continue;
    byName[name->second].emplace_back(std::atoi(attempt->second.c_str()), info.id);
  }
  if (auto pause = byName.find(kPauseContainerName); pause != byName.end()) {
    auto c = deps_.adoptContainer(pause->second.back().second, {});
    if (c) pause_ = std::move(*c);
  }
  bool anyApp = false;
  for (auto* list : {&init_, &app_}) {
    for (auto& cs : *list) {
      auto found = byName.find(cs->name);
      if (found == byName.end()) continue;
      auto& attempts = found->second;
      std::sort(attempts.begin(), attempts.end());
      std::string name = cs->name;
      auto join = [this, name](pid_t pid) { return deps_.joinCgroups ? deps_.joinCgroups(name, pid) : Status{}; };
      // Older attempts are history: only their logs are kept.
      for (size_t i = 0; i + 1 < attempts.size(); ++i)
        if (auto old = deps_.adoptContainer(attempts[i].second, join)) (void)(*old)->remove();
      auto c = deps_.adoptContainer(attempts.back().second, join);
      if (!c) return fail(c.error().wrap(fmt::format("adopt container {}", cs->name)));
      cs->attempt = attempts.back().first;
      cs->startedAt = (*c)->startedAt();
      cs->containerID = kContainerIdPrefix + (*c)->id();
      auto img = (*c)->labels().find(kLabelImageID);
      if (img != (*c)->labels().end()) cs->imageID = img->second;
      cs->container = std::move(*c);
      cs->phase = ContainerState::Phase::Running;
      cs->startup = ProbeState::from(cs->spec, "startupProbe", deps_.now());
      cs->liveness = ProbeState::from(cs->spec, "livenessProbe", deps_.now());
      cs->readiness = ProbeState::from(cs->spec, "readinessProbe", deps_.now());
      cs->started = !cs->startup;
      cs->ready = cs->started && !cs->readiness;
      if (!cs->init) anyApp = true;
    }
  }
  if (anyApp) {
    // App containers only start after every init container succeeded.
    for (auto& cs : init_) {
      if (cs->phase == ContainerState::Phase::Running) continue;
      cs->phase = ContainerState::Phase::Terminated;
      cs->done = true;
      cs->exitCode = 0;
      cs->terminatedReason = "Completed";
      cs->startedAt = cs->finishedAt = startTime_;
    }
  }
  finished_ = finishedLocked(statusLocked());
  return {};
}

void PodWorker::updatePod(const Json& pod) {
  std::optional<std::int64_t> grace;
  bool terminate = false;
  {
    std::lock_guard lock(mutex_);
    pod_["metadata"] = pod.value("metadata", Json::object());
    if (api::isTerminating(pod) && !terminating_) {
      terminate = true;
      if (pod["metadata"].contains("deletionGracePeriodSeconds") &&
          pod["metadata"]["deletionGracePeriodSeconds"].is_number_integer())
        grace = pod["metadata"]["deletionGracePeriodSeconds"].get<std::int64_t>();
    }
  }
  if (terminate) this->terminate(grace);
}

void PodWorker::terminate(std::optional<std::int64_t> gracePeriodSeconds) {
  TaskPool* pool = nullptr;
  TaskPool::TaskId task = 0;
  {
    std::lock_guard lock(mutex_);
    if (terminating_) {
      // A second delete may only shorten the grace period.
      if (gracePeriodSeconds) {
        Timestamp deadline = deps_.now() + std::chrono::seconds(std::max<std::int64_t>(0, *gracePeriodSeconds));
        if (deadline < terminationDeadline_) terminationDeadline_ = deadline;
        for (auto* list : {&init_, &app_})
          for (auto& cs : *list)
            if (cs->stopping && deadline < cs->killAt) cs->killAt = deadline;
      }
    } else {
      terminating_ = true;
      std::int64_t grace = gracePeriodSeconds.value_or(api::at<std::int64_t>(pod_, {"spec", "terminationGracePeriodSeconds"}, 30));
      graceOverride_ = gracePeriodSeconds;
      terminationDeadline_ = deps_.now() + std::chrono::seconds(std::max<std::int64_t>(0, grace));
      finished_ = finishedLocked(statusLocked());
    }
    pool = pool_;
    task = task_;
  }
  if (pool) pool->wake(task);
}

// Both without the worker's lock: PodManager asks them of every pod while it holds its
// own lock (pod admission counts the pods in place), and a sync holds the worker's lock
// through container starts and stops (tens of ms). Waiting there put every admission,
// pod start and status report behind whichever pod was starting a container.
bool PodWorker::terminating() const { return terminating_.load(); }

bool PodWorker::finished() const { return finished_.load(); }

bool PodWorker::finishedLocked(const Json& status) const {
  auto stopped = [](const auto& cs) {
    return cs->phase != ContainerState::Phase::Running && (cs->done || !cs->container || cs->phase == ContainerState::Phase::Waiting);
  };
  if (terminating_) {
    for (auto* list : {&init_, &app_})
      for (auto& cs : *list)
        if (cs->phase == ContainerState::Phase::Running) return false;
    return true;
  }
  std::string phase = status.value("phase", "");
  if (phase != "Succeeded" && phase != "Failed") return false;
  for (auto* list : {&init_, &app_})
    for (auto& cs : *list)
      if (!stopped(cs)) return false;
  return true;
}

void PodWorker::onStatusChange(std::function<void(const Json&)> callback) {
  std::lock_guard lock(mutex_);
  onChange_ = std::move(callback);
}

Json PodWorker::status() const {
  std::lock_guard lock(mutex_);
  return statusLocked();
}

Timestamp PodWorker::sync() {
  Timestamp next;
  Json changed;
  std::function<void(const Json&)> callback;
  {
    std::lock_guard lock(mutex_);
    Timestamp now = deps_.now();
    next = now + 1s;
    syncLocked(now, next);
    Json st = statusLocked();
    finished_ = finishedLocked(st);
    if (st != lastReported_) {
      lastReported_ = st;
      changed = st;
      callback = onChange_;
    }
  }
  if (callback && !changed.is_null()) callback(changed);
  return next;
}

// ---- the state machine ----

namespace {

std::string podRef(const Json& pod) {
  return fmt::format("{}_{}({})", api::nameOf(pod), api::namespaceOf(pod), api::uidOf(pod));
}

}  // namespace

void PodWorker::syncLocked(Timestamp now, Timestamp& next) {
  using Phase = ContainerState::Phase;
  auto emit = [&](const std::string& reason, const std::string& message, const std::string& type = "Normal") {
    if (deps_.emitEvent) deps_.emitEvent(reason, message, type);
  };
  auto wakeAt = [&](Timestamp t) {
    if (t < next) next = std::max(t, now);
  };
  std::string restartPolicy = api::at<std::string>(pod_, {"spec", "restartPolicy"}, "Always");
  std::int64_t podGrace = api::at<std::int64_t>(pod_, {"spec", "terminationGracePeriodSeconds"}, 30);

  // 1. Exits.
  for (auto* list : {&init_, &app_}) {
    for (auto& cs : *list) {
      if (cs->phase != Phase::Running || !cs->container) continue;
      auto exit = cs->container->exitStatus();
      if (!exit) continue;
      handleExit(*cs, *exit, now, restartPolicy);
    }
  }

  // 2. Stopping containers (deletion or failed liveness): SIGKILL at the deadline.
  for (auto* list : {&init_, &app_}) {
    for (auto& cs : *list) {
      if (!cs->stopping || cs->phase != Phase::Running) continue;
      if (now >= cs->killAt && !cs->killSent) {
        (void)cs->container->signal(SIGKILL);
        cs->killSent = true;
      }
      if (!cs->killSent) wakeAt(cs->killAt);
    }
  }

  if (terminating_) {
    for (auto* list : {&init_, &app_}) {
      for (auto& cs : *list) {
        if (cs->phase != Phase::Running) {
          cs->done = true;
          continue;
        }
        if (cs->stopping) continue;
        beginStop(*cs, terminationDeadline_, now, "Stopping container " + cs->name);
        if (now >= cs->killAt && !cs->killSent) {
          (void)cs->container->signal(SIGKILL);
          cs->killSent = true;
        }
        if (!cs->killSent) wakeAt(cs->killAt);
      }
    }
    bool anyRunning = false;
    for (auto* list : {&init_, &app_})
      for (auto& cs : *list) anyRunning |= cs->phase == Phase::Running;
    if (!anyRunning && pause_) (void)pause_->signal(SIGKILL);
    updateConditions(now);
    return;
  }

  if (!filesReady_) {
    if (auto st = preparePodFiles(); !st) {
      emit("FailedMount", st.error().message, "Warning");
      for (auto* list : {&init_, &app_})
        for (auto& cs : *list) {
          cs->waitingReason = "CreateContainerConfigError";
          cs->waitingMessage = st.error().message;
        }
      wakeAt(now + 10s);
      updateConditions(now);
      return;
    }
    filesReady_ = true;
  }

  // 3. Init containers, in order; app containers only once all succeeded.
  bool initDone = true;
  for (auto& cs : init_) {
    if (cs->completed()) continue;
    initDone = false;
    if (cs->phase == Phase::Waiting && !cs->done) {
      if (now >= cs->nextStartAt) {
        startContainer(*cs, now, restartPolicy);
      } else {
        enterImagePullBackOff(*cs);
        wakeAt(cs->nextStartAt);
      }
    }
    break;
  }
  if (initDone) {
    for (auto& cs : app_) {
      if (cs->phase != Phase::Waiting || cs->done) continue;
      if (now >= cs->nextStartAt) {
        startContainer(*cs, now, restartPolicy);
      } else {
        enterImagePullBackOff(*cs);
        wakeAt(cs->nextStartAt);
      }
    }
  }

  // 4. Probes of running containers.
  for (auto* list : {&init_, &app_}) {
    for (auto& cs : *list) {
      if (cs->phase != Phase::Running || cs->stopping || cs->init) continue;
      std::chrono::seconds probeGrace(podGrace);
      auto failProbe = [&](ProbeState& p, const char* kind, const std::string& message) {
        emit("Unhealthy", fmt::format("{} probe failed: {}", kind, message), "Warning");
        (void)p;
      };
      if (cs->startup && !cs->started) {
        auto& p = *cs->startup;
        if (now >= p.nextRun) {
          auto outcome = runProbe(*cs, p);
          p.nextRun = now + p.period;
          if (outcome.success) {
            cs->started = true;
            if (!cs->readiness) cs->ready = true;
            // Liveness and readiness start counting once started.
            if (cs->liveness) cs->liveness->nextRun = now + cs->liveness->initialDelay;
            if (cs->readiness) cs->readiness->nextRun = now + cs->readiness->initialDelay;
          } else if (++p.failures >= p.failureThreshold) {
            failProbe(p, "Startup", outcome.message);
            beginStop(*cs, now + probeGrace, now,
                      fmt::format("Container {} failed startup probe, will be restarted", cs->name));
            continue;
          } else {
            failProbe(p, "Startup", outcome.message);
          }
        }
        if (!cs->started) wakeAt(p.nextRun);
      }
      if (!cs->started) continue;
      if (cs->liveness) {
        auto& p = *cs->liveness;
        if (now >= p.nextRun) {
          auto outcome = runProbe(*cs, p);
          p.nextRun = now + p.period;
          if (outcome.success) {
            p.failures = 0;
          } else {
            failProbe(p, "Liveness", outcome.message);
            if (++p.failures >= p.failureThreshold) {
              p.failures = 0;
              beginStop(*cs, now + probeGrace, now,
                        fmt::format("Container {} failed liveness probe, will be restarted", cs->name));
              continue;
            }
          }
        }
        wakeAt(p.nextRun);
      }
      if (cs->readiness) {
        auto& p = *cs->readiness;
        if (now >= p.nextRun) {
          auto outcome = runProbe(*cs, p);
          p.nextRun = now + p.period;
          if (outcome.success) {
            p.failures = 0;
            if (++p.successes >= p.successThreshold) cs->ready = true;
          } else {
            p.successes = 0;
            failProbe(p, "Readiness", outcome.message);
            if (++p.failures >= p.failureThreshold) cs->ready = false;
          }
        }
        wakeAt(p.nextRun);
      }
    }
  }
  updateConditions(now);
}

void PodWorker::handleExit(ContainerState& cs, const ExitStatus& exit, Timestamp now, const std::string& restartPolicy) {
  cs.phase = ContainerState::Phase::Terminated;
  cs.exitCode = exit.exitCode;
  cs.signal = exit.signal;
  cs.finishedAt = exit.finishedAt.time_since_epoch().count() ? exit.finishedAt : now;
  bool oom = deps_.oomKilled && deps_.oomKilled(cs.name);
  cs.terminatedReason = oom ? "OOMKilled" : (exit.exitCode == 0 ? "Completed" : "Error");
  cs.terminatedMessage.clear();
  std::string messagePath = config_.podDir + "/containers/" + safeName(cs.name) + "/" + std::to_string(cs.attempt) +
                            "/termination-log";
  if (std::ifstream in(messagePath); in) {
    std::stringstream ss;
    ss << in.rdbuf();
    cs.terminatedMessage = ss.str().substr(0, 4096);
  }
  cs.started = false;
  cs.ready = false;
  cs.stopping = false;
  cs.killSent = false;
  finishExit(cs, now, restartPolicy);
}

// After a container ended (or failed to start): restart it now, later (back-off), or never.
void PodWorker::finishExit(ContainerState& cs, Timestamp now, const std::string& restartPolicy) {
  bool restart;
  if (terminating_)
    restart = false;
  else if (cs.init)
    restart = cs.exitCode != 0 && restartPolicy != "Never";
  else
    restart = restartPolicy == "Always" || (restartPolicy == "OnFailure" && cs.exitCode != 0);
  if (!restart) {
    cs.done = true;
    return;
  }
  if (cs.finishedAt - cs.startedAt >= kBackOffResetAfterRunning) cs.backOff = 0s;
  std::chrono::seconds delay = cs.backOff;
  cs.backOff = cs.backOff == 0s ? kInitialBackOff : std::min(cs.backOff * 2, std::chrono::seconds(kMaxBackOff));
  cs.lastTerminated = cs.terminatedJson();
  cs.phase = ContainerState::Phase::Waiting;
  cs.nextStartAt = now + delay;
  cs.waitingReason = "CrashLoopBackOff";
  cs.waitingMessage = fmt::format("back-off {}s restarting failed container={} pod={}", delay.count(), cs.name, podRef(pod_));
  if (delay > 0s && deps_.emitEvent)
    deps_.emitEvent("BackOff", fmt::format("Back-off restarting failed container {} in pod {}", cs.name, podRef(pod_)),
                    "Warning");
}

// A container whose pull failed waits out the back-off as ImagePullBackOff (the
// kubelet's state between pull attempts), from the first sync after the failure.
void PodWorker::enterImagePullBackOff(ContainerState& cs) {
  if (cs.waitingReason != "ErrImagePull") return;
  std::string message = fmt::format("Back-off pulling image \"{}\"", cs.image);
  cs.waitingReason = "ImagePullBackOff";
  cs.waitingMessage = message;
  if (deps_.emitEvent) {
    deps_.emitEvent("BackOff", message, "Normal");
    deps_.emitEvent("Failed", "Error: ImagePullBackOff", "Warning");
  }
}

void PodWorker::beginStop(ContainerState& cs, Timestamp killAt, Timestamp now, const std::string& reason) {
  if (deps_.emitEvent) deps_.emitEvent("Killing", reason, "Normal");
  cs.stopping = true;
  cs.killAt = killAt;
  cs.ready = false;
  // preStop runs first and counts against the grace period.
  if (!cs.init && cs.spec.contains("lifecycle") && cs.spec["lifecycle"].contains("preStop")) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(killAt - now);
    if (left.count() > 0) {
      auto outcome = runHandler(cs, cs.spec["lifecycle"]["preStop"], left);
      if (!outcome.success && deps_.emitEvent)
        deps_.emitEvent("FailedPreStopHook", fmt::format("PreStopHook failed: {}", outcome.message), "Warning");
    }
  }
  if (deps_.now() >= killAt) {
    (void)cs.container->signal(SIGKILL);
    cs.killSent = true;
  } else {
    (void)cs.container->signal(SIGTERM);
  }
}

ProbeOutcome PodWorker::runHandler(ContainerState& cs, const Json& handler, std::chrono::milliseconds timeout) {
  if (handler.contains("exec")) {
    auto argv = stringArray(handler["exec"], "command");
    if (argv.empty()) return {false, "exec: command is empty"};
    auto r = cs.container->exec(argv, timeout);
    if (!r) return {false, r.error().message};
    if (r->timedOut) return {false, fmt::format("command timed out after {}s", timeout.count() / 1000)};
    if (r->exitCode != 0)
      return {false, fmt::format("command {} exited with {}: {}", Json(argv).dump(), r->exitCode, r->output)};
    return {true, ""};
  }
  if (handler.contains("httpGet") || handler.contains("tcpSocket")) {
    Json resolved = handler;
    const char* key = handler.contains("httpGet") ? "httpGet" : "tcpSocket";
    // A named port refers to the container's ports.
    if (resolved[key].contains("port") && resolved[key]["port"].is_string()) {
      std::string name = resolved[key]["port"].get<std::string>();
      int number = 0;
      for (const auto& p : cs.spec.value("ports", Json::array()))
        if (p.value("name", "") == name) number = p.value("containerPort", 0);
      if (number == 0) {
        if (std::all_of(name.begin(), name.end(), ::isdigit) && !name.empty()) number = std::stoi(name);
        else return {false, fmt::format("port \"{}\" is not a named port of the container", name)};
      }
      resolved[key]["port"] = number;
    }
    std::string podIP = sandbox_.podIPs.empty() ? "" : sandbox_.podIPs.front();
    return deps_.networkProbe(resolved, podIP, timeout);
  }
  if (handler.contains("sleep")) {
    // lifecycle sleep action: nothing to run in the container; honoured by the grace period.
    return {true, ""};
  }
  return {false, "probe has no handler (exec, httpGet or tcpSocket)"};
}

ProbeOutcome PodWorker::runProbe(ContainerState& cs, ProbeState& p) { return runHandler(cs, p.spec, p.timeout); }

Status PodWorker::preparePodFiles() {
  std::error_code ec;
  fs::create_directories(config_.podDir + "/etc", ec);
  if (ec) return fail(ec.value(), fmt::format("create {}: {}", config_.podDir, ec.message()));
  auto resolv = resolvConfFor(pod_, config_.dns);
  if (!resolv) return fail(resolv.error());
  std::ofstream(config_.podDir + "/etc/resolv.conf") << *resolv;
  std::ofstream(config_.podDir + "/etc/hosts") << etcHostsFor(pod_, sandbox_.podIPs, config_.dns.clusterDomain);
  std::ofstream(config_.podDir + "/etc/hostname") << hostnameFor(pod_) << "\n";
  for (const auto& v : api::at<Json>(pod_, {"spec", "volumes"}, Json::array())) {
    if (!v.contains("emptyDir")) continue;
    std::string dir = config_.podDir + "/volumes/empty-dir/" + safeName(v.value("name", ""));
    fs::create_directories(dir, ec);
    chmod(dir.c_str(), 0777);
    if (v["emptyDir"].is_object() && v["emptyDir"].value("medium", "") == "Memory") {
      std::string options = "mode=1777";
      if (v["emptyDir"].contains("sizeLimit") && v["emptyDir"]["sizeLimit"].is_string())
        options += ",size=" + v["emptyDir"]["sizeLimit"].get<std::string>();
      struct stat dirStat {}, parentStat {};
      bool mounted = stat(dir.c_str(), &dirStat) == 0 && stat((dir + "/..").c_str(), &parentStat) == 0 &&
                     dirStat.st_dev != parentStat.st_dev;
      if (!mounted && mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) < 0 &&
          mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
        return failErrno(fmt::format("volume {}: mount tmpfs", v.value("name", "")));
    }
  }
  return {};
}

Result<std::vector<BindMount>> PodWorker::mountsFor(ContainerState& cs, const std::string& attemptDir) {
  std::vector<BindMount> mounts;
  std::map<std::string, Json> volumes;
  for (const auto& v : api::at<Json>(pod_, {"spec", "volumes"}, Json::array())) volumes[v.value("name", "")] = v;
  bool hosts = false, hostname = false, resolv = false;
  for (const auto& m : cs.spec.value("volumeMounts", Json::array())) {
    std::string name = m.value("name", "");
    std::string dest = m.value("mountPath", "");
    auto it = volumes.find(name);
    if (it == volumes.end())
      return fail(Error::invalid(fmt::format("volumeMounts[{}]: no volume named \"{}\" in the pod", name, name)));
    const Json& v = it->second;
    std::string source;
    if (v.contains("emptyDir")) {
      source = config_.podDir + "/volumes/empty-dir/" + safeName(name);
    } else if (v.contains("hostPath")) {
      source = v["hostPath"].value("path", "");
      std::string type = v["hostPath"].value("type", "");
      std::error_code ec;
      if (type == "DirectoryOrCreate") fs::create_directories(source, ec);
      if (type == "FileOrCreate" && !fs::exists(source)) {
        fs::create_directories(fs::path(source).parent_path(), ec);
        std::ofstream(source).close();
      }
      if (!fs::exists(source))
        return fail(Error{ENOENT, fmt::format("volume {}: hostPath {} does not exist", name, source)});
    } else if (deps_.volumeHostPath) {
      auto p = deps_.volumeHostPath(v);
      if (!p) return fail(p.error().wrap(fmt::format("volume {}", name)));
      source = *p;
    } else {
      return fail(Error::invalid(fmt::format("volume {}: this volume type is not supported", name)));
    }
    if (m.contains("subPath") && m["subPath"].is_string() && !m["subPath"].get<std::string>().empty()) {
      std::string sub = m["subPath"].get<std::string>();
      if (sub.find("..") != std::string::npos || sub[0] == '/')
        return fail(Error::invalid(fmt::format("volumeMounts[{}].subPath: must be a relative path without ..", name)));
      source += "/" + sub;
      std::error_code ec;
      if (!fs::exists(source)) fs::create_directories(source, ec);
    }
    mounts.push_back({source, dest, m.value("readOnly", false)});
    hosts |= dest == "/etc/hosts";
    hostname |= dest == "/etc/hostname";
    resolv |= dest == "/etc/resolv.conf";
  }
  if (!hosts) mounts.push_back({config_.podDir + "/etc/hosts", "/etc/hosts", false});
  if (!hostname) mounts.push_back({config_.podDir + "/etc/hostname", "/etc/hostname", false});
  if (!resolv) mounts.push_back({config_.podDir + "/etc/resolv.conf", "/etc/resolv.conf", false});
  std::string messagePath = cs.spec.value("terminationMessagePath", std::string("/dev/termination-log"));
  if (!messagePath.empty()) {
    std::ofstream(attemptDir + "/termination-log").close();
    mounts.push_back({attemptDir + "/termination-log", messagePath, false});
  }
  return mounts;
}

void PodWorker::startContainer(ContainerState& cs, Timestamp now, const std::string& restartPolicy) {
  auto emit = [&](const std::string& reason, const std::string& message, const std::string& type = "Normal") {
    if (deps_.emitEvent) deps_.emitEvent(reason, message, type);
  };
  auto configError = [&](const std::string& reason, const std::string& message) {
    cs.waitingReason = reason;
    cs.waitingMessage = message;
    cs.imageBackOff = cs.imageBackOff == 0s ? kInitialBackOff : std::min(cs.imageBackOff * 2, kMaxBackOff);
    cs.nextStartAt = now + cs.imageBackOff;
    emit("Failed", fmt::format("Error: {}", reason == "CreateContainerConfigError" ? message : reason), "Warning");
  };

  // Image.
  std::string policy = cs.spec.value("imagePullPolicy", std::string());
  if (policy.empty()) {
    auto slash = cs.image.rfind('/');
    std::string last = slash == std::string::npos ? cs.image : cs.image.substr(slash + 1);
    bool tagged = last.find(':') != std::string::npos || cs.image.find('@') != std::string::npos;
    policy = (!tagged || last.ends_with(":latest")) ? "Always" : "IfNotPresent";
  }
  if (!deps_.ensureImage) return configError("ErrImagePull", "no image store");
  // Events as the kubelet's image manager writes them (kubectl describe shows these).
  auto pulling = [&] { emit("Pulling", fmt::format("Pulling image \"{}\"", cs.image)); };
  auto image =
      deps_.ensureImage(cs.image, policy, api::at<Json>(pod_, {"spec", "imagePullSecrets"}, Json::array()), pulling);
  if (!image) {
    std::string reason = image.error().reason;
    std::string message = image.error().message;
    if (reason == "InvalidImageName") {
      message = fmt::format("Failed to apply default image tag \"{}\": {}", cs.image, message);
      emit("InspectFailed", message, "Warning");
    } else if (reason == "ErrImageNeverPull") {
      emit("ErrImageNeverPull", message, "Warning");
    } else {
      emit("Failed", fmt::format("Failed to pull image \"{}\": {}", cs.image, message), "Warning");
    }
    emit("Failed", "Error: " + reason, "Warning");
    cs.waitingReason = reason;
    cs.waitingMessage = message;
    // ErrImagePull turns into ImagePullBackOff at the next sync (enterImagePullBackOff);
    // the others are retried on the same schedule (a fixed spec fails the same way).
    cs.imageBackOff = cs.imageBackOff == 0s ? kInitialBackOff : std::min(cs.imageBackOff * 2, kMaxBackOff);
    cs.nextStartAt = now + cs.imageBackOff;
    return;
  }
  if (image->pulled) {
    double seconds = std::chrono::duration<double>(image->pullDuration).count();
    emit("Pulled", fmt::format("Successfully pulled image \"{}\" in {:.3f}s ({:.3f}s including waiting). Image size: {} bytes.",
                               cs.image, seconds, seconds, image->sizeBytes));
  } else {
    emit("Pulled", fmt::format("Container image \"{}\" already present on machine", cs.image));
  }
  cs.imageBackOff = 0s;
  cs.imageID = image->imageID;

  // Env and command.
  auto resolved = deps_.resolveEnv(pod_, cs.spec);
  if (!resolved) return configError("CreateContainerConfigError", resolved.error().message);
  std::vector<std::string> env = image->env;
  setEnv(env, "HOSTNAME=" + hostnameFor(pod_));
  for (const auto& e : *resolved) setEnv(env, e);
  auto argv = combineCommand(stringArray(cs.spec, "command"), stringArray(cs.spec, "args"), image->entrypoint,
                             image->cmd, env);
  if (argv.empty()) return configError("CreateContainerError", "no command specified");

  int attempt = cs.attempt + 1;
  std::string attemptDir = config_.podDir + "/containers/" + safeName(cs.name) + "/" + std::to_string(attempt);
  std::error_code ec;
  fs::create_directories(attemptDir, ec);
  auto mounts = mountsFor(cs, attemptDir);
  if (!mounts) return configError("CreateContainerConfigError", mounts.error().message);

  ContainerSpec spec;
  spec.id = safeName(fmt::format("{}_{}_{}", api::uidOf(pod_).empty() ? api::nameOf(pod_) : api::uidOf(pod_), cs.name, attempt));
  spec.labels = {{kLabelPodUid, api::uidOf(pod_)},
                 {kLabelPodName, api::nameOf(pod_)},
                 {kLabelPodNamespace, api::namespaceOf(pod_)},
                 {kLabelContainerName, cs.name},
                 {kLabelAttempt, std::to_string(attempt)},
                 {kLabelInit, cs.init ? "true" : "false"},
                 {kLabelImageID, cs.imageID}};
  spec.lowerDirs = image->layerDirs;
  spec.upperDir = attemptDir + "/upper";
  spec.workDir = attemptDir + "/work";
  spec.argv = argv;
  spec.env = env;
  spec.workingDir = cs.spec.value("workingDir", image->workingDir.empty() ? std::string("/") : image->workingDir);
  if (spec.workingDir.empty()) spec.workingDir = "/";

  const Json podSec = api::at<Json>(pod_, {"spec", "securityContext"}, Json::object());
  const Json sec = cs.spec.value("securityContext", Json::object());
  auto secInt = [&](const char* key) -> std::optional<std::int64_t> {
    if (sec.contains(key) && sec[key].is_number_integer()) return sec[key].get<std::int64_t>();
    if (podSec.contains(key) && podSec[key].is_number_integer()) return podSec[key].get<std::int64_t>();
    return std::nullopt;
  };
  auto user = resolveUser(image->user, image->layerDirs);
  if (!user && !secInt("runAsUser"))
    return configError("CreateContainerConfigError",
                       fmt::format("image user \"{}\" is not a number and not in the image's /etc/passwd", image->user));
  spec.uid = secInt("runAsUser").value_or(user ? user->first : 0);
  spec.gid = secInt("runAsGroup").value_or(user && user->second ? *user->second : 0);
  bool runAsNonRoot = sec.value("runAsNonRoot", podSec.value("runAsNonRoot", false));
  if (runAsNonRoot && spec.uid == 0)
    return configError("CreateContainerConfigError", "container has runAsNonRoot and image will run as root");
  for (const auto& g : podSec.value("supplementalGroups", Json::array()))
    if (g.is_number_integer()) spec.supplementalGroups.push_back(g.get<gid_t>());
  if (podSec.contains("fsGroup") && podSec["fsGroup"].is_number_integer())
    spec.supplementalGroups.push_back(podSec["fsGroup"].get<gid_t>());
  spec.privileged = sec.value("privileged", false);
  spec.addCapabilities = stringArray(sec.value("capabilities", Json::object()), "add");
  spec.dropCapabilities = stringArray(sec.value("capabilities", Json::object()), "drop");
  // no_new_privs unless privilege escalation is explicitly allowed.
  spec.noNewPrivileges = !(sec.contains("allowPrivilegeEscalation") && sec["allowPrivilegeEscalation"].is_boolean() &&
                           sec["allowPrivilegeEscalation"].get<bool>());
  std::string seccompType = sec.contains("seccompProfile") ? sec["seccompProfile"].value("type", "")
                            : podSec.contains("seccompProfile") ? podSec["seccompProfile"].value("type", "")
                                                                : "";
  spec.seccompRuntimeDefault = seccompType != "Unconfined";
  spec.readOnlyRootFilesystem = sec.value("readOnlyRootFilesystem", false);

  spec.netnsPath = sandbox_.netnsPath;
  spec.ipcnsPath = sandbox_.ipcnsPath;
  spec.utsnsPath = sandbox_.utsnsPath;
  // hostNetwork pods keep the node's name (no UTS namespace of their own).
  bool hostNetwork = api::at<bool>(pod_, {"spec", "hostNetwork"}, false);
  spec.hostname = hostNetwork && sandbox_.utsnsPath.empty() ? "" : hostnameFor(pod_);
  if (api::at<bool>(pod_, {"spec", "shareProcessNamespace"}, false)) {
    auto pidns = sharedPidNamespace();
    if (!pidns) return configError("CreateContainerError", pidns.error().message);
    spec.pidnsPath = *pidns;
  }
  spec.mounts = std::move(*mounts);
  std::string name = cs.name;
  if (deps_.joinCgroups) {
    auto join = deps_.joinCgroups;
    spec.joinCgroups = [join, name](pid_t pid) { return join(name, pid); };
  }
  spec.logPath = config_.logDir + "/" + safeName(cs.name) + "/" + std::to_string(attempt) + ".log";
  spec.logMaxBytes = config_.logMaxBytes;
  spec.logMaxFiles = config_.logMaxFiles;

  // The previous attempt is replaced: its state and filesystem go, its log stays.
  if (cs.container) {
    (void)cs.container->remove();
    cs.container.reset();
  }
  cs.attempt = attempt;
  cs.containerID.clear();
  auto started = deps_.startContainer ? deps_.startContainer(spec) : fail(Error{ENOSYS, "no container runtime"});
  if (!started) {
    emit("Failed", fmt::format("Error: {}", started.error().message), "Warning");
    // As containerd reports it: the attempt ran and ended at once with StartError.
    cs.phase = ContainerState::Phase::Terminated;
    cs.exitCode = 128;
    cs.signal = 0;
    cs.terminatedReason = "StartError";
    cs.terminatedMessage = started.error().message;
    cs.startedAt = cs.finishedAt = now;
    finishExit(cs, now, restartPolicy);
    return;
  }
  cs.container = std::move(*started);
  cs.containerID = kContainerIdPrefix + cs.container->id();
  cs.phase = ContainerState::Phase::Running;
  cs.startedAt = cs.container->startedAt();
  if (cs.startedAt.time_since_epoch().count() == 0) cs.startedAt = now;
  cs.waitingReason.clear();
  cs.waitingMessage.clear();
  cs.stopping = cs.killSent = false;
  cs.startup = ProbeState::from(cs.spec, "startupProbe", now);
  cs.liveness = ProbeState::from(cs.spec, "livenessProbe", now);
  cs.readiness = ProbeState::from(cs.spec, "readinessProbe", now);
  cs.started = !cs.startup;
  cs.ready = cs.started && !cs.readiness && !cs.init;
  emit("Created", fmt::format("Created container {}", cs.name));
  emit("Started", fmt::format("Started container {}", cs.name));

  if (!cs.init && cs.spec.contains("lifecycle") && cs.spec["lifecycle"].contains("postStart")) {
    auto outcome = runHandler(cs, cs.spec["lifecycle"]["postStart"], std::chrono::seconds(30));
    if (!outcome.success) {
      emit("FailedPostStartHook", fmt::format("PostStartHook failed: {}", outcome.message), "Warning");
      beginStop(cs, now + std::chrono::seconds(api::at<std::int64_t>(pod_, {"spec", "terminationGracePeriodSeconds"}, 30)),
                now, fmt::format("FailedPostStartHook: container {}", cs.name));
    }
  }
}

Result<std::string> PodWorker::sharedPidNamespace() {
  if (!sandbox_.pidnsPath.empty()) return sandbox_.pidnsPath;
  if (pause_ && !pause_->exitStatus()) return fmt::format("/proc/{}/ns/pid", pause_->pid());
  if (pause_) {
    (void)pause_->remove();
    pause_.reset();
  }
  ContainerSpec spec;
  spec.id = safeName(fmt::format("{}_{}", api::uidOf(pod_).empty() ? api::nameOf(pod_) : api::uidOf(pod_), kPauseContainerName));
  spec.labels = {{kLabelPodUid, api::uidOf(pod_)}, {kLabelContainerName, kPauseContainerName}, {kLabelAttempt, "0"}};
  spec.argv = {kPauseCommand};
  spec.netnsPath = sandbox_.netnsPath;
  spec.ipcnsPath = sandbox_.ipcnsPath;
  spec.utsnsPath = sandbox_.utsnsPath;
  if (deps_.joinCgroups) {
    auto join = deps_.joinCgroups;
    spec.joinCgroups = [join](pid_t pid) { return join(kPauseContainerName, pid); };
  }
  if (!deps_.startContainer) return fail(Error{ENOSYS, "no container runtime"});
  auto started = deps_.startContainer(spec);
  if (!started) return fail(started.error().wrap("start the pod's shared pid namespace"));
  pause_ = std::move(*started);
  return fmt::format("/proc/{}/ns/pid", pause_->pid());
}

// ---- status ----

void PodWorker::updateConditions(Timestamp now) {
  Json st = statusLocked();
  auto set = [&](const std::string& type, bool value) {
    auto it = conditionTimes_.find(type);
    if (it == conditionTimes_.end() || it->second.first != value) conditionTimes_[type] = {value, rfc3339(now)};
  };
  for (const auto& c : st["conditions"]) set(c["type"], c["status"] == "True");
}

Json PodWorker::statusLocked() const {
  using Phase = ContainerState::Phase;
  std::string restartPolicy = api::at<std::string>(pod_, {"spec", "restartPolicy"}, "Always");

  auto stateJson = [](const ContainerState& cs) -> Json {
    switch (cs.phase) {
      case Phase::Running:
        return {{"running", {{"startedAt", rfc3339(cs.startedAt)}}}};
      case Phase::Terminated:
        return {{"terminated", cs.terminatedJson()}};
      case Phase::Waiting: {
        Json w = {{"reason", cs.waitingReason.empty() ? "ContainerCreating" : cs.waitingReason}};
        if (!cs.waitingMessage.empty()) w["message"] = cs.waitingMessage;
        return {{"waiting", w}};
      }
    }
    return Json::object();
  };
  auto containerStatus = [&](const ContainerState& cs) {
    Json s = {{"name", cs.name},
              {"state", stateJson(cs)},
              {"lastState", cs.lastTerminated ? Json{{"terminated", *cs.lastTerminated}} : Json::object()},
              {"ready", cs.init ? cs.completed() : (cs.phase == Phase::Running && cs.ready && !cs.stopping)},
              {"restartCount", std::max(0, cs.attempt)},
              {"image", cs.image},
              {"imageID", cs.imageID},
              {"started", cs.phase == Phase::Running && cs.started}};
    if (!cs.containerID.empty()) s["containerID"] = cs.containerID;
    return s;
  };

  Json status = Json::object();
  Json initStatuses = Json::array(), appStatuses = Json::array();
  for (const auto& cs : init_) initStatuses.push_back(containerStatus(*cs));
  for (const auto& cs : app_) appStatuses.push_back(containerStatus(*cs));

  // Phase, as the kubelet's getPhase computes it.
  bool initFailed = false, initPending = false;
  std::vector<std::string> incompleteInit;
  for (const auto& cs : init_) {
    if (cs->completed()) continue;
    incompleteInit.push_back(cs->name);
    if (cs->done && cs->phase == Phase::Terminated) initFailed = true;
    else initPending = true;
  }
  int running = 0, waiting = 0, stopped = 0, succeeded = 0;
  std::vector<std::string> unready;
  for (const auto& cs : app_) {
    if (cs->phase == Phase::Running) {
      ++running;
    } else if (cs->phase == Phase::Terminated) {
      ++stopped;
      if (cs->exitCode == 0) ++succeeded;
    } else if (cs->lastTerminated) {
      ++stopped;
    } else {
      ++waiting;
    }
    if (!(cs->phase == Phase::Running && cs->ready && !cs->stopping)) unready.push_back(cs->name);
  }
  std::string phase;
  if (initFailed)
    phase = "Failed";
  else if (initPending)
    phase = "Pending";
  else if (terminating_ && running == 0 && waiting + stopped > 0 && stopped > 0)
    phase = stopped == succeeded && waiting == 0 ? "Succeeded" : "Failed";
  else if (waiting > 0)
    phase = "Pending";
  else if (running > 0)
    phase = "Running";
  else if (stopped > 0) {
    if (restartPolicy == "Always")
      phase = "Running";
    else if (stopped == succeeded)
      phase = "Succeeded";
    else if (restartPolicy == "Never")
      phase = "Failed";
    else
      phase = "Running";
  } else {
    phase = "Pending";
  }
  status["phase"] = phase;

  auto names = [](const std::vector<std::string>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? " " : "") + v[i];
    return s + "]";
  };
  auto condition = [&](const std::string& type, bool value, const std::string& reason, const std::string& message) {
    auto it = conditionTimes_.find(type);
    std::string when = it != conditionTimes_.end() && it->second.first == value ? it->second.second : rfc3339(deps_.now());
    Json c = {{"type", type}, {"status", value ? "True" : "False"}, {"lastProbeTime", nullptr}, {"lastTransitionTime", when}};
    if (!reason.empty()) c["reason"] = reason;
    if (!message.empty()) c["message"] = message;
    return c;
  };
  bool initialized = incompleteInit.empty();
  bool completedPod = phase == "Succeeded" || phase == "Failed";
  bool containersReady = unready.empty() && !app_.empty();
  Json conditions = Json::array();
  conditions.push_back(condition("Initialized", initialized, initialized ? "" : "ContainersNotInitialized",
                                 initialized ? "" : "containers with incomplete status: " + names(incompleteInit)));
  std::string notReadyReason = completedPod ? "PodCompleted" : "ContainersNotReady";
  std::string notReadyMessage = completedPod ? "" : "containers with unready status: " + names(unready);
  conditions.push_back(condition("Ready", containersReady, containersReady ? "" : notReadyReason,
                                 containersReady ? "" : notReadyMessage));
  conditions.push_back(condition("ContainersReady", containersReady, containersReady ? "" : notReadyReason,
                                 containersReady ? "" : notReadyMessage));
  if (!scheduledCondition_.is_null())
    conditions.push_back(scheduledCondition_);
  else
    conditions.push_back(condition("PodScheduled", true, "", ""));
  status["conditions"] = conditions;

  if (!sandbox_.hostIP.empty()) {
    status["hostIP"] = sandbox_.hostIP;
    status["hostIPs"] = Json::array({{{"ip", sandbox_.hostIP}}});
  }
  if (!sandbox_.podIPs.empty()) {
    status["podIP"] = sandbox_.podIPs.front();
    Json ips = Json::array();
    for (const auto& ip : sandbox_.podIPs) ips.push_back({{"ip", ip}});
    status["podIPs"] = ips;
  }
  status["startTime"] = rfc3339(startTime_);
  if (!init_.empty()) status["initContainerStatuses"] = initStatuses;
  status["containerStatuses"] = appStatuses;
  std::string qos = api::at<std::string>(pod_, {"status", "qosClass"});
  status["qosClass"] = qos.empty() ? api::qosClass(pod_.value("spec", Json::object())) : qos;
  return status;
}

// ---- logs, exec, thread, cleanup ----

Result<std::string> PodWorker::logPath(const std::string& container, bool previous) const {
  std::lock_guard lock(mutex_);
  for (auto* list : {&init_, &app_})
    for (const auto& cs : *list) {
      if (cs->name != container) continue;
      int attempt = cs->attempt - (previous ? 1 : 0);
      if (cs->attempt < 0)
        return fail(Error::invalid(fmt::format("container \"{}\" in pod \"{}\" is waiting to start: {}", container,
                                               api::nameOf(pod_), cs->waitingReason)));
      if (attempt < 0)
        return fail(Error{ENOENT, fmt::format("previous terminated container \"{}\" in pod \"{}\" not found", container,
                                              api::nameOf(pod_))});
      return config_.logDir + "/" + safeName(container) + "/" + std::to_string(attempt) + ".log";
    }
  return fail(Error{ENOENT, fmt::format("container {} is not valid for pod {}", container, api::nameOf(pod_))});
}

Status PodWorker::readLogs(const std::string& container, bool previous, const LogOptions& options,
                           const std::function<bool(std::string_view)>& sink,
                           const std::function<bool()>& keepFollowing) const {
  auto path = logPath(container, previous);
  if (!path) return fail(path.error());
  int attempt = -1;
  {
    std::lock_guard lock(mutex_);
    for (auto* list : {&init_, &app_})
      for (const auto& cs : *list)
        if (cs->name == container) attempt = cs->attempt;
  }
  // Following stops when the container instance we read from is no longer the running one.
  auto follow = [&, attempt]() {
    if (keepFollowing && !keepFollowing()) return false;
    if (previous) return false;
    std::lock_guard lock(mutex_);
    for (auto* list : {&init_, &app_})
      for (const auto& cs : *list)
        if (cs->name == container)
          return cs->attempt == attempt && cs->phase == ContainerState::Phase::Running;
    return false;
  };
  return streamLogs(*path, options, sink, follow);
}

Result<std::unique_ptr<ExecProcess>> PodWorker::exec(const std::string& container, const ExecOptions& options) {
  std::lock_guard lock(mutex_);
  for (auto* list : {&init_, &app_})
    for (const auto& cs : *list) {
      if (cs->name != container) continue;
      if (cs->phase != ContainerState::Phase::Running || !cs->container)
        return fail(Error::invalid(fmt::format("container {} is not running", container)));
      return cs->container->startProcess(options);
    }
  return fail(Error{ENOENT, fmt::format("container {} is not valid for pod {}", container, api::nameOf(pod_))});
}

void PodWorker::start(TaskPool& pool) {
  std::lock_guard lock(mutex_);
  if (pool_) return;
  pool_ = &pool;
  task_ = pool.schedule([this]() -> std::optional<TaskPool::Clock::time_point> {
    Timestamp next = sync();
    // Exits are noticed by polling the shims' files; don't wait past 200 ms.
    auto delay = std::clamp<std::chrono::nanoseconds>(next - deps_.now(), 0ns, 200ms);
    return TaskPool::Clock::now() + delay;
  });
}

void PodWorker::stop() {
  TaskPool* pool = nullptr;
  TaskPool::TaskId task = 0;
  {
    std::lock_guard lock(mutex_);
    std::swap(pool, pool_);
    task = task_;
  }
  // Without our lock: the sync in progress needs it to finish.
  if (pool) pool->cancel(task);
}

Status PodWorker::removeContainers() {
  std::lock_guard lock(mutex_);
  for (auto* list : {&init_, &app_})
    for (auto& cs : *list) {
      if (!cs->container) continue;
      if (!cs->container->exitStatus())
        return fail(EBUSY, fmt::format("container {} is still running", cs->name));
      if (auto st = cs->container->remove(); !st) return fail(st.error());
      cs->container.reset();
    }
  if (pause_) {
    (void)pause_->signal(SIGKILL);
    for (int i = 0; i < 100 && !pause_->exitStatus(); ++i) std::this_thread::sleep_for(20ms);
    if (auto st = pause_->remove(); !st) return fail(st.error());
    pause_.reset();
  }
  std::error_code ec;
  std::string emptyDirs = config_.podDir + "/volumes/empty-dir";
  for (const auto& entry : fs::directory_iterator(emptyDirs, ec)) umount2(entry.path().c_str(), MNT_DETACH);
  if (!config_.podDir.empty()) fs::remove_all(config_.podDir, ec);
  return {};
}

}  // namespace ferry::runtime
