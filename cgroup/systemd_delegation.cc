#include "cgroup/systemd_delegation.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <unistd.h>
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

// This process's cgroup v2 path ("/system.slice/ferry.service"), or an error on a host
// where cpu or memory live in v1 hierarchies.
Result<std::string> ownUnifiedCgroup() {
  auto text = readWhole("/proc/self/cgroup");
  if (!text) return fail(text.error());
  std::istringstream lines(*text);
  std::string unified;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("0::", 0) == 0) {
      unified = line.substr(3);
      continue;
    }
    // "N:controllers:path" of a v1 hierarchy.
    auto first = line.find(':'), second = line.find(':', first + 1);
    std::string controllers = line.substr(first + 1, second - first - 1);
    for (const char* c : {"memory", "cpu"}) {
      std::istringstream names(controllers);
      std::string name;
      while (std::getline(names, name, ','))
        if (name == c)
          return fail(ENOTSUP, std::string("cgroup-root=delegated needs a pure cgroup-v2 node; the ") + c +
                                   " controller is a v1 hierarchy here (use --cgroup-root NAME)");
    }
  }
  if (unified.empty()) return fail(ENOTSUP, "cgroup-root=delegated: this process is in no cgroup v2");
  return unified;
}

bool hasWord(const std::string& text, const std::string& word) {
  std::istringstream in(text);
  std::string w;
  while (in >> w)
    if (w == word) return true;
  return false;
}

}  // namespace

Result<std::string> adoptDelegatedCgroup(const std::string& mountRoot) {
  auto own = ownUnifiedCgroup();
  if (!own) return fail(own.error());
  std::string unit = *own;
  // A process already moved by an earlier call (or started there) stays in place.
  if (fs::path(unit).filename() == "supervisor") unit = fs::path(unit).parent_path().string();
  if (unit == "/" || unit.empty())
    return fail(ENOTSUP, "cgroup-root=delegated: this process is in the root cgroup, not in a systemd unit");
  std::string unitDir = mountRoot + unit;
  auto available = readWhole(unitDir + "/cgroup.controllers");
  if (!available) return fail(available.error().wrap("cgroup-root=delegated"));
  for (const char* needed : {"cpu", "memory"}) {
    if (!hasWord(*available, needed))
      return fail(ENOTSUP, "cgroup-root=delegated: " + unitDir + " is not given the " + needed +
                               " controller (is the unit Delegate=yes?)");
  }
  std::error_code ec;
  fs::create_directories(unitDir + "/supervisor", ec);
  if (ec) return fail(ec.value(), "create " + unitDir + "/supervisor: " + ec.message());
  // Writing "0" moves the whole process (every thread) on cgroup v2.
  if (Status s = writeWhole(unitDir + "/supervisor/cgroup.procs", "0"); !s) return fail(s.error());
  std::string enable;
  for (const char* c : {"cpu", "memory", "pids"})
    if (hasWord(*available, c)) enable += std::string(enable.empty() ? "+" : " +") + c;
  if (Status s = writeWhole(unitDir + "/cgroup.subtree_control", enable); !s)
    return fail(s.error().wrap("delegate controllers below " + unitDir));
  return unit.substr(1) + "/pods";
}

Status removeDelegatedCgroup(const std::string& unitCgroup, const std::string& mountRoot) {
  std::string unitDir = mountRoot + "/" + unitCgroup;
  if (!fs::exists(unitDir)) return {};
  if (Status s = writeWhole(unitDir + "/cgroup.kill", "1"); !s) return s;
  // cgroup.kill returns before the processes are gone: wait for "populated 0".
  for (int i = 0; i < 200; ++i) {
    auto events = readWhole(unitDir + "/cgroup.events");
    if (!events || events->find("populated 0") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::vector<std::string> dirs;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(unitDir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_directory()) dirs.push_back(it->path().string());
  }
  // Deepest first: a cgroup is removable once it has no children.
  std::sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const auto& d : dirs)
    if (::rmdir(d.c_str()) != 0 && errno != ENOENT) return fail(errno, "remove cgroup " + d);
  return {};
}

}  // namespace ferry::cgroup
