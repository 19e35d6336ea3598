// The cluster's own PKI: a CA made on first start, a serving certificate, an
// admin client certificate, the admin kubeconfig and the node join token.
// Later starts reuse what is on disk.
#pragma once

#include "api/error.h"

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

// A kubeconfig with the certificates embedded (base64 *-data fields).
std::string makeKubeconfig(const std::string& serverUrl, const std::string& caPem, const PemPair& client,
                           const std::string& userName);

// 32 random bytes as hex.
std::string randomHex(std::size_t bytes);

}  // namespace ferry::cp
