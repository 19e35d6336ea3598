// The agent's side of node credentials against a real API server handler (HTTPS on
// 127.0.0.1, SQLite in a temporary directory): joining with the token stores a
// CA-signed certificate 0600 in the data dir, later starts reuse it without the token,
// a certificate of another cluster is replaced, and the serving certificate follows
// the node's addresses.
#include "agent/core/node_credentials.h"
#include "controlplane-lite/api_handler.h"
#include "controlplane-lite/certs.h"
#include "controlplane-lite/http_server.h"
#include "controlplane-lite/node_certificates.h"
#include "controlplane-lite/registry.h"
#include "controlplane-lite/store.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

using namespace ferry;
using namespace ferry::agent;
using api::Json;
namespace fs = std::filesystem;

namespace {

std::string readText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void writeText(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

unsigned modeOf(const std::string& path) {
  struct stat st {};
  ::stat(path.c_str(), &st);
  return st.st_mode & 0777;
}

class NodeCredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ferry-nodecreds-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "server");
    auto s = cp::openStore("sqlite", (dir_ / "server").string());
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
    registry_ = std::make_unique<cp::Registry>(*store_, cp::ServerConfig{});
    ASSERT_TRUE(registry_->bootstrap("127.0.0.1", 6443));
    ca_ = *cp::makeCertificateAuthority();
    auto serving = *cp::issueCertificate(ca_, "ferry-server", {}, cp::SubjectAltNames{{}, {"127.0.0.1"}}, true, 1);
    issuer_ = std::make_unique<cp::NodeCertificateIssuer>(ca_, [this](const std::string& name) -> std::optional<Json> {
      auto n = registry_->get("nodes", "", name);
      if (!n) return std::nullopt;
      return *n;
    });
    cp::ApiHandlerOptions options;
    options.joinToken = "secret";
    options.caPem = ca_.certPem;
    options.serveNodeCertificate = [this](const cp::HttpRequest& r, const cp::Identity& w) { return issuer_->serve(r, w); };
    handler_ = std::make_unique<cp::ApiHandler>(*registry_, options);
    cp::HttpsServerOptions http;
    http.listen = "127.0.0.1:0";
    http.certPem = serving.certPem;
    http.keyPem = serving.keyPem;
    http.clientCaPem = ca_.certPem;
    auto server = cp::startHttpsServer(http, [this](cp::HttpRequest& r) { return handler_->handle(r); });
    ASSERT_TRUE(server) << server.error().message;
    server_ = std::move(*server);

    // As an operator copies them: the token and, beside it, tls/ca.crt.
    writeText((dir_ / "join/token").string(), "secret\n");
    writeText((dir_ / "join/tls/ca.crt").string(), ca_.certPem);
    config_.server = "https://127.0.0.1:" + std::to_string(server_->port());
    config_.tokenFile = (dir_ / "join/token").string();
    config_.dataDir = (dir_ / "agent").string();
  }
  void TearDown() override {
    if (server_) server_->stop();
    server_.reset();
    handler_.reset();
    registry_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  fs::path dir_;
  std::unique_ptr<cp::Store> store_;
  std::unique_ptr<cp::Registry> registry_;
  cp::PemPair ca_;
  std::unique_ptr<cp::NodeCertificateIssuer> issuer_;
  std::unique_ptr<cp::ApiHandler> handler_;
  std::unique_ptr<cp::HttpsServer> server_;
  AgentConfig config_;
  std::atomic<bool> stop_{false};
};

}  // namespace

TEST(NodeCredentials, RenewalWindowIsTheLast30Percent) {
  EXPECT_FALSE(renewalDue(1000, 2000, 1000));
  EXPECT_FALSE(renewalDue(1000, 2000, 1699));
  EXPECT_TRUE(renewalDue(1000, 2000, 1700));
  EXPECT_TRUE(renewalDue(1000, 2000, 2500));
  EXPECT_TRUE(renewalDue(2000, 1000, 1500));  // nonsense validity: get a new one
}

TEST(NodeCredentials, StoredCertificateProblemsAreNamed) {
  auto ca = *cp::makeCertificateAuthority();
  auto mine = *cp::issueCertificate(ca, "system:node:n1", {"system:nodes"}, {}, false, 10);
  EXPECT_EQ(storedCertificateProblem(mine.certPem, mine.keyPem, ca.certPem, "system:node:n1", nullptr), "");
  EXPECT_NE(storedCertificateProblem(mine.certPem, mine.keyPem, ca.certPem, "system:node:n2", nullptr).find("n2"),
            std::string::npos);
  auto otherCa = *cp::makeCertificateAuthority();
  EXPECT_NE(storedCertificateProblem(mine.certPem, mine.keyPem, otherCa.certPem, "system:node:n1", nullptr), "");
  auto other = *cp::issueCertificate(ca, "system:node:n1", {"system:nodes"}, {}, false, 10);
  EXPECT_NE(storedCertificateProblem(mine.certPem, other.keyPem, ca.certPem, "system:node:n1", nullptr)
                .find("private key"),
            std::string::npos);
  auto serving = *cp::issueCertificate(ca, "system:node:n1", {"system:nodes"}, {{"n1"}, {"10.0.0.1"}}, true, 10);
  cp::SubjectAltNames same{{"n1"}, {"10.0.0.1"}}, moved{{"n1"}, {"10.0.0.2"}};
  EXPECT_EQ(storedCertificateProblem(serving.certPem, serving.keyPem, ca.certPem, "system:node:n1", &same), "");
  EXPECT_NE(storedCertificateProblem(serving.certPem, serving.keyPem, ca.certPem, "system:node:n1", &moved), "");
}

TEST_F(NodeCredentialsTest, JoinStoresTheCertificateAndLaterStartsReuseItWithoutTheToken) {
  auto creds = ensureNodeClientCredentials(config_, "node-1", 10, stop_);
  ASSERT_TRUE(creds) << creds.error().message;
  EXPECT_TRUE(creds->bearerToken.empty());
  auto paths = nodeCredentialPaths(config_.dataDir);
  EXPECT_EQ(readText(paths.clientCert), creds->clientCertPem);
  EXPECT_EQ(readText(paths.clientKey), creds->clientKeyPem);
  EXPECT_EQ(readText(paths.ca), ca_.certPem);
  EXPECT_EQ(modeOf(paths.clientKey), 0600u);
  EXPECT_EQ(modeOf(paths.clientCert), 0600u);
  EXPECT_EQ(modeOf(paths.dir), 0700u);
  ASSERT_TRUE(cp::verifyCertificate(creds->clientCertPem, ca_.certPem, creds->clientKeyPem));
  EXPECT_EQ(cp::inspectCertificate(creds->clientCertPem)->commonName, "system:node:node-1");

  // With the certificate the node registers itself; the serving certificate follows.
  ApiClient client(*creds);
  Json node = {{"apiVersion", "v1"}, {"kind", "Node"}, {"metadata", {{"name", "node-1"}}},
               {"status", {{"addresses", Json::array({Json{{"type", "InternalIP"}, {"address", "10.9.0.1"}}})}}}};
  auto created = client.post("/api/v1/nodes", node);
  ASSERT_TRUE(created) << created.error().message;
  cp::SubjectAltNames sans{{"node-1"}, {"10.9.0.1"}};
  auto serving = ensureNodeServingCertificate(client, config_.dataDir, creds->caPem, "node-1", sans);
  ASSERT_TRUE(serving) << serving.error().message;
  EXPECT_EQ(cp::inspectCertificate(serving->certPem)->sans.ips, std::vector<std::string>{"10.9.0.1"});
  EXPECT_EQ(modeOf(paths.servingKey), 0600u);
  // Same addresses: the stored one; an address the Node does not have: refused.
  EXPECT_EQ(ensureNodeServingCertificate(client, config_.dataDir, creds->caPem, "node-1", sans)->certPem,
            serving->certPem);
  cp::SubjectAltNames moved{{"node-1"}, {"10.9.0.2"}};
  auto refused = ensureNodeServingCertificate(client, config_.dataDir, creds->caPem, "node-1", moved);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("10.9.0.2"), std::string::npos) << refused.error().message;

  // A later start: the token is gone, the stored certificate is used as it is.
  fs::remove(config_.tokenFile);
  fs::remove(dir_ / "join/tls/ca.crt");
  auto again = ensureNodeClientCredentials(config_, "node-1", 10, stop_);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->clientCertPem, creds->clientCertPem);
  EXPECT_EQ(again->caPem, ca_.certPem);
}

TEST_F(NodeCredentialsTest, CertificateOfAnotherClusterIsReplacedWithTheToken) {
  auto paths = nodeCredentialPaths(config_.dataDir);
  auto foreignCa = *cp::makeCertificateAuthority();
  auto foreign = *cp::issueCertificate(foreignCa, "system:node:node-1", {"system:nodes"}, {}, false, 10);
  writeText(paths.clientCert, foreign.certPem);
  writeText(paths.clientKey, foreign.keyPem);
  auto creds = ensureNodeClientCredentials(config_, "node-1", 10, stop_);
  ASSERT_TRUE(creds) << creds.error().message;
  EXPECT_NE(creds->clientCertPem, foreign.certPem);
  EXPECT_TRUE(cp::verifyCertificate(readText(paths.clientCert), ca_.certPem, readText(paths.clientKey)));
}

TEST_F(NodeCredentialsTest, WrongTokenAndMissingTokenAreClearErrors) {
  writeText(config_.tokenFile, "wrong\n");
  auto refused = ensureNodeClientCredentials(config_, "node-1", 10, stop_);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("401"), std::string::npos) << refused.error().message;
  EXPECT_FALSE(fs::exists(nodeCredentialPaths(config_.dataDir).clientCert));

  fs::remove(config_.tokenFile);
  auto noToken = ensureNodeClientCredentials(config_, "node-1", 10, stop_);
  ASSERT_FALSE(noToken);
  EXPECT_NE(noToken.error().message.find("cannot read"), std::string::npos) << noToken.error().message;
}

TEST_F(NodeCredentialsTest, DueCertificateIsRenewedInPlaceWithTheNodesOwnIdentity) {
  auto creds = ensureNodeClientCredentials(config_, "node-1", 10, stop_);
  ASSERT_TRUE(creds) << creds.error().message;
  ApiClient client(*creds);
  auto facts = cp::inspectCertificate(creds->clientCertPem);
  ASSERT_TRUE(facts);
  // Not due now: nothing changes.
  auto early = renewClientCertificateIfDue(client, config_, "node-1", facts->notBefore + 3600);
  ASSERT_TRUE(early) << early.error().message;
  EXPECT_FALSE(*early);
  // At 80% of its life, and with no token left: renewed through the current certificate.
  fs::remove(config_.tokenFile);
  std::int64_t late = facts->notBefore + (facts->notAfter - facts->notBefore) * 8 / 10;
  auto renewed = renewClientCertificateIfDue(client, config_, "node-1", late);
  ASSERT_TRUE(renewed) << renewed.error().message;
  EXPECT_TRUE(*renewed);
  auto paths = nodeCredentialPaths(config_.dataDir);
  std::string newCert = readText(paths.clientCert);
  EXPECT_NE(newCert, creds->clientCertPem);
  EXPECT_NE(readText(paths.clientKey), creds->clientKeyPem);
  EXPECT_TRUE(cp::verifyCertificate(newCert, ca_.certPem, readText(paths.clientKey)));
  EXPECT_EQ(client.credentials().clientCertPem, newCert);
  EXPECT_EQ(modeOf(paths.clientKey), 0600u);
  // The swapped-in certificate works for requests.
  auto nodes = client.get("/api/v1/nodes");
  EXPECT_TRUE(nodes) << nodes.error().message;
}
