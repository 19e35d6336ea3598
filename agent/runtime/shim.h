// The per-container supervisor. `ferry __container-shim <state dir>` (hidden subcommand)
// reads <state dir>/spec.json, starts the container and stays its parent until it exits.
// Protocol with the starter (ContainerRuntime::start) over two inherited pipes whose fd
// numbers are in the environment (FERRY_SHIM_REPORT_FD, FERRY_SHIM_GO_FD):
//   shim → starter: "pid <host pid>\n"   the container is cloned and paused
//   starter → shim: "go\n"                cgroups joined, carry on (EOF = abort)
//   shim → starter: "started\n" | "error <message>\n"
// The shim then detaches from the starter (own session, reparented to init) and writes
// state.json (pid, start time) and, when the container exits, exit.json.
#pragma once

namespace ferry::runtime {

inline constexpr const char* kShimSubcommand = "__container-shim";
// The small executable built for the shim alone (agent/runtime/shim_main.cc), installed
// beside `ferry`; it takes the same arguments.
inline constexpr const char* kShimProgram = "ferry-shim";
// Set by the starter: the shim's first process forks and exits at once, so the starter
// reaps it and the shim proper is reparented away.
inline constexpr const char* kShimDetachEnv = "FERRY_SHIM_DETACH";

// Entry point of the hidden subcommand; `args` are what follows the subcommand name.
// Returns the shim's exit code.
int runContainerShim(int argc, char** argv);

}  // namespace ferry::runtime
