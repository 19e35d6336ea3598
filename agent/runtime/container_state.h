// Internal: the files a container's state dir holds and their JSON shapes, shared by the
// agent side (container.cc) and the shim (shim.cc).
//   spec.json   the ContainerSpec (without the cgroup callback), written by the starter
//   state.json  {"pid", "pidStartTime", "shimPid", "shimStartTime", "startedAtNs"}, by the shim
//   exit.json   {"exitCode", "signal", "finishedAtNs"}, by the shim once the container exited
#pragma once

#include "agent/runtime/container.h"
#include "api/object.h"

#include <cstdint>
#include <string>

namespace ferry::runtime::detail {

inline constexpr const char* kSpecFile = "spec.json";
inline constexpr const char* kStateFile = "state.json";
inline constexpr const char* kExitFile = "exit.json";

api::Json specToJson(const ContainerSpec& spec);
Result<ContainerSpec> specFromJson(const api::Json& j);

// Writes via a temporary file and rename, so readers never see half a file.
Status writeFileAtomically(const std::string& path, const std::string& content);
Result<std::string> readWholeFile(const std::string& path);
Result<api::Json> readJsonFile(const std::string& path);

// Field 22 of /proc/<pid>/stat (start time in clock ticks): with the pid it names one
// process for good, even after the pid is reused. 0 when the process is gone.
std::uint64_t processStartTime(pid_t pid);

Timestamp fromNanos(std::int64_t ns);
std::int64_t toNanos(Timestamp t);

}  // namespace ferry::runtime::detail
