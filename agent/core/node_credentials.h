// The node's own credentials (controlplane-lite/node_certificates.h has the server's
// side). On first join the agent makes a key and a certificate request, sends it with
// the join token and keeps what the cluster CA signed; from then on it uses only that
// certificate. Kept in <dataDir>/pki (0700, every file 0600):
//   ca.crt                  the cluster CA (copied at join, so later starts need no token)
//   node-client.{crt,key}   CN=system:node:<name>, O=system:nodes — the API server's node identity
//   node-serving.{crt,key}  the node API's (:10250) serving certificate for the node's addresses
// A stored certificate is reused while it chains to the CA, belongs to its key, names
// this node (and, for serving, exactly its current addresses) and has more than 30% of
// its life left; past that it is renewed with the current certificate; when it no
// longer fits (other CA, other name, expired) the agent joins again with the token.
#pragma once

#include "agent/agent_config.h"
#include "agent/core/api_client.h"
#include "controlplane-lite/certs.h"

#include <atomic>
#include <cstdint>
#include <string>

namespace ferry::agent {

struct NodeCredentialPaths {
  std::string dir, ca, clientCert, clientKey, servingCert, servingKey;
};
NodeCredentialPaths nodeCredentialPaths(const std::string& dataDir);

// True once 70% of [notBefore, notAfter] has passed at `now` (unix seconds): the
// kubelet renews in the same window.
bool renewalDue(std::int64_t notBefore, std::int64_t notAfter, std::int64_t now);

// Why `certPem`/`keyPem` cannot serve as `commonName`'s certificate under `caPem` at
// `now` (with exactly `sans` when given), or empty when it can.
std::string storedCertificateProblem(const std::string& certPem, const std::string& keyPem, const std::string& caPem,
                                     const std::string& commonName, const cp::SubjectAltNames* sans);

// The API server credentials of this node: --kubeconfig when given; else the stored
// client certificate, renewed when due; else a new one bought with --token-file
// (retrying for up to `timeoutSeconds` while the server cannot be reached).
Result<Credentials> ensureNodeClientCredentials(const AgentConfig& config, const std::string& nodeName,
                                                int timeoutSeconds, const std::atomic<bool>& stop);

// For a long-running agent (called every hour): when the stored client certificate is
// due at `now`, a new key and certificate are asked for with the current one (the
// node's own identity, no token), stored, and swapped into `client`. Returns whether
// it renewed. Nothing to do for a --kubeconfig credential.
Result<bool> renewClientCertificateIfDue(ApiClient& client, const AgentConfig& config, const std::string& nodeName,
                                         std::int64_t now);

struct ServingCertificate {
  std::string certPem;
  std::string keyPem;
};
// The node API's serving certificate for `sans` (the node's name, hostname and
// InternalIP, as registered in its Node): stored, or asked for with `client` (the
// node's own credential; the Node must exist).
Result<ServingCertificate> ensureNodeServingCertificate(ApiClient& client, const std::string& dataDir,
                                                        const std::string& caPem, const std::string& nodeName,
                                                        const cp::SubjectAltNames& sans);

}  // namespace ferry::agent
