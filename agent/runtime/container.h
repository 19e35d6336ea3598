// One container = one process tree in its own pid and mount namespaces, joined to its
// pod's net/ipc/uts namespaces and cgroups, rooted in an overlayfs of image layers.
//
// Every container has a small supervisor process (the "shim", shim.h) as its parent: the
// shim reaps it, writes its exit status to a state directory and copies stdout/stderr to
// a CRI-format log file. The shim does not depend on the agent, so an agent that dies
// (even `kill -9`) leaves its containers running; a new ContainerRuntime over the same
// state directory re-adopts them and learns about exits that happened meanwhile.
#pragma once

#include "api/error.h"

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ferry::runtime {

using Timestamp = std::chrono::system_clock::time_point;

struct BindMount {
  std::string source;       // host path (file or directory)
  std::string destination;  // absolute path inside the container
  bool readOnly = false;
};

struct ContainerSpec {
  // Unique, filesystem-safe name ([A-Za-z0-9_.-]); names the state dir and the container ID.
  std::string id;
  // Free-form labels stored with the container, given back by ContainerRuntime::list()
  // (the pod worker stores pod uid, container name and attempt number here).
  std::map<std::string, std::string> labels;

  // Root filesystem: overlayfs of `lowerDirs` (lowest layer first, as images give them)
  // with a writable `upperDir` + `workDir` (same filesystem, created when missing).
  std::vector<std::string> lowerDirs;
  std::string upperDir;
  std::string workDir;

  std::vector<std::string> argv;  // already combined from command/args and Entrypoint/Cmd
  std::vector<std::string> env;   // "NAME=value"; PATH defaulted when absent
  std::string workingDir = "/";   // created when missing, as runc does
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> supplementalGroups;

  // Pod namespaces to join (paths of pinned namespaces, e.g. /run/ferry/netns/<pod>).
  // Empty netnsPath: the agent's network namespace (hostNetwork). Empty ipcnsPath: a
  // private IPC namespace. Empty utsnsPath: a new UTS namespace named `hostname`, or the
  // agent's when `hostname` is empty too.
  std::string netnsPath;
  std::string ipcnsPath;
  std::string utsnsPath;
  std::string hostname;
  // shareProcessNamespace: join this pid namespace instead of making a new one.
  std::string pidnsPath;

  // Volumes, /etc/hosts, /etc/hostname, /etc/resolv.conf, ... in this order.
  std::vector<BindMount> mounts;
  // Size of the /dev/shm tmpfs.
  std::uint64_t shmSizeBytes = 64ull << 20;

  // Called with the container's host pid while it is paused before exec; it must put the
  // process into the pod's cgroups. A failure aborts the start.
  std::function<Status(pid_t)> joinCgroups;

  std::string logPath;                        // CRI log file, appended to
  std::uint64_t logMaxBytes = 10ull << 20;    // rotate to <logPath>.1 beyond this
  int logMaxFiles = 2;                        // the live file + rotated ones kept

  bool privileged = false;      // all capabilities, no seccomp, /sys read-write
  std::vector<std::string> addCapabilities;   // "NET_ADMIN" or "CAP_NET_ADMIN"
  std::vector<std::string> dropCapabilities;  // "ALL" drops the defaults too
  bool noNewPrivileges = true;
  bool seccompRuntimeDefault = true;  // false = Unconfined
  bool readOnlyRootFilesystem = false;
};

// argv of a "pause" container: no rootfs, no exec; its first process only holds a new pid
// namespace (as pid 1, reaping orphans) for pods with shareProcessNamespace. Other
// containers join it through ContainerSpec::pidnsPath = "/proc/<its pid>/ns/pid".
inline constexpr const char* kPauseCommand = "__ferry-pause";

// The container runtime's default capability set (as containerd/CRI-O grant it).
const std::vector<std::string>& defaultCapabilities();

struct ExitStatus {
  int exitCode = 0;    // 128 + signal when killed by a signal, as shells report
  int signal = 0;      // the killing signal, 0 when it exited on its own
  Timestamp finishedAt;
};

struct ExecOptions;
class ExecProcess;

struct ExecResult {
  int exitCode = -1;
  std::string output;  // stdout then stderr (interleaved as read), capped at 1 MiB
  bool timedOut = false;
};

// A started or re-adopted container. Its process may have exited since.
class Container {
 public:
  virtual ~Container() = default;
  virtual const std::string& id() const = 0;
  virtual const std::map<std::string, std::string>& labels() const = 0;
  virtual pid_t pid() const = 0;  // host pid of the container's first process
  virtual Timestamp startedAt() const = 0;
  // Non-blocking: the exit status once the shim recorded it, nullopt while it runs.
  virtual std::optional<ExitStatus> exitStatus() = 0;
  // Sends `sig` to the container's first process; no-op once it has exited.
  virtual Status signal(int sig) = 0;
  // Runs argv inside the container's namespaces and cgroups (probes, preStop hooks),
  // capturing output; killed at `timeout`.
  virtual Result<ExecResult> exec(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) = 0;
  // Starts a process inside the container with streams (kubectl exec).
  virtual Result<std::unique_ptr<ExecProcess>> startProcess(const ExecOptions& options) = 0;
  virtual std::string logPath() const = 0;
  // After exit: deletes the state dir. The upper dir is removed too unless `keepUpper`.
  virtual Status remove(bool keepUpper = false) = 0;
};

struct RuntimeConfig {
  // Per-container state dirs live here (spec.json, state.json, exit.json, sockets).
  // Should be on the agent's run dir (tmpfs) so a reboot forgets dead containers.
  std::string stateDir = "/run/ferry/containers";
  // How to start a shim: this argv + "<state dir of the container>". The default is the
  // small `ferry-shim` beside this program when it is there (exec'ing the whole ferry
  // binary, ~60 shared libraries, costs tens of ms per container on a loaded node), else
  // this program re-executed with the hidden subcommand (cmd/main.cc dispatches it).
  std::vector<std::string> shimCommand = {"/proc/self/exe", "__container-shim"};
};

struct ContainerInfo {
  std::string id;
  std::map<std::string, std::string> labels;
};

class ContainerRuntime {
 public:
  explicit ContainerRuntime(RuntimeConfig config);

  // Starts the shim and the container; returns once the container's process has exec'd
  // its argv (or with the reason it could not: bad rootfs, missing executable, ...).
  Result<std::unique_ptr<Container>> start(const ContainerSpec& spec);
  // Attaches to a container some earlier runtime (possibly another agent process) started.
  // `joinCgroups` is used for execs into it.
  Result<std::unique_ptr<Container>> adopt(const std::string& id, std::function<Status(pid_t)> joinCgroups = {});
  // Containers present in the state dir, running or exited but not yet removed.
  std::vector<ContainerInfo> list() const;

  const RuntimeConfig& config() const { return config_; }

 private:
  RuntimeConfig config_;
};

}  // namespace ferry::runtime
