// A small HTTP/1.1 client on Beast + OpenSSL: one connection, requests sent one after
// another on it (keep-alive), bodies streamed to a callback. It is meant to replace
// libcurl in the ferry binary: curl and the ~24 libraries only it pulls in are 4.1 MB
// of every ferry process's RSS (bench/RESULTS.md, footprint session 8), while Beast and
// OpenSSL are already there for the API server.
//
// Not thread-safe: one caller at a time per connection (pools are the users' business).
#pragma once

#include "api/error.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::http {

// "http://host:port/..." or "https://...", split. IPv6 hosts in brackets.
struct Url {
  bool tls = false;
  std::string host;  // without brackets
  std::string port;  // "80"/"443" when the URL has none
  std::string target = "/";
};
Result<Url> parseUrl(const std::string& url);

struct TlsOptions {
  std::string caPem;   // trust only this CA when set...
  std::string caFile;  // ...or this file; else the system's default trust store
  std::string clientCertPem, clientKeyPem;  // client certificate authentication (optional)
};

struct Request {
  std::string method = "GET";
  std::string target = "/";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // sent with Content-Length when non-empty or when the method is POST/PUT/PATCH
};

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;                            // when no body callback was given
};

// Called with each piece of the body as it arrives; returning false aborts the exchange
// (the connection is then not reusable).
using BodySink = std::function<bool(std::string_view)>;

class Connection {
 public:
  // Connects (and handshakes, for https) to the URL's host and port within `connectTimeout`.
  static Result<std::unique_ptr<Connection>> open(const Url& url, const TlsOptions& tls,
                                                  std::chrono::milliseconds connectTimeout);
  ~Connection();

  // How one exchange runs.
  struct Options {
    std::chrono::milliseconds timeout{0};      // for the whole exchange; 0: no limit
    std::chrono::milliseconds idleTimeout{0};  // longest wait for any progress; 0: no limit
    const BodySink* sink = nullptr;            // the body goes here instead of Response::body
    // Called once the status and headers are in, before any of the body reaches the sink.
    std::function<void(const Response&)> onHeader;
    // Checked every 250 ms; a stop ends the exchange with ECANCELED (watch streams).
    const std::atomic<bool>* stop = nullptr;
    std::size_t maxBodyBytes = 64 << 20;  // without a sink; over it fails with EFBIG
  };

  // Sends `request` and reads the whole response. A HEAD response has no body.
  Result<Response> exchange(const Request& request, const Options& options);

  // False after a transport failure, an aborted body or a response that ends the connection.
  bool reusable() const;
  // How many exchanges this connection has completed.
  int exchanges() const;

  struct Impl;

 private:
  explicit Connection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::http
