// The agent's HTTPS client to the API server (http::Connection, Beast + OpenSSL): plain
// requests for registration and status, and long-lived watch streams.
#pragma once

#include "api/error.h"
#include "api/object.h"
#include "controlplane-lite/http_client.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ferry::agent {

struct Credentials {
  std::string server;         // https://host:port
  std::string caPem;          // cluster CA
  std::string clientCertPem;  // client certificate auth...
  std::string clientKeyPem;
  std::string bearerToken;    // ...or a bearer token
};

// Reads the first cluster and user of a kubeconfig (embedded *-data fields or file paths).
Result<Credentials> loadKubeconfig(const std::string& path);

// HTTP failures map to errno-style codes: 404 ENOENT, 409 AlreadyExists EEXIST,
// 409 Conflict ECANCELED, 410 ERANGE, 401/403 EACCES, 422 EINVAL, others EIO.
//
// Plain requests reuse persistent TLS connections: a small pool of idle connections,
// each kept alive between requests (a fresh TLS handshake cost 13-25 ms
// per request under load: every pod start, status PATCH and Event paid it). Any thread
// may call; a connection serves one request at a time. A connection whose request failed
// at the transport level is dropped, so the next request reconnects.
// Watches open a connection of their own for their whole life.
class ApiClient {
 public:
  explicit ApiClient(Credentials credentials);
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // Idle connections kept for reuse; a request beyond them opens a connection of its own
  // that is closed afterwards when the pool is full.
  static constexpr size_t kMaxIdleConnections = 6;

  Result<api::Json> get(const std::string& path);
  Result<api::Json> post(const std::string& path, const api::Json& body);
  Result<api::Json> put(const std::string& path, const api::Json& body);
  Result<api::Json> patch(const std::string& path, const api::Json& body,
                          const std::string& contentType = "application/merge-patch+json");
  Result<api::Json> remove(const std::string& path, const api::Json& body = api::Json::object());

  // Streams watch events (one JSON object per line) until `stop`, the server
  // closes the stream (returns success), or an error. A 410 or an ERROR event
  // with code 410 returns ERANGE: the caller must relist.
  Status watch(const std::string& path, const std::function<void(const std::string& type, const api::Json& object)>& onEvent,
               const std::atomic<bool>& stop);

  const std::string& server() const { return credentials_.server; }

  // Swaps the client certificate (a renewal) for every request and watch started from
  // now on; running watches keep the connection they have.
  void setClientCertificate(const std::string& certPem, const std::string& keyPem);
  // A copy of the credentials in use now.
  Credentials credentials() const;

 private:
  Result<api::Json> request(const std::string& method, const std::string& path, const std::string* body,
                            const std::string& contentType);
  // An idle pooled connection (`reused`) or a new one, and the credentials generation.
  Result<std::unique_ptr<http::Connection>> takeConnection(uint64_t& generation, bool& reused);
  // Back to the pool (or closed: pool full, not reusable, or credentials changed).
  void returnConnection(std::unique_ptr<http::Connection> connection, uint64_t generation);
  Result<std::unique_ptr<http::Connection>> connect();
  // The request target for an API path (the server URL may carry a path prefix).
  std::string targetFor(const std::string& path) const { return targetPrefix_ + path; }

  mutable std::mutex mu_;  // guards the certificate fields of credentials_, idle_, generation_
  Credentials credentials_;
  Result<http::Url> url_;      // credentials_.server, parsed once (it never changes)
  std::string targetPrefix_;   // its path, without the trailing '/'

  std::vector<std::unique_ptr<http::Connection>> idle_;  // most recently used last
  uint64_t generation_ = 0;  // bumped by setClientCertificate: older handles are closed
};

}  // namespace ferry::agent
