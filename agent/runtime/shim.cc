// The per-container supervisor (see shim.h) and the container's own setup between clone
// and exec: namespaces, overlay rootfs, pivot_root, /proc /sys /dev, bind mounts,
// user, capabilities, seccomp.
#include "agent/runtime/shim.h"

#include "agent/runtime/container_logs.h"
#include "agent/runtime/container_state.h"
#include "agent/runtime/security.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace ferry::runtime {

namespace {

using detail::Hardening;

// Everything the container child needs, prepared before clone so the child only makes
// syscalls and reports the first failure through `errorFd`.
struct ChildPlan {
  const ContainerSpec* spec = nullptr;
  std::string rootfs;
  std::string overlayOptions;
  int netFd = -1, ipcFd = -1, utsFd = -1;
  int syncFd = -1;   // read end: the shim says go
  int errorFd = -1;  // write end, close-on-exec: EOF after exec means success
  int stdoutFd = -1, stderrFd = -1;
  bool newUts = false;
  Hardening hardening;
  std::vector<std::string> argvStorage, envStorage;
  std::vector<char*> argv, envp;
};

[[noreturn]] void childFail(const ChildPlan& plan, const std::string& what, int err) {
  std::string msg = err ? fmt::format("{}: {}", what, std::strerror(err)) : what;
  (void)!write(plan.errorFd, msg.data(), msg.size());
  _exit(126);
}

void mkdirs(const std::string& path, mode_t mode = 0755) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  (void)mode;
}

// Makes `dest` (inside the new root) exist as a directory or an empty file.
int ensureMountPoint(const std::string& dest, bool directory) {
  mkdirs(std::filesystem::path(dest).parent_path());
  if (directory) {
    mkdirs(dest);
    return 0;
  }
  int fd = open(dest.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0 && errno != EISDIR) return errno;
  if (fd >= 0) close(fd);
  return 0;
}

std::string lookPath(const std::string& name, const std::vector<std::string>& env) {
  if (name.find('/') != std::string::npos) return name;
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const auto& e : env)
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  size_t start = 0;
  while (start <= path.size()) {
    size_t colon = path.find(':', start);
    std::string dir = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return name;
}

// Paths under /proc and /sys a container should neither read nor change (as runc's
// default masked and read-only paths).
constexpr const char* kMaskedPaths[] = {"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                                        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                                        "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"};
constexpr const char* kReadOnlyPaths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};

volatile sig_atomic_t gChildExited = 0;
void onChildSignal(int) { gChildExited = 1; }

// pid 1 of a shared pid namespace: reaps what gets orphaned into it, nothing else.
[[noreturn]] void runPauseChild(ChildPlan& plan) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  char go = 0;
  if (read(plan.syncFd, &go, 1) != 1) _exit(125);
  close(plan.syncFd);
  close(plan.errorFd);  // no exec to close it: tell the shim we are up
  int devNull = open("/dev/null", O_RDWR | O_CLOEXEC);
  dup2(devNull, 0);
  dup2(plan.stdoutFd, 1);
  dup2(plan.stderrFd, 2);
  detail::resetSignals();
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old);
  struct sigaction sa {};
  sa.sa_handler = onChildSignal;
  sigaction(SIGCHLD, &sa, nullptr);
  // As pid 1 only signals with a handler reach us: TERM and INT end the pause.
  struct sigaction quit {};
  quit.sa_handler = [](int) { _exit(0); };
  sigaction(SIGTERM, &quit, nullptr);
  sigaction(SIGINT, &quit, nullptr);
  for (;;) {
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    gChildExited = 0;
    sigsuspend(&old);
  }
}

[[noreturn]] void runContainerChild(ChildPlan& plan) {
  const ContainerSpec& spec = *plan.spec;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  char go = 0;
  if (read(plan.syncFd, &go, 1) != 1) _exit(125);  // the shim gave up
  close(plan.syncFd);

  if (plan.netFd >= 0 && setns(plan.netFd, CLONE_NEWNET) < 0) childFail(plan, "join network namespace", errno);
  if (plan.ipcFd >= 0 && setns(plan.ipcFd, CLONE_NEWIPC) < 0) childFail(plan, "join ipc namespace", errno);
  if (plan.utsFd >= 0 && setns(plan.utsFd, CLONE_NEWUTS) < 0) childFail(plan, "join uts namespace", errno);
  if (plan.newUts && sethostname(spec.hostname.data(), spec.hostname.size()) < 0)
    childFail(plan, "sethostname", errno);

  // Nothing we mount may leak back to the host.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) childFail(plan, "make / private", errno);
  if (mount("overlay", plan.rootfs.c_str(), "overlay", 0, plan.overlayOptions.c_str()) < 0)
    childFail(plan, "mount overlay rootfs", errno);

  // Bind sources are host paths: capture them as detached mounts before pivot_root, then
  // attach them after it, where destinations resolve inside the container's root (an
  // image's absolute symlink cannot point a mount at the host).
  std::vector<int> bindFds;
  std::vector<bool> bindIsDir;
  for (const auto& m : spec.mounts) {
    int fd = open_tree(AT_FDCWD, m.source.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (fd < 0) childFail(plan, "bind mount source " + m.source, errno);
    if (m.readOnly) {
      mount_attr attr{};
      attr.attr_set = MOUNT_ATTR_RDONLY;
      if (mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
        childFail(plan, "make read-only " + m.source, errno);
    }
    struct stat st {};
    if (fstat(fd, &st) < 0) childFail(plan, "stat " + m.source, errno);
    bindFds.push_back(fd);
    bindIsDir.push_back(S_ISDIR(st.st_mode));
  }

  if (chdir(plan.rootfs.c_str()) < 0) childFail(plan, "chdir rootfs", errno);
  if (syscall(SYS_pivot_root, ".", ".") < 0) childFail(plan, "pivot_root", errno);
  if (umount2(".", MNT_DETACH) < 0) childFail(plan, "detach old root", errno);
  if (chdir("/") < 0) childFail(plan, "chdir /", errno);

  mkdirs("/proc");
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0)
    childFail(plan, "mount /proc", errno);
  mkdirs("/sys");
  unsigned long sysFlags = MS_NOSUID | MS_NODEV | MS_NOEXEC | (spec.privileged ? 0 : MS_RDONLY);
  if (mount("sysfs", "/sys", "sysfs", sysFlags, nullptr) < 0) childFail(plan, "mount /sys", errno);

  mkdirs("/dev");
  if (mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") < 0)
    childFail(plan, "mount /dev", errno);
  struct DeviceNode {
    const char* path;
    unsigned major, minor;
  };
  for (const DeviceNode& d : {DeviceNode{"/dev/null", 1, 3}, DeviceNode{"/dev/zero", 1, 5}, DeviceNode{"/dev/full", 1, 7},
                              DeviceNode{"/dev/random", 1, 8}, DeviceNode{"/dev/urandom", 1, 9},
                              DeviceNode{"/dev/tty", 5, 0}}) {
    if (mknod(d.path, S_IFCHR | 0666, makedev(d.major, d.minor)) < 0) childFail(plan, std::string("mknod ") + d.path, errno);
    chmod(d.path, 0666);  // umask
  }
  mkdirs("/dev/pts");
  if (mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0)
    childFail(plan, "mount /dev/pts", errno);
  symlink("pts/ptmx", "/dev/ptmx");
  mkdirs("/dev/shm");
  std::string shmOptions = fmt::format("mode=1777,size={}", spec.shmSizeBytes);
  if (mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, shmOptions.c_str()) < 0)
    childFail(plan, "mount /dev/shm", errno);
  mkdirs("/dev/mqueue");
  if (mount("mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0)
    childFail(plan, "mount /dev/mqueue", errno);
  symlink("/proc/self/fd", "/dev/fd");
  symlink("/proc/self/fd/0", "/dev/stdin");
  symlink("/proc/self/fd/1", "/dev/stdout");
  symlink("/proc/self/fd/2", "/dev/stderr");

  for (size_t i = 0; i < spec.mounts.size(); ++i) {
    const auto& m = spec.mounts[i];
    if (int err = ensureMountPoint(m.destination, bindIsDir[i])) childFail(plan, "mount point " + m.destination, err);
    if (move_mount(bindFds[i], "", AT_FDCWD, m.destination.c_str(), MOVE_MOUNT_F_EMPTY_PATH) < 0)
      childFail(plan, "bind mount " + m.source + " at " + m.destination, errno);
    close(bindFds[i]);
  }

  if (!spec.privileged) {
    for (const char* p : kMaskedPaths) {
      struct stat st {};
      if (stat(p, &st) < 0) continue;
      if (S_ISDIR(st.st_mode))
        mount("tmpfs", p, "tmpfs", MS_RDONLY, nullptr);
      else
        mount("/dev/null", p, nullptr, MS_BIND, nullptr);
    }
    for (const char* p : kReadOnlyPaths) {
      if (mount(p, p, nullptr, MS_BIND | MS_REC, nullptr) == 0)
        mount(p, p, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
    }
  }

  if (spec.readOnlyRootFilesystem && mount("/", "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) < 0)
    childFail(plan, "make rootfs read-only", errno);

  int devNull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devNull < 0) childFail(plan, "open /dev/null", errno);
  if (dup2(devNull, 0) < 0 || dup2(plan.stdoutFd, 1) < 0 || dup2(plan.stderrFd, 2) < 0)
    childFail(plan, "stdio", errno);
  setsid();

  std::string cwd = spec.workingDir.empty() ? "/" : spec.workingDir;
  mkdirs(cwd);
  if (chdir(cwd.c_str()) < 0) childFail(plan, "chdir to workingDir " + cwd, errno);

  std::string exe = lookPath(spec.argv[0], spec.env);

  detail::resetSignals();
  const char* step = "";
  if (int err = detail::applyHardening(plan.hardening, &step)) childFail(plan, step, err);

  // Only stdio survives the exec.
  syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
  execve(exe.c_str(), plan.argv.data(), plan.envp.data());
  int err = errno;
  childFail(plan, fmt::format("exec \"{}\"", spec.argv[0]), err);
}

void writeLine(int fd, const std::string& line) {
  std::string l = line + "\n";
  (void)!write(fd, l.data(), l.size());
}

int readFdFromEnv(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : -1;
}

int openNamespace(const std::string& path, const char* what, std::string& error) {
  if (path.empty()) return -1;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) error = fmt::format("open {} namespace {}: {}", what, path, std::strerror(errno));
  return fd;
}

std::vector<std::string> withDefaultPath(std::vector<std::string> env) {
  for (const auto& e : env)
    if (e.rfind("PATH=", 0) == 0) return env;
  env.insert(env.begin(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  return env;
}

}  // namespace

int runContainerShim(int argc, char** argv) {
  if (argc < 1) return 2;
  std::string stateDir = argv[0];
  int reportFd = readFdFromEnv("FERRY_SHIM_REPORT_FD");
  int goFd = readFdFromEnv("FERRY_SHIM_GO_FD");
  unsetenv("FERRY_SHIM_REPORT_FD");
  unsetenv("FERRY_SHIM_GO_FD");
  if (reportFd < 0 || goFd < 0) return 2;
  if (const char* detach = getenv(kShimDetachEnv); detach && std::string(detach) == "1") {
    unsetenv(kShimDetachEnv);
    pid_t child = fork();
    if (child < 0) return 1;
    if (child > 0) _exit(0);  // the starter reaps this one; the shim goes on in the child
  }
  fcntl(reportFd, F_SETFD, FD_CLOEXEC);
  fcntl(goFd, F_SETFD, FD_CLOEXEC);

  // The agent's signals are not ours: we outlive it on purpose.
  signal(SIGTERM, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  int shimLog = open((stateDir + "/shim.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  int devNull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (shimLog >= 0) {
    dup2(shimLog, 1);
    dup2(shimLog, 2);
    close(shimLog);
  }
  if (devNull >= 0) {
    dup2(devNull, 0);
    close(devNull);
  }

  auto reportError = [&](const std::string& message) {
    writeLine(reportFd, "error " + message);
    return 1;
  };

  auto specJson = detail::readJsonFile(stateDir + "/" + detail::kSpecFile);
  if (!specJson) return reportError(specJson.error().message);
  auto specOr = detail::specFromJson(*specJson);
  if (!specOr) return reportError(specOr.error().message);
  ContainerSpec spec = std::move(*specOr);
  spec.env = withDefaultPath(spec.env);
  if (spec.argv.empty()) return reportError("no command to run (argv is empty)");
  bool pause = spec.argv.size() == 1 && spec.argv[0] == kPauseCommand;
  if (spec.lowerDirs.empty() && !pause) return reportError("no image layers (lowerDirs is empty)");

  ChildPlan plan;
  plan.spec = &spec;
  plan.rootfs = stateDir + "/rootfs";
  mkdirs(plan.rootfs);
  if (!pause) {
    mkdirs(spec.upperDir);
    mkdirs(spec.workDir);
  }
  // overlayfs wants the top layer first.
  std::string lower;
  for (auto it = spec.lowerDirs.rbegin(); it != spec.lowerDirs.rend(); ++it) lower += (lower.empty() ? "" : ":") + *it;
  plan.overlayOptions = fmt::format("lowerdir={},upperdir={},workdir={}", lower, spec.upperDir, spec.workDir);
  if (plan.overlayOptions.size() >= 4096) return reportError("too many image layers for one overlay mount");

  std::string nsError;
  plan.netFd = openNamespace(spec.netnsPath, "network", nsError);
  plan.ipcFd = openNamespace(spec.ipcnsPath, "ipc", nsError);
  plan.utsFd = openNamespace(spec.utsnsPath, "uts", nsError);
  int pidFd = openNamespace(spec.pidnsPath, "pid", nsError);
  if (!nsError.empty()) return reportError(nsError);
  plan.newUts = spec.utsnsPath.empty() && !spec.hostname.empty();

  auto hardening = detail::prepareHardening(spec);
  if (!hardening) return reportError(hardening.error().message);
  plan.hardening = std::move(*hardening);

  plan.argvStorage = spec.argv;
  plan.envStorage = spec.env;
  for (auto& a : plan.argvStorage) plan.argv.push_back(a.data());
  plan.argv.push_back(nullptr);
  for (auto& e : plan.envStorage) plan.envp.push_back(e.data());
  plan.envp.push_back(nullptr);

  int syncPipe[2], errorPipe[2], outPipe[2], errPipe[2];
  if (pipe2(syncPipe, O_CLOEXEC) < 0 || pipe2(errorPipe, O_CLOEXEC) < 0 || pipe2(outPipe, O_CLOEXEC) < 0 ||
      pipe2(errPipe, O_CLOEXEC) < 0)
    return reportError(fmt::format("pipe: {}", std::strerror(errno)));
  plan.syncFd = syncPipe[0];
  plan.errorFd = errorPipe[1];
  plan.stdoutFd = outPipe[1];
  plan.stderrFd = errPipe[1];

  // setns into a pid namespace applies to the children we create from now on.
  if (pidFd >= 0 && setns(pidFd, CLONE_NEWPID) < 0)
    return reportError(fmt::format("join pid namespace {}: {}", spec.pidnsPath, std::strerror(errno)));

  unsigned long flags = CLONE_NEWNS | SIGCHLD;
  if (pidFd < 0) flags |= CLONE_NEWPID;
  if (plan.ipcFd < 0) flags |= CLONE_NEWIPC;
  if (plan.newUts) flags |= CLONE_NEWUTS;
  // Like fork (a copy of our stack), with new namespaces.
  pid_t child = static_cast<pid_t>(syscall(SYS_clone, flags, nullptr, nullptr, nullptr, nullptr));
  if (child < 0) return reportError(fmt::format("clone: {}", std::strerror(errno)));
  if (child == 0) {
    close(syncPipe[1]);
    close(errorPipe[0]);
    close(outPipe[0]);
    close(errPipe[0]);
    close(reportFd);
    close(goFd);
    if (pause) runPauseChild(plan);
    runContainerChild(plan);
  }
  close(syncPipe[0]);
  close(errorPipe[1]);
  close(outPipe[1]);
  close(errPipe[1]);

  auto abortChild = [&](const std::string& message) {
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    return reportError(message);
  };

  writeLine(reportFd, fmt::format("pid {}", child));
  char goBuf[8];
  if (read(goFd, goBuf, sizeof goBuf) <= 0) return abortChild("start aborted by the agent");
  close(goFd);
  if (write(syncPipe[1], "g", 1) != 1) return abortChild("container process vanished");
  close(syncPipe[1]);

  std::string childError;
  char buf[4096];
  for (;;) {
    ssize_t n = read(errorPipe[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    childError.append(buf, n);
  }
  close(errorPipe[0]);
  if (!childError.empty()) {
    waitpid(child, nullptr, 0);
    return reportError(childError);
  }

  auto startedAt = std::chrono::system_clock::now();
  api::Json state = {{"pid", child},
                     {"pidStartTime", detail::processStartTime(child)},
                     {"shimPid", getpid()},
                     {"shimStartTime", detail::processStartTime(getpid())},
                     {"startedAtNs", detail::toNanos(startedAt)}};
  if (auto st = detail::writeFileAtomically(stateDir + "/" + detail::kStateFile, state.dump()); !st)
    return abortChild(st.error().message);
  writeLine(reportFd, "started");
  close(reportFd);

  CriLogWriter logs(spec.logPath, spec.logMaxBytes, spec.logMaxFiles);
  int childPidFd = static_cast<int>(syscall(SYS_pidfd_open, child, 0));
  bool outOpen = true, errOpen = true, exited = false;
  int status = 0;
  std::chrono::steady_clock::time_point drainDeadline{};
  while (outOpen || errOpen || !exited) {
    pollfd fds[3];
    int n = 0;
    int outIdx = -1, errIdx = -1, pidIdx = -1;
    if (outOpen) fds[outIdx = n++] = {outPipe[0], POLLIN, 0};
    if (errOpen) fds[errIdx = n++] = {errPipe[0], POLLIN, 0};
    if (!exited && childPidFd >= 0) fds[pidIdx = n++] = {childPidFd, POLLIN, 0};
    int timeout = exited ? 100 : (childPidFd >= 0 ? -1 : 200);
    int rc = poll(fds, n, timeout);
    if (rc < 0 && errno != EINTR) break;
    auto drain = [&](int idx, int fd, bool& open, const char* stream) {
      if (idx < 0 || !(fds[idx].revents & (POLLIN | POLLHUP | POLLERR))) return;
      ssize_t got = read(fd, buf, sizeof buf);
      if (got > 0)
        logs.write(stream, std::string_view(buf, got));
      else if (got == 0 || errno != EINTR) {
        open = false;
        close(fd);
      }
    };
    if (rc > 0) {
      drain(outIdx, outPipe[0], outOpen, "stdout");
      drain(errIdx, errPipe[0], errOpen, "stderr");
    }
    if (!exited && (childPidFd < 0 || (pidIdx >= 0 && (fds[pidIdx].revents & POLLIN)))) {
      if (waitpid(child, &status, childPidFd < 0 ? WNOHANG : 0) == child) {
        exited = true;
        // Processes left in a shared pid namespace may keep the pipes open: read what
        // is there for a moment, then stop.
        drainDeadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      }
    }
    if (exited && std::chrono::steady_clock::now() > drainDeadline) break;
  }
  logs.flush();
  int exitCode = 0, sig = 0;
  if (WIFEXITED(status)) {
    exitCode = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    sig = WTERMSIG(status);
    exitCode = 128 + sig;
  }
  api::Json exitJson = {{"exitCode", exitCode},
                        {"signal", sig},
                        {"finishedAtNs", detail::toNanos(std::chrono::system_clock::now())}};
  detail::writeFileAtomically(stateDir + "/" + detail::kExitFile, exitJson.dump());
  return 0;
}

}  // namespace ferry::runtime
