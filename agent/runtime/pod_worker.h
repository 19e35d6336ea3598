// One pod's containers on this node: init containers in order, then the app containers;
// restart policy with Kubernetes' back-off; startup/liveness/readiness probes; graceful
// termination; and the pod status exactly as Kubernetes shapes it.
//
// The worker is a state machine advanced by sync(). Everything outside it — the clock,
// images, starting containers, cgroups, OOM counters, events, network probes — comes in
// through PodDeps, so unit tests drive it with fakes and a fake clock, without sleeping.
// start() runs sync() as a task of a TaskPool (a few threads for all pods) with the real
// clock.
#pragma once

#include "agent/runtime/container.h"
#include "agent/runtime/exec.h"
#include "agent/runtime/container_logs.h"
#include "agent/runtime/pod_files.h"
#include "agent/runtime/probe.h"
#include "agent/runtime/task_pool.h"
#include "api/error.h"
#include "api/object.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace ferry::runtime {

// What the runtime needs of an image (the image store's Image, adapted by the agent).
struct ImageInfo {
  std::vector<std::string> layerDirs;  // unpacked layers, lowest first
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // "NAME=value"
  std::string workingDir;
  std::string user;     // "uid", "uid:gid" (names are not resolved)
  std::string imageID;  // reported as containerStatuses[].imageID, e.g. "docker.io/library/busybox@sha256:..."
  // How it was had, for the Pulled event: downloaded (or checked against the registry)
  // now, or already present on the node.
  bool pulled = false;
  std::chrono::milliseconds pullDuration{0};
  std::int64_t sizeBytes = 0;
};

// The pod's sandbox, made by agent/sandbox before the worker starts.
struct PodSandboxInfo {
  std::string netnsPath;
  std::string ipcnsPath;
  std::string utsnsPath;
  std::string pidnsPath;  // set when spec.shareProcessNamespace
  std::vector<std::string> podIPs;
  std::string hostIP;
};

// Why an image could not be had: reason is the kubelet's (InvalidImageName,
// ErrImageNeverPull, ErrImagePull). After an ErrImagePull the worker waits (10 s doubling
// to 5 min, as the kubelet's image back-off) and shows ImagePullBackOff meanwhile.
struct ImagePullFailure {
  std::string reason;
  std::string message;
};

struct PodDeps {
  // Wall clock; tests inject a fake one.
  std::function<Timestamp()> now;
  // Image pull per policy (Always|IfNotPresent|Never); calls `pulling` just before it
  // goes to the registry (the worker's Pulling event).
  std::function<std::expected<ImageInfo, ImagePullFailure>(const std::string& image, const std::string& pullPolicy,
                                                            const api::Json& imagePullSecrets,
                                                            const std::function<void()>& pulling)>
      ensureImage;
  std::function<Result<std::unique_ptr<Container>>(const ContainerSpec&)> startContainer;
  // Re-adoption (adopt()): containers in the runtime's state, and attaching to one.
  std::function<std::vector<ContainerInfo>()> listContainers;
  std::function<Result<std::unique_ptr<Container>>(const std::string& id, std::function<Status(pid_t)> joinCgroups)>
      adoptContainer;
  // Puts a container's process into the pod's (and the container's) cgroups.
  std::function<Status(const std::string& containerName, pid_t)> joinCgroups;
  // True when the container's cgroup saw an OOM kill (checked when a container exits).
  std::function<bool(const std::string& containerName)> oomKilled;
  // A Kubernetes Event about the pod: reason (Pulling, Pulled, Created, Started, Killing,
  // Unhealthy, BackOff, Failed, ErrImageNeverPull, InspectFailed), message, type
  // (Normal | Warning).
  std::function<void(const std::string& reason, const std::string& message, const std::string& type)> emitEvent;
  // Env of a container ("NAME=value"), valueFrom resolved. Default: literal `value`s with
  // $(VAR) expansion; the agent supplies one that resolves ConfigMap/Secret/fieldRef and
  // adds service link variables.
  // `pod` is the worker's own copy (the caller need not keep one of its own).
  std::function<Result<std::vector<std::string>>(const api::Json& pod, const api::Json& container)> resolveEnv;
  // Host directory (or file) for a volume the worker does not make itself (configMap,
  // secret, projected, downwardAPI, ...). emptyDir and hostPath are handled here.
  std::function<Result<std::string>(const api::Json& volume)> volumeHostPath;
  // httpGet / tcpSocket probes and httpGet hooks; default probeHttpGet/probeTcp in the pod netns.
  std::function<ProbeOutcome(const api::Json& handler, const std::string& podIP, std::chrono::milliseconds timeout)>
      networkProbe;
};

struct PodWorkerConfig {
  std::string podDir;  // <agent data dir>/pods/<uid>: upper dirs, emptyDirs, generated files
  std::string logDir;  // /var/log/pods/<ns>_<name>_<uid>: <container>/<restartCount>.log
  ClusterDnsSettings dns;
  std::uint64_t logMaxBytes = 10ull << 20;
  int logMaxFiles = 2;
};

// Back-off between restarts of a crashing container, as the kubelet does it.
inline constexpr std::chrono::seconds kInitialBackOff{10};
inline constexpr std::chrono::seconds kMaxBackOff{300};
inline constexpr std::chrono::seconds kBackOffResetAfterRunning{600};

class PodWorker {
 public:
  PodWorker(api::Json pod, PodSandboxInfo sandbox, PodWorkerConfig config, PodDeps deps);
  ~PodWorker();  // stops syncing; does not stop containers
  PodWorker(const PodWorker&) = delete;
  PodWorker& operator=(const PodWorker&) = delete;

  // Before the first sync(): re-attach to containers of this pod (by metadata.uid label)
  // left by an earlier agent, keeping restart counts and noticing exits meanwhile.
  Status adopt();

  // One step: notices exits, (re)starts containers whose turn it is, runs due probes,
  // advances termination, reports status when it changed. Returns when it wants the next
  // step at the latest (a process exit may come earlier: callers also poll).
  Timestamp sync();

  // The pod object was updated (e.g. deletionTimestamp set); spec is immutable.
  void updatePod(const api::Json& pod);
  // Graceful termination: preStop hooks, SIGTERM, then SIGKILL after the grace period
  // (spec.terminationGracePeriodSeconds, default 30, unless overridden by the delete).
  void terminate(std::optional<std::int64_t> gracePeriodSeconds = std::nullopt);
  bool terminating() const;
  // All containers have stopped after terminate() (or the pod finished and won't restart).
  bool finished() const;

  // The pod's .status as Kubernetes shapes it.
  api::Json status() const;
  // Called (from sync) with the new status whenever it differs from the last one reported.
  void onStatusChange(std::function<void(const api::Json&)> callback);

  // Logs of `container` (app or init); `previous` = the instance before the current one.
  Result<std::string> logPath(const std::string& container, bool previous) const;
  Status readLogs(const std::string& container, bool previous, const LogOptions& options,
                  const std::function<bool(std::string_view)>& sink, const std::function<bool()>& keepFollowing) const;
  // kubectl exec into a running container.
  Result<std::unique_ptr<ExecProcess>> exec(const std::string& container, const ExecOptions& options);

  // Runs sync() on `pool` (real time) until stop() or destruction; the pool outlives
  // the worker's start..stop. stop() waits for a sync in progress (unless called from it).
  void start(TaskPool& pool);
  void stop();
  // After finished(): removes the containers' state and upper dirs and the pod dir
  // (not the logs, which the agent removes with the pod).
  Status removeContainers();

  // Internal per-container state; public so the status code and tests can name it.
  struct ProbeState;
  struct ContainerState;

 private:
  void syncLocked(Timestamp now, Timestamp& next);
  void handleExit(ContainerState& cs, const ExitStatus& exit, Timestamp now, const std::string& restartPolicy);
  void finishExit(ContainerState& cs, Timestamp now, const std::string& restartPolicy);
  void startContainer(ContainerState& cs, Timestamp now, const std::string& restartPolicy);
  void enterImagePullBackOff(ContainerState& cs);
  void beginStop(ContainerState& cs, Timestamp killAt, Timestamp now, const std::string& reason);
  ProbeOutcome runHandler(ContainerState& cs, const api::Json& handler, std::chrono::milliseconds timeout);
  ProbeOutcome runProbe(ContainerState& cs, ProbeState& probe);
  Status preparePodFiles();
  Result<std::vector<BindMount>> mountsFor(ContainerState& cs, const std::string& attemptDir);
  void updateConditions(Timestamp now);
  Result<std::string> sharedPidNamespace();
  api::Json statusLocked() const;
  bool finishedLocked(const api::Json& status) const;

  mutable std::mutex mutex_;
  api::Json pod_;
  PodSandboxInfo sandbox_;
  PodWorkerConfig config_;
  PodDeps deps_;
  std::vector<std::unique_ptr<ContainerState>> init_;
  std::vector<std::unique_ptr<ContainerState>> app_;
  Timestamp startTime_{};
  std::atomic<bool> terminating_{false};  // written under mutex_, read without it
  std::atomic<bool> finished_{false};     // finishedLocked() as of the last sync/terminate/adopt
  std::optional<std::int64_t> graceOverride_;
  Timestamp terminationDeadline_{};
  std::map<std::string, std::pair<bool, std::string>> conditionTimes_;  // type → (status, lastTransitionTime)
  api::Json scheduledCondition_;  // kept as the scheduler wrote it
  std::function<void(const api::Json&)> onChange_;
  api::Json lastReported_;
  std::unique_ptr<Container> pause_;  // holds the shared pid namespace (shareProcessNamespace)
  TaskPool* pool_ = nullptr;  // set from start() to stop()
  TaskPool::TaskId task_ = 0;
  bool filesReady_ = false;
};

}  // namespace ferry::runtime
