#include "controlplane-lite/etcd_client.h"

#include <curl/curl.h>

#include <chrono>
#include <mutex>
#include <thread>

#include <fmt/format.h>

namespace ferry::cp {
namespace {

std::size_t appendBody(char* data, std::size_t size, std::size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

void initCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

std::int64_t etcdInt(const nlohmann::json& object, const char* field) {
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) return 0;
  if (it->is_string()) return std::stoll(it->get<std::string>());
  if (it->is_number()) return it->get<std::int64_t>();
  return 0;
}

Result<std::unique_ptr<EtcdClient>> EtcdClient::connect(const std::vector<std::string>& endpoints) {
  if (endpoints.empty()) return fail(EINVAL, "etcd: no endpoint");
  initCurlOnce();
  std::unique_ptr<EtcdClient> client(new EtcdClient());
  for (const auto& endpoint : endpoints) {
    if (endpoint.empty() || endpoint.find('/') != std::string::npos) {
      return fail(EINVAL, "etcd endpoint \"" + endpoint + "\": expected host:port");
    }
    client->endpoints_.push_back("http://" + endpoint);
  }
  return client;
}

EtcdClient::~EtcdClient() {
  for (void* handle : idleHandles_) curl_easy_cleanup(static_cast<CURL*>(handle));
}

std::string EtcdClient::currentEndpoint() const { return endpoints_[current_.load() % endpoints_.size()]; }

void EtcdClient::endpointFailed(const std::string& endpoint) {
  std::size_t seen = current_.load();
  if (endpoints_[seen % endpoints_.size()] == endpoint) current_.compare_exchange_strong(seen, seen + 1);
}

void* EtcdClient::takeHandle() {
  {
    std::lock_guard lock(handlesMutex_);
    if (!idleHandles_.empty()) {
      void* handle = idleHandles_.back();
      idleHandles_.pop_back();
      return handle;
    }
  }
  return curl_easy_init();
}

void EtcdClient::returnHandle(void* handle) {
  std::lock_guard lock(handlesMutex_);
  idleHandles_.push_back(handle);
}

Result<nlohmann::json> EtcdClient::call(const std::string& path, const nlohmann::json& request) {
  std::string body = request.dump();
  CURL* curl = static_cast<CURL*>(takeHandle());
  if (!curl) return fail(ENOMEM, "etcd " + path + ": curl_easy_init failed");
  struct Return {
    EtcdClient* client;
    CURL* curl;
    ~Return() { client->returnHandle(curl); }
  } giveBack{this, curl};

  // Each endpoint twice, with a short pause between rounds: a restarting etcd
  // member refuses connections for a moment.
  std::string lastError;
  for (std::size_t attempt = 0; attempt < endpoints_.size() * 2; ++attempt) {
    if (attempt > 0 && attempt % endpoints_.size() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::string endpoint = currentEndpoint();
    std::string url = endpoint + path;
    std::string response;
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, appendBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST) {
      lastError = fmt::format("{}: {}", endpoint, curl_easy_strerror(rc));
      endpointFailed(endpoint);
      continue;
    }
    if (rc != CURLE_OK) return fail(EIO, fmt::format("etcd {}{}: {}", endpoint, path, curl_easy_strerror(rc)));
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    nlohmann::json parsed = nlohmann::json::parse(response, nullptr, false);
    if (parsed.is_discarded()) {
      return fail(EIO, fmt::format("etcd {}{}: HTTP {} with a body that is not JSON", endpoint, path, status));
    }
    if (status != 200) {
      std::string message = parsed.value("message", parsed.value("error", std::string("unknown error")));
      int code = parsed.value("code", 0);
      // gRPC OutOfRange: the revision asked for is compacted.
      return fail(code == 11 ? ERANGE : EIO, fmt::format("etcd {}: {}", path, message));
    }
    return parsed;
  }
  return fail(ECONNREFUSED, "etcd " + path + ": no endpoint reachable (last: " + lastError + ")");
}

}  // namespace ferry::cp
