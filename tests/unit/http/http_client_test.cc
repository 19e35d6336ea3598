// The Beast client against the project's HTTPS server (TLS, client certificates,
// keep-alive, chunked streams) and against a raw socket server on 127.0.0.1 for the
// replies a well-behaved server never sends.
#include "controlplane-lite/certs.h"
#include "controlplane-lite/http_client.h"
#include "controlplane-lite/http_server.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

using namespace ferry;
using namespace ferry::http;
using namespace std::chrono_literals;

namespace {

struct TlsFixture : ::testing::Test {
  cp::PemPair ca, serving, client;
  std::unique_ptr<cp::HttpsServer> server;
  std::atomic<int> streamEnded{0};

  void SetUp() override {
    ca = *cp::makeCertificateAuthority();
    serving = *cp::issueCertificate(ca, "server", {}, cp::SubjectAltNames{{"localhost"}, {"127.0.0.1"}}, true, 1);
    client = *cp::issueCertificate(ca, "alice", {"team"}, {}, false, 1);
    cp::HttpsServerOptions o;
    o.listen = "127.0.0.1:0";
    o.certPem = serving.certPem;
    o.keyPem = serving.keyPem;
    o.clientCaPem = ca.certPem;
    auto s = cp::startHttpsServer(o, [this](cp::HttpRequest& req) {
      cp::HttpResponse r;
      if (req.path == "/who") {
        r.body = req.clientCertVerified ? req.clientCertCommonName : "anonymous";
      } else if (req.path == "/echo") {
        r.body = req.method + ":" + req.body + ":" + req.header("x-test");
      } else if (req.path == "/stream") {
        r.stream = [this](cp::ResponseStream& out) {
          out.write("{\"n\":1}\n");
          out.write("{\"n\":2}\n");
          for (int i = 0; i < 3000 && !out.stopping() && out.write(""); ++i) std::this_thread::sleep_for(10ms);
          ++streamEnded;
        };
      } else {
        r.status = 404;
        r.body = "none";
      }
      return r;
    });
    ASSERT_TRUE(s) << s.error().message;
    server = std::move(*s);
  }
  void TearDown() override {
    if (server) server->stop();
  }
  Url url(const std::string& host = "127.0.0.1") {
    return *parseUrl(fmt::format("https://{}:{}/", host, server->port()));
  }
};

TEST(ParseUrl, SplitsSchemeHostPortAndTarget) {
  auto u = parseUrl("https://[fd00::1]:6443/api/v1?x=1");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "fd00::1");
  EXPECT_EQ(u->port, "6443");
  EXPECT_EQ(u->target, "/api/v1?x=1");
  auto plain = parseUrl("http://registry.local");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->port, "80");
  EXPECT_EQ(plain->target, "/");
  auto bad = parseUrl("ftp://x");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("scheme"), std::string::npos);
  EXPECT_FALSE(parseUrl("http://host:99999/"));
  EXPECT_FALSE(parseUrl("http://[::1/"));
}

TEST_F(TlsFixture, ClientCertificateIsPresentedAndConnectionIsReused) {
  TlsOptions tls{ca.certPem, "", client.certPem, client.keyPem};
  auto c = Connection::open(url(), tls, 5s);
  ASSERT_TRUE(c) << c.error().message;
  for (int i = 0; i < 3; ++i) {
    auto r = (*c)->exchange({"GET", "/who", {}, ""}, {.timeout = 10s});
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "alice");
    EXPECT_TRUE((*c)->reusable());
  }
  EXPECT_EQ((*c)->exchanges(), 3);
  auto r = (*c)->exchange({"PATCH", "/echo", {{"X-Test", "yes"}}, "{}"}, {.timeout = 10s});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->body, "PATCH:{}:yes");
  auto missing = (*c)->exchange({"GET", "/nothing", {}, ""}, {.timeout = 10s});
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->body, "none");
}

TEST_F(TlsFixture, ServerSignedByAnotherCaIsRefused) {
  auto other = *cp::makeCertificateAuthority();
  auto c = Connection::open(url(), TlsOptions{other.certPem, "", "", ""}, 5s);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("TLS handshake"), std::string::npos) << c.error().message;
}

TEST_F(TlsFixture, AddressNotInTheCertificateIsRefused) {
  // A certificate from the trusted CA, but for another name only.
  TlsOptions tls{ca.certPem, "", "", ""};
  auto unnamed = *cp::issueCertificate(ca, "server", {}, cp::SubjectAltNames{{"elsewhere"}, {}}, true, 1);
  cp::HttpsServerOptions o;
  o.listen = "127.0.0.1:0";
  o.certPem = unnamed.certPem;
  o.keyPem = unnamed.keyPem;
  auto s = cp::startHttpsServer(o, [](cp::HttpRequest&) { return cp::HttpResponse{}; });
  ASSERT_TRUE(s) << s.error().message;
  auto c = Connection::open(*parseUrl(fmt::format("https://127.0.0.1:{}/", (*s)->port())), tls, 5s);
  EXPECT_FALSE(c) << "a certificate without 127.0.0.1 must not be accepted for it";
  (*s)->stop();
}

TEST_F(TlsFixture, ChunkedStreamArrivesInPiecesAndStopEndsIt) {
  auto c = Connection::open(url(), TlsOptions{ca.certPem, "", "", ""}, 5s);
  ASSERT_TRUE(c) << c.error().message;
  std::string seen;
  std::atomic<bool> stop{false};
  BodySink sink = [&](std::string_view piece) {
    seen.append(piece);
    if (seen.find("{\"n\":2}\n") != std::string::npos) stop = true;
    return true;
  };
  auto r = (*c)->exchange({"GET", "/stream", {}, ""}, {.sink = &sink, .stop = &stop});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ECANCELED) << r.error().message;
  EXPECT_EQ(seen, "{\"n\":1}\n{\"n\":2}\n");
  EXPECT_FALSE((*c)->reusable());
  for (int i = 0; i < 200 && streamEnded == 0; ++i) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(streamEnded, 1) << "the server saw the client go away";
}

// A one-connection raw server: reads a request, answers with `reply`, then (optionally) stays silent.
struct RawServer {
  int listenFd = -1;
  int port = 0;
  std::thread thread;
  explicit RawServer(std::string reply, bool close = true) {
    listenFd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listenFd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(listenFd, 4);
    socklen_t len = sizeof a;
    ::getsockname(listenFd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    thread = std::thread([this, reply, close] {
      int fd = ::accept(listenFd, nullptr, nullptr);
      if (fd < 0) return;
      char buf[4096];
      std::string got;
      while (got.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
      }
      if (!reply.empty()) (void)!::write(fd, reply.data(), reply.size());
      if (!close) {
        while (::read(fd, buf, sizeof buf) > 0) {}  // until the client gives up
      }
      ::close(fd);
    });
  }
  ~RawServer() {
    ::shutdown(listenFd, SHUT_RDWR);
    thread.join();
    ::close(listenFd);
  }
  Url url() { return *parseUrl(fmt::format("http://127.0.0.1:{}/", port)); }
};

TEST(RawHttp, BodyEndedByCloseIsRead) {
  RawServer s("HTTP/1.1 200 OK\r\nX-A: b\r\nConnection: close\r\n\r\nall of it");
  auto c = Connection::open(s.url(), {}, 5s);
  ASSERT_TRUE(c) << c.error().message;
  auto r = (*c)->exchange({"GET", "/", {}, ""}, {.timeout = 10s});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->body, "all of it");
  EXPECT_EQ(r->headers["x-a"], "b");
  EXPECT_FALSE((*c)->reusable());
}

TEST(RawHttp, MalformedStatusLineIsAClearError) {
  RawServer s("HTTP/1.1 abc\r\n\r\n");
  auto c = Connection::open(s.url(), {}, 5s);
  ASSERT_TRUE(c) << c.error().message;
  auto r = (*c)->exchange({"GET", "/", {}, ""}, {.timeout = 10s});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("response header"), std::string::npos) << r.error().message;
}

TEST(RawHttp, OversizedHeaderIsRefused) {
  RawServer s("HTTP/1.1 200 OK\r\nX-Big: " + std::string(64 * 1024, 'a') + "\r\nContent-Length: 0\r\n\r\n");
  auto c = Connection::open(s.url(), {}, 5s);
  ASSERT_TRUE(c) << c.error().message;
  auto r = (*c)->exchange({"GET", "/", {}, ""}, {.timeout = 10s});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EFBIG) << r.error().message;
}

TEST(RawHttp, SilentServerTimesOut) {
  RawServer s("", false);
  auto c = Connection::open(s.url(), {}, 5s);
  ASSERT_TRUE(c) << c.error().message;
  auto r = (*c)->exchange({"GET", "/", {}, ""}, {.timeout = 500ms});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ETIMEDOUT) << r.error().message;
}

TEST(RawHttp, NoProgressWithinTheIdleLimitTimesOut) {
  RawServer s("", false);
  auto c = Connection::open(s.url(), {}, 5s);
  ASSERT_TRUE(c) << c.error().message;
  auto r = (*c)->exchange({"GET", "/", {}, ""}, {.idleTimeout = 300ms});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ETIMEDOUT) << r.error().message;
}

TEST(RawHttp, BodyOverTheLimitIsRefused) {
  RawServer s("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'x'));
  auto c = Connection::open(s.url(), {}, 5s);
  ASSERT_TRUE(c) << c.error().message;
  auto r = (*c)->exchange({"GET", "/", {}, ""}, {.timeout = 10s, .maxBodyBytes = 10});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EFBIG) << r.error().message;
}

TEST(RawHttp, RefusedConnectIsAnError) {
  int port;
  {
    RawServer s("");
    port = s.port;
    ::shutdown(s.listenFd, SHUT_RDWR);
  }
  auto c = Connection::open(*parseUrl(fmt::format("http://127.0.0.1:{}/", port)), {}, 2s);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("connect 127.0.0.1"), std::string::npos) << c.error().message;
}

}  // namespace
