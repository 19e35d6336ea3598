// The cluster's own PKI: a CA made on first start, a serving certificate, an
// admin client certificate, the admin kubeconfig and the node join token.
// Later starts reuse what is on disk.
#pragma once

#include "api/error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::cp {

struct PemPair {
  std::string certPem;
  std::string keyPem;
};

struct ClusterCredentials {
  PemPair ca;
  PemPair serving;
  PemPair admin;
  std::string joinToken;
  std::string tlsDir;  // <dataDir>/tls
};

struct SubjectAltNames {
  std::vector<std::string> dnsNames;
  std::vector<std::string> ips;
};

// Creates (or loads) everything under dataDir: tls/{ca,server,admin}.{crt,key}, token, kubeconfig.
// `serverUrl` goes into the kubeconfig.
Result<ClusterCredentials> ensureClusterCredentials(const std::string& dataDir, const SubjectAltNames& sans,
                                                    const std::string& serverUrl);

// Signs a fresh EC P-256 certificate with the CA. Client certificates carry
// `commonName` as the user and `organizations` as its groups.
Result<PemPair> issueCertificate(const PemPair& ca, const std::string& commonName,
                                 const std::vector<std::string>& organizations, const SubjectAltNames& sans,
                                 bool serverAuth, int validDays);

// A fresh self-signed EC P-256 CA (not written anywhere). The agent signs its own
// serving certificate with one, as the kubelet self-signs when it has no other.
Result<PemPair> makeCertificateAuthority();

// ---- Certificate signing requests (node credentials, see node_certificates.h) ----

// A fresh EC P-256 key and a PKCS#10 request for it, self-signed with that key.
struct CertificateRequest {
  std::string csrPem;
  std::string keyPem;
};
Result<CertificateRequest> makeCertificateRequest(const std::string& commonName,
                                                  const std::vector<std::string>& organizations,
                                                  const SubjectAltNames& sans);

// What a request asks for. Only returned when the request's self-signature holds
// (the sender has the private key). `otherSans` counts SANs that are neither DNS nor IP.
struct RequestedSubject {
  std::string commonName;
  std::vector<std::string> organizations;
  SubjectAltNames sans;
  int otherSans = 0;
};
Result<RequestedSubject> parseCertificateRequest(const std::string& csrPem);

// Signs the public key of `csrPem` with the CA. The subject and SANs are the caller's
// (already checked) decision, not copied from the request.
Result<std::string> signCertificateRequest(const PemPair& ca, const std::string& csrPem, const std::string& commonName,
                                           const std::vector<std::string>& organizations, const SubjectAltNames& sans,
                                           bool serverAuth, int validDays);

// What a certificate says (for the agent to decide whether its stored one still fits).
struct CertificateFacts {
  std::string commonName;
  std::vector<std::string> organizations;
  SubjectAltNames sans;
  std::int64_t notBefore = 0;  // unix seconds
  std::int64_t notAfter = 0;
};
Result<CertificateFacts> inspectCertificate(const std::string& certPem);

// Succeeds when `certPem` is signed by `caPem` and valid now, and (when given) `keyPem`
// is its private key; the error says which check failed.
Status verifyCertificate(const std::string& certPem, const std::string& caPem, const std::string& keyPem = {});

// Writes `content` to `path` through a temporary file and rename (never half-written),
// with `mode` set before the rename.
Status writeFileAtomically(const std::string& path, const std::string& content, unsigned mode);

// A kubeconfig with the certificates embedded (base64 *-data fields).
std::string makeKubeconfig(const std::string& serverUrl, const std::string& caPem, const PemPair& client,
                           const std::string& userName);

// 32 random bytes as hex.
std::string randomHex(std::size_t bytes);

}  // namespace ferry::cp
