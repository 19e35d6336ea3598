#include "cgroup/systemd_delegation.h"

#include <systemd/sd-bus.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace ferry::cgroup {
namespace {

Result<std::string> readWhole(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail(errno ? errno : ENOENT, "read " + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Status writeWhole(const std::string& path, const std::string& value) {
  std::ofstream out(path);
  out << value;
  out.flush();
  if (!out) return fail(errno ? errno : EIO, "write \"" + value + "\" to " + path);
  return {};
}

bool hasWord(const std::string& text, const std::string& word) {
  std::istringstream in(text);
  std::string w;
  while (in >> w)
    if (w == word) return true;
  return false;
}

bool waitUntil(const std::function<bool()>& condition, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return condition();
}

Status requirePureV2(const std::string& mountRoot) {
  auto controllers = readWhole(mountRoot + "/cgroup.controllers");
  if (!controllers || !hasWord(*controllers, "memory") || !hasWord(*controllers, "cpu"))
    return fail(ENOTSUP, "cgroup-root=delegated needs a pure cgroup-v2 node with cpu and memory at " + mountRoot +
                             " (use --cgroup-root NAME on this host)");
  return {};
}

// A process that does nothing but keep the scope alive (a scope ends when empty).
// Forked, not exec'd: after fork() in a threaded program only async-signal-safe calls.
Result<pid_t> forkHolder() {
  pid_t pid = fork();
  if (pid < 0) return fail(errno, "fork the pods scope's holder");
  if (pid == 0) {
    setsid();
    for (int fd = 0; fd < 1024; ++fd) close(fd);
    sigset_t all;
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGTERM);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    signal(SIGTERM, SIG_DFL);
    for (;;) pause();
  }
  return pid;
}

// StartTransientUnit(name, mode, properties, aux) for a delegated scope holding `pid`.
Status startPodsScope(pid_t pid) {
  // systemd's private socket, as systemctl uses when root: it needs no dbus-daemon
  // (minimal nodes, or early in boot); the system bus is the fallback.
  sd_bus* bus = nullptr;
  int r = sd_bus_new(&bus);
  if (r >= 0) r = sd_bus_set_address(bus, "unix:path=/run/systemd/private");
  if (r >= 0) r = sd_bus_start(bus);
  if (r < 0) {
    sd_bus_flush_close_unref(bus);
    bus = nullptr;
    if (int s = sd_bus_open_system(&bus); s < 0) return fail(-s, "connect to systemd (private socket and system bus)");
  }
  sd_bus_message* call = nullptr;
  sd_bus_message* reply = nullptr;
  sd_bus_error error = SD_BUS_ERROR_NULL;
  auto done = [&](int r, const std::string& what) -> Status {
    std::string detail = error.message ? std::string(": ") + error.message : "";
    sd_bus_error_free(&error);
    sd_bus_message_unref(reply);
    sd_bus_message_unref(call);
    sd_bus_flush_close_unref(bus);
    if (r < 0) return fail(-r, what + detail);
    return {};
  };
  r = sd_bus_message_new_method_call(bus, &call, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                         "org.freedesktop.systemd1.Manager", "StartTransientUnit");
  if (r >= 0) r = sd_bus_message_append(call, "ss", kPodsScopeUnit, "fail");
  if (r >= 0) r = sd_bus_message_open_container(call, 'a', "(sv)");
  if (r >= 0)
    r = sd_bus_message_append(call, "(sv)(sv)(sv)(sv)", "Description", "s", "Ferry pods (delegated to the agent)",
                              "Slice", "s", "system.slice", "Delegate", "b", 1, "PIDs", "au", 1,
                              static_cast<uint32_t>(pid));
  if (r >= 0) r = sd_bus_message_close_container(call);
  if (r >= 0) r = sd_bus_message_append(call, "a(sa(sv))", 0);
  if (r < 0) return done(r, "build StartTransientUnit call");
  r = sd_bus_call(bus, call, 0, &error, &reply);
  return done(r, std::string("systemd StartTransientUnit ") + kPodsScopeUnit);
}

bool containsPid(const std::string& procsFile, pid_t pid) {
  auto text = readWhole(procsFile);
  return text && hasWord(*text, std::to_string(pid));
}

}  // namespace

Result<std::string> adoptDelegatedCgroup(const std::string& mountRoot) {
  if (Status s = requirePureV2(mountRoot); !s) return fail(s.error());
  const std::string relative = std::string("system.slice/") + kPodsScopeUnit;
  const std::string scopeDir = mountRoot + "/" + relative;
  auto populated = [&] {
    auto events = readWhole(scopeDir + "/cgroup.events");
    return events && events->find("populated 1") != std::string::npos;
  };
  if (!(fs::exists(scopeDir + "/holder") && populated())) {
    auto holder = forkHolder();
    if (!holder) return fail(holder.error());
    if (Status s = startPodsScope(*holder); !s) {
      kill(*holder, SIGKILL);
      return fail(s.error().wrap("cgroup-root=delegated"));
    }
    // The job is queued by the call; the holder is in the scope once it has run.
    if (!waitUntil([&] { return containsPid(scopeDir + "/cgroup.procs", *holder); }, std::chrono::seconds(30)))
      return fail(ETIMEDOUT, "cgroup-root=delegated: " + std::string(kPodsScopeUnit) + " did not take its holder");
    std::error_code ec;
    fs::create_directories(scopeDir + "/holder", ec);
    if (ec) return fail(ec.value(), "create " + scopeDir + "/holder: " + ec.message());
    // The scope's own cgroup must be empty before it can hand controllers down.
    if (Status s = writeWhole(scopeDir + "/holder/cgroup.procs", std::to_string(*holder)); !s) return fail(s.error());
  }
  auto available = readWhole(scopeDir + "/cgroup.controllers");
  if (!available) return fail(available.error().wrap("cgroup-root=delegated"));
  std::string enable;
  for (const char* c : {"cpu", "memory", "pids"})
    if (hasWord(*available, c)) enable += std::string(enable.empty() ? "+" : " +") + c;
  if (!hasWord(enable, "+cpu") || !hasWord(enable, "+memory"))
    return fail(ENOTSUP, "cgroup-root=delegated: systemd gave " + scopeDir + " only \"" + *available + "\"");
  if (Status s = writeWhole(scopeDir + "/cgroup.subtree_control", enable); !s)
    return fail(s.error().wrap("delegate controllers below " + scopeDir));
  return relative + "/pods";
}

Status removeDelegatedCgroup(const std::string& unitCgroup, const std::string& mountRoot) {
  for (const std::string& relative : {std::string("system.slice/") + kPodsScopeUnit, unitCgroup}) {
    std::string dir = mountRoot + "/" + relative;
    if (!fs::exists(dir)) continue;
    if (Status s = writeWhole(dir + "/cgroup.kill", "1"); !s) return s;
    // cgroup.kill returns before the processes are gone: wait for "populated 0".
    waitUntil(
        [&] {
          auto events = readWhole(dir + "/cgroup.events");
          return !events || events->find("populated 0") != std::string::npos;
        },
        std::chrono::seconds(10));
    std::vector<std::string> dirs;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->is_directory()) dirs.push_back(it->path().string());
    }
    // Deepest first: a cgroup is removable once it has no children. The unit's own
    // cgroup is systemd's to remove (an emptied scope ends by itself).
    std::sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
    for (const auto& d : dirs)
      if (::rmdir(d.c_str()) != 0 && errno != ENOENT && errno != EBUSY) return fail(errno, "remove cgroup " + d);
  }
  return {};
}

}  // namespace ferry::cgroup
