#include "tests/unit/store/etcd_process.h"

#include "tests/unit/store/store_fixture.h"

#include <arpa/inet.h>
#include <csignal>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

namespace ferry::cp::testing {
namespace {

int freeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

bool answers(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

}  // namespace

bool EtcdProcess::available() { return access(kBinary, X_OK) == 0; }

EtcdProcess::EtcdProcess() : dir_(makeTempDir("store-etcd")) {}

EtcdProcess::~EtcdProcess() {
  stop();
  std::filesystem::remove_all(dir_);
}

bool EtcdProcess::start() {
  // A restart keeps the ports (and the data dir): clients reconnect to the same address.
  if (clientPort_ == 0) clientPort_ = freeLoopbackPort();
  if (peerPort_ == 0) peerPort_ = freeLoopbackPort();
  std::string client = "http://127.0.0.1:" + std::to_string(clientPort_);
  std::string peer = "http://127.0.0.1:" + std::to_string(peerPort_);
  std::string data = (dir_ / "data").string();
  std::string logPath = (dir_ / "etcd.log").string();
  std::vector<std::string> args = {kBinary,
                                   "--name", "ferry-test",
                                   "--data-dir", data,
                                   "--listen-client-urls", client,
                                   "--advertise-client-urls", client,
                                   "--listen-peer-urls", peer,
                                   "--initial-advertise-peer-urls", peer,
                                   "--initial-cluster", "ferry-test=" + peer,
                                   "--log-level", "warn"};
  pid_ = fork();
  if (pid_ < 0) {
    error_ = "fork failed";
    return false;
  }
  if (pid_ == 0) {
    int log = open(logPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (log >= 0) {
      dup2(log, 1);
      dup2(log, 2);
    }
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    execv(kBinary, argv.data());
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      std::ifstream log(logPath);
      error_ = "etcd exited early: " + std::string(std::istreambuf_iterator<char>(log), {});
      return false;
    }
    if (answers(clientPort_)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  error_ = "etcd did not listen on " + client + " within 30 s";
  return false;
}

void EtcdProcess::stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

}  // namespace ferry::cp::testing
