// A node for proxy kernel tests: a network namespace with four backends
// (TCP and UDP echo servers on 10.244.0.11-14 and fd00:244::11-14 on its
// loopback; each replies with its own address), a peer
// namespace on a veth (the "other node"), and a cgroup v2 subtree whose
// processes' sockets the proxy's programs see. Everything is removed at the end.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <map>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <vector>

namespace ferry::proxy::testing {

inline constexpr const char* kNodeIP = "192.168.77.1";
inline constexpr const char* kPeerIP = "192.168.77.2";
inline constexpr const char* kBackends[] = {"10.244.0.11", "10.244.0.12", "10.244.0.13", "10.244.0.14"};
inline constexpr const char* kBackends6[] = {"fd00:244::11", "fd00:244::12", "fd00:244::13", "fd00:244::14"};
inline constexpr const char* kNodeIP6 = "fd00:77::1";
inline constexpr const char* kPeerIP6 = "fd00:77::2";
inline constexpr int kBackendPort = 8080;
// Pod-like clients (addPodNetns): pod i has its own namespace on a veth to the node,
// address 10.244.<i+1>.2/24 inside the cluster CIDR, default route via the node end
// 10.244.<i+1>.1, as a pod has it.
inline constexpr const char* kClusterCIDR = "10.244.0.0/16";

// Runs tasks on one thread that has entered a network namespace (setns is per thread).
class NetnsWorker {
 public:
  explicit NetnsWorker(const std::string& netnsPath);
  ~NetnsWorker();
  void run(const std::function<void()>& task);

 private:
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::queue<std::function<void()>> tasks_;
  bool stop_ = false;
  bool entered_ = false;
};

// Summary of what a client process saw.
struct ClientResult {
  std::map<std::string, int> byBackend;  // reply payload (backend address) -> count
  std::map<int, int> errors;             // errno -> count
  int wrongPeer = 0;                     // replies/peer names that were not the Service address
  int total() const;
};

struct ClientJob {
  enum Kind { TcpConnect, UdpSendto, UdpConnected, Tcp6MappedConnect } kind = TcpConnect;
  std::string address;     // IPv4, or IPv6 (then the socket is AF_INET6)
  int port = 0;
  int count = 0;           // connections to make; 0: loop until stop()
  bool checkPeer = false;  // getpeername / recvfrom source must be address:port
};

class ClientProcess {
 public:
  ClientProcess(const std::string& cgroupDir, const std::string& netnsPath, ClientJob job);
  ~ClientProcess();
  void stop();              // ends a loop job
  ClientResult wait();      // waits for the child and parses its summary

 private:
  int pid_ = -1;
  int resultFd_ = -1;
  int stopFd_ = -1;
};

class ProxyTestEnv {
 public:
  // Returns "" when ready, else the reason the test must skip.
  std::string setUp();
  void tearDown();

  std::string nodeNetns() const { return "/run/netns/" + node_; }
  std::string peerNetns() const { return "/run/netns/" + peer_; }
  // Adds the next pod-like client namespace (see kClusterCIDR) and sets `path` to it;
  // returns "" when ready, else what failed.
  std::string addPodNetns(std::string& path);
  std::string cgroupDir() const { return cgroup_; }
  std::string bpffsDir() const { return "/sys/fs/bpf/ferry-test-" + suffix_; }
  std::string suffix() const { return suffix_; }
  NetnsWorker& nodeWorker() { return *worker_; }

  ClientResult runClient(const ClientJob& job, bool inPeer = false);

 private:
  std::string suffix_, node_, peer_, cgroup_;
  std::vector<std::string> pods_;
  std::unique_ptr<NetnsWorker> worker_;
  std::thread servers_;
  std::atomic<bool> stopServers_{false};
  int serverStopFd_ = -1;
};

int sh(const std::string& command);

}  // namespace ferry::proxy::testing
