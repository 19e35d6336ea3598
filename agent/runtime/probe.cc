#include "agent/runtime/probe.h"

#include <fmt/format.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <thread>

namespace ferry::runtime {

namespace {

using Clock = std::chrono::steady_clock;

int remainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

// Connects to host:port before `deadline`; a socket or -1 with `error` set.
int connectTo(const std::string& host, int port, Clock::time_point deadline, std::string& error) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof *v4;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof *v6;
  } else {
    error = fmt::format("probe host \"{}\" is not an IP address", host);
    return -1;
  }
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = fmt::format("socket: {}", std::strerror(errno));
    return -1;
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0 && errno != EINPROGRESS) {
    error = fmt::format("dial tcp {}:{}: connect: {}", host, port, std::strerror(errno));
    close(fd);
    return -1;
  }
  pollfd p{fd, POLLOUT, 0};
  if (poll(&p, 1, remainingMs(deadline)) <= 0) {
    error = fmt::format("dial tcp {}:{}: i/o timeout", host, port);
    close(fd);
    return -1;
  }
  int soError = 0;
  socklen_t soLen = sizeof soError;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &soLen);
  if (soError != 0) {
    error = fmt::format("dial tcp {}:{}: connect: {}", host, port, std::strerror(soError));
    close(fd);
    return -1;
  }
  return fd;
}

// Runs `work` on a thread that has entered `netnsPath` (when given); setns is per thread.
ProbeOutcome inNetns(const std::string& netnsPath, const std::function<ProbeOutcome()>& work) {
  if (netnsPath.empty()) return work();
  ProbeOutcome outcome;
  std::thread t([&] {
    int fd = open(netnsPath.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
      outcome = {false, fmt::format("enter network namespace {}: {}", netnsPath, std::strerror(errno))};
      if (fd >= 0) close(fd);
      return;
    }
    close(fd);
    outcome = work();
    // The thread ends here, taking its namespace membership with it.
  });
  t.join();
  return outcome;
}

}  // namespace

ProbeOutcome probeTcp(const std::string& netnsPath, const std::string& host, int port, std::chrono::milliseconds timeout) {
  return inNetns(netnsPath, [&] {
    std::string error;
    int fd = connectTo(host, port, Clock::now() + timeout, error);
    if (fd < 0) return ProbeOutcome{false, error};
    close(fd);
    return ProbeOutcome{true, ""};
  });
}

ProbeOutcome probeHttpGet(const std::string& netnsPath, const std::string& scheme, const std::string& host, int port,
                          const std::string& path, const std::vector<std::pair<std::string, std::string>>& headers,
                          std::chrono::milliseconds timeout) {
  bool tls = scheme == "HTTPS" || scheme == "https";
  return inNetns(netnsPath, [&] {
    auto deadline = Clock::now() + timeout;
    std::string url = fmt::format("{}://{}:{}{}", tls ? "https" : "http", host, port, path);
    std::string error;
    int fd = connectTo(host, port, deadline, error);
    if (fd < 0) return ProbeOutcome{false, fmt::format("Get \"{}\": {}", url, error)};
    // From here on plain blocking I/O bounded by socket timeouts: simpler with TLS.
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    int left = std::max(1, remainingMs(deadline));
    timeval tv{left / 1000, (left % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

    SSL_CTX* ctx = nullptr;
    SSL* ssl = nullptr;
    auto cleanup = [&] {
      if (ssl) SSL_free(ssl);
      if (ctx) SSL_CTX_free(ctx);
      close(fd);
    };
    if (tls) {
      // The kubelet does not verify probe certificates either.
      ctx = SSL_CTX_new(TLS_client_method());
      ssl = ctx ? SSL_new(ctx) : nullptr;
      if (!ssl || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1) {
        cleanup();
        return ProbeOutcome{false, fmt::format("Get \"{}\": TLS handshake failed", url)};
      }
    }
    auto sendAll = [&](const std::string& data) {
      size_t sent = 0;
      while (sent < data.size()) {
        int n = tls ? SSL_write(ssl, data.data() + sent, static_cast<int>(data.size() - sent))
                    : static_cast<int>(send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL));
        if (n <= 0) return false;
        sent += n;
      }
      return true;
    };
    auto receive = [&](char* buf, int size) {
      return tls ? SSL_read(ssl, buf, size) : static_cast<int>(recv(fd, buf, size, 0));
    };

    std::string hostHeader = host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port)
                                                                 : fmt::format("{}:{}", host, port);
    bool userAgent = false, accept = false;
    std::string request = fmt::format("GET {} HTTP/1.1\r\n", path.empty() ? "/" : path);
    for (const auto& [k, v] : headers) {
      if (strcasecmp(k.c_str(), "Host") == 0) {
        hostHeader = v;
        continue;
      }
      userAgent |= strcasecmp(k.c_str(), "User-Agent") == 0;
      accept |= strcasecmp(k.c_str(), "Accept") == 0;
      request += k + ": " + v + "\r\n";
    }
    request += "Host: " + hostHeader + "\r\n";
    if (!userAgent) request += "User-Agent: kube-probe/1.31\r\n";
    if (!accept) request += "Accept: */*\r\n";
    request += "Connection: close\r\n\r\n";
    if (!sendAll(request)) {
      cleanup();
      return ProbeOutcome{false, fmt::format("Get \"{}\": write failed", url)};
    }
    std::string response;
    char buf[4096];
    while (response.find("\r\n") == std::string::npos && response.size() < 65536) {
      int n = receive(buf, sizeof buf);
      if (n <= 0) break;
      response.append(buf, n);
    }
    cleanup();
    int code = 0;
    if (response.empty())
      return ProbeOutcome{false, fmt::format("Get \"{}\": context deadline exceeded or connection closed", url)};
    if (std::sscanf(response.c_str(), "HTTP/%*d.%*d %d", &code) != 1)
      return ProbeOutcome{false, fmt::format("Get \"{}\": malformed HTTP response", url)};
    if (code >= 200 && code < 400) return ProbeOutcome{true, ""};
    return ProbeOutcome{false, fmt::format("HTTP probe failed with statuscode: {}", code)};
  });
}

}  // namespace ferry::runtime
