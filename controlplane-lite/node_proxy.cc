#include "controlplane-lite/node_proxy.h"

#include "api/log.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <poll.h>
#include <sys/socket.h>

#include <cstring>
#include <memory>

namespace ferry::cp {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

std::string nodeApiEndpoint(const api::Json& node) {
  std::string address;
  for (const auto& a : api::at<api::Json>(node, {"status", "addresses"}, api::Json::array()))
    if (a.value("type", "") == "InternalIP" && address.empty()) address = a.value("address", "");
  if (address.empty()) return {};
  auto port = api::at<api::Json>(node, {"status", "daemonEndpoints", "kubeletEndpoint", "Port"});
  int p = port.is_number_integer() ? port.get<int>() : 0;
  if (p <= 0 || p > 65535) p = 10250;
  return address + ":" + std::to_string(p);
}

Result<std::optional<ResponseHead>> parseResponseHead(std::string_view bytes) {
  auto end = bytes.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (bytes.size() > 64 * 1024) return fail(EPROTO, "response head larger than 64 KiB");
    return std::optional<ResponseHead>{};
  }
  ResponseHead head;
  head.size = end + 4;
  std::string_view text = bytes.substr(0, end);
  auto lineEnd = text.find("\r\n");
  std::string_view statusLine = text.substr(0, lineEnd);
  // "HTTP/1.1 200 OK"
  if (statusLine.substr(0, 7) != "HTTP/1." || statusLine.size() < 12 || statusLine[8] != ' ')
    return fail(EPROTO, "bad status line \"" + std::string(statusLine.substr(0, 80)) + "\"");
  int status = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    if (statusLine[i] < '0' || statusLine[i] > '9') return fail(EPROTO, "bad status code");
    status = status * 10 + (statusLine[i] - '0');
  }
  head.status = status;
  std::string_view rest = lineEnd == std::string_view::npos ? std::string_view() : text.substr(lineEnd + 2);
  while (!rest.empty()) {
    auto eol = rest.find("\r\n");
    std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return fail(EPROTO, "bad header line");
    std::string name(line.substr(0, colon));
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    head.headers[name] = std::string(value);
  }
  return std::optional<ResponseHead>{std::move(head)};
}

Result<std::string> ChunkedBodyDecoder::feed(std::string_view bytes) {
  buffer_.append(bytes);
  std::string out;
  while (!done_) {
    if (inData_) {
      std::size_t n = std::min(remaining_, buffer_.size());
      out.append(buffer_, 0, n);
      buffer_.erase(0, n);
      remaining_ -= n;
      if (remaining_ > 0 || buffer_.size() < 2) return out;
      if (buffer_.compare(0, 2, "\r\n") != 0) return fail(EPROTO, "chunk not followed by CRLF");
      buffer_.erase(0, 2);
      inData_ = false;
      continue;
    }
    auto eol = buffer_.find("\r\n");
    if (eol == std::string::npos) {
      if (buffer_.size() > 1024) return fail(EPROTO, "chunk size line too long");
      return out;
    }
    std::string line = buffer_.substr(0, std::min(eol, buffer_.find(';')));
    buffer_.erase(0, eol + 2);
    if (line.empty() || line.size() > 15) return fail(EPROTO, "bad chunk size \"" + line + "\"");
    std::size_t size = 0;
    for (char c : line) {
      int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
      if (v < 0) return fail(EPROTO, "bad chunk size \"" + line + "\"");
      size = size * 16 + static_cast<std::size_t>(v);
    }
    if (size == 0) {
      done_ = true;  // trailers, if any, are ignored
      return out;
    }
    remaining_ = size;
    inData_ = true;
  }
  return out;
}

namespace {

// One TLS connection to an agent. Used from one thread at a time.
class AgentConnection {
 public:
  AgentConnection(const PemPair& client, const std::string& caPem)
      : clientCert_(client), caPem_(caPem), tls_(ssl::context::tls_client) {
    SSL_CTX_set_min_proto_version(tls_.native_handle(), TLS1_2_VERSION);
  }

  Status connect(const std::string& endpoint, std::chrono::seconds timeout) {
    auto colon = endpoint.rfind(':');
    if (colon == std::string::npos) return fail(EINVAL, "node endpoint \"" + endpoint + "\"");
    boost::system::error_code ec;
    auto address = asio::ip::make_address(endpoint.substr(0, colon), ec);
    if (ec) return fail(EINVAL, "node address \"" + endpoint.substr(0, colon) + "\"");
    tcp::endpoint target(address, static_cast<unsigned short>(std::atoi(endpoint.c_str() + colon + 1)));
    try {
      tls_.use_certificate_chain(asio::buffer(clientCert_.certPem));
      tls_.use_private_key(asio::buffer(clientCert_.keyPem), ssl::context::pem);
    } catch (const std::exception& e) {
      return fail(EINVAL, std::string("client certificate: ") + e.what());
    }
    try {
      tls_.add_certificate_authority(asio::buffer(caPem_));
      tls_.set_verify_mode(ssl::verify_peer);
    } catch (const std::exception& e) {
      return fail(EINVAL, std::string("cluster CA: ") + e.what());
    }
    // The TLS session copies the context's certificate when it is made: after loading it.
    stream_ = std::make_unique<ssl::stream<tcp::socket>>(io_, tls_);
    // The agent must prove it is at the node's address (an IP SAN of its certificate).
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(stream_->native_handle()), endpoint.substr(0, colon).c_str()) != 1)
      return fail(EINVAL, "node address \"" + endpoint.substr(0, colon) + "\" for certificate checks");
    auto& socket = stream_->next_layer();
    socket.open(target.protocol(), ec);
    if (ec) return fail(ec.value(), "socket: " + ec.message());
    socket.non_blocking(true, ec);
    socket.connect(target, ec);
    if (ec == asio::error::in_progress || ec == asio::error::would_block) {
      pollfd p{socket.native_handle(), POLLOUT, 0};
      int ready = ::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(timeout).count()));
      if (ready <= 0) return fail(ETIMEDOUT, "connect to " + endpoint + ": timed out");
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return fail(err, "connect to " + endpoint + ": " + std::strerror(err));
      ec = {};
    }
    if (ec) return fail(ec.value(), "connect to " + endpoint + ": " + ec.message());
    socket.non_blocking(false, ec);
    socket.set_option(tcp::no_delay(true), ec);
    timeval handshakeTimeout{static_cast<long>(timeout.count()), 0};
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &handshakeTimeout, sizeof handshakeTimeout);
    timeval sendTimeout{60, 0};
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, sizeof sendTimeout);
    stream_->handshake(ssl::stream_base::client, ec);
    if (long verdict = SSL_get_verify_result(stream_->native_handle()); ec && verdict != X509_V_OK)
      return fail(EKEYREJECTED,
                  fmt::format("the agent's serving certificate at {} is not trusted: {} (it must be signed by the "
                              "cluster CA for the node's address {})",
                              endpoint, X509_verify_cert_error_string(verdict), endpoint.substr(0, colon)));
    if (ec) return fail(EPROTO, "TLS handshake with " + endpoint + ": " + ec.message());
    return {};
  }

  bool write(std::string_view bytes) {
    boost::system::error_code ec;
    asio::write(*stream_, asio::buffer(bytes.data(), bytes.size()), ec);
    return !ec;
  }

  int fd() { return stream_ ? stream_->next_layer().native_handle() : -1; }

  // >0 bytes, 0 nothing now, -1 end or error (see UpgradedConnection::readAvailable).
  long readAvailable(char* buffer, std::size_t size) {
    boost::system::error_code ec;
    stream_->next_layer().non_blocking(true, ec);
    std::size_t n = stream_->read_some(asio::buffer(buffer, size), ec);
    boost::system::error_code ignored;
    stream_->next_layer().non_blocking(false, ignored);
    if (ec == asio::error::would_block || ec == asio::error::try_again) return 0;
    if (ec) return -1;
    return static_cast<long>(n);
  }

  // Waits up to `timeout` for input and reads what is there: >0, 0 (nothing yet), -1.
  long readWithin(char* buffer, std::size_t size, std::chrono::milliseconds timeout) {
    long n = readAvailable(buffer, size);
    if (n != 0) return n;
    pollfd p{fd(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(timeout.count()));
    return readAvailable(buffer, size);
  }

  void close() {
    if (!stream_) return;
    boost::system::error_code ec;
    stream_->next_layer().shutdown(tcp::socket::shutdown_both, ec);
    stream_->next_layer().close(ec);
  }

 private:
  PemPair clientCert_;
  std::string caPem_;
  asio::io_context io_;
  ssl::context tls_;
  std::unique_ptr<ssl::stream<tcp::socket>> stream_;
};

HttpResponse unreachable(const std::string& endpoint, const std::string& why) {
  return statusResponse(503, "ServiceUnavailable", fmt::format("the node API at {} cannot be reached: {}", endpoint, why));
}

struct Opened {
  std::shared_ptr<AgentConnection> conn;
  ResponseHead head;
  std::string leftover;  // bytes after the head
};

Result<Opened> openRequest(const PemPair& client, const std::string& caPem, const std::string& endpoint,
                           const std::string& request, std::chrono::seconds timeout) {
  auto conn = std::make_shared<AgentConnection>(client, caPem);
  if (auto st = conn->connect(endpoint, std::chrono::seconds(10)); !st) return fail(st.error());
  if (!conn->write(request)) return fail(EIO, "sending the request to " + endpoint);
  std::string buffered;
  char buf[16 * 1024];
  auto deadline = Clock::now() + timeout;
  while (true) {
    auto head = parseResponseHead(buffered);
    if (!head) return fail(head.error());
    if (*head) {
      Opened o{conn, std::move(**head), buffered.substr((*head)->size)};
      return o;
    }
    if (Clock::now() > deadline) return fail(ETIMEDOUT, "no answer from " + endpoint);
    long n = conn->readWithin(buf, sizeof buf, std::chrono::milliseconds(200));
    if (n < 0) return fail(EIO, "the node API at " + endpoint + " closed the connection");
    buffered.append(buf, static_cast<std::size_t>(std::max(0L, n)));
  }
}

// Reads a whole (small) body after the head.
Result<std::string> readBody(Opened& o, std::chrono::seconds timeout, std::size_t maxBytes) {
  bool chunked = o.head.headers["transfer-encoding"].find("chunked") != std::string::npos;
  std::optional<std::size_t> length;
  if (auto it = o.head.headers.find("content-length"); it != o.head.headers.end())
    length = static_cast<std::size_t>(std::strtoull(it->second.c_str(), nullptr, 10));
  ChunkedBodyDecoder decoder;
  std::string body;
  auto take = [&](std::string_view bytes) -> Status {
    if (chunked) {
      auto part = decoder.feed(bytes);
      if (!part) return fail(part.error());
      body += *part;
    } else {
      body.append(bytes);
    }
    if (body.size() > maxBytes) return fail(EFBIG, "answer larger than " + std::to_string(maxBytes) + " bytes");
    return {};
  };
  if (auto st = take(o.leftover); !st) return fail(st.error());
  auto deadline = Clock::now() + timeout;
  char buf[16 * 1024];
  while (!(chunked ? decoder.done() : (length && body.size() >= *length))) {
    if (Clock::now() > deadline) return fail(ETIMEDOUT, "reading the answer timed out");
    long n = o.conn->readWithin(buf, sizeof buf, std::chrono::milliseconds(200));
    if (n < 0) {
      if (!chunked && !length) break;  // body ends with the connection
      return fail(EIO, "the connection closed early");
    }
    if (auto st = take(std::string_view(buf, static_cast<std::size_t>(std::max(0L, n)))); !st) return fail(st.error());
  }
  if (length && body.size() > *length) body.resize(*length);
  return body;
}

}  // namespace

NodeProxy::NodeProxy(PemPair clientCertificate, std::string clusterCaPem)
    : client_(std::move(clientCertificate)), caPem_(std::move(clusterCaPem)) {}

Result<std::string> NodeProxy::get(const std::string& endpoint, const std::string& path, std::chrono::seconds timeout) {
  std::string request = fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n", path, endpoint);
  auto opened = openRequest(client_, caPem_, endpoint, request, timeout);
  if (!opened) return fail(opened.error());
  auto body = readBody(*opened, timeout, 32u << 20);
  opened->conn->close();
  if (!body) return fail(body.error().wrap("GET " + path + " from " + endpoint));
  if (opened->head.status != 200)
    return fail(EIO, fmt::format("GET {} from {}: HTTP {}: {}", path, endpoint, opened->head.status, body->substr(0, 200)));
  return body;
}

HttpResponse NodeProxy::proxy(const std::string& endpoint, const HttpRequest& original, const std::string& pathAndQuery) {
  std::string request = fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\n", pathAndQuery, endpoint);
  bool upgrade = !original.header("upgrade").empty();
  if (upgrade) {
    for (const char* h : {"upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol"})
      if (auto v = original.header(h); !v.empty()) request += fmt::format("{}: {}\r\n", h, v);
  } else {
    request += "Connection: close\r\n";
  }
  request += "\r\n";
  auto opened = openRequest(client_, caPem_, endpoint, request, std::chrono::seconds(30));
  if (!opened && opened.error().code == EKEYREJECTED)
    return statusResponse(502, "BadGateway", opened.error().message);
  if (!opened) return unreachable(endpoint, opened.error().message);

  if (opened->head.status == 101) {
    HttpResponse r;
    r.status = 101;
    for (const auto& [name, display] : {std::pair{"upgrade", "Upgrade"}, std::pair{"connection", "Connection"},
                                        std::pair{"sec-websocket-accept", "Sec-WebSocket-Accept"},
                                        std::pair{"sec-websocket-protocol", "Sec-WebSocket-Protocol"}})
      if (auto it = opened->head.headers.find(name); it != opened->head.headers.end()) r.headers.push_back({display, it->second});
    auto conn = opened->conn;
    std::string leftover = opened->leftover;
    // Both directions from this one thread: neither TLS stream may be used by two at once.
    r.upgrade = [conn, leftover](UpgradedConnection& client) {
      if (!leftover.empty() && !client.write(leftover)) return;
      std::vector<char> buf(32 * 1024);
      while (true) {
        pollfd fds[2] = {{client.pollFd(), POLLIN, 0}, {conn->fd(), POLLIN, 0}};
        if (::poll(fds, 2, 200) < 0 && errno != EINTR) break;
        bool open = true;
        while (open) {
          long n = client.readAvailable(buf.data(), buf.size());
          if (n < 0) open = false;
          if (n <= 0) break;
          if (!conn->write(std::string_view(buf.data(), static_cast<std::size_t>(n)))) open = false;
        }
        while (open) {
          long n = conn->readAvailable(buf.data(), buf.size());
          if (n < 0) open = false;
          if (n <= 0) break;
          if (!client.write(std::string_view(buf.data(), static_cast<std::size_t>(n)))) open = false;
        }
        if (!open) break;
      }
      conn->close();
    };
    return r;
  }

  if (opened->head.status != 200) {
    auto body = readBody(*opened, std::chrono::seconds(10), 1u << 20);
    opened->conn->close();
    HttpResponse r;
    r.status = opened->head.status;
    r.contentType = opened->head.headers.count("content-type") ? opened->head.headers["content-type"] : "application/json";
    r.body = body ? *body : std::string();
    if (r.contentType.find("json") == std::string::npos || r.body.empty())
      return statusResponse(r.status, r.status == 404 ? "NotFound" : "InternalError",
                            r.body.empty() ? fmt::format("the node API answered {}", r.status) : r.body);
    return r;
  }

  HttpResponse r;
  r.contentType = opened->head.headers.count("content-type") ? opened->head.headers["content-type"] : "text/plain";
  auto conn = opened->conn;
  auto head = opened->head;
  std::string leftover = opened->leftover;
  r.stream = [conn, head, leftover](ResponseStream& out) mutable {
    bool chunked = head.headers["transfer-encoding"].find("chunked") != std::string::npos;
    ChunkedBodyDecoder decoder;
    auto pass = [&](std::string_view bytes) {
      if (!chunked) return out.write(bytes);
      auto part = decoder.feed(bytes);
      if (!part) return false;
      return out.write(*part) && !decoder.done();
    };
    bool going = leftover.empty() || pass(leftover);
    std::vector<char> buf(32 * 1024);
    // Polls so that a client that went away (kubectl logs -f interrupted) ends the
    // agent's stream too instead of holding it open until the next line.
    while (going && !out.stopping()) {
      long n = conn->readWithin(buf.data(), buf.size(), std::chrono::milliseconds(200));
      if (n < 0) break;
      if (n > 0) going = pass(std::string_view(buf.data(), static_cast<std::size_t>(n)));
    }
    conn->close();
  };
  return r;
}

}  // namespace ferry::cp
