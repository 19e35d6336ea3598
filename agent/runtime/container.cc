#include "agent/runtime/container.h"

#include "agent/runtime/container_state.h"
#include "agent/runtime/exec.h"
#include "agent/runtime/shim.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

extern char** environ;

namespace ferry::runtime {

namespace fs = std::filesystem;

namespace {

constexpr auto kShimReplyTimeout = std::chrono::seconds(60);

bool validId(const std::string& id) {
  if (id.empty() || id.size() > 200 || id == "." || id == "..") return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  return true;
}

// One line from a pipe, waiting at most `timeout`; "" at EOF.
Result<std::string> readLine(int fd, std::chrono::milliseconds timeout) {
  std::string line;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return fail(ETIMEDOUT, "container shim did not answer");
    pollfd p{fd, POLLIN, 0};
    int rc = poll(&p, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return failErrno("poll shim pipe");
    if (rc == 0) continue;
    char c;
    ssize_t n = read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return line;
    if (c == '\n') return line;
    line.push_back(c);
  }
}

class ShimContainer final : public Container {
 public:
  ShimContainer(std::string stateDir, ContainerSpec spec, const api::Json& state)
      : stateDir_(std::move(stateDir)), spec_(std::move(spec)) {
    pid_ = state.value("pid", -1);
    pidStartTime_ = state.value("pidStartTime", std::uint64_t{0});
    shimPid_ = state.value("shimPid", -1);
    shimStartTime_ = state.value("shimStartTime", std::uint64_t{0});
    startedAt_ = detail::fromNanos(state.value("startedAtNs", std::int64_t{0}));
    if (pid_ > 0) {
      int fd = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
      // The pid names our container only while its start time matches.
      if (fd >= 0 && detail::processStartTime(pid_) == pidStartTime_ && pidStartTime_ != 0)
        pidfd_ = fd;
      else if (fd >= 0)
        close(fd);
    }
  }
  ~ShimContainer() override {
    if (pidfd_ >= 0) close(pidfd_);
  }

  const std::string& id() const override { return spec_.id; }
  const std::map<std::string, std::string>& labels() const override { return spec_.labels; }
  pid_t pid() const override { return pid_; }
  Timestamp startedAt() const override { return startedAt_; }
  std::string logPath() const override { return spec_.logPath; }

  std::optional<ExitStatus> exitStatus() override {
    if (exit_) return exit_;
    if (auto st = readExitFile()) return exit_ = st;
    if (pidfd_ >= 0 && detail::processStartTime(pid_) == pidStartTime_) return std::nullopt;
    // The container is gone; its shim writes exit.json right after reaping it.
    if (shimPid_ > 0 && detail::processStartTime(shimPid_) == shimStartTime_ && shimStartTime_ != 0)
      return std::nullopt;
    if (auto st = readExitFile()) return exit_ = st;
    // The shim died without recording the exit (killed): the container died with it
    // (parent-death signal). Record that, so the answer stays the same.
    ExitStatus lost{128 + SIGKILL, SIGKILL, std::chrono::system_clock::now()};
    api::Json j = {{"exitCode", lost.exitCode}, {"signal", lost.signal}, {"finishedAtNs", detail::toNanos(lost.finishedAt)},
                   {"shimLost", true}};
    (void)detail::writeFileAtomically(stateDir_ + "/" + detail::kExitFile, j.dump());
    return exit_ = lost;
  }

  Status signal(int sig) override {
    if (exitStatus()) return {};
    if (pidfd_ < 0) return {};
    if (syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0) < 0 && errno != ESRCH)
      return failErrno(fmt::format("signal container {}", spec_.id));
    return {};
  }

  Result<ExecResult> exec(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) override {
    if (exitStatus()) return fail(ESRCH, fmt::format("container {} is not running", spec_.id));
    return runExec(pid_, spec_, argv, timeout);
  }

  Result<std::unique_ptr<ExecProcess>> startProcess(const ExecOptions& options) override {
    if (exitStatus()) return fail(ESRCH, fmt::format("container {} is not running", spec_.id));
    return startExec(pid_, spec_, options);
  }

  Status remove(bool keepUpper) override {
    if (!exitStatus()) return fail(EBUSY, fmt::format("container {} is still running", spec_.id));
    std::error_code ec;
    fs::remove_all(stateDir_, ec);
    if (ec) return fail(ec.value(), fmt::format("remove {}: {}", stateDir_, ec.message()));
    if (!keepUpper) {
      fs::remove_all(spec_.upperDir, ec);
      fs::remove_all(spec_.workDir, ec);
    }
    return {};
  }

  void setJoinCgroups(std::function<Status(pid_t)> join) { spec_.joinCgroups = std::move(join); }

 private:
  std::optional<ExitStatus> readExitFile() const {
    auto j = detail::readJsonFile(stateDir_ + "/" + detail::kExitFile);
    if (!j) return std::nullopt;
    ExitStatus st;
    st.exitCode = j->value("exitCode", 255);
    st.signal = j->value("signal", 0);
    st.finishedAt = detail::fromNanos(j->value("finishedAtNs", std::int64_t{0}));
    return st;
  }

  std::string stateDir_;
  ContainerSpec spec_;
  pid_t pid_ = -1;
  std::uint64_t pidStartTime_ = 0;
  pid_t shimPid_ = -1;
  std::uint64_t shimStartTime_ = 0;
  Timestamp startedAt_{};
  int pidfd_ = -1;
  std::optional<ExitStatus> exit_;
};

}  // namespace

ContainerRuntime::ContainerRuntime(RuntimeConfig config) : config_(std::move(config)) {
  if (config_.shimCommand == std::vector<std::string>{"/proc/self/exe", kShimSubcommand}) {
    std::error_code ec;
    fs::path self = fs::read_symlink("/proc/self/exe", ec);
    fs::path small = self.parent_path() / kShimProgram;
    if (!ec && access(small.c_str(), X_OK) == 0) config_.shimCommand = {small.string(), kShimSubcommand};
  }
}

Result<std::unique_ptr<Container>> ContainerRuntime::start(const ContainerSpec& spec) {
  auto context = fmt::format("start container {}", spec.id);
  if (!validId(spec.id)) return fail(Error::invalid(fmt::format("container id \"{}\" is not a valid name", spec.id)));
  if (spec.argv.empty()) return fail(Error::invalid(context + ": argv is empty"));
  if (config_.shimCommand.empty()) return fail(Error::invalid(context + ": no shim command configured"));

  std::string dir = config_.stateDir + "/" + spec.id;
  std::error_code ec;
  if (fs::exists(dir + "/" + detail::kStateFile) && !fs::exists(dir + "/" + detail::kExitFile)) {
    auto existing = adopt(spec.id);
    if (existing && !(*existing)->exitStatus())
      return fail(EEXIST, context + ": a container with this id is running");
  }
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) return fail(ec.value(), fmt::format("{}: create {}: {}", context, dir, ec.message()));
  if (auto st = detail::writeFileAtomically(dir + "/" + detail::kSpecFile, detail::specToJson(spec).dump()); !st)
    return fail(st.error().wrap(context));

  int report[2], go[2];
  if (pipe2(report, O_CLOEXEC) < 0) return failErrno(context + ": pipe");
  if (pipe2(go, O_CLOEXEC) < 0) {
    int err = errno;
    close(report[0]);
    close(report[1]);
    return failErrno(context + ": pipe", err);
  }

  // Prepared before fork: the child of a multi-threaded process may only make syscalls.
  std::vector<std::string> args = config_.shimCommand;
  args.push_back(dir);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> envStorage;
  for (char** e = environ; e && *e; ++e) envStorage.emplace_back(*e);
  envStorage.push_back(fmt::format("FERRY_SHIM_REPORT_FD={}", report[1]));
  envStorage.push_back(fmt::format("FERRY_SHIM_GO_FD={}", go[0]));
  std::vector<char*> envp;
  for (auto& e : envStorage) envp.push_back(e.data());
  envp.push_back(nullptr);

  // The shim lives in its own session and forks once more at its start (its first
  // process exits): reparented away from the agent, neither the agent's exit nor its
  // terminal's signals reach it. vfork, not fork: copying the page tables of a large
  // agent for every container start costs milliseconds; the child only makes syscalls
  // before execve.
  envStorage.push_back(std::string(kShimDetachEnv) + "=1");
  envp.clear();
  for (auto& e : envStorage) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t middle = vfork();
  if (middle < 0) {
    int err = errno;
    for (int fd : {report[0], report[1], go[0], go[1]}) close(fd);
    return failErrno(context + ": vfork", err);
  }
  if (middle == 0) {
    setsid();
    syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
    fcntl(report[1], F_SETFD, 0);
    fcntl(go[0], F_SETFD, 0);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(report[1]);
  close(go[0]);
  int middleStatus = 0;
  while (waitpid(middle, &middleStatus, 0) < 0 && errno == EINTR) {
  }
  auto cleanupFailure = [&](Error e) -> std::unexpected<Error> {
    close(report[0]);
    if (go[1] >= 0) close(go[1]);
    fs::remove_all(dir, ec);
    return fail(std::move(e).wrap(context));
  };
  if (!WIFEXITED(middleStatus) || WEXITSTATUS(middleStatus) != 0)
    return cleanupFailure(Error{ECHILD, "could not fork the container shim"});

  auto first = readLine(report[0], kShimReplyTimeout);
  if (!first) return cleanupFailure(first.error());
  if (first->rfind("error ", 0) == 0) return cleanupFailure(Error{EINVAL, first->substr(6)});
  if (first->rfind("pid ", 0) != 0)
    return cleanupFailure(Error{ECHILD, first->empty() ? "container shim exited (could it be executed?)"
                                                       : "container shim said: " + *first});
  pid_t pid = std::atoi(first->c_str() + 4);
  if (spec.joinCgroups) {
    if (auto st = spec.joinCgroups(pid); !st) return cleanupFailure(st.error().wrap("join cgroups"));
  }
  if (write(go[1], "go\n", 3) != 3) return cleanupFailure(Error::fromErrno("release container"));
  close(go[1]);
  go[1] = -1;
  auto second = readLine(report[0], kShimReplyTimeout);
  if (!second) return cleanupFailure(second.error());
  if (second->rfind("error ", 0) == 0) return cleanupFailure(Error{EINVAL, second->substr(6)});
  if (*second != "started") return cleanupFailure(Error{ECHILD, "container shim exited before the container started"});
  close(report[0]);

  auto state = detail::readJsonFile(dir + "/" + detail::kStateFile);
  if (!state) return fail(state.error().wrap(context));
  auto c = std::make_unique<ShimContainer>(dir, spec, *state);
  return std::unique_ptr<Container>(std::move(c));
}

Result<std::unique_ptr<Container>> ContainerRuntime::adopt(const std::string& id, std::function<Status(pid_t)> joinCgroups) {
  auto context = fmt::format("adopt container {}", id);
  if (!validId(id)) return fail(Error::invalid(fmt::format("container id \"{}\" is not a valid name", id)));
  std::string dir = config_.stateDir + "/" + id;
  auto specJson = detail::readJsonFile(dir + "/" + detail::kSpecFile);
  if (!specJson) return fail(specJson.error().wrap(context));
  auto spec = detail::specFromJson(*specJson);
  if (!spec) return fail(spec.error().wrap(context));
  auto state = detail::readJsonFile(dir + "/" + detail::kStateFile);
  if (!state) return fail(state.error().wrap(context + ": it never started"));
  spec->joinCgroups = std::move(joinCgroups);
  return std::unique_ptr<Container>(std::make_unique<ShimContainer>(dir, std::move(*spec), *state));
}

std::vector<ContainerInfo> ContainerRuntime::list() const {
  std::vector<ContainerInfo> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(config_.stateDir, ec)) {
    if (!entry.is_directory()) continue;
    auto specJson = detail::readJsonFile(entry.path().string() + "/" + detail::kSpecFile);
    if (!specJson) continue;
    if (!fs::exists(entry.path() / detail::kStateFile)) continue;
    ContainerInfo info;
    info.id = entry.path().filename().string();
    info.labels = specJson->value("labels", std::map<std::string, std::string>{});
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace ferry::runtime
