#include "controlplane-lite/http_server.h"

#include "api/log.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <poll.h>

namespace ferry::cp {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

std::string HttpRequest::header(const std::string& lowerName) const {
  auto it = headers.find(lowerName);
  return it == headers.end() ? std::string() : it->second;
}

std::string HttpRequest::param(const std::string& name) const {
  auto it = query.find(name);
  return it == query.end() ? std::string() : it->second;
}

std::string percentDecode(std::string_view in, bool plusIsSpace) {
  auto hex = [](char h) -> int {
    if (h >= '0' && h <= '9') return h - '0';
    if (h >= 'a' && h <= 'f') return h - 'a' + 10;
    if (h >= 'A' && h <= 'F') return h - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%' && i + 2 < in.size()) {
      int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += (plusIsSpace && c == '+') ? ' ' : c;
  }
  return out;
}

std::map<std::string, std::string> parseQuery(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    auto eq = part.find('=');
    std::string key = percentDecode(part.substr(0, eq), true);
    std::string value = eq == std::string_view::npos ? std::string() : percentDecode(part.substr(eq + 1), true);
    out[key] = value;
  }
  return out;
}

namespace {

using SslStream = ssl::stream<tcp::socket>;

class ChunkedWriter : public ResponseStream {
 public:
  ChunkedWriter(SslStream& stream, const std::atomic<bool>& stopping) : stream_(stream), stopping_(stopping) {}
  bool write(std::string_view chunk) override {
    if (failed_) return false;
    if (chunk.empty()) return true;
    beast::error_code ec;
    asio::write(stream_, http::make_chunk(asio::buffer(chunk.data(), chunk.size())), ec);
    if (ec) failed_ = true;
    return !failed_;
  }
  // During a streamed response an HTTP/1.1 client sends nothing, so a readable or
  // hung-up socket means it went away.
  bool stopping() const override {
    if (stopping_.load() || failed_) return true;
    pollfd p{stream_.next_layer().native_handle(), POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR))) return true;
    return false;
  }
  bool failed() const { return failed_; }

 private:
  SslStream& stream_;
  const std::atomic<bool>& stopping_;
  bool failed_ = false;
};

long readSslNonBlocking(SslStream& stream, char* buffer, std::size_t size) {
  // The TLS engine decrypts what it already holds before it touches the socket, so
  // a would-block here means nothing is buffered either.
  beast::error_code ec;
  stream.next_layer().non_blocking(true, ec);
  std::size_t n = stream.read_some(asio::buffer(buffer, size), ec);
  beast::error_code ignored;
  stream.next_layer().non_blocking(false, ignored);
  if (ec == asio::error::would_block || ec == asio::error::try_again) return 0;
  if (ec) return -1;
  return static_cast<long>(n);
}

class RawConnection : public UpgradedConnection {
 public:
  RawConnection(SslStream& stream, beast::flat_buffer& leftover) : stream_(stream), leftover_(leftover) {}
  std::size_t read(char* buffer, std::size_t size) override {
    if (leftover_.size() > 0) {
      std::size_t n = asio::buffer_copy(asio::buffer(buffer, size), leftover_.data());
      leftover_.consume(n);
      return n;
    }
    beast::error_code ec;
    std::size_t n = stream_.read_some(asio::buffer(buffer, size), ec);
    return ec ? 0 : n;
  }
  bool write(std::string_view bytes) override {
    beast::error_code ec;
    asio::write(stream_, asio::buffer(bytes.data(), bytes.size()), ec);
    return !ec;
  }
  int pollFd() const override { return stream_.next_layer().native_handle(); }
  long readAvailable(char* buffer, std::size_t size) override {
    if (leftover_.size() > 0) return static_cast<long>(read(buffer, size));
    return readSslNonBlocking(stream_, buffer, size);
  }

 private:
  SslStream& stream_;
  beast::flat_buffer& leftover_;
};

void fillPeerIdentity(SslStream& stream, HttpRequest& req) {
  SSL* ssl = stream.native_handle();
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) return;
  if (SSL_get_verify_result(ssl) == X509_V_OK) {
    req.clientCertVerified = true;
    X509_NAME* subject = X509_get_subject_name(cert);
    for (int i = 0; i < X509_NAME_entry_count(subject); ++i) {
      X509_NAME_ENTRY* entry = X509_NAME_get_entry(subject, i);
      int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry));
      unsigned char* utf8 = nullptr;
      int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry));
      if (len < 0) continue;
      std::string value(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(len));
      OPENSSL_free(utf8);
      if (nid == NID_commonName) req.clientCertCommonName = value;
      if (nid == NID_organizationName) req.clientCertOrganizations.push_back(value);
    }
  }
  X509_free(cert);
}

class BeastHttpsServer : public HttpsServer {
 public:
  BeastHttpsServer(HttpsServerOptions options, HttpHandler handler)
      : options_(std::move(options)), handler_(std::move(handler)), tls_(ssl::context::tls_server), acceptor_(io_) {}

  ~BeastHttpsServer() override { stop(); }

  Status start() {
    try {
      tls_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
      SSL_CTX_set_min_proto_version(tls_.native_handle(), TLS1_2_VERSION);
      tls_.use_certificate_chain(asio::buffer(options_.certPem));
      tls_.use_private_key(asio::buffer(options_.keyPem), ssl::context::pem);
      if (!options_.clientCaPem.empty()) {
        tls_.add_certificate_authority(asio::buffer(options_.clientCaPem));
        // Ask for a client certificate but let token and anonymous clients in.
        tls_.set_verify_mode(ssl::verify_peer);
        tls_.set_verify_callback([](bool, ssl::verify_context&) { return true; });
      }
    } catch (const std::exception& e) {
      return fail(EINVAL, std::string("TLS setup: ") + e.what());
    }
    auto colon = options_.listen.rfind(':');
    if (colon == std::string::npos) return fail(EINVAL, "listen: want host:port, got \"" + options_.listen + "\"");
    std::string host = options_.listen.substr(0, colon);
    if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
    int port = std::atoi(options_.listen.c_str() + colon + 1);
    beast::error_code ec;
    auto address = asio::ip::make_address(host.empty() ? "0.0.0.0" : host, ec);
    if (ec) return fail(EINVAL, "listen: bad address \"" + host + "\"");
    tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return fail(ec.value(), "listen on " + options_.listen + ": " + ec.message());
    port_ = acceptor_.local_endpoint().port();
    acceptLoop();
    acceptThread_ = std::thread([this] { io_.run(); });
    return {};
  }

  int port() const override { return port_; }

  void stop() override {
    if (stopping_.exchange(true)) return;
    asio::post(io_, [this] {
      beast::error_code ec;
      acceptor_.close(ec);
    });
    io_.stop();
    if (acceptThread_.joinable()) acceptThread_.join();
    // Shut down open connections so that threads blocked in reads return.
    {
      std::lock_guard lock(mu_);
      for (auto* s : sockets_) {
        beast::error_code ec;
        s->shutdown(tcp::socket::shutdown_both, ec);
      }
    }
    std::unique_lock lock(mu_);
    drained_.wait_for(lock, std::chrono::seconds(5), [this] { return active_ == 0; });
  }

 private:
  void acceptLoop() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec || stopping_) return;
      {
        std::lock_guard lock(mu_);
        ++active_;
      }
      std::thread([this, s = std::move(socket)]() mutable { serveConnection(std::move(s)); }).detach();
      acceptLoop();
    });
  }

  void serveConnection(tcp::socket socket) {
    {
      std::lock_guard lock(mu_);
      sockets_.insert(&socket);
    }
    try {
      runSession(socket);
    } catch (const std::exception& e) {
      log::debug("http connection: {}", e.what());
    }
    std::lock_guard lock(mu_);
    sockets_.erase(&socket);
    --active_;
    drained_.notify_all();
  }

  void runSession(tcp::socket& socket) {
    beast::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    timeval tv{300, 0};
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    timeval wtv{60, 0};
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &wtv, sizeof wtv);
    std::string peer;
    auto remote = socket.remote_endpoint(ec);
    if (!ec) peer = remote.address().to_string();
    SslStream stream(std::move(socket), tls_);
    {
      std::lock_guard lock(mu_);
      sockets_.erase(&socket);
      sockets_.insert(&stream.next_layer());
    }
    struct Unregister {
      BeastHttpsServer* self;
      tcp::socket* s;
      ~Unregister() {
        std::lock_guard lock(self->mu_);
        self->sockets_.erase(s);
      }
    } unregister{this, &stream.next_layer()};
    stream.handshake(ssl::stream_base::server, ec);
    if (ec) return;
    beast::flat_buffer buffer;
    HttpRequest identityTemplate;
    fillPeerIdentity(stream, identityTemplate);
    identityTemplate.peerAddress = peer;
    while (!stopping_) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(options_.maxBodyBytes);
      parser.header_limit(64 * 1024);
      http::read(stream, buffer, parser, ec);
      if (ec == http::error::body_limit) {
        writeSimple(stream, 413, R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the request body is too large","reason":"RequestEntityTooLarge","code":413})",
                    false);
        return;
      }
      if (ec) return;
      auto& msg = parser.get();
      HttpRequest req = identityTemplate;
      req.method = std::string(msg.method_string());
      req.target = std::string(msg.target());
      auto qpos = req.target.find('?');
      req.path = percentDecode(std::string_view(req.target).substr(0, qpos), false);
      if (qpos != std::string::npos) req.query = parseQuery(std::string_view(req.target).substr(qpos + 1));
      for (const auto& field : msg) {
        std::string name(field.name_string());
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::string value(field.value());
        auto [it, inserted] = req.headers.emplace(name, value);
        if (!inserted) it->second += ", " + value;
      }
      req.body = std::move(msg.body());
      bool keepAlive = msg.keep_alive();

      HttpResponse res;
      try {
        res = handler_(req);
      } catch (const std::exception& e) {
        log::error("http handler {} {}: {}", req.method, req.target, e.what());
        res = HttpResponse{};
        res.status = 500;
        res.body = fmt::format(R"({{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"internal error","reason":"InternalError","code":500}})");
      }

      if (res.upgrade) {
        http::response<http::empty_body> head{static_cast<http::status>(res.status), msg.version()};
        for (const auto& [k, v] : res.headers) head.set(k, v);
        http::write(stream, head, ec);
        if (ec) return;
        RawConnection raw(stream, buffer);
        res.upgrade(raw);
        beast::error_code ignored;
        stream.shutdown(ignored);
        return;
      }
      if (res.stream) {
        http::response<http::empty_body> head{static_cast<http::status>(res.status), msg.version()};
        head.set(http::field::content_type, res.contentType);
        for (const auto& [k, v] : res.headers) head.set(k, v);
        head.chunked(true);
        head.keep_alive(false);
        http::response_serializer<http::empty_body> serializer{head};
        http::write_header(stream, serializer, ec);
        if (ec) return;
        ChunkedWriter writer(stream, stopping_);
        res.stream(writer);
        if (!writer.failed()) asio::write(stream, http::make_chunk_last(), ec);
        beast::error_code ignored;
        stream.shutdown(ignored);
        return;
      }
      http::response<http::string_body> out{static_cast<http::status>(res.status), msg.version()};
      out.set(http::field::content_type, res.contentType);
      for (const auto& [k, v] : res.headers) out.set(k, v);
      out.body() = std::move(res.body);
      out.keep_alive(keepAlive);
      out.prepare_payload();
      // Header and body in one buffer: asio's ssl::stream writes a buffer sequence one
      // buffer per TLS record and send(), so http::write cost two records, two syscalls
      // and two wake-ups of the client for every reply (bench/api profile).
      std::ostringstream wire;
      wire << out;
      std::string bytes = std::move(wire).str();
      asio::write(stream, asio::buffer(bytes), ec);
      if (ec || !keepAlive) break;
    }
    beast::error_code ignored;
    stream.shutdown(ignored);
  }

  void writeSimple(SslStream& stream, int status, const std::string& body, bool keepAlive) {
    http::response<http::string_body> out{static_cast<http::status>(status), 11};
    out.set(http::field::content_type, "application/json");
    out.body() = body;
    out.keep_alive(keepAlive);
    out.prepare_payload();
    beast::error_code ec;
    http::write(stream, out, ec);
  }

  HttpsServerOptions options_;
  HttpHandler handler_;
  asio::io_context io_;
  ssl::context tls_;
  tcp::acceptor acceptor_;
  std::thread acceptThread_;
  std::atomic<bool> stopping_{false};
  int port_ = 0;
  std::mutex mu_;
  std::condition_variable drained_;
  std::set<tcp::socket*> sockets_;
  int active_ = 0;
};

}  // namespace

Result<std::unique_ptr<HttpsServer>> startHttpsServer(const HttpsServerOptions& options, HttpHandler handler) {
  auto server = std::make_unique<BeastHttpsServer>(options, std::move(handler));
  if (auto st = server->start(); !st) return fail(st.error());
  return std::unique_ptr<HttpsServer>(std::move(server));
}

}  // namespace ferry::cp
