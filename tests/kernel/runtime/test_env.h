// Test fixtures for the runtime's kernel tests: a busybox rootfs layer, a pod's pinned
// net/ipc/uts namespaces and a cgroup, all made here under names of our own and removed.
#pragma once

#include "api/error.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <thread>

namespace ferry::runtime::testing {

inline std::string randomSuffix() {
  std::random_device rd;
  return fmt::format("{:08x}", rd());
}

inline int run(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

inline std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Polls `cond` until true or the deadline (generous: CI machines are shared).
inline bool waitFor(const std::function<bool()>& cond, std::chrono::seconds deadline = std::chrono::seconds(30)) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cond();
}

// Why the runtime kernel tests cannot run here, or "" when they can.
inline std::string missingPrerequisite() {
  if (geteuid() != 0) return "needs root (namespaces, mounts)";
  if (access("/bin/busybox", X_OK) != 0) return "needs /bin/busybox (busybox-static)";
  if (access("/sys/fs/cgroup/unified/cgroup.procs", W_OK) != 0 && access("/sys/fs/cgroup/cgroup.procs", W_OK) != 0)
    return "needs a writable cgroup v2 hierarchy";
  if (run("ip -V") != 0) return "needs iproute2";
  return "";
}

// A work dir with a busybox layer, pinned pod namespaces and a cgroup; all removed at the end.
class PodEnvironment {
 public:
  PodEnvironment() {
    suffix_ = randomSuffix();
    root_ = "/tmp/ferry-rt-" + suffix_;
    std::filesystem::create_directories(root_ + "/layer/bin");
    std::filesystem::create_directories(root_ + "/layer/etc");
    std::filesystem::create_directories(root_ + "/layer/tmp");
    std::filesystem::copy_file("/bin/busybox", root_ + "/layer/bin/busybox");
    for (const char* applet : {"sh", "sleep", "cat", "echo", "hostname", "ls", "id", "nc", "grep", "true", "false",
                               "kill", "ps", "wc", "touch", "mkdir", "env", "head", "test", "printf", "httpd"})
      symlink("busybox", (root_ + "/layer/bin/" + applet).c_str());
    std::ofstream(root_ + "/layer/etc/passwd") << "root:x:0:0:root:/root:/bin/sh\n";

    netnsName_ = "ferry-rt-" + suffix_;
    if (run("ip netns add " + netnsName_) == 0) {
      netnsPath_ = "/run/netns/" + netnsName_;
      run("ip -n " + netnsName_ + " link set lo up");
    }
    // Persistent ipc and uts namespaces, pinned by bind mounts unshare makes.
    std::ofstream(root_ + "/ipcns").close();
    std::ofstream(root_ + "/utsns").close();
    if (run(fmt::format("unshare --ipc={0}/ipcns --uts={0}/utsns hostname pod-{1}", root_, suffix_)) == 0) {
      ipcnsPath_ = root_ + "/ipcns";
      utsnsPath_ = root_ + "/utsns";
    }
    std::string base = access("/sys/fs/cgroup/unified/cgroup.procs", W_OK) == 0 ? "/sys/fs/cgroup/unified"
                                                                                   : "/sys/fs/cgroup";
    cgroupPath_ = base + "/ferry-test-rt-" + suffix_;
    if (mkdir(cgroupPath_.c_str(), 0755) != 0) cgroupPath_.clear();
  }

  ~PodEnvironment() {
    if (!cgroupPath_.empty()) {
      // Move stragglers out (none expected: containers have exited), then remove.
      std::string procs = readFile(cgroupPath_ + "/cgroup.procs");
      std::istringstream in(procs);
      pid_t pid;
      while (in >> pid) kill(pid, SIGKILL);
      waitFor([&] { return rmdir(cgroupPath_.c_str()) == 0 || errno == ENOENT; }, std::chrono::seconds(10));
    }
    if (!ipcnsPath_.empty()) umount2(ipcnsPath_.c_str(), MNT_DETACH);
    if (!utsnsPath_.empty()) umount2(utsnsPath_.c_str(), MNT_DETACH);
    if (!netnsPath_.empty()) run("ip netns del " + netnsName_);
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  bool ready() const { return !netnsPath_.empty() && !ipcnsPath_.empty() && !cgroupPath_.empty(); }
  const std::string& root() const { return root_; }
  const std::string& suffix() const { return suffix_; }
  std::string layer() const { return root_ + "/layer"; }
  const std::string& netnsPath() const { return netnsPath_; }
  const std::string& ipcnsPath() const { return ipcnsPath_; }
  const std::string& utsnsPath() const { return utsnsPath_; }
  const std::string& cgroupPath() const { return cgroupPath_; }
  std::string podHostname() const { return "pod-" + suffix_; }

  Status joinCgroup(pid_t pid) const {
    std::ofstream out(cgroupPath_ + "/cgroup.procs");
    out << pid << std::endl;
    if (!out) return fail(EIO, "write cgroup.procs");
    return {};
  }
  bool inCgroup(pid_t pid) const {
    std::istringstream in(readFile(cgroupPath_ + "/cgroup.procs"));
    pid_t p;
    while (in >> p)
      if (p == pid) return true;
    return false;
  }

 private:
  std::string suffix_, root_, netnsName_, netnsPath_, ipcnsPath_, utsnsPath_, cgroupPath_;
};

}  // namespace ferry::runtime::testing
