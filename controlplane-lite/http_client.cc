#include "controlplane-lite/http_client.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <optional>

namespace ferry::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

Result<Url> parseUrl(const std::string& url) {
  Url u;
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    u.tls = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else {
    return fail(EINVAL, fmt::format("URL \"{}\": scheme must be http or https", url));
  }
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) u.target = rest.substr(slash);
  if (authority.empty()) return fail(EINVAL, fmt::format("URL \"{}\": no host", url));
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) return fail(EINVAL, fmt::format("URL \"{}\": unterminated [IPv6] host", url));
    u.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return fail(EINVAL, fmt::format("URL \"{}\": junk after the [IPv6] host", url));
      u.port = authority.substr(close + 2);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string::npos) {
    u.host = authority.substr(0, colon);
    u.port = authority.substr(colon + 1);
  } else {
    u.host = authority;
  }
  if (u.port.empty()) u.port = u.tls ? "443" : "80";
  if (!std::all_of(u.port.begin(), u.port.end(), [](unsigned char c) { return std::isdigit(c); }) ||
      std::stoul(u.port) > 65535)
    return fail(EINVAL, fmt::format("URL \"{}\": bad port \"{}\"", url, u.port));
  return u;
}

struct Connection::Impl {
  asio::io_context io;
  ssl::context tlsContext{ssl::context::tls_client};
  std::optional<beast::tcp_stream> plain;
  std::optional<ssl::stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  std::string host;
  bool healthy = true;
  int exchanges = 0;

  beast::tcp_stream& lowest() { return secure ? beast::get_lowest_layer(*secure) : *plain; }

  void setDeadline(std::chrono::steady_clock::time_point deadline) {
    if (deadline == std::chrono::steady_clock::time_point::max())
      lowest().expires_never();
    else
      lowest().expires_at(deadline);
  }

  // Runs the started operation to completion, checking `stop` every 250 ms; a stop closes
  // the socket so the operation ends at once.
  beast::error_code wait(bool& done, beast::error_code& ec, const std::atomic<bool>* stop, bool& stopped) {
    io.restart();
    while (!done) {
      io.run_for(250ms);
      if (!done && stop != nullptr && stop->load()) {
        stopped = true;
        beast::error_code ignored;
        lowest().socket().close(ignored);
        io.restart();
        io.run();
      }
    }
    return ec;
  }
};

Connection::Connection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Connection::~Connection() = default;
bool Connection::reusable() const { return impl_->healthy; }
int Connection::exchanges() const { return impl_->exchanges; }

Result<std::unique_ptr<Connection>> Connection::open(const Url& url, const TlsOptions& tls,
                                                     std::chrono::milliseconds connectTimeout) {
  auto impl = std::make_unique<Impl>();
  impl->host = url.host;
  std::string where = fmt::format("{}:{}", url.host, url.port);
  beast::error_code ec;
  tcp::resolver resolver(impl->io);
  auto endpoints = resolver.resolve(url.host, url.port, ec);
  if (ec) return fail(EHOSTUNREACH, fmt::format("resolve {}: {}", where, ec.message()));
  if (url.tls) {
    auto& ctx = impl->tlsContext;
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    if (!tls.caPem.empty()) {
      ctx.add_certificate_authority(asio::buffer(tls.caPem), ec);
      if (ec) return fail(EINVAL, fmt::format("{}: CA certificate: {}", where, ec.message()));
    } else if (!tls.caFile.empty()) {
      ctx.load_verify_file(tls.caFile, ec);
      if (ec) return fail(EINVAL, fmt::format("{}: CA file {}: {}", where, tls.caFile, ec.message()));
    } else {
      ctx.set_default_verify_paths(ec);
    }
    if (!tls.clientCertPem.empty()) {
      ctx.use_certificate_chain(asio::buffer(tls.clientCertPem), ec);
      if (!ec) ctx.use_private_key(asio::buffer(tls.clientKeyPem), ssl::context::pem, ec);
      if (ec) return fail(EINVAL, fmt::format("{}: client certificate or key: {}", where, ec.message()));
    }
    ctx.set_verify_mode(ssl::verify_peer);
    impl->secure.emplace(impl->io, ctx);
    impl->secure->set_verify_callback(ssl::host_name_verification(url.host));
    beast::error_code addressError;
    asio::ip::make_address(url.host, addressError);
    // SNI for names only (RFC 6066 forbids literal addresses).
    if (addressError) SSL_set_tlsext_host_name(impl->secure->native_handle(), url.host.c_str());
  } else {
    impl->plain.emplace(impl->io);
  }
  auto deadline = std::chrono::steady_clock::now() + connectTimeout;
  bool done = false, stopped = false;
  impl->setDeadline(deadline);
  impl->lowest().async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) {
    ec = e;
    done = true;
  });
  if (impl->wait(done, ec, nullptr, stopped))
    return fail(ec == beast::error::timeout ? ETIMEDOUT : ECONNREFUSED, fmt::format("connect {}: {}", where, ec.message()));
  // A silent dead peer (its host gone) is noticed within about a minute, on idle pooled
  // connections and quiet watch streams alike.
  impl->lowest().socket().set_option(asio::socket_base::keep_alive(true), ec);
  int fd = impl->lowest().socket().native_handle();
  int idle = 30, interval = 10, probes = 3;
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
  impl->lowest().socket().set_option(tcp::no_delay(true), ec);
  if (impl->secure) {
    done = false;
    impl->secure->async_handshake(ssl::stream_base::client, [&](beast::error_code e) {
      ec = e;
      done = true;
    });
    if (impl->wait(done, ec, nullptr, stopped))
      return fail(ec == beast::error::timeout ? ETIMEDOUT : EPROTO, fmt::format("TLS handshake with {}: {}", where, ec.message()));
  }
  impl->setDeadline(std::chrono::steady_clock::time_point::max());
  return std::unique_ptr<Connection>(new Connection(std::move(impl)));
}

Result<Response> Connection::exchange(const Request& request, const Options& options) {
  const BodySink* sink = options.sink;
  const std::atomic<bool>* stop = options.stop;
  Impl& c = *impl_;
  std::string what = request.method + " " + request.target;
  if (!c.healthy) return fail(EPIPE, what + ": connection is not reusable");
  c.healthy = false;  // until the exchange completes cleanly
  auto end = options.timeout.count() > 0 ? std::chrono::steady_clock::now() + options.timeout
                                         : std::chrono::steady_clock::time_point::max();
  // Before each step: the earlier of the exchange's end and the idle limit from now.
  auto arm = [&] {
    auto limit = end;
    if (options.idleTimeout.count() > 0) limit = std::min(limit, std::chrono::steady_clock::now() + options.idleTimeout);
    c.setDeadline(limit);
  };

  bhttp::request<bhttp::string_body> req;
  req.method_string(request.method);
  req.target(request.target);
  req.version(11);
  req.set(bhttp::field::host, c.host);
  for (const auto& [name, value] : request.headers) req.set(name, value);
  bool hasBody = !request.body.empty() || request.method == "POST" || request.method == "PUT" || request.method == "PATCH";
  if (hasBody) {
    req.body() = request.body;
    req.prepare_payload();
  }

  beast::error_code ec;
  bool done = false, stopped = false;
  auto onWritten = [&](beast::error_code e, std::size_t) {
    ec = e;
    done = true;
  };
  arm();
  if (c.secure) bhttp::async_write(*c.secure, req, onWritten);
  else bhttp::async_write(*c.plain, req, onWritten);
  auto failed = [&](const char* step) {
    if (stopped) return Error{ECANCELED, what + ": stopped"};
    int code = ec == beast::error::timeout ? ETIMEDOUT : ec == bhttp::error::header_limit ? EFBIG : ECONNRESET;
    return Error{code, fmt::format("{}: {}: {}", what, step, ec.message())};
  };
  if (c.wait(done, ec, stop, stopped)) return fail(failed("send"));

  bhttp::response_parser<bhttp::buffer_body> parser;
  // Limits are applied below, per sink. (Not boost::none: Boost 1.74 compares a Content-Length
  // with the empty optional and reports every body as over the limit.)
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  if (request.method == "HEAD") parser.skip(true);
  done = false;
  arm();
  auto onRead = [&](beast::error_code e, std::size_t) {
    ec = e;
    done = true;
  };
  if (c.secure) bhttp::async_read_header(*c.secure, c.buffer, parser, onRead);
  else bhttp::async_read_header(*c.plain, c.buffer, parser, onRead);
  if (c.wait(done, ec, stop, stopped)) return fail(failed("response header"));

  Response response;
  response.status = static_cast<int>(parser.get().result_int());
  for (const auto& field : parser.get()) {
    std::string name(field.name_string());
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
    response.headers[name] = std::string(field.value());
  }
  if (options.onHeader) options.onHeader(response);
  char chunk[16384];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    done = false;
    arm();
    // read_some: a piece is handed on as soon as it arrives (a watch event), not when the
    // buffer is full.
    if (c.secure) bhttp::async_read_some(*c.secure, c.buffer, parser, onRead);
    else bhttp::async_read_some(*c.plain, c.buffer, parser, onRead);
    c.wait(done, ec, stop, stopped);
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec) return fail(failed("response body"));
    std::string_view piece(chunk, sizeof chunk - parser.get().body().size);
    if (piece.empty()) continue;
    if (sink != nullptr) {
      if (!(*sink)(piece)) return fail(ECANCELED, what + ": the body's reader stopped");
    } else {
      if (response.body.size() + piece.size() > options.maxBodyBytes)
        return fail(EFBIG, fmt::format("{}: response body over {} bytes", what, options.maxBodyBytes));
      response.body.append(piece);
    }
  }
  c.setDeadline(std::chrono::steady_clock::time_point::max());
  c.healthy = parser.get().keep_alive();
  ++c.exchanges;
  return response;
}

}  // namespace ferry::http
