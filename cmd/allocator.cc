#include "cmd/allocator.h"

#include <fmt/format.h>
#include <jemalloc/jemalloc.h>

#include <cstdlib>
#include <string>
#include <unistd.h>

// Read by jemalloc when it initializes (before main); MALLOC_CONF overrides it.
extern "C" const char* malloc_conf = ferry::cmd::kAgentMallocConf;

namespace ferry::cmd {

namespace {
constexpr const char* kReexecMarker = "FERRY_SERVER_ALLOCATOR";
}

std::string serverMallocConf() {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  return fmt::format("narenas:{},tcache:true,background_thread:true,dirty_decay_ms:2000,muzzy_decay_ms:0", cpus > 0 ? cpus : 1);
}

void reexecWithServerAllocator(char** argv) {
  if (std::getenv(kReexecMarker)) {
    // The re-executed server: jemalloc has read the configuration; children start clean.
    unsetenv(kReexecMarker);
    unsetenv("MALLOC_CONF");
    return;
  }
  if (std::getenv("MALLOC_CONF")) return;  // the user's choice wins
  setenv("MALLOC_CONF", serverMallocConf().c_str(), 1);
  setenv(kReexecMarker, "1", 1);
  // The binary by its own path, not /proc/self/exe: the kernel names the process after the
  // file executed, and `ps`, `top` and systemd would show "exe" for the server.
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  std::string self = n > 0 ? std::string(path, static_cast<size_t>(n)) : std::string();
  if (self.empty() || self.ends_with(" (deleted)")) self = "/proc/self/exe";  // replaced since it started
  execv(self.c_str(), argv);
  // Not fatal: the server runs, only with the agent's allocator configuration.
  unsetenv(kReexecMarker);
  unsetenv("MALLOC_CONF");
}

std::string allocatorSummary() {
  const char* version = nullptr;
  unsigned arenas = 0;
  bool tcache = false;
  size_t size = sizeof version;
  if (mallctl("version", &version, &size, nullptr, 0) != 0) return "glibc malloc";
  size = sizeof arenas;
  mallctl("opt.narenas", &arenas, &size, nullptr, 0);
  size = sizeof tcache;
  mallctl("opt.tcache", &tcache, &size, nullptr, 0);
  return fmt::format("jemalloc {}, {} arena{}, thread caches {}", version, arenas, arenas == 1 ? "" : "s",
                     tcache ? "on" : "off");
}

}  // namespace ferry::cmd
