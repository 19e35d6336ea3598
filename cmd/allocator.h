// The ferry binary allocates through jemalloc, configured per role.
//
// Measured (bench/RESULTS.md, session 10): with glibc's malloc, malloc/free and page
// clearing took ~21 % of the samples in the scheduler bench; jemalloc with thread
// caches cut that bench's process CPU by ~35 %. Thread caches cost ~7 MB in an agent with 100
// pods (a thread per pod), so the agent, the memory-bound role, runs with one arena and
// no thread caches (the compiled-in configuration), and `ferry server` re-executes
// itself once with caches on and an arena per core.
#pragma once

#include <string>

namespace ferry::cmd {

// The compiled-in configuration (the `malloc_conf` symbol): the agent's.
inline constexpr const char* kAgentMallocConf = "narenas:1,tcache:false";

// The server's configuration for this machine: an arena per online CPU, thread caches on.
std::string serverMallocConf();

// For `ferry server`: re-executes the process with MALLOC_CONF=serverMallocConf() unless
// this process already runs with it or the user set MALLOC_CONF. Returns when no
// re-exec happened; the marker is removed so that children (shims) get the default.
void reexecWithServerAllocator(char** argv);

// "jemalloc 5.3.0-0-g54eaed1d..., 2 arenas, thread caches on": logged at start.
std::string allocatorSummary();

}  // namespace ferry::cmd
