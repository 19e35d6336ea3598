// Running a further process inside a running container (kubectl exec, exec probes,
// preStop hooks): it enters the container's pid/mount/net/ipc/uts namespaces and its
// cgroups, gets the same capabilities, no_new_privs and seccomp profile, then execs.
#pragma once

#include "agent/runtime/container.h"

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ferry::runtime {

struct ExecOptions {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // extra "NAME=value"; the container's spec env comes first
  bool stdin = false;            // give the process a stdin pipe (else /dev/null)
  bool tty = false;              // a pseudo-terminal for stdin/stdout/stderr
};

// A process started inside a container. File descriptors belong to this object.
class ExecProcess {
 public:
  ~ExecProcess();
  ExecProcess(const ExecProcess&) = delete;
  ExecProcess& operator=(const ExecProcess&) = delete;

  // -1 when absent. With a tty, stdinFd() == stdoutFd() == the pty master, stderrFd() -1.
  int stdinFd() const { return stdin_; }
  int stdoutFd() const { return stdout_; }
  int stderrFd() const { return stderr_; }
  void closeStdin();
  Status resizeTerminal(unsigned short rows, unsigned short cols);
  Status signal(int sig);
  // Blocks until the process exits; its exit code (128 + signal when killed).
  Result<int> wait();

 private:
  friend Result<std::unique_ptr<ExecProcess>> startExec(pid_t, const ContainerSpec&, const ExecOptions&);
  ExecProcess() = default;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int stdin_ = -1, stdout_ = -1, stderr_ = -1;
  bool tty_ = false;
  bool reaped_ = false;
  int exitCode_ = -1;
};

// Starts `options.argv` in the namespaces of the container whose first process is
// `containerPid` and that was started from `spec`: its env, working dir, user,
// capabilities and seccomp apply; spec.joinCgroups moves the new process into the
// container's cgroups before it execs (may be empty).
Result<std::unique_ptr<ExecProcess>> startExec(pid_t containerPid, const ContainerSpec& spec, const ExecOptions& options);

// Convenience: runs to completion collecting output, killing it at `timeout`.
Result<ExecResult> runExec(pid_t containerPid, const ContainerSpec& spec, const std::vector<std::string>& argv,
                           std::chrono::milliseconds timeout);

}  // namespace ferry::runtime
