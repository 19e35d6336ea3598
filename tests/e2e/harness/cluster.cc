#include "tests/e2e/harness/cluster.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace ferry::e2e {
namespace {

std::string randomId() {
  std::random_device rd;
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 6; ++i) s += hex[rd() % 16];
  return s;
}

std::string ferryBinary() {
  const char* env = std::getenv("FERRY_BINARY");
  return env ? env : "build/ferry";
}

std::string readAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Kills every process in a cgroup directory tree and removes it bottom-up.
void removeCgroupTree(const fs::path& root) {
  std::error_code ec;
  if (!fs::exists(root, ec)) return;
  std::vector<fs::path> dirs;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator(); ++it)
    if (it->is_directory()) dirs.push_back(it->path());
  dirs.push_back(root);
  std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
    return a.string().size() > b.string().size();
  });
  for (int attempt = 0; attempt < 50; ++attempt) {
    bool left = false;
    for (const auto& d : dirs) {
      std::ifstream procs(d / "cgroup.procs");
      int pid;
      while (procs >> pid) {
        kill(pid, SIGKILL);
        left = true;
      }
    }
    if (!left) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (const auto& d : dirs) rmdir(d.c_str());
}

}  // namespace

void removeNodeLeftovers(const std::string& cgroupRoot, const std::string& bpffsDir) {
  // "": a pure cgroup-v2 node, whose one hierarchy is /sys/fs/cgroup itself.
  for (const char* hierarchy : {"", "unified", "memory", "cpu,cpuacct", "cpu", "cpuacct", "pids", "freezer", "cpuset"})
    removeCgroupTree(fs::path("/sys/fs/cgroup") / hierarchy / cgroupRoot);
  std::error_code ec;
  fs::remove_all(bpffsDir, ec);
}

void unmountBelow(const std::string& dir) {
  std::vector<std::string> mounts;
  std::ifstream mountinfo("/proc/self/mountinfo");
  for (std::string line; std::getline(mountinfo, line);) {
    std::istringstream f(line);
    std::string id, parent, dev, root, mountPoint;
    f >> id >> parent >> dev >> root >> mountPoint;
    if (mountPoint.rfind(dir, 0) == 0) mounts.push_back(mountPoint);
  }
  std::sort(mounts.begin(), mounts.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const auto& m : mounts) umount2(m.c_str(), MNT_DETACH);
}

CommandResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout, const std::string& stdinText) {
  int out[2], in[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(in, O_CLOEXEC) != 0) return {-1, "pipe failed"};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(out[1], 2);
    sigset_t none;  // as in spawnInNetns: no blocked signals for the command
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  close(in[0]);
  if (!stdinText.empty()) {
    size_t off = 0;
    while (off < stdinText.size()) {
      ssize_t n = write(in[1], stdinText.data() + off, stdinText.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
  }
  close(in[1]);
  CommandResult result;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  bool timedOut = false;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timedOut = true;
      kill(pid, SIGKILL);
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 1000)));
    if (r > 0) {
      ssize_t n = read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      result.output.append(buf, static_cast<size_t>(n));
    }
  }
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exitCode = timedOut ? -2 : (WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  if (timedOut) result.output += "\n[harness: command timed out]";
  return result;
}

CommandResult sh(const std::string& command, std::chrono::seconds timeout) {
  return run({"/bin/sh", "-c", command}, timeout);
}

bool waitFor(const std::function<bool()>& condition, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return condition();
}

std::string e2eUnavailableReason() {
  if (geteuid() != 0) return "e2e tests need root (network namespaces, cgroups, BPF)";
  if (access(ferryBinary().c_str(), X_OK) != 0) return "ferry binary not found at " + ferryBinary();
  if (access("/usr/bin/kubectl", X_OK) != 0) return "stock kubectl is not installed";
  if (access("/sbin/ip", X_OK) != 0 && access("/usr/sbin/ip", X_OK) != 0 && access("/bin/ip", X_OK) != 0)
    return "iproute2 (ip) is not installed";
  return {};
}

std::string makeBusyboxImage(const std::string& dir) {
  const char* source = std::getenv("FERRY_SOURCE_DIR");
  std::string out = dir + "/busybox.tar";
  auto r = run({std::string(source ? source : ".") + "/tests/images/make-busybox-oci", out}, std::chrono::seconds(120));
  return r.exitCode == 0 ? out : "";
}

Cluster::Cluster(ClusterOptions options) : options_(std::move(options)), id_(randomId()) {
  workDir_ = "/tmp/ferry-e2e-" + id_;
}

Cluster::~Cluster() { stopAll(); }

std::string Cluster::nodeName(int index) const { return "node-" + std::to_string(index); }
std::string Cluster::nodeNamespace(int index) const { return "fe2e-" + id_ + "-n" + std::to_string(index); }
std::string Cluster::serverLog() const { return readAll(workDir_ + "/n1/ferry.log"); }
std::string Cluster::agentLog(int index) const {
  std::string file = index == 1 && options_.separateServerProcess ? "/agent.log" : "/ferry.log";
  return readAll(workDir_ + "/n" + std::to_string(index) + file);
}

std::string Cluster::startNodeNetwork() {
  std::string underlay = "fe2e-" + id_ + "-u";
  std::string script = "set -e\nip netns add " + underlay + "\n";
  script += "ip -n " + underlay + " link add br0 type bridge\nip -n " + underlay + " link set br0 up\n";
  script += "ip -n " + underlay + " link set lo up\n";
  for (int i = 1; i <= options_.nodes; ++i) {
    std::string ns = nodeNamespace(i);
    std::string peer = "u" + std::to_string(i);
    script += "ip netns add " + ns + "\n";
    script += "ip -n " + ns + " link set lo up\n";
    script += "ip -n " + ns + " link add eth0 type veth peer name " + peer + " netns " + underlay + "\n";
    script += "ip -n " + underlay + " link set " + peer + " master br0 up\n";
    script += "ip -n " + ns + " addr add 10.250.0." + std::to_string(10 + i) + "/24 dev eth0\n";
    script += "ip -n " + ns + " link set eth0 up\n";
  }
  networkMade_ = true;
  auto r = sh(script);
  if (r.exitCode != 0) return "making node namespaces failed: " + r.output;
  return {};
}

std::vector<std::string> Cluster::agentCommonFlags(int i) const {
  std::string dir = workDir_ + "/n" + std::to_string(i);
  return {"--node-name", nodeName(i),
          "--node-ip", "10.250.0." + std::to_string(10 + i),
          "--cgroup-root", "ferry-e2e-" + id_ + "-n" + std::to_string(i),
          "--run-dir", dir + "/run",
          "--bpffs-dir", "/sys/fs/bpf/ferry-e2e-" + id_ + "-n" + std::to_string(i),
          // Never the machine's resolver: an address inside the node's own namespace.
          "--dns-upstream", "127.0.0.1:5353"};
}

int spawnInNetns(const std::string& netns, const std::vector<std::string>& argv, const std::string& logPath) {
  pid_t pid = fork();
  if (pid == 0) {
    if (!netns.empty()) {
      int nsfd = open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
      if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) _exit(126);
    }
    int log = open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log >= 0) {
      dup2(log, 1);
      dup2(log, 2);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    setpgid(0, 0);
    // A caller that blocks signals for sigwait (ferry-cluster) must not pass the mask on.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

std::string Cluster::start() {
  if (auto reason = e2eUnavailableReason(); !reason.empty()) return reason;
  fs::create_directories(workDir_);
  if (auto err = startNodeNetwork(); !err.empty()) return err;
  for (int i = 1; i <= options_.nodes; ++i) fs::create_directories(workDir_ + "/n" + std::to_string(i));

  std::vector<std::string> server = {ferryBinary(), "server", "--data-dir", dataDir(), "--listen", "0.0.0.0:6443",
                                     "--datastore", options_.datastore, "--agent-data-dir", workDir_ + "/n1/agent",
                                     "--advertise-address", "10.250.0.11"};
  if (!options_.agents || options_.separateServerProcess) server.push_back("--no-agent");
  for (const auto& f : agentCommonFlags(1)) server.push_back(f);
  for (const auto& f : options_.serverFlags) server.push_back(f);
  if (!options_.separateServerProcess)
    for (const auto& f : options_.agentFlags) server.push_back(f);
  if (options_.separateServerProcess) {
    serverPid_ = spawnInNetns(nodeNamespace(1), server, workDir_ + "/n1/ferry.log");
  } else {
    commands_.push_back(server);
    pids_.push_back(spawnInNetns(nodeNamespace(1), server, workDir_ + "/n1/ferry.log"));
  }

  bool up = waitFor([&] { return access((dataDir() + "/kubeconfig").c_str(), R_OK) == 0 &&
                                 kubectl("get --raw /readyz", std::chrono::seconds(10)).exitCode == 0; },
                    std::chrono::seconds(90));
  if (!up) return "the API server did not come up; log:\n" + serverLog();

  for (int i = options_.separateServerProcess ? 1 : 2; i <= options_.nodes && options_.agents; ++i) {
    std::string dir = workDir_ + "/n" + std::to_string(i);
    std::vector<std::string> agent = {ferryBinary(), "agent", "--server", "https://10.250.0.11:6443",
                                      "--token-file", dataDir() + "/token", "--data-dir", dir + "/agent"};
    for (const auto& f : agentCommonFlags(i)) agent.push_back(f);
    for (const auto& f : options_.agentFlags) agent.push_back(f);
    commands_.push_back(agent);
    pids_.push_back(spawnInNetns(nodeNamespace(i), agent, dir + (i == 1 ? "/agent.log" : "/ferry.log")));
  }
  if (options_.agents) {
    std::string exited;
    bool ready = waitFor([&] {
      // An agent that exited will not become Ready: say so at once, with its log.
      for (int i = options_.separateServerProcess ? 1 : 2; i <= static_cast<int>(pids_.size()); ++i)
        if (pids_[i - 1] > 0 && waitpid(pids_[i - 1], nullptr, WNOHANG) == pids_[i - 1]) {
          pids_[i - 1] = -1;
          exited += "node " + std::to_string(i) + "'s agent exited:\n" + agentLog(i) + "\n";
        }
      if (!exited.empty()) return true;
      auto r = kubectl("get nodes --no-headers", std::chrono::seconds(20));
      if (r.exitCode != 0) return false;
      int readyNodes = 0;
      std::istringstream lines(r.output);
      for (std::string line; std::getline(lines, line);)
        if (line.find(" Ready") != std::string::npos) ++readyNodes;
      return readyNodes == options_.nodes;
    }, std::chrono::seconds(120));
    if (!exited.empty()) return exited;
    if (!ready) {
      std::string message = "nodes did not become Ready:\n" + kubectl("get nodes -o wide").output + "\nserver log:\n" + serverLog();
      for (int i = 2; i <= options_.nodes; ++i) message += "\nnode " + std::to_string(i) + " log:\n" + agentLog(i);
      return message;
    }
  }
  return {};
}

CommandResult Cluster::kubectl(const std::string& args, std::chrono::seconds timeout, const std::string& stdinText) {
  std::string cmd = "ip netns exec " + nodeNamespace(1) + " kubectl --kubeconfig " + dataDir() + "/kubeconfig " + args;
  return run({"/bin/sh", "-c", cmd}, timeout, stdinText);
}

CommandResult Cluster::inNode(int index, const std::string& command, std::chrono::seconds timeout) {
  return run({"ip", "netns", "exec", nodeNamespace(index), "/bin/sh", "-c", command}, timeout);
}

std::string Cluster::importImage(const std::string& archivePath) {
  for (int i = 1; i <= options_.nodes; ++i) {
    std::string dir = workDir_ + "/n" + std::to_string(i) + "/agent";
    auto r = run({ferryBinary(), "image", "import", "--data-dir", dir, archivePath}, std::chrono::seconds(120));
    if (r.exitCode != 0) return "image import on node " + std::to_string(i) + " failed: " + r.output;
  }
  return {};
}

std::string Cluster::importBusybox() {
  std::error_code ec;
  std::filesystem::create_directories(workDir_ + "/images", ec);
  std::string image = makeBusyboxImage(workDir_ + "/images");
  if (image.empty()) return "could not build the busybox test image";
  return importImage(image);
}

void Cluster::killAgent(int index) {
  if (index - 1 < static_cast<int>(pids_.size()) && pids_[index - 1] > 0) {
    kill(pids_[index - 1], SIGKILL);
    waitpid(pids_[index - 1], nullptr, 0);
    pids_[index - 1] = -1;
  }
}

std::string Cluster::restartAgent(int index) {
  if (index < 1 || index > static_cast<int>(commands_.size())) return "no node " + std::to_string(index);
  if (pids_[index - 1] > 0) return "node " + std::to_string(index) + "'s process still runs";
  std::string log = workDir_ + "/n" + std::to_string(index) +
                    (index == 1 && options_.separateServerProcess ? "/agent.log" : "/ferry.log");
  pids_[index - 1] = spawnInNetns(nodeNamespace(index), commands_[index - 1], log);
  return pids_[index - 1] > 0 ? "" : "fork failed";
}

void Cluster::disconnectNode(int index) {
  sh("ip -n fe2e-" + id_ + "-u link set u" + std::to_string(index) + " down");
}

void Cluster::reconnectNode(int index) {
  sh("ip -n fe2e-" + id_ + "-u link set u" + std::to_string(index) + " up");
}

std::string Cluster::podOutput(int index, const std::string& pod, const std::string& ns) const {
  std::string prefix = ns + "_" + pod + "_";
  std::vector<fs::path> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(workDir_ + "/n" + std::to_string(index) + "/agent/logs", ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it.depth() == 0 && it->is_directory() && it->path().filename().string().rfind(prefix, 0) != 0) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  std::string out;
  for (const auto& file : files) {
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);) {
      // "<time> <stream> <F|P> <text>"
      std::istringstream f(line);
      std::string time, stream, tag;
      f >> time >> stream >> tag;
      std::string text;
      std::getline(f, text);
      if (!text.empty() && text[0] == ' ') text.erase(0, 1);
      out += text + "\n";
    }
  }
  return out;
}

void Cluster::stopAll() {
  // Agents first (reverse order), then the server: SIGTERM, then SIGKILL after a grace.
  for (auto it = pids_.rbegin(); it != pids_.rend(); ++it) {
    if (*it <= 0) continue;
    kill(*it, SIGTERM);
    bool exited = waitFor([&] { return waitpid(*it, nullptr, WNOHANG) == *it; }, std::chrono::seconds(15));
    if (!exited) {
      kill(*it, SIGKILL);
      waitpid(*it, nullptr, 0);
    }
    *it = -1;
  }
  if (serverPid_ > 0) {
    kill(serverPid_, SIGTERM);
    if (!waitFor([&] { return waitpid(serverPid_, nullptr, WNOHANG) == serverPid_; }, std::chrono::seconds(15))) {
      kill(serverPid_, SIGKILL);
      waitpid(serverPid_, nullptr, 0);
    }
    serverPid_ = -1;
  }
  // Pods outlive their agent by design: remove what each node made.
  for (int i = 1; i <= options_.nodes; ++i) removeNodeLeftovers(cgroupRoot(i), "/sys/fs/bpf/" + cgroupRoot(i));
  unmountBelow(workDir_);
  if (networkMade_) {
    for (int i = 1; i <= options_.nodes; ++i) sh("ip netns delete " + nodeNamespace(i) + " 2>/dev/null");
    sh("ip netns delete fe2e-" + id_ + "-u 2>/dev/null");
  }
  if (std::getenv("FERRY_E2E_KEEP") == nullptr) {
    std::error_code ec;
    fs::remove_all(workDir_, ec);
  }
}

}  // namespace ferry::e2e
