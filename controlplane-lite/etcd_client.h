// Unary calls to etcd v3 through its JSON gRPC gateway (`POST /v3/kv/range`
// etc., keys and values base64), over http::Connection (plain HTTP/1.1, kept-alive
// connections reused).
//
// Failover: requests go to one endpoint at a time; when it cannot be reached
// the client moves to the next one listed. Only connection failures are
// retried elsewhere: a request that may have reached etcd is never sent twice
// (a repeated create would report EEXIST for the client's own write).
#pragma once

#include "api/error.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ferry::http {
class Connection;
}

namespace ferry::cp {

class EtcdClient {
 public:
  // `endpoints`: "host:port" each, tried in order.
  static Result<std::unique_ptr<EtcdClient>> connect(const std::vector<std::string>& endpoints);
  ~EtcdClient();

  // POSTs `request` to `path` ("/v3/kv/range") and returns the response body.
  // Gateway errors become Error codes: OutOfRange (compacted) → ERANGE, others EIO.
  Result<nlohmann::json> call(const std::string& path, const nlohmann::json& request);

  // The base URL requests currently go to ("http://host:port").
  std::string currentEndpoint() const;
  // Moves on to the next endpoint when `endpoint` is still the current one.
  void endpointFailed(const std::string& endpoint);

 private:
  EtcdClient() = default;
  static constexpr std::size_t kMaxIdleConnections = 8;
  // A kept connection to `endpoint` (`reused`) or a new one.
  Result<std::unique_ptr<http::Connection>> takeConnection(const std::string& endpoint, bool& reused);
  void returnConnection(const std::string& endpoint, std::unique_ptr<http::Connection> connection);

  std::vector<std::string> endpoints_;
  std::atomic<std::size_t> current_{0};
  std::mutex connectionsMutex_;
  std::vector<std::pair<std::string, std::unique_ptr<http::Connection>>> idleConnections_;  // endpoint, connection
};

// etcd's JSON encodes int64 as strings and omits zero values.
std::int64_t etcdInt(const nlohmann::json& object, const char* field);

}  // namespace ferry::cp
