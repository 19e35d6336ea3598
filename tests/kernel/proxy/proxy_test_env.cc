#include "tests/kernel/proxy/proxy_test_env.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

namespace ferry::proxy::testing {

int sh(const std::string& command) {
  int rc = std::system((command + " >/dev/null 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

namespace {

bool enterNetns(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = setns(fd, CLONE_NEWNET) == 0;
  close(fd);
  return ok;
}

// An IPv4 or (text with ':') IPv6 socket address.
struct SockAddr {
  sockaddr_storage storage{};
  socklen_t length = 0;
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
};

SockAddr sockaddrOf(const std::string& address, int port) {
  SockAddr a;
  if (address.find(':') != std::string::npos) {
    auto* sa = reinterpret_cast<sockaddr_in6*>(&a.storage);
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET6, address.c_str(), &sa->sin6_addr);
    a.length = sizeof *sa;
  } else {
    auto* sa = reinterpret_cast<sockaddr_in*>(&a.storage);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, address.c_str(), &sa->sin_addr);
    a.length = sizeof *sa;
  }
  return a;
}

// "a.b.c.d:port" or "[v6]:port".
std::string textOf(const sockaddr_storage& storage) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (storage.ss_family == AF_INET6) {
    auto* sa = reinterpret_cast<const sockaddr_in6*>(&storage);
    inet_ntop(AF_INET6, &sa->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(sa->sin6_port));
  }
  auto* sa = reinterpret_cast<const sockaddr_in*>(&storage);
  inet_ntop(AF_INET, &sa->sin_addr, buf, sizeof buf);
  return std::string(buf) + ":" + std::to_string(ntohs(sa->sin_port));
}

void setTimeout(int fd, int seconds) {
  timeval tv{seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Per connect/recv. Generous: in nftables mode a SYN reusing the port of a
// TIME_WAIT conntrack entry is dropped when the conntrack GC is expiring that
// entry at the same moment (the kernel cannot kill it to start afresh), and the
// retransmission comes 1 s later, then 2 s more; on a loaded machine two of those
// plus scheduling delays can pass a 3 s limit, which counted as a failed connect
// though the application (default connect timeout ~2 min) would have succeeded.
constexpr int kAttemptTimeoutSeconds = 10;

// One attempt of a client job: returns the backend's reply or sets err.
std::string attempt(const ClientJob& job, int& err, bool& wrongPeer) {
  err = 0;
  wrongPeer = false;
  SockAddr target = sockaddrOf(job.address, job.port);
  const std::string service = textOf(target.storage);
  char buf[64] = {};
  bool udp = job.kind != ClientJob::TcpConnect && job.kind != ClientJob::Tcp6MappedConnect;
  if (job.kind == ClientJob::Tcp6MappedConnect) {
    // An IPv6 socket reaching the IPv4 Service through ::ffff:a.b.c.d.
    sockaddr_in6 target6{};
    target6.sin6_family = AF_INET6;
    target6.sin6_port = htons(static_cast<uint16_t>(job.port));
    inet_pton(AF_INET6, ("::ffff:" + job.address).c_str(), &target6.sin6_addr);
    int fd6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setTimeout(fd6, kAttemptTimeoutSeconds);
    if (connect(fd6, reinterpret_cast<sockaddr*>(&target6), sizeof target6) < 0) {
      err = errno;
    } else {
      sockaddr_in6 peer{};
      socklen_t len = sizeof peer;
      if (job.checkPeer && (getpeername(fd6, reinterpret_cast<sockaddr*>(&peer), &len) != 0 ||
                            memcmp(&peer.sin6_addr, &target6.sin6_addr, sizeof peer.sin6_addr) != 0 ||
                            peer.sin6_port != target6.sin6_port))
        wrongPeer = true;
      ssize_t got = recv(fd6, buf, sizeof buf - 1, 0);
      if (got <= 0) err = got == 0 ? ECONNRESET : errno;
      close(fd6);
      return err ? "" : std::string(buf, static_cast<size_t>(got));
    }
    close(fd6);
    return "";
  }
  int fd = socket(target.family(), (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = errno;
    return "";
  }
  setTimeout(fd, kAttemptTimeoutSeconds);
  ssize_t n = -1;
  if (job.kind == ClientJob::UdpSendto) {
    if (sendto(fd, "hi", 2, 0, target.get(), target.length) < 0) {
      err = errno;
    } else {
      sockaddr_storage from{};
      socklen_t len = sizeof from;
      n = recvfrom(fd, buf, sizeof buf - 1, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 0) err = errno;
      else if (job.checkPeer && textOf(from) != service) wrongPeer = true;
    }
  } else {
    if (connect(fd, target.get(), target.length) < 0) {
      err = errno;
    } else {
      if (job.checkPeer) {
        sockaddr_storage peer{};
        socklen_t len = sizeof peer;
        if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0 || textOf(peer) != service) wrongPeer = true;
      }
      if (udp && send(fd, "hi", 2, 0) < 0) err = errno;
      if (!err) {
        n = recv(fd, buf, sizeof buf - 1, 0);
        if (n <= 0) err = n == 0 ? ECONNRESET : errno;
      }
    }
  }
  close(fd);
  return err ? "" : std::string(buf, n > 0 ? static_cast<size_t>(n) : 0);
}

}  // namespace

int ClientResult::total() const {
  int t = 0;
  for (auto& [_, n] : byBackend) t += n;
  for (auto& [_, n] : errors) t += n;
  return t;
}

NetnsWorker::NetnsWorker(const std::string& netnsPath) {
  std::promise<bool> ready;
  auto entered = ready.get_future();
  thread_ = std::thread([this, netnsPath, &ready] {
    ready.set_value(enterNetns(netnsPath));
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
      if (tasks_.empty() && stop_) return;
      auto task = std::move(tasks_.front());
      tasks_.pop();
      lock.unlock();
      task();
      lock.lock();
    }
  });
  entered_ = entered.get();
}

NetnsWorker::~NetnsWorker() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void NetnsWorker::run(const std::function<void()>& task) {
  if (!entered_) throw std::runtime_error("netns worker did not enter its namespace");
  std::promise<void> done;
  auto finished = done.get_future();
  {
    std::lock_guard lock(mu_);
    tasks_.push([&] {
      task();
      done.set_value();
    });
  }
  cv_.notify_all();
  finished.get();
}

ClientProcess::ClientProcess(const std::string& cgroupDir, const std::string& netnsPath, ClientJob job) {
  int resultPipe[2], stopPipe[2];
  if (pipe2(resultPipe, O_CLOEXEC) != 0 || pipe2(stopPipe, O_CLOEXEC) != 0) return;
  pid_ = fork();
  if (pid_ == 0) {
    close(resultPipe[0]);
    close(stopPipe[1]);
    // Join the test cgroup first (so the proxy's programs see our sockets),
    // then the node's network namespace.
    std::string pid = std::to_string(getpid());
    if (!cgroupDir.empty()) {
      int cg = open((cgroupDir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
      if (cg < 0 || write(cg, pid.data(), pid.size()) < 0) _exit(20);
      close(cg);
    }
    if (!enterNetns(netnsPath)) _exit(21);
    ClientResult r;
    for (int i = 0; job.count == 0 || i < job.count; ++i) {
      if (job.count == 0) {
        pollfd p{stopPipe[0], POLLIN, 0};
        if (poll(&p, 1, 0) > 0) break;
      }
      int err;
      bool wrongPeer;
      std::string backend = attempt(job, err, wrongPeer);
      if (err) r.errors[err]++;
      else r.byBackend[backend]++;
      if (wrongPeer) r.wrongPeer++;
    }
    std::ostringstream out;
    for (auto& [b, n] : r.byBackend) out << "ok " << b << " " << n << "\n";
    for (auto& [e, n] : r.errors) out << "err " << e << " " << n << "\n";
    out << "wrongpeer x " << r.wrongPeer << "\n";
    std::string text = out.str();
    size_t off = 0;
    while (off < text.size()) {
      ssize_t w = write(resultPipe[1], text.data() + off, text.size() - off);
      if (w <= 0) break;
      off += static_cast<size_t>(w);
    }
    _exit(0);
  }
  close(resultPipe[1]);
  close(stopPipe[0]);
  resultFd_ = resultPipe[0];
  stopFd_ = stopPipe[1];
}

ClientProcess::~ClientProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (resultFd_ >= 0) close(resultFd_);
  if (stopFd_ >= 0) close(stopFd_);
}

void ClientProcess::stop() {
  if (stopFd_ >= 0) {
    (void)!write(stopFd_, "x", 1);
  }
}

ClientResult ClientProcess::wait() {
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = read(resultFd_, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  ClientResult r;
  std::istringstream in(text);
  std::string kind, what;
  int count;
  while (in >> kind >> what >> count) {
    if (kind == "ok") r.byBackend[what] = count;
    else if (kind == "err") r.errors[std::stoi(what)] = count;
    else if (kind == "wrongpeer") r.wrongPeer = count;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) r.errors[-1000 - (WIFEXITED(status) ? WEXITSTATUS(status) : 0)]++;
  return r;
}

ClientResult ProxyTestEnv::runClient(const ClientJob& job, bool inPeer) {
  ClientProcess client(cgroup_, inPeer ? peerNetns() : nodeNetns(), job);
  return client.wait();
}

std::string ProxyTestEnv::setUp() {
  if (geteuid() != 0) return "needs root (netns, cgroup v2, BPF, nftables)";
  struct statfs fs {};
  if (statfs("/sys/fs/cgroup/unified", &fs) != 0 || fs.f_type != 0x63677270 /* CGROUP2_SUPER_MAGIC */)
    return "no cgroup v2 hierarchy at /sys/fs/cgroup/unified";
  if (sh("command -v ip") != 0) return "iproute2 `ip` missing";
  std::random_device rd;
  suffix_ = std::to_string(rd() % 1000000);
  node_ = "fpxn" + suffix_;
  peer_ = "fpxp" + suffix_;
  cgroup_ = "/sys/fs/cgroup/unified/ferry-test-" + suffix_;
  std::vector<std::string> cmds = {
      "ip netns add " + node_,
      "ip netns add " + peer_,
      "ip -n " + node_ + " link set lo up",
      "ip -n " + peer_ + " link set lo up",
      "ip -n " + node_ + " link add vn" + suffix_ + " type veth peer name vp" + suffix_ + " netns " + peer_,
      "ip -n " + node_ + " addr add " + kNodeIP + "/24 dev vn" + suffix_,
      "ip -n " + peer_ + " addr add " + kPeerIP + "/24 dev vp" + suffix_,
      "ip -n " + node_ + " link set vn" + suffix_ + " up",
      "ip -n " + peer_ + " link set vp" + suffix_ + " up",
      // nftables mode DNATs in the output hook, after routing: the Service CIDR needs a route.
      "ip -n " + node_ + " route add 10.96.0.0/16 dev vn" + suffix_,
      // IPv6 twins; nodad: usable at once, no duplicate detection to wait for.
      "ip -n " + node_ + " addr add " + kNodeIP6 + "/64 dev vn" + suffix_ + " nodad",
      "ip -n " + peer_ + " addr add " + kPeerIP6 + "/64 dev vp" + suffix_ + " nodad",
      "ip -n " + node_ + " -6 route add fd00:96::/112 dev vn" + suffix_,
  };
  for (const char* b : kBackends) cmds.push_back("ip -n " + node_ + " addr add " + b + "/32 dev lo");
  for (const char* b : kBackends6) cmds.push_back("ip -n " + node_ + " addr add " + b + "/128 dev lo nodad");
  for (const auto& c : cmds)
    if (sh(c) != 0) return "setup failed: " + c;
  if (mkdir(cgroup_.c_str(), 0755) != 0) return "cannot create " + cgroup_ + ": " + std::strerror(errno);
  worker_ = std::make_unique<NetnsWorker>(nodeNetns());

  // Echo servers: TCP answers each connection with the backend address; UDP
  // answers each datagram with it.
  serverStopFd_ = eventfd(0, EFD_CLOEXEC);
  std::promise<std::string> started;
  auto startedFuture = started.get_future();
  servers_ = std::thread([this, &started] {
    if (!enterNetns(nodeNetns())) {
      started.set_value("server thread: setns failed");
      return;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    std::map<int, std::pair<std::string, bool>> sockets;  // fd -> (address, tcp)
    std::vector<const char*> addresses(std::begin(kBackends), std::end(kBackends));
    addresses.insert(addresses.end(), std::begin(kBackends6), std::end(kBackends6));
    for (const char* b : addresses) {
      for (bool tcp : {true, false}) {
        SockAddr sa = sockaddrOf(b, kBackendPort);
        int fd = socket(sa.family(), (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, sa.get(), sa.length) != 0 || (tcp && listen(fd, 1024) != 0)) {
          started.set_value(std::string("server bind ") + b + ": " + std::strerror(errno));
          return;
        }
        sockets[fd] = {b, tcp};
        epoll_event ev{EPOLLIN, {.fd = fd}};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
      }
    }
    epoll_event stopEv{EPOLLIN, {.fd = serverStopFd_}};
    epoll_ctl(ep, EPOLL_CTL_ADD, serverStopFd_, &stopEv);
    started.set_value("");
    epoll_event events[16];
    while (!stopServers_) {
      int n = epoll_wait(ep, events, 16, 1000);
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == serverStopFd_) continue;
        auto& [address, tcp] = sockets[fd];
        if (tcp) {
          int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
          if (c >= 0) {
            (void)!write(c, address.data(), address.size());
            close(c);
          }
        } else {
          char buf[64];
          sockaddr_storage from{};
          socklen_t len = sizeof from;
          if (recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len) >= 0)
            sendto(fd, address.data(), address.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
        }
      }
    }
    for (auto& [fd, _] : sockets) close(fd);
    close(ep);
  });
  return startedFuture.get();
}

std::string ProxyTestEnv::addPodNetns(std::string& path) {
  size_t index = pods_.size();
  std::string name = "fpxc" + std::to_string(index) + "-" + suffix_;
  std::string node = "vc" + std::to_string(index) + "-" + suffix_, pod = "vq" + std::to_string(index) + "-" + suffix_;
  std::string subnet = "10.244." + std::to_string(index + 1) + ".";
  std::vector<std::string> cmds = {
      "ip netns add " + name,
      "ip -n " + name + " link set lo up",
      "ip -n " + node_ + " link add " + node + " type veth peer name " + pod + " netns " + name,
      "ip -n " + node_ + " addr add " + subnet + "1/24 dev " + node,
      "ip -n " + name + " addr add " + subnet + "2/24 dev " + pod,
      "ip -n " + node_ + " link set " + node + " up",
      "ip -n " + name + " link set " + pod + " up",
      "ip -n " + name + " route add default via " + subnet + "1",
  };
  pods_.push_back(name);  // before the commands, so tearDown removes a half-made namespace too
  for (const auto& c : cmds)
    if (sh(c) != 0) return "setup failed: " + c;
  path = "/run/netns/" + name;
  return "";
}

void ProxyTestEnv::tearDown() {
  if (servers_.joinable()) {
    stopServers_ = true;
    uint64_t one = 1;
    (void)!write(serverStopFd_, &one, sizeof one);
    servers_.join();
  }
  if (serverStopFd_ >= 0) close(serverStopFd_);
  worker_.reset();
  if (!cgroup_.empty()) rmdir(cgroup_.c_str());
  if (!node_.empty()) sh("ip netns del " + node_);
  if (!peer_.empty()) sh("ip netns del " + peer_);
  for (const std::string& pod : pods_) sh("ip netns del " + pod);
  sh("rm -rf " + bpffsDir());
}

}  // namespace ferry::proxy::testing
