// Test helpers shared by the kernel tests of netns/ and agent/sandbox/: a scratch
// directory, a "node" network namespace made by the test, and a TCP echo that runs
// inside a namespace (so the test needs no external binaries or the root netns).
#pragma once

#include "netns/namespace_pins.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

namespace ferry::testing {

inline std::string makeScratchDir(const std::string& prefix) {
  std::string pattern = "/tmp/" + prefix + "-XXXXXX";
  char* dir = ::mkdtemp(pattern.data());
  return dir ? std::string(dir) : std::string();
}

inline std::string randomSuffix() {
  static std::atomic<unsigned> counter{0};
  return std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 100000);
}

// Listens on ip:port inside a network namespace and echoes each connection's first message.
class TcpEchoServer {
 public:
  Status start(const std::string& netnsPath, const std::string& ip, int port) {
    thread_ = std::thread([this, netnsPath, ip, port] {
      Status status = netns::runInNetworkNamespace(netnsPath, [&]() -> Status {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        ::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
        if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0) {
          ::close(fd);
          ready_ = -1;
          return failErrno("bind/listen " + ip);
        }
        listenFd_ = fd;
        ready_ = 1;
        while (!stopping_) {
          int conn = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
          if (conn < 0) break;
          char buf[256];
          ssize_t n = ::read(conn, buf, sizeof buf);
          if (n > 0) (void)!::write(conn, buf, n);
          ::close(conn);
        }
        return {};
      });
      if (!status) ready_ = -1;
    });
    while (ready_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (ready_ < 0) {
      thread_.join();
      return fail(EIO, "echo server on " + ip + " did not start");
    }
    return {};
  }
  void stop() {
    if (!thread_.joinable()) return;
    stopping_ = true;
    ::shutdown(listenFd_, SHUT_RDWR);  // wakes accept()
    thread_.join();
    ::close(listenFd_);
  }
  ~TcpEchoServer() { stop(); }

 private:
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> listenFd_{-1};
  std::atomic<int> ready_{0};  // 1 listening, -1 failed
};

// Connects from inside `netnsPath` to ip:port, sends `message` and returns the reply.
inline Result<std::string> tcpRoundTrip(const std::string& netnsPath, const std::string& ip, int port,
                                        const std::string& message) {
  std::string reply;
  Status status = netns::runInNetworkNamespace(netnsPath, [&]() -> Status {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval timeout{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    ::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      int err = errno;
      ::close(fd);
      return failErrno("connect " + ip, err);
    }
    (void)!::write(fd, message.data(), message.size());
    char buf[256];
    ssize_t n = ::read(fd, buf, sizeof buf);
    ::close(fd);
    if (n <= 0) return fail(EIO, "no reply from " + ip);
    reply.assign(buf, n);
    return {};
  });
  if (!status) return fail(status.error());
  return reply;
}

}  // namespace ferry::testing
