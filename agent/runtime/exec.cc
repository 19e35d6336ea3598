#include "agent/runtime/exec.h"

#include "agent/runtime/security.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace ferry::runtime {

namespace {

// Candidates for argv[0] along the container's PATH (searched by trying execve, since
// the container's filesystem is only visible after entering its mount namespace).
std::vector<std::string> executableCandidates(const std::string& name, const std::vector<std::string>& env) {
  if (name.find('/') != std::string::npos) return {name};
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const auto& e : env)
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t colon = path.find(':', start);
    std::string dir = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    out.push_back((dir.empty() ? "." : dir) + "/" + name);
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return out;
}

void writeString(int fd, const char* a, const char* b = "", const char* c = "") {
  (void)!write(fd, a, std::strlen(a));
  (void)!write(fd, b, std::strlen(b));
  (void)!write(fd, c, std::strlen(c));
}

}  // namespace

ExecProcess::~ExecProcess() {
  if (stdout_ >= 0) close(stdout_);
  if (stderr_ >= 0) close(stderr_);
  if (stdin_ >= 0 && stdin_ != stdout_) close(stdin_);
  if (pidfd_ >= 0) close(pidfd_);
  if (!reaped_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

void ExecProcess::closeStdin() {
  if (tty_) {
    // EOF on a terminal is ^D; the master stays open for output.
    if (stdin_ >= 0) (void)!write(stdin_, "\x04", 1);
    return;
  }
  if (stdin_ >= 0) close(stdin_);
  stdin_ = -1;
}

Status ExecProcess::resizeTerminal(unsigned short rows, unsigned short cols) {
  if (!tty_) return fail(Error::invalid("exec has no terminal to resize"));
  winsize ws{rows, cols, 0, 0};
  if (ioctl(stdout_, TIOCSWINSZ, &ws) < 0) return failErrno("resize terminal");
  return {};
}

Status ExecProcess::signal(int sig) {
  if (reaped_) return {};
  if (pidfd_ >= 0) {
    if (syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0) < 0 && errno != ESRCH) return failErrno("signal exec");
    return {};
  }
  if (kill(pid_, sig) < 0 && errno != ESRCH) return failErrno("signal exec");
  return {};
}

Result<int> ExecProcess::wait() {
  if (reaped_) return exitCode_;
  int status = 0;
  for (;;) {
    if (waitpid(pid_, &status, 0) == pid_) break;
    if (errno != EINTR) return failErrno("wait for exec");
  }
  reaped_ = true;
  exitCode_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exitCode_;
}

Result<std::unique_ptr<ExecProcess>> startExec(pid_t containerPid, const ContainerSpec& spec, const ExecOptions& options) {
  if (options.argv.empty()) return fail(Error::invalid("exec: command is empty"));
  auto hardening = detail::prepareHardening(spec);
  if (!hardening) return fail(hardening.error().wrap("exec"));

  std::vector<std::string> env = spec.env;
  bool hasPath = false;
  for (const auto& e : env) hasPath |= e.rfind("PATH=", 0) == 0;
  if (!hasPath) env.insert(env.begin(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  for (const auto& e : options.env) env.push_back(e);
  if (options.tty) env.push_back("TERM=xterm");
  std::vector<std::string> argvStorage = options.argv;
  std::vector<std::string> candidates = executableCandidates(options.argv[0], env);
  std::vector<char*> argv, envp;
  for (auto& a : argvStorage) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string cwd = spec.workingDir.empty() ? "/" : spec.workingDir;

  int targetPidfd = static_cast<int>(syscall(SYS_pidfd_open, containerPid, 0));
  if (targetPidfd < 0) return failErrno(fmt::format("exec: container process {}", containerPid));

  auto proc = std::unique_ptr<ExecProcess>(new ExecProcess());
  proc->tty_ = options.tty;
  int childIn = -1, childOut = -1, childErr = -1;
  std::vector<int> toClose;
  auto closeAll = [&] {
    for (int fd : toClose)
      if (fd >= 0) close(fd);
    close(targetPidfd);
  };
  if (options.tty) {
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) {
      closeAll();
      return failErrno("exec: open pseudo-terminal");
    }
    char name[128];
    ptsname_r(master, name, sizeof name);
    int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) {
      close(master);
      closeAll();
      return failErrno("exec: open terminal");
    }
    proc->stdin_ = proc->stdout_ = master;
    childIn = childOut = childErr = slave;
    toClose.push_back(slave);
  } else {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
      closeAll();
      return failErrno("exec: pipe");
    }
    proc->stdout_ = out[0];
    proc->stderr_ = err[0];
    childOut = out[1];
    childErr = err[1];
    toClose.push_back(out[1]);
    toClose.push_back(err[1]);
    if (options.stdin) {
      int in[2];
      if (pipe2(in, O_CLOEXEC) < 0) {
        closeAll();
        return failErrno("exec: pipe");
      }
      proc->stdin_ = in[1];
      childIn = in[0];
      toClose.push_back(in[0]);
    }
  }
  int sync[2], report[2];
  if (pipe2(sync, O_CLOEXEC) < 0 || pipe2(report, O_CLOEXEC) < 0) {
    closeAll();
    return failErrno("exec: pipe");
  }

  // The entering process: joins the cgroups (via the parent), enters the namespaces,
  // then forks the process that really runs inside the pid namespace.
  pid_t entering = fork();
  if (entering < 0) {
    int e = errno;
    closeAll();
    return failErrno("exec: fork", e);
  }
  if (entering == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    // Our copies of the caller's ends would keep the streams open (no EOF on stdin).
    if (proc->stdin_ >= 0 && proc->stdin_ != proc->stdout_) close(proc->stdin_);
    if (proc->stdout_ >= 0) close(proc->stdout_);
    if (proc->stderr_ >= 0) close(proc->stderr_);
    close(sync[1]);
    close(report[0]);
    char go;
    if (read(sync[0], &go, 1) != 1) _exit(125);
    if (setns(targetPidfd, CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID) < 0) {
      writeString(childErr, "exec: enter container namespaces: ", std::strerror(errno), "\n");
      _exit(126);
    }
    pid_t runner = fork();
    if (runner < 0) _exit(126);
    if (runner == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      setsid();
      if (options.tty) ioctl(childIn, TIOCSCTTY, 0);
      int devNull = childIn < 0 ? open("/dev/null", O_RDONLY | O_CLOEXEC) : -1;
      if (dup2(childIn >= 0 ? childIn : devNull, 0) < 0 || dup2(childOut, 1) < 0 || dup2(childErr, 2) < 0) _exit(126);
      if (chdir(cwd.c_str()) < 0 && chdir("/") < 0) _exit(126);
      detail::resetSignals();
      const char* step = "";
      if (int e = detail::applyHardening(*hardening, &step)) {
        writeString(2, "exec: ", step, ": ");
        writeString(2, std::strerror(e), "\n");
        _exit(126);
      }
      syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
      int lastErr = ENOENT;
      for (auto& c : candidates) {
        execve(c.c_str(), argv.data(), envp.data());
        if (errno != ENOENT && errno != ENOTDIR) lastErr = errno;
      }
      writeString(2, "exec: \"", argv[0], "\": ");
      writeString(2, lastErr == ENOENT ? "executable file not found in $PATH" : std::strerror(lastErr), "\n");
      _exit(lastErr == ENOENT ? 127 : 126);
    }
    char line[32];
    int len = std::snprintf(line, sizeof line, "%d\n", runner);
    (void)!write(report[1], line, len);
    close(report[1]);
    int status = 0;
    while (waitpid(runner, &status, 0) < 0 && errno == EINTR) {
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }
  close(sync[0]);
  close(report[1]);
  for (int fd : toClose) close(fd);
  toClose.clear();
  close(targetPidfd);
  proc->pid_ = entering;
  if (spec.joinCgroups) {
    if (auto st = spec.joinCgroups(entering); !st) {
      close(sync[1]);
      close(report[0]);
      return fail(st.error().wrap("exec: join cgroups"));
    }
  }
  (void)!write(sync[1], "g", 1);
  close(sync[1]);
  char buf[32] = {};
  ssize_t n = 0, total = 0;
  while ((n = read(report[0], buf + total, sizeof buf - 1 - total)) > 0) total += n;
  close(report[0]);
  if (total > 0) {
    pid_t runner = std::atoi(buf);
    proc->pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, runner, 0));
  }
  return proc;
}

Result<ExecResult> runExec(pid_t containerPid, const ContainerSpec& spec, const std::vector<std::string>& argv,
                           std::chrono::milliseconds timeout) {
  ExecOptions options;
  options.argv = argv;
  auto proc = startExec(containerPid, spec, options);
  if (!proc) return fail(proc.error());
  ExecResult result;
  constexpr size_t kMaxOutput = 1 << 20;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int fds[2] = {(*proc)->stdoutFd(), (*proc)->stderrFd()};
  bool open[2] = {true, true};
  char buf[4096];
  while (open[0] || open[1]) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timedOut = true;
      (void)(*proc)->signal(SIGKILL);
      break;
    }
    pollfd p[2];
    int n = 0;
    int map[2];
    for (int i = 0; i < 2; ++i)
      if (open[i]) {
        map[n] = i;
        p[n++] = {fds[i], POLLIN, 0};
      }
    int rc = poll(p, n, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) break;
    for (int k = 0; k < n; ++k) {
      if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = read(p[k].fd, buf, sizeof buf);
      if (got <= 0) {
        open[map[k]] = false;
      } else if (result.output.size() < kMaxOutput) {
        result.output.append(buf, std::min<size_t>(got, kMaxOutput - result.output.size()));
      }
    }
  }
  auto code = (*proc)->wait();
  if (!code) return fail(code.error());
  result.exitCode = *code;
  return result;
}

}  // namespace ferry::runtime
