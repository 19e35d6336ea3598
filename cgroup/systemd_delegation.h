// Pods in a systemd-delegated cgroup (`--cgroup-root=delegated`), for nodes where
// systemd is PID 1 on pure cgroup v2 (what `ferry install` sets up).
//
// Why not below ferry.service itself: cgroup v2 lets a cgroup hand controllers to its
// children only while it holds no processes, and systemd (before v254's
// DelegateSubgroup=) starts a restarted service's new main process in the unit's own
// cgroup. With pods below ferry.service the unit's cgroup must enable cpu/memory, and
// `systemctl restart ferry` then fails with 219/CGROUP (seen in the vm tier). So the
// pods live in a transient scope, ferry-pods.scope, that the agent asks systemd for
// over D-Bus with Delegate=yes — systemd's documented way for a service to own a
// cgroup subtree that outlives it. The scope holds one tiny holder process (a fork of
// the agent that only waits) in <scope>/holder, and the pods in <scope>/pods. A
// restarted agent finds the scope and reuses it; container shims stay in
// ferry.service, which KillMode=process leaves running across restarts.
#pragma once

#include "api/error.h"

#include <string>

namespace ferry::cgroup {

// The value of --cgroup-root that asks for this layout.
inline constexpr const char* kDelegatedCgroupRoot = "delegated";
// The transient unit holding the pods.
inline constexpr const char* kPodsScopeUnit = "ferry-pods.scope";

// Creates ferry-pods.scope (or adopts a running one) and returns the pods' root
// relative to `mountRoot`, e.g. "system.slice/ferry-pods.scope/pods". Fails with a
// message naming the reason on a v1/hybrid host or without systemd on the system bus.
Result<std::string> adoptDelegatedCgroup(const std::string& mountRoot = "/sys/fs/cgroup");

// For `ferry uninstall --purge`: stops ferry-pods.scope (killing every pod) and kills
// whatever is left in `unitCgroup` (e.g. "system.slice/ferry.service": the shims that
// KillMode=process left), removing its sub-cgroups. Missing ones are not an error.
Status removeDelegatedCgroup(const std::string& unitCgroup, const std::string& mountRoot = "/sys/fs/cgroup");

}  // namespace ferry::cgroup
