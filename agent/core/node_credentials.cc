#include "agent/core/node_credentials.h"

#include "api/log.h"
#include "controlplane-lite/auth.h"

#include <fmt/format.h>

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace ferry::agent {
namespace {

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.erase(s.begin());
  return s;
}

// The file's content, or nullopt when it cannot be read.
std::optional<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::int64_t nowSeconds() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

Status ensurePrivateDir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fail(ec.value(), "create " + dir + ": " + ec.message());
  if (::chmod(dir.c_str(), 0700) != 0) return failErrno("chmod " + dir);
  return {};
}

// Asks the API server to sign a fresh key's request; returns the key and certificate.
Result<cp::PemPair> requestCertificate(ApiClient& client, const std::string& usage, const std::string& commonName,
                                       const cp::SubjectAltNames& sans, const std::string& caPem, int timeoutSeconds,
                                       const std::atomic<bool>* stop) {
  auto request = cp::makeCertificateRequest(commonName, {"system:nodes"}, sans);
  if (!request) return fail(request.error());
  api::Json body = {{"usage", usage}, {"csr", request->csrPem}};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutSeconds);
  while (true) {
    auto answer = client.post(cp::kNodeCertificatePath, body);
    if (answer) {
      std::string certPem = answer->value("certificate", std::string());
      if (auto st = cp::verifyCertificate(certPem, caPem, request->keyPem); !st)
        return fail(st.error().wrap("the " + usage + " certificate the API server returned"));
      return cp::PemPair{certPem, request->keyPem};
    }
    // Only an unreachable server is worth waiting for; a refusal will not change.
    bool unreachable = answer.error().code == ECONNREFUSED;
    if (!unreachable || std::chrono::steady_clock::now() > deadline || (stop && *stop))
      return fail(answer.error().wrap("node " + usage + " certificate"));
    log::info("node {} certificate: API server not reachable yet ({}), retrying", usage, answer.error().message);
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
}

Status storePair(const std::string& certPath, const std::string& keyPath, const cp::PemPair& pair) {
  // Key first: a crash in between leaves a key that does not match the old
  // certificate, which the next start notices and replaces.
  if (auto st = cp::writeFileAtomically(keyPath, pair.keyPem, 0600); !st) return st;
  return cp::writeFileAtomically(certPath, pair.certPem, 0600);
}

Credentials withClientCertificate(const std::string& server, const std::string& caPem, const cp::PemPair& pair) {
  Credentials c;
  c.server = server;
  c.caPem = caPem;
  c.clientCertPem = pair.certPem;
  c.clientKeyPem = pair.keyPem;
  return c;
}

}  // namespace

NodeCredentialPaths nodeCredentialPaths(const std::string& dataDir) {
  NodeCredentialPaths p;
  p.dir = dataDir + "/pki";
  p.ca = p.dir + "/ca.crt";
  p.clientCert = p.dir + "/node-client.crt";
  p.clientKey = p.dir + "/node-client.key";
  p.servingCert = p.dir + "/node-serving.crt";
  p.servingKey = p.dir + "/node-serving.key";
  return p;
}

bool renewalDue(std::int64_t notBefore, std::int64_t notAfter, std::int64_t now) {
  if (notAfter <= notBefore) return true;
  return now >= notBefore + (notAfter - notBefore) * 7 / 10;
}

std::string storedCertificateProblem(const std::string& certPem, const std::string& keyPem, const std::string& caPem,
                                     const std::string& commonName, const cp::SubjectAltNames* sans) {
  if (auto st = cp::verifyCertificate(certPem, caPem, keyPem); !st) return st.error().message;
  auto facts = cp::inspectCertificate(certPem);
  if (!facts) return facts.error().message;
  if (facts->commonName != commonName)
    return fmt::format("it is for \"{}\", this node is \"{}\"", facts->commonName, commonName);
  if (sans && (sorted(facts->sans.ips) != sorted(sans->ips) || sorted(facts->sans.dnsNames) != sorted(sans->dnsNames)))
    return "it names other addresses than the node has now";
  return {};
}

Result<Credentials> ensureNodeClientCredentials(const AgentConfig& config, const std::string& nodeName,
                                                int timeoutSeconds, const std::atomic<bool>& stop) {
  if (!config.kubeconfig.empty()) return loadKubeconfig(config.kubeconfig);
  NodeCredentialPaths paths = nodeCredentialPaths(config.dataDir);
  if (auto st = ensurePrivateDir(paths.dir); !st) return fail(st.error());

  // The CA beside the token (the operator's current word) wins over the copy kept at join.
  std::optional<std::string> caPem;
  std::string caSource;
  if (!config.tokenFile.empty()) {
    caSource = (fs::path(config.tokenFile).parent_path() / "tls" / "ca.crt").string();
    caPem = readFile(caSource);
  }
  if (!caPem) {
    caPem = readFile(paths.ca);
    if (!caPem)
      return fail(ENOENT, caSource.empty() ? "cluster CA " + paths.ca + " not found"
                                           : "cluster CA " + caSource + " not found beside --token-file");
  }
  if (readFile(paths.ca) != caPem)
    if (auto st = cp::writeFileAtomically(paths.ca, *caPem, 0600); !st) return fail(st.error());

  const std::string commonName = "system:node:" + nodeName;
  auto cert = readFile(paths.clientCert), key = readFile(paths.clientKey);
  std::string problem = cert && key ? storedCertificateProblem(*cert, *key, *caPem, commonName, nullptr)
                                    : "there is none yet";
  if (problem.empty()) {
    ApiClient self(withClientCertificate(config.server, *caPem, cp::PemPair{*cert, *key}));
    if (auto renewed = renewClientCertificateIfDue(self, config, nodeName, nowSeconds()); !renewed)
      log::warn("node client certificate due for renewal, keeping the current one: {}", renewed.error().message);
    log::info("using the node client certificate {}", paths.clientCert);
    return self.credentials();
  }

  // Join: the token buys this node's client certificate, and nothing else.
  if (config.tokenFile.empty())
    return fail(ENOENT, fmt::format("no usable node certificate in {} ({}) and no --token-file to get one",
                                    paths.dir, problem));
  auto token = readFile(config.tokenFile);
  if (!token) return fail(ENOENT, "--token-file " + config.tokenFile + ": cannot read");
  log::info("node certificate: {}; joining with the token from {}", problem, config.tokenFile);
  Credentials bootstrap;
  bootstrap.server = config.server;
  bootstrap.caPem = *caPem;
  bootstrap.bearerToken = nodeName + ":" + trim(*token);  // the token names the node it asks for
  ApiClient client(bootstrap);
  auto issued = requestCertificate(client, "client", commonName, {}, *caPem, timeoutSeconds, &stop);
  if (!issued) return fail(issued.error());
  if (auto st = storePair(paths.clientCert, paths.clientKey, *issued); !st) return fail(st.error());
  log::info("node client certificate issued by the cluster CA, kept in {}", paths.clientCert);
  return withClientCertificate(config.server, *caPem, *issued);
}

Result<bool> renewClientCertificateIfDue(ApiClient& client, const AgentConfig& config, const std::string& nodeName,
                                         std::int64_t now) {
  if (!config.kubeconfig.empty()) return false;
  NodeCredentialPaths paths = nodeCredentialPaths(config.dataDir);
  auto facts = cp::inspectCertificate(client.credentials().clientCertPem);
  if (!facts) return fail(facts.error().wrap("the node client certificate in use"));
  if (!renewalDue(facts->notBefore, facts->notAfter, now)) return false;
  auto caPem = readFile(paths.ca);
  if (!caPem) return fail(ENOENT, "cluster CA " + paths.ca + " not found");
  auto renewed = requestCertificate(client, "client", "system:node:" + nodeName, {}, *caPem, 10, nullptr);
  if (!renewed) return fail(renewed.error());
  if (auto st = storePair(paths.clientCert, paths.clientKey, *renewed); !st) return fail(st.error());
  client.setClientCertificate(renewed->certPem, renewed->keyPem);
  log::info("node client certificate renewed ({})", paths.clientCert);
  return true;
}

Result<ServingCertificate> ensureNodeServingCertificate(ApiClient& client, const std::string& dataDir,
                                                        const std::string& caPem, const std::string& nodeName,
                                                        const cp::SubjectAltNames& sans) {
  NodeCredentialPaths paths = nodeCredentialPaths(dataDir);
  if (auto st = ensurePrivateDir(paths.dir); !st) return fail(st.error());
  const std::string commonName = "system:node:" + nodeName;
  auto cert = readFile(paths.servingCert), key = readFile(paths.servingKey);
  std::string problem = cert && key ? storedCertificateProblem(*cert, *key, caPem, commonName, &sans)
                                    : "there is none yet";
  if (problem.empty()) {
    auto facts = cp::inspectCertificate(*cert);
    if (facts && !renewalDue(facts->notBefore, facts->notAfter, nowSeconds())) return ServingCertificate{*cert, *key};
    problem = "due for renewal";
  }
  log::info("node serving certificate: {}; asking the cluster CA", problem);
  auto issued = requestCertificate(client, "serving", commonName, sans, caPem, 30, nullptr);
  if (!issued) return fail(issued.error());
  if (auto st = storePair(paths.servingCert, paths.servingKey, *issued); !st) return fail(st.error());
  return ServingCertificate{issued->certPem, issued->keyPem};
}

}  // namespace ferry::agent
