// `ferry server --no-agent` as a child process on 127.0.0.1 for process-level
// API server tests (HA on etcd, kill -9 on SQLite), and a small HTTPS client
// that talks to it with the admin certificate of its data dir.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <sys/types.h>
#include <vector>

namespace ferry::e2e {

int freeLoopbackPort();

class ServerProcess {
 public:
  // `dataDir` is created when missing; `datastore` is "sqlite" or "etcd://...".
  ServerProcess(std::string binary, std::filesystem::path dataDir, std::string datastore);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;

  // Starts (or restarts on the same data dir and port) and waits until /readyz answers.
  // Returns an error message, or empty on success.
  std::string start(std::chrono::seconds timeout = std::chrono::seconds(90));
  // Flags added to every later start (e.g. --token-file to join a cluster).
  void setExtraArgs(std::vector<std::string> args) { extraArgs_ = std::move(args); }
  void kill9();  // SIGKILL, reaped
  void stop();   // SIGTERM, then SIGKILL after 10 s
  bool running() const { return pid_ > 0; }

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  const std::filesystem::path& dataDir() const { return dataDir_; }
  std::string log() const;  // everything the process wrote, all starts
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_); }

 private:
  std::string binary_;
  std::filesystem::path dataDir_;
  std::string datastore_;
  std::vector<std::string> extraArgs_;
  int port_;
  pid_t pid_ = -1;
};

struct HttpReply {
  long status = 0;       // 0: no HTTP answer (connection refused, reset, timeout)
  std::string body;
  std::string error;     // libcurl's message when status is 0
};

// One connection (keep-alive) to one server with the admin client certificate
// found in `certDir`/tls. Not thread-safe: one per thread.
class ApiClient {
 public:
  ApiClient(const std::filesystem::path& certDir, std::string baseUrl, long timeoutMs = 10000);
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;

  HttpReply request(const std::string& method, const std::string& path, const std::string& body = {},
                    const std::string& contentType = "application/json");
  HttpReply get(const std::string& path) { return request("GET", path); }
  HttpReply post(const std::string& path, const std::string& body) { return request("POST", path, body); }

 private:
  void* curl_;
  std::string base_, ca_, cert_, key_;
  long timeoutMs_;
};

// Writers that each alternate, as fast as their server answers, between creating a
// new ConfigMap <prefix>-<w>-<n> {n} and a merge patch of their own <prefix>-counter-<w> to {n},
// and remember what the server acknowledged (201 / 200).
class WriteLoad {
 public:
  explicit WriteLoad(std::string prefix = "load") : prefix_(std::move(prefix)) {}
  ~WriteLoad() { stop(); }
  void start(const std::vector<ServerProcess*>& targets, int writersPerServer);
  void stop();
  std::size_t acknowledged();  // creates + updates
  std::size_t refused() const { return refused_; }  // errors and unanswered requests

  // What the store lost, read now through `client` (one line per lost write: an
  // acknowledged ConfigMap missing or holding other data, a counter behind its last
  // acknowledged value). Empty: nothing lost.
  std::vector<std::string> lostWrites(ApiClient& client);

 private:
  struct Writer {
    std::vector<int> created;  // n of every acknowledged <prefix>-<w>-<n>
    int counter = -1;          // last acknowledged value of <prefix>-counter-<w>
  };
  void write(ServerProcess& server, int index);

  std::string prefix_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> refused_{0};
  std::mutex mutex_;
  std::vector<Writer> writers_;
  std::vector<std::thread> threads_;
};

}  // namespace ferry::e2e
