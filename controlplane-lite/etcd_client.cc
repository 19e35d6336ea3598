#include "controlplane-lite/etcd_client.h"

#include "controlplane-lite/http_client.h"

#include <chrono>
#include <mutex>
#include <thread>

#include <fmt/format.h>

namespace ferry::cp {
namespace {

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
  std::unique_ptr<EtcdClient> client(new EtcdClient());
  for (const auto& endpoint : endpoints) {
    if (endpoint.empty() || endpoint.find('/') != std::string::npos) {
      return fail(EINVAL, "etcd endpoint \"" + endpoint + "\": expected host:port");
    }
    client->endpoints_.push_back("http://" + endpoint);
  }
  return client;
}

EtcdClient::~EtcdClient() = default;

std::string EtcdClient::currentEndpoint() const { return endpoints_[current_.load() % endpoints_.size()]; }

void EtcdClient::endpointFailed(const std::string& endpoint) {
  std::size_t seen = current_.load();
  if (endpoints_[seen % endpoints_.size()] == endpoint) current_.compare_exchange_strong(seen, seen + 1);
}

Result<std::unique_ptr<http::Connection>> EtcdClient::takeConnection(const std::string& endpoint, bool& reused) {
  {
    std::lock_guard lock(connectionsMutex_);
    for (auto it = idleConnections_.rbegin(); it != idleConnections_.rend(); ++it) {
      if (it->first != endpoint) continue;
      auto connection = std::move(it->second);
      idleConnections_.erase(std::next(it).base());
      reused = true;
      return connection;
    }
  }
  reused = false;
  auto url = http::parseUrl(endpoint);
  if (!url) return fail(url.error());
  return http::Connection::open(*url, {}, std::chrono::milliseconds(2000));
}

void EtcdClient::returnConnection(const std::string& endpoint, std::unique_ptr<http::Connection> connection) {
  if (!connection->reusable()) return;
  std::lock_guard lock(connectionsMutex_);
  if (idleConnections_.size() < kMaxIdleConnections) idleConnections_.emplace_back(endpoint, std::move(connection));
}

Result<nlohmann::json> EtcdClient::call(const std::string& path, const nlohmann::json& request) {
  http::Request req{"POST", path, {{"Content-Type", "application/json"}}, request.dump()};
  // Each endpoint twice, with a short pause between rounds: a restarting etcd
  // member refuses connections for a moment.
  std::string lastError;
  for (std::size_t attempt = 0; attempt < endpoints_.size() * 2; ++attempt) {
    if (attempt > 0 && attempt % endpoints_.size() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::string endpoint = currentEndpoint();
    bool reused = false;
    auto connection = takeConnection(endpoint, reused);
    if (!connection) {
      lastError = fmt::format("{}: {}", endpoint, connection.error().message);
      endpointFailed(endpoint);
      continue;
    }
    auto response = (*connection)->exchange(req, {.timeout = std::chrono::milliseconds(15000)});
    returnConnection(endpoint, std::move(*connection));
    if (!response && reused && response.error().code == ECONNRESET) {
      // A kept connection etcd closed meanwhile (a restart): the request never reached it.
      --attempt;
      continue;
    }
    if (!response) return fail(EIO, fmt::format("etcd {}{}: {}", endpoint, path, response.error().message));
    int status = response->status;
    nlohmann::json parsed = nlohmann::json::parse(response->body, nullptr, false);
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
