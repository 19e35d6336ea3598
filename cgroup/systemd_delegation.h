// Pods below the agent's own systemd unit (`--cgroup-root=delegated`).
//
// Under systemd with Delegate=yes (the unit `ferry install` writes) the unit's cgroup,
// e.g. /sys/fs/cgroup/system.slice/ferry.service, belongs to Ferry. cgroup v2 lets a
// cgroup hand controllers to its children only while it holds no processes itself, so
// the agent moves itself into <unit>/supervisor, enables cpu, memory and pids in the
// unit's cgroup, and keeps the pods under <unit>/pods. Container shims start in
// <unit>/supervisor too; with KillMode=process a restart of the unit kills only the
// agent, so pods and their shims live on and the new agent adopts them.
#pragma once

#include "api/error.h"

#include <string>

namespace ferry::cgroup {

// The value of --cgroup-root that asks for this layout.
inline constexpr const char* kDelegatedCgroupRoot = "delegated";

// Moves this process into <own cgroup>/supervisor, delegates the controllers and
// returns the pods' root relative to `mountRoot` ("system.slice/ferry.service/pods").
// Fails with a message naming the reason on a hybrid/v1 host or when the process's
// cgroup does not hand out the cpu and memory controllers (no Delegate=yes).
Result<std::string> adoptDelegatedCgroup(const std::string& mountRoot = "/sys/fs/cgroup");

// For `ferry uninstall --purge`: kills every process left in `unitCgroup` (relative to
// `mountRoot`, e.g. "system.slice/ferry.service") and removes its sub-cgroups.
// A missing cgroup is not an error.
Status removeDelegatedCgroup(const std::string& unitCgroup, const std::string& mountRoot = "/sys/fs/cgroup");

}  // namespace ferry::cgroup
