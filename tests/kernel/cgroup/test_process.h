// A child process for cgroup tests: forked, parked on a pipe until the test has put it
// into its cgroup, then released to run `body` (which should only use async-signal-safe
// calls and plain memory work, as the parent has threads).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

namespace ferry::testing {

class ParkedChild {
 public:
  explicit ParkedChild(const std::function<void()>& body) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(fds[1]);
      char c;
      if (::read(fds[0], &c, 1) != 1) ::_exit(2);
      body();
      ::_exit(0);
    }
    ::close(fds[0]);
    releaseFd_ = fds[1];
  }
  ~ParkedChild() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
    if (releaseFd_ >= 0) ::close(releaseFd_);
  }
  pid_t pid() const { return pid_; }
  void release() {
    (void)!::write(releaseFd_, "x", 1);
    ::close(releaseFd_);
    releaseFd_ = -1;
  }
  // Returns the wait status.
  int wait() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int releaseFd_ = -1;
  bool reaped_ = false;
};

}  // namespace ferry::testing
