// A small HTTPS/1.1 server (Boost.Beast + OpenSSL, TLS 1.2+): one thread per
// connection, keep-alive, chunked streaming responses for watch and logs, and
// connection takeover for protocol upgrades (exec). Client certificates are
// verified against the cluster CA and handed to the handler; whether a request
// is allowed is the handler's business.
#pragma once

#include "api/error.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::cp {

struct HttpRequest {
  std::string method;
  std::string target;    // as sent: path?query
  std::string path;      // percent-decoded path
  std::map<std::string, std::string> query;  // decoded; last value wins
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  // Set when the client presented a certificate the cluster CA signed.
  bool clientCertVerified = false;
  std::string clientCertCommonName;
  std::vector<std::string> clientCertOrganizations;
  std::string peerAddress;

  std::string header(const std::string& lowerName) const;
  std::string param(const std::string& name) const;
  bool hasParam(const std::string& name) const { return query.count(name) > 0; }
};

// Sink for a chunked response; write returns false once the client is gone.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;
  virtual bool write(std::string_view chunk) = 0;
  // True when the server is shutting down; long streams should end.
  virtual bool stopping() const = 0;
};

// A raw bidirectional byte stream handed to an upgrade handler (after the 101 was written).
class UpgradedConnection {
 public:
  virtual ~UpgradedConnection() = default;
  // Reads some bytes; 0 at end of stream or error.
  virtual std::size_t read(char* buffer, std::size_t size) = 0;
  virtual bool write(std::string_view bytes) = 0;
  // For relays that serve both directions from one thread (a TLS stream must not be read
  // and written from two threads at once): the socket to poll() for input, and a read
  // that does not block — >0 bytes, 0 when nothing is available now, -1 at end or error.
  virtual int pollFd() const { return -1; }
  virtual long readAvailable(char* buffer, std::size_t size) { return -1; }
};

struct HttpResponse {
  int status = 200;
  std::string contentType = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // When set, the body is streamed chunked from this function instead of `body`.
  std::function<void(ResponseStream&)> stream;
  // When set (with status 101), the connection is handed over after the headers.
  std::function<void(UpgradedConnection&)> upgrade;
};

using HttpHandler = std::function<HttpResponse(HttpRequest&)>;

struct HttpsServerOptions {
  std::string listen = "127.0.0.1:6443";  // host:port; port 0 picks one
  std::string certPem;
  std::string keyPem;
  std::string clientCaPem;
  std::size_t maxBodyBytes = 3 * 1024 * 1024;  // larger bodies get 413
};

class HttpsServer {
 public:
  virtual ~HttpsServer() = default;
  virtual int port() const = 0;
  // Stops accepting and asks streams to end; returns once the acceptor is closed.
  virtual void stop() = 0;
};

Result<std::unique_ptr<HttpsServer>> startHttpsServer(const HttpsServerOptions& options, HttpHandler handler);

// Percent-decoding and query parsing, exposed for tests.
std::string percentDecode(std::string_view in, bool plusIsSpace);
std::map<std::string, std::string> parseQuery(std::string_view query);

}  // namespace ferry::cp
