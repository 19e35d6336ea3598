#include "tests/e2e/apiserver/server_process.h"

#include <arpa/inet.h>
#include <csignal>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <mutex>
#include <thread>

namespace fs = std::filesystem;

namespace ferry::e2e {

int freeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

ServerProcess::ServerProcess(std::string binary, fs::path dataDir, std::string datastore)
    : binary_(std::move(binary)), dataDir_(std::move(dataDir)), datastore_(std::move(datastore)),
      port_(freeLoopbackPort()) {
  fs::create_directories(dataDir_);
}

ServerProcess::~ServerProcess() { stop(); }

std::string ServerProcess::log() const {
  std::ifstream in(dataDir_.string() + ".log");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string ServerProcess::start(std::chrono::seconds timeout) {
  if (pid_ > 0) return "already running";
  std::vector<std::string> args = {binary_, "server", "--no-agent", "--data-dir", dataDir_.string(),
                                   "--listen", "127.0.0.1:" + std::to_string(port_),
                                   "--advertise-address", "127.0.0.1", "--datastore", datastore_};
  args.insert(args.end(), extraArgs_.begin(), extraArgs_.end());
  std::string logFile = dataDir_.string() + ".log";
  pid_ = ::fork();
  if (pid_ == 0) {
    int fd = ::open(logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  if (pid_ < 0) return "fork failed";
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return "ferry server exited during start:\n" + log();
    }
    if (fs::exists(dataDir_ / "tls" / "admin.key")) {
      ApiClient client(dataDir_, url(), 2000);
      if (client.get("/readyz").status == 200) return {};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return "ferry server did not answer /readyz in time:\n" + log();
}

void ServerProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void ServerProcess::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill9();
}

namespace {

std::size_t appendBody(char* data, std::size_t size, std::size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

}  // namespace

namespace {
CURL* newCurlHandle() {
  // curl_global_init is not thread-safe; the first client pays for it under a once-flag.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  return curl_easy_init();
}
}  // namespace

ApiClient::ApiClient(const fs::path& certDir, std::string baseUrl, long timeoutMs)
    : curl_(newCurlHandle()),
      base_(std::move(baseUrl)),
      ca_((certDir / "tls" / "ca.crt").string()),
      cert_((certDir / "tls" / "admin.crt").string()),
      key_((certDir / "tls" / "admin.key").string()),
      timeoutMs_(timeoutMs) {}

ApiClient::~ApiClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpReply ApiClient::request(const std::string& method, const std::string& path, const std::string& body,
                             const std::string& contentType) {
  CURL* c = static_cast<CURL*>(curl_);
  HttpReply reply;
  curl_easy_reset(c);
  std::string url = base_ + path;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CAINFO, ca_.c_str());
  curl_easy_setopt(c, CURLOPT_SSLCERT, cert_.c_str());
  curl_easy_setopt(c, CURLOPT_SSLKEY, key_.c_str());
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeoutMs_);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, appendBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply.body);
  curl_slist* headers = curl_slist_append(nullptr, ("Content-Type: " + contentType).c_str());
  headers = curl_slist_append(headers, "Accept: application/json");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  if (!body.empty() || method == "POST" || method == "PUT") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    reply.error = curl_easy_strerror(rc);
    reply.body.clear();
    return reply;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply.status);
  return reply;
}

void WriteLoad::start(const std::vector<ServerProcess*>& targets, int writersPerServer) {
  std::lock_guard lock(mutex_);
  int index = static_cast<int>(writers_.size());
  writers_.resize(writers_.size() + targets.size() * writersPerServer);
  for (ServerProcess* server : targets)
    for (int w = 0; w < writersPerServer; ++w, ++index) threads_.emplace_back([this, server, index] { write(*server, index); });
}

void WriteLoad::stop() {
  stopping_ = true;
  for (auto& t : threads_) t.join();
  threads_.clear();
}

std::size_t WriteLoad::acknowledged() {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (auto& w : writers_) n += w.created.size() + (w.counter + 1);
  return n;
}

void WriteLoad::write(ServerProcess& server, int index) {
  using nlohmann::json;
  ApiClient client(server.dataDir(), server.url(), 5000);
  auto pause = [&](const HttpReply& reply) {
    ++refused_;
    // A dead server refuses at once: do not spin.
    if (reply.status == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  };
  std::string counter = fmt::format("{}-counter-{}", prefix_, index);
  while (!stopping_) {
    json cm = {{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", {{"name", counter}}}, {"data", {{"n", "-1"}}}};
    auto reply = client.post("/api/v1/namespaces/default/configmaps", cm.dump());
    if (reply.status == 201) break;
    pause(reply);
  }
  for (int n = 0; !stopping_; ++n) {
    json cm = {{"apiVersion", "v1"}, {"kind", "ConfigMap"},
               {"metadata", {{"name", fmt::format("{}-{}-{}", prefix_, index, n)}}}, {"data", {{"n", std::to_string(n)}}}};
    auto created = client.post("/api/v1/namespaces/default/configmaps", cm.dump());
    if (created.status == 201) {
      std::lock_guard lock(mutex_);
      writers_[index].created.push_back(n);
    } else {
      pause(created);
    }
    json patch = {{"data", {{"n", std::to_string(n)}}}};
    auto updated = client.request("PATCH", "/api/v1/namespaces/default/configmaps/" + counter, patch.dump(),
                                  "application/merge-patch+json");
    if (updated.status == 200) {
      std::lock_guard lock(mutex_);
      writers_[index].counter = n;
    } else {
      pause(updated);
    }
  }
}

std::vector<std::string> WriteLoad::lostWrites(ApiClient& client) {
  std::vector<std::string> lost;
  auto reply = client.get("/api/v1/namespaces/default/configmaps");
  nlohmann::json list = nlohmann::json::parse(reply.body, nullptr, false);
  if (reply.status != 200 || !list.is_object()) {
    lost.push_back(fmt::format("cannot list ConfigMaps: {} {}{}", reply.status, reply.body.substr(0, 200), reply.error));
    return lost;
  }
  std::map<std::string, std::string> stored;
  for (const auto& item : list.value("items", nlohmann::json::array()))
    stored[item["metadata"].value("name", "")] = item.value("data", nlohmann::json::object()).value("n", "");
  std::lock_guard lock(mutex_);
  for (std::size_t w = 0; w < writers_.size(); ++w) {
    for (int n : writers_[w].created) {
      std::string name = fmt::format("{}-{}-{}", prefix_, w, n);
      auto it = stored.find(name);
      if (it == stored.end()) lost.push_back("acknowledged create of " + name + ": missing");
      else if (it->second != std::to_string(n)) lost.push_back("acknowledged create of " + name + ": n=" + it->second);
    }
    int acked = writers_[w].counter;
    if (acked < 0) continue;
    auto it = stored.find(fmt::format("{}-counter-{}", prefix_, w));
    int value = it == stored.end() ? -2 : std::atoi(it->second.c_str());
    // The writer's next patch (n+1) may have been applied without its answer arriving.
    if (value != acked && value != acked + 1)
      lost.push_back(fmt::format("{}-counter-{}: last acknowledged {}, stored {}", prefix_, w, acked, value));
  }
  return lost;
}

}  // namespace ferry::e2e
