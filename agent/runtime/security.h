// Internal: the process hardening shared by container starts (shim.cc) and execs
// (exec.cc) — capability set, user switch, no_new_privs, RuntimeDefault seccomp.
// Everything a freshly forked child calls here is a plain syscall (no allocation), so
// it is safe after fork() from the multi-threaded agent.
#pragma once

#include "agent/runtime/container.h"

#include <linux/filter.h>

#include <cstdint>
#include <vector>

namespace ferry::runtime::detail {

// Capabilities as a bit mask (bit n = capability n), from the defaults and the spec's
// add/drop lists; all of them when privileged. Errors name the unknown capability.
Result<std::uint64_t> capabilityMask(const ContainerSpec& spec);

// The RuntimeDefault seccomp filter as a BPF program (built once with libseccomp).
Result<const std::vector<sock_filter>*> runtimeDefaultSeccompProgram();

// Everything a child needs to drop privileges, prepared before fork.
struct Hardening {
  std::uint64_t capabilities = 0;
  bool privileged = false;
  bool noNewPrivileges = true;
  const std::vector<sock_filter>* seccomp = nullptr;  // null = unconfined
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};
Result<Hardening> prepareHardening(const ContainerSpec& spec);

// Signal dispositions and mask back to defaults: ignored signals survive exec, and a
// shell cannot trap a signal that was ignored when it started.
void resetSignals();

// In the child, just before exec: bounding set, seccomp, user, capabilities,
// no_new_privs. Returns 0 or an errno, and the step that failed in *step.
int applyHardening(const Hardening& h, const char** step);

}  // namespace ferry::runtime::detail
