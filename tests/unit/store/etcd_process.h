// A real etcd on 127.0.0.1 for tests: random free ports, a temp data dir,
// killed by PID when the object goes away.
#pragma once

#include <filesystem>
#include <string>
#include <sys/types.h>

namespace ferry::cp::testing {

class EtcdProcess {
 public:
  static constexpr const char* kBinary = "/usr/bin/etcd";
  static bool available();

  EtcdProcess();
  ~EtcdProcess();
  EtcdProcess(const EtcdProcess&) = delete;

  // Starts etcd and waits until it answers; false (with `error()`) when it does not.
  // After stop(), start() brings it back on the same ports with the same data.
  bool start();
  void stop();
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(clientPort_); }
  const std::string& error() const { return error_; }

 private:
  std::filesystem::path dir_;
  int clientPort_ = 0;
  int peerPort_ = 0;
  pid_t pid_ = -1;
  std::string error_;
};

}  // namespace ferry::cp::testing
