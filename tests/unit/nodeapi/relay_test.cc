// The API server's node client against a real HTTPS server on 127.0.0.1 (standing in
// for an agent): client-certificate authentication, a plain GET, a streamed body, and
// an upgraded connection relayed both ways from one thread.
#include "controlplane-lite/certs.h"
#include "controlplane-lite/http_server.h"
#include "controlplane-lite/node_proxy.h"

#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

using namespace ferry;
using namespace ferry::cp;
using namespace std::chrono_literals;

namespace {

class CollectingStream : public ResponseStream {
 public:
  bool write(std::string_view chunk) override {
    text += chunk;
    return true;
  }
  bool stopping() const override { return text.find("b\n") != std::string::npos; }
  std::string text;
};

// The API server's side of kubectl's connection, as a socketpair end.
class SocketConnection : public UpgradedConnection {
 public:
  explicit SocketConnection(int fd) : fd_(fd) {}
  std::size_t read(char* buffer, std::size_t size) override {
    ssize_t n = ::read(fd_, buffer, size);
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  }
  bool write(std::string_view bytes) override { return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()); }
  int pollFd() const override { return fd_; }
  long readAvailable(char* buffer, std::size_t size) override {
    ssize_t n = ::recv(fd_, buffer, size, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return n <= 0 ? -1 : n;
  }

 private:
  int fd_;
};

struct Fixture {
  PemPair ca, serving, client, stranger;
  std::unique_ptr<HttpsServer> server;
  std::string endpoint;
};

// How the stand-in agent's serving certificate is made.
enum class Serving { CaSignedForItsAddress, SelfSigned, CaSignedForAnotherAddress };

Fixture startAgentLikeServer(Serving serving = Serving::CaSignedForItsAddress) {
  Fixture f;
  f.ca = *makeCertificateAuthority();
  if (serving == Serving::CaSignedForItsAddress)
    f.serving = *issueCertificate(f.ca, "node", {}, SubjectAltNames{{}, {"127.0.0.1"}}, true, 1);
  if (serving == Serving::CaSignedForAnotherAddress)
    f.serving = *issueCertificate(f.ca, "node", {}, SubjectAltNames{{}, {"127.0.0.2"}}, true, 1);
  if (serving == Serving::SelfSigned) {
    auto own = *makeCertificateAuthority();
    f.serving = *issueCertificate(own, "node", {}, SubjectAltNames{{}, {"127.0.0.1"}}, true, 1);
  }
  f.client = *issueCertificate(f.ca, "apiserver", {"system:masters"}, {}, false, 1);
  auto otherCa = *makeCertificateAuthority();
  f.stranger = *issueCertificate(otherCa, "apiserver", {"system:masters"}, {}, false, 1);
  HttpsServerOptions o;
  o.listen = "127.0.0.1:0";
  o.certPem = f.serving.certPem;
  o.keyPem = f.serving.keyPem;
  o.clientCaPem = f.ca.certPem;
  auto server = startHttpsServer(o, [](HttpRequest& req) {
    HttpResponse r;
    bool master = std::find(req.clientCertOrganizations.begin(), req.clientCertOrganizations.end(), "system:masters") !=
                  req.clientCertOrganizations.end();
    if (!req.clientCertVerified || !master) {
      r.status = 401;
      r.body = R"({"kind":"Status","code":401})";
      return r;
    }
    if (req.path == "/stats/summary") {
      r.body = R"({"node":{"nodeName":"n1"}})";
    } else if (req.path == "/logs") {
      r.contentType = "text/plain";
      r.stream = [](ResponseStream& out) {
        out.write("a\n");
        out.write("b\n");
        // Like a follow: runs until the reader goes away.
        for (int i = 0; i < 300 && !out.stopping(); ++i) std::this_thread::sleep_for(10ms);
      };
    } else if (req.path == "/exec") {
      r.status = 101;
      r.headers = {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"Sec-WebSocket-Protocol", "v5.channel.k8s.io"}};
      r.upgrade = [](UpgradedConnection& conn) {
        conn.write("ready;");
        char buf[256];
        while (true) {  // echoes in upper case until the peer closes
          pollfd p{conn.pollFd(), POLLIN, 0};
          ::poll(&p, 1, 100);
          long n = conn.readAvailable(buf, sizeof buf);
          if (n < 0) return;
          std::string s(buf, static_cast<std::size_t>(std::max(0L, n)));
          for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
          if (n > 0 && !conn.write(s)) return;
        }
      };
    } else {
      r.status = 404;
      r.body = R"({"kind":"Status","code":404,"message":"nope"})";
    }
    return r;
  });
  EXPECT_TRUE(server) << server.error().message;
  f.endpoint = "127.0.0.1:" + std::to_string((*server)->port());
  f.server = std::move(*server);
  return f;
}

}  // namespace

TEST(NodeProxy, GetWithClientCertificateAndRefusedWithout) {
  auto f = startAgentLikeServer();
  NodeProxy proxy(f.client, f.ca.certPem);
  auto body = proxy.get(f.endpoint, "/stats/summary", 10s);
  ASSERT_TRUE(body) << body.error().message;
  EXPECT_EQ(*body, R"({"node":{"nodeName":"n1"}})");
  NodeProxy stranger(f.stranger, f.ca.certPem);
  auto refused = stranger.get(f.endpoint, "/stats/summary", 10s);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("401"), std::string::npos) << refused.error().message;
  auto unreachable = proxy.get("127.0.0.1:1", "/stats/summary", 5s);
  EXPECT_FALSE(unreachable);
}

TEST(NodeProxy, StreamsChunkedBodyAndPassesErrors) {
  auto f = startAgentLikeServer();
  NodeProxy proxy(f.client, f.ca.certPem);
  HttpRequest original;
  auto r = proxy.proxy(f.endpoint, original, "/logs");
  ASSERT_EQ(r.status, 200);
  ASSERT_TRUE(r.stream);
  EXPECT_EQ(r.contentType, "text/plain");
  CollectingStream out;
  r.stream(out);
  EXPECT_EQ(out.text, "a\nb\n");
  auto missing = proxy.proxy(f.endpoint, original, "/nothing");
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.body.find("nope"), std::string::npos);
  auto down = proxy.proxy("127.0.0.1:1", original, "/logs");
  EXPECT_EQ(down.status, 503);
}

TEST(NodeProxy, RelaysAnUpgradedConnectionBothWays) {
  auto f = startAgentLikeServer();
  NodeProxy proxy(f.client, f.ca.certPem);
  HttpRequest original;
  original.headers = {{"upgrade", "websocket"}, {"connection", "Upgrade"}, {"sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="},
                      {"sec-websocket-version", "13"}, {"sec-websocket-protocol", "v5.channel.k8s.io"}};
  auto r = proxy.proxy(f.endpoint, original, "/exec");
  ASSERT_EQ(r.status, 101) << r.body;
  ASSERT_TRUE(r.upgrade);
  bool protocol = false;
  for (const auto& [k, v] : r.headers) protocol = protocol || (k == "Sec-WebSocket-Protocol" && v == "v5.channel.k8s.io");
  EXPECT_TRUE(protocol);
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  SocketConnection apiSide(fds[0]);
  std::thread relay([&] { r.upgrade(apiSide); });
  std::string got;
  auto readUntil = [&](const std::string& want) {
    char buf[256];
    for (int i = 0; i < 100 && got.find(want) == std::string::npos; ++i) {
      pollfd p{fds[1], POLLIN, 0};
      if (::poll(&p, 1, 100) > 0) {
        ssize_t n = ::read(fds[1], buf, sizeof buf);
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
      }
    }
    return got.find(want) != std::string::npos;
  };
  EXPECT_TRUE(readUntil("ready;")) << got;
  ASSERT_EQ(::write(fds[1], "hello", 5), 5);
  EXPECT_TRUE(readUntil("HELLO")) << got;
  ::shutdown(fds[1], SHUT_RDWR);
  ::close(fds[1]);
  relay.join();  // the relay ends when the client side closes
  ::close(fds[0]);
}

TEST(NodeProxy, RefusesAnAgentWhoseCertificateTheClusterCaDidNotSign) {
  auto f = startAgentLikeServer(Serving::SelfSigned);
  NodeProxy proxy(f.client, f.ca.certPem);
  auto body = proxy.get(f.endpoint, "/stats/summary", 10s);
  ASSERT_FALSE(body);
  EXPECT_NE(body.error().message.find("not trusted"), std::string::npos) << body.error().message;
  HttpRequest original;
  auto r = proxy.proxy(f.endpoint, original, "/logs");
  EXPECT_EQ(r.status, 502);
  EXPECT_FALSE(r.stream);
  EXPECT_NE(r.body.find("is not trusted"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("signed by the cluster CA"), std::string::npos) << r.body;
}

TEST(NodeProxy, RefusesACaSignedCertificateForAnotherAddress) {
  auto f = startAgentLikeServer(Serving::CaSignedForAnotherAddress);
  NodeProxy proxy(f.client, f.ca.certPem);
  HttpRequest original;
  auto r = proxy.proxy(f.endpoint, original, "/logs");
  EXPECT_EQ(r.status, 502);
  EXPECT_NE(r.body.find("IP address mismatch"), std::string::npos) << r.body;
}
