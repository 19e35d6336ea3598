// Ferry's cgroup tree under --cgroup-root, on every hierarchy the host offers.
//
// Mode, detected once from /proc/self/mountinfo:
//  - Unified: pure cgroup v2 (one hierarchy with cpu, memory, pids).
//  - Hybrid:  v1 controllers (cpu, cpuacct, memory, pids; possibly co-mounted) plus the
//             v2 tree (e.g. /sys/fs/cgroup/unified). Limits and stats go to the v1
//             controllers; the v2 tree is still kept in step because the eBPF proxy
//             attaches to <root> there and freeze/kill use cgroup.freeze/cgroup.kill.
// Layout (the kubelet's): <root>/<pod-dir> for Guaranteed pods,
// <root>/burstable/<pod-dir> and <root>/besteffort/<pod-dir> for the others,
// <pod-dir> = "pod<uid>", containers one level below the pod.
//
// Paths in this API are relative to <root>, e.g. "burstable/pod1234/app".
// Nothing is ever written outside <root>, and <root> itself is created (and later
// removed) only where it did not exist; controllers are never enabled in a parent
// of <root>. Only this module touches cgroupfs.
#pragma once

#include "api/error.h"
#include "cgroup/limits.h"

#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

namespace ferry::cgroup {

enum class CgroupMode { Unified, Hybrid };

struct CgroupStats {
  uint64_t cpuUsageNs = 0;             // cumulative CPU time
  uint64_t memoryUsageBytes = 0;
  uint64_t memoryWorkingSetBytes = 0;  // usage - inactive_file (as Kubernetes/cAdvisor), >= 0
  uint64_t oomKills = 0;               // kills by the OOM killer in this cgroup and below
  uint64_t cpuPeriods = 0;             // CFS periods with runnable tasks (cpu.stat nr_periods)
  uint64_t cpuThrottledPeriods = 0;    // of those, periods that hit the quota (nr_throttled)
};

class CgroupTree {
 public:
  // Opens (creating where missing) <root> under each hierarchy. `root` is a relative
  // path such as "ferry" or "ferry-test-1a2b"; `mountRoot` is where cgroupfs lives.
  static Result<std::unique_ptr<CgroupTree>> open(const std::string& root,
                                                 const std::string& mountRoot = "/sys/fs/cgroup");
  ~CgroupTree();
  CgroupTree(const CgroupTree&) = delete;
  CgroupTree& operator=(const CgroupTree&) = delete;

  CgroupMode mode() const;

  // The pod's path for its QoS class: "pod<uid>", "burstable/pod<uid>", "besteffort/pod<uid>".
  static std::string podPath(const std::string& podUid, QosClass qos);

  // Creates the pod cgroup (and its QoS parent) with the pod-level limits. Idempotent:
  // an existing pod cgroup gets its limits rewritten. Returns the pod's relative path.
  Result<std::string> createPod(const std::string& podUid, QosClass qos, const Limits& limits);

  // Creates <podPath>/<containerName> with the container's limits. Idempotent.
  // Returns the container's relative path.
  Result<std::string> createContainer(const std::string& podPath, const std::string& containerName,
                                      const Limits& limits);

  // Writes `limits` to an existing cgroup.
  Status setLimits(const std::string& path, const Limits& limits);

  // Moves `pid` into `path` on every hierarchy (v1 controllers and the v2 tree).
  Status attach(const std::string& path, pid_t pid);

  // cgroup.procs files of `path`, one per hierarchy, for a child process that joins its
  // cgroups itself between clone() and exec() (write its pid, "0", to each).
  std::vector<std::string> procsFiles(const std::string& path) const;

  // Absolute directory of `path` in the cgroup v2 tree (BPF attach point, CLONE_INTO_CGROUP).
  std::string unifiedDirectory(const std::string& path) const;

  Result<CgroupStats> stats(const std::string& path);

  // Process ids currently in `path` or below (from the v2 tree, which every process joins).
  Result<std::vector<pid_t>> processes(const std::string& path);

  Status freeze(const std::string& path);
  Status thaw(const std::string& path);
  // SIGKILL to everything in `path` and below (cgroup.kill), returning when it is empty.
  Status killAll(const std::string& path);

  // Kills what is left, then removes `path` and everything below it, bottom-up, on every
  // hierarchy. A missing path is not an error.
  Status remove(const std::string& path);

  // Pod uids with a pod cgroup under <root>, for recovery after an agent restart.
  Result<std::vector<std::string>> listPodUids();

  // Removes everything under <root> and <root> itself where this tree created it
  // (tests and `ferry` uninstall). The object must not be used afterwards.
  Status destroy();

 private:
  struct Impl;
  explicit CgroupTree(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::cgroup
