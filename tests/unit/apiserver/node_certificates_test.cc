// Node credentials on the server: what the issuer signs and refuses, how the API
// server authenticates the certificate it issued, and that the join token alone only
// reaches the certificate endpoint. The handler tests run the real ApiHandler on a
// real SQLite store in a temporary directory.
#include "controlplane-lite/api_handler.h"
#include "controlplane-lite/auth.h"
#include "controlplane-lite/certs.h"
#include "controlplane-lite/node_certificates.h"
#include "controlplane-lite/registry.h"
#include "controlplane-lite/store.h"

#include <gtest/gtest.h>

#include <filesystem>

using namespace ferry;
using namespace ferry::cp;
using api::Json;

namespace {

Json nodeObject(const std::string& name, const std::string& ip, const std::string& hostname) {
  return Json{{"apiVersion", "v1"},
              {"kind", "Node"},
              {"metadata", {{"name", name}}},
              {"status",
               {{"addresses", Json::array({Json{{"type", "InternalIP"}, {"address", ip}},
                                           Json{{"type", "Hostname"}, {"address", hostname}}})}}}};
}

Identity bootstrapFor(const std::string& node) {
  return Identity{Role::Bootstrap, "system:bootstrap:" + node, {"system:bootstrappers"}, node};
}
Identity nodeIdentity(const std::string& node) {
  return Identity{Role::Node, "system:node:" + node, {"system:nodes"}, node};
}

CertificateRequest csrFor(const std::string& cn, std::vector<std::string> orgs = {"system:nodes"},
                          SubjectAltNames sans = {}) {
  auto r = makeCertificateRequest(cn, orgs, sans);
  EXPECT_TRUE(r) << r.error().message;
  return *r;
}

class Issuer : public ::testing::Test {
 protected:
  PemPair ca = *makeCertificateAuthority();
  std::map<std::string, Json> nodes = {{"node-a", nodeObject("node-a", "10.0.0.5", "host-a")}};
  NodeCertificateIssuer issuer{ca, [this](const std::string& name) -> std::optional<Json> {
                                 auto it = nodes.find(name);
                                 if (it == nodes.end()) return std::nullopt;
                                 return it->second;
                               }};
};

}  // namespace

TEST_F(Issuer, BootstrapTokenBuysItsNodesClientCertificateWhichAuthenticatesAsThatNode) {
  auto csr = csrFor("system:node:node-a");
  auto cert = issuer.issue(bootstrapFor("node-a"), NodeCertificateUsage::Client, csr.csrPem);
  ASSERT_TRUE(cert) << cert.error().message;
  ASSERT_TRUE(verifyCertificate(*cert, ca.certPem, csr.keyPem));
  auto facts = inspectCertificate(*cert);
  ASSERT_TRUE(facts);
  EXPECT_EQ(facts->commonName, "system:node:node-a");
  EXPECT_EQ(facts->organizations, std::vector<std::string>{"system:nodes"});
  EXPECT_TRUE(facts->sans.ips.empty() && facts->sans.dnsNames.empty());
  EXPECT_GT(facts->notAfter - facts->notBefore, 300LL * 24 * 3600);
  // A certificate from another CA does not verify; the issued one not with another key.
  EXPECT_FALSE(verifyCertificate(*cert, makeCertificateAuthority()->certPem));
  EXPECT_FALSE(verifyCertificate(*cert, ca.certPem, csrFor("system:node:node-a").keyPem));

  // What the HTTPS server hands the handler for that certificate: node node-a.
  HttpRequest req;
  req.clientCertVerified = true;
  req.clientCertCommonName = facts->commonName;
  req.clientCertOrganizations = facts->organizations;
  Identity who = authenticate(req, "tok");
  EXPECT_EQ(who.role, Role::Node);
  EXPECT_EQ(who.nodeName, "node-a");
}

TEST_F(Issuer, RefusesOtherNodesWrongSubjectsAndBrokenRequests) {
  auto other = issuer.issue(bootstrapFor("node-a"), NodeCertificateUsage::Client, csrFor("system:node:node-b").csrPem);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, EACCES);
  EXPECT_NE(other.error().message.find("node-b"), std::string::npos) << other.error().message;
  EXPECT_EQ(issuer.issue(nodeIdentity("node-a"), NodeCertificateUsage::Client, csrFor("system:node:node-b").csrPem)
                .error()
                .code,
            EACCES);

  auto masters = issuer.issue(bootstrapFor("node-a"), NodeCertificateUsage::Client,
                              csrFor("system:node:node-a", {"system:nodes", "system:masters"}).csrPem);
  ASSERT_FALSE(masters);
  EXPECT_EQ(masters.error().code, EINVAL);
  EXPECT_NE(masters.error().message.find("system:nodes"), std::string::npos);
  EXPECT_EQ(issuer.issue(bootstrapFor("node-a"), NodeCertificateUsage::Client, csrFor("admin").csrPem).error().code,
            EINVAL);
  auto withSans = issuer.issue(bootstrapFor("node-a"), NodeCertificateUsage::Client,
                               csrFor("system:node:node-a", {"system:nodes"}, {{}, {"10.0.0.5"}}).csrPem);
  ASSERT_FALSE(withSans);
  EXPECT_NE(withSans.error().message.find("subjectAltNames"), std::string::npos);

  auto garbage = issuer.issue(bootstrapFor("node-a"), NodeCertificateUsage::Client, "not a request");
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code, EINVAL);
  EXPECT_NE(garbage.error().message.find("CERTIFICATE REQUEST"), std::string::npos) << garbage.error().message;

  // A request whose signature bytes were changed: its sender does not prove the key.
  std::string tampered = csrFor("system:node:node-a").csrPem;
  auto end = tampered.find("-----END");
  ASSERT_NE(end, std::string::npos);
  std::size_t at = end - 6;  // inside the last base64 line: the signature's end
  tampered[at] = tampered[at] == 'A' ? 'B' : 'A';
  auto bad = issuer.issue(bootstrapFor("node-a"), NodeCertificateUsage::Client, tampered);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, EINVAL) << bad.error().message;

  Identity view{Role::View, "viewer", {"ferry:view"}, ""};
  EXPECT_EQ(issuer.issue(view, NodeCertificateUsage::Client, csrFor("system:node:node-a").csrPem).error().code, EACCES);
  EXPECT_TRUE(issuer.issue(Identity{Role::Admin, "admin"}, NodeCertificateUsage::Client, csrFor("system:node:node-z").csrPem));
}

TEST_F(Issuer, ServingCertificateOnlyForTheRegisteredNodesOwnAddresses) {
  SubjectAltNames own{{"node-a", "host-a"}, {"10.0.0.5"}};
  auto csr = csrFor("system:node:node-a", {"system:nodes"}, own);
  // The token alone does not buy a serving certificate.
  EXPECT_EQ(issuer.issue(bootstrapFor("node-a"), NodeCertificateUsage::Serving, csr.csrPem).error().code, EACCES);

  auto cert = issuer.issue(nodeIdentity("node-a"), NodeCertificateUsage::Serving, csr.csrPem);
  ASSERT_TRUE(cert) << cert.error().message;
  auto facts = inspectCertificate(*cert);
  ASSERT_TRUE(facts);
  EXPECT_EQ(facts->sans.ips, std::vector<std::string>{"10.0.0.5"});
  EXPECT_EQ(facts->sans.dnsNames, (std::vector<std::string>{"node-a", "host-a"}));
  ASSERT_TRUE(verifyCertificate(*cert, ca.certPem, csr.keyPem));

  auto elsewhere = issuer.issue(nodeIdentity("node-a"), NodeCertificateUsage::Serving,
                                csrFor("system:node:node-a", {"system:nodes"}, {{"node-a"}, {"10.0.0.1"}}).csrPem);
  ASSERT_FALSE(elsewhere);
  EXPECT_EQ(elsewhere.error().code, EACCES);
  EXPECT_NE(elsewhere.error().message.find("10.0.0.1"), std::string::npos) << elsewhere.error().message;
  auto otherName = issuer.issue(nodeIdentity("node-a"), NodeCertificateUsage::Serving,
                                csrFor("system:node:node-a", {"system:nodes"}, {{"kubernetes"}, {}}).csrPem);
  ASSERT_FALSE(otherName);
  EXPECT_NE(otherName.error().message.find("kubernetes"), std::string::npos);
  EXPECT_EQ(issuer.issue(nodeIdentity("node-a"), NodeCertificateUsage::Serving, csrFor("system:node:node-a").csrPem)
                .error()
                .code,
            EINVAL);
  auto unregistered = issuer.issue(nodeIdentity("node-c"), NodeCertificateUsage::Serving,
                                   csrFor("system:node:node-c", {"system:nodes"}, {{"node-c"}, {}}).csrPem);
  ASSERT_FALSE(unregistered);
  EXPECT_NE(unregistered.error().message.find("not registered"), std::string::npos);
}

TEST(Auth, JoinTokenIsOnlyABootstrapIdentity) {
  HttpRequest token;
  token.headers["authorization"] = "Bearer node-a:tok";
  Identity who = authenticate(token, "tok");
  ASSERT_EQ(who.role, Role::Bootstrap);
  EXPECT_EQ(who.nodeName, "node-a");
  RequestAttributes endpoint;
  endpoint.verb = "create";
  endpoint.path = kNodeCertificatePath;
  EXPECT_TRUE(authorize(who, endpoint).allowed);
  endpoint.verb = "get";
  EXPECT_FALSE(authorize(who, endpoint).allowed);
  RequestAttributes pods{true, "list", "", "pods", "", "", "", "/api/v1/pods"};
  auto decision = authorize(who, pods);
  EXPECT_FALSE(decision.allowed);
  EXPECT_NE(decision.reason.find("join token only"), std::string::npos) << decision.reason;
  RequestAttributes ownNode{true, "get", "", "nodes", "", "", "node-a", ""};
  EXPECT_FALSE(authorize(who, ownNode).allowed);
}

namespace {

// The real handler on SQLite with the issuer behind kNodeCertificatePath.
class HandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("ferry-nodecerts-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto s = openStore("sqlite", dir_.string());
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
    registry_ = std::make_unique<Registry>(*store_, ServerConfig{});
    ASSERT_TRUE(registry_->bootstrap("127.0.0.1", 6443));
    issuer_ = std::make_unique<NodeCertificateIssuer>(ca_, [this](const std::string& name) -> std::optional<Json> {
      auto n = registry_->get("nodes", "", name);
      if (!n) return std::nullopt;
      return *n;
    });
    ApiHandlerOptions options;
    options.joinToken = "tok";
    options.caPem = ca_.certPem;
    options.serveNodeCertificate = [this](const HttpRequest& r, const Identity& w) { return issuer_->serve(r, w); };
    handler_ = std::make_unique<ApiHandler>(*registry_, options);
  }
  void TearDown() override {
    handler_.reset();
    registry_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  HttpResponse call(HttpRequest req) { return handler_->handle(req); }
  static HttpRequest asToken(const std::string& node, std::string method, std::string path, std::string body = {}) {
    HttpRequest r;
    r.method = std::move(method);
    r.path = path;
    r.target = path;
    r.body = std::move(body);
    r.headers["authorization"] = "Bearer " + node + ":tok";
    r.headers["content-type"] = "application/json";
    return r;
  }
  static HttpRequest asCertificate(const std::string& certPem, std::string method, std::string path,
                                   std::string body = {}) {
    auto facts = inspectCertificate(certPem);
    HttpRequest r;
    r.method = std::move(method);
    r.path = path;
    r.target = path;
    r.body = std::move(body);
    r.headers["content-type"] = "application/json";
    r.clientCertVerified = true;  // what the TLS layer sets for a CA-signed certificate
    r.clientCertCommonName = facts->commonName;
    r.clientCertOrganizations = facts->organizations;
    return r;
  }
  PemPair ca_ = *makeCertificateAuthority();
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<NodeCertificateIssuer> issuer_;
  std::unique_ptr<ApiHandler> handler_;
};

Json podOn(const std::string& name, const std::string& node) {
  return Json::parse(R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":")" + name +
                     R"(","namespace":"default"},"spec":{"nodeName":")" + node +
                     R"(","containers":[{"name":"c","image":"busybox"}]}})");
}

}  // namespace

TEST_F(HandlerTest, TokenGetsTheCertificateThenOnlyTheCertificateWorksWithNodeRestriction) {
  // With the token: everything but the certificate endpoint is forbidden, discovery included.
  for (const char* path : {"/api/v1/pods", "/api", "/apis", "/api/v1/nodes/node-a"}) {
    auto r = call(asToken("node-a", "GET", path));
    EXPECT_EQ(r.status, 403) << path << ": " << r.body;
    EXPECT_NE(r.body.find("join token only"), std::string::npos) << r.body;
  }
  auto create = call(asToken("node-a", "POST", "/api/v1/nodes", nodeObject("node-a", "10.0.0.5", "h").dump()));
  EXPECT_EQ(create.status, 403) << create.body;
  auto wrongToken = asToken("node-a", "GET", "/api/v1/pods");
  wrongToken.headers["authorization"] = "Bearer node-a:nope";
  EXPECT_EQ(call(wrongToken).status, 401);

  auto csr = csrFor("system:node:node-a");
  auto issued = call(asToken("node-a", "POST", kNodeCertificatePath, Json{{"usage", "client"}, {"csr", csr.csrPem}}.dump()));
  ASSERT_EQ(issued.status, 200) << issued.body;
  Json answer = Json::parse(issued.body);
  std::string cert = answer.value("certificate", "");
  EXPECT_EQ(answer.value("ca", ""), ca_.certPem);
  ASSERT_TRUE(verifyCertificate(cert, ca_.certPem, csr.keyPem));
  auto badUsage = call(asToken("node-a", "POST", kNodeCertificatePath, Json{{"usage", "admin"}, {"csr", csr.csrPem}}.dump()));
  EXPECT_EQ(badUsage.status, 400);
  EXPECT_NE(badUsage.body.find("usage"), std::string::npos);

  // With the certificate: the node registers itself, reads, and may change its own pods only.
  EXPECT_EQ(call(asCertificate(cert, "POST", "/api/v1/nodes", nodeObject("node-a", "10.0.0.5", "h").dump())).status, 201);
  EXPECT_EQ(call(asCertificate(cert, "GET", "/api/v1/pods")).status, 200);
  ASSERT_TRUE(registry_->create("pods", podOn("mine", "node-a")));
  ASSERT_TRUE(registry_->create("pods", podOn("theirs", "node-b")));
  std::string patch = R"({"status":{"phase":"Running"}})";
  auto mine = asCertificate(cert, "PATCH", "/api/v1/namespaces/default/pods/mine/status", patch);
  mine.headers["content-type"] = "application/merge-patch+json";
  EXPECT_EQ(call(mine).status, 200);
  auto theirs = asCertificate(cert, "PATCH", "/api/v1/namespaces/default/pods/theirs/status", patch);
  theirs.headers["content-type"] = "application/merge-patch+json";
  auto refused = call(theirs);
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_NE(refused.body.find("not bound to node node-a"), std::string::npos) << refused.body;
  EXPECT_EQ(call(asCertificate(cert, "DELETE", "/api/v1/namespaces/default/pods/theirs")).status, 403);
  EXPECT_EQ(call(asCertificate(cert, "POST", "/api/v1/nodes", nodeObject("node-b", "10.0.0.6", "h").dump())).status, 403);

  // The serving certificate, asked with the node's certificate once its Node exists.
  auto serving = csrFor("system:node:node-a", {"system:nodes"}, {{"node-a"}, {"10.0.0.5"}});
  auto servingAnswer = call(asCertificate(cert, "POST", kNodeCertificatePath,
                                          Json{{"usage", "serving"}, {"csr", serving.csrPem}}.dump()));
  ASSERT_EQ(servingAnswer.status, 200) << servingAnswer.body;
  auto stolen = csrFor("system:node:node-a", {"system:nodes"}, {{"node-a"}, {"10.0.0.6"}});
  auto stolenAnswer = call(asCertificate(cert, "POST", kNodeCertificatePath,
                                         Json{{"usage", "serving"}, {"csr", stolen.csrPem}}.dump()));
  EXPECT_EQ(stolenAnswer.status, 403) << stolenAnswer.body;
}
