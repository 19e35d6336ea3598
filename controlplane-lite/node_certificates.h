// Node credentials: a joining agent sends a certificate request (PKCS#10) and gets a
// certificate signed by the cluster CA, in one round trip:
//
//   POST /v1-ferry/node-certificate   {"usage": "client"|"serving", "csr": "<PEM>"}
//   200 {"kind": "NodeCertificate", "certificate": "<PEM>", "ca": "<PEM>"}
//
// A small endpoint as k3s has (/v1-k3s/client-kubelet.crt), not certificates.k8s.io
// CertificateSigningRequest objects: Kubernetes' bootstrap flow creates a CSR, has a
// controller approve and sign it and the kubelet watch it — three writes and a watch
// per node for what is, with auto-approval, one decision the API server can make at
// once. The rules are those of Kubernetes' signers:
//   client  (kube-apiserver-client-kubelet): CN "system:node:<name>", O exactly
//           ["system:nodes"], no SANs. Asked with the join token (bootstrap, for the
//           node the token names) or, to renew, with the node's current certificate.
//   serving (kubelet-serving): same subject, at least one DNS or IP SAN, no others.
//           Asked with the node's certificate, after its Node exists: every IP must be
//           one of the Node's InternalIP/ExternalIP addresses and every DNS name its
//           name or a Hostname/InternalDNS/ExternalDNS address (the check a careful
//           kubelet-serving approver makes), so that a node cannot get a certificate
//           for another machine's address.
// Admins may ask for any node.
#pragma once

#include "api/error.h"
#include "api/object.h"
#include "controlplane-lite/auth.h"
#include "controlplane-lite/certs.h"

#include <functional>
#include <optional>
#include <string>

namespace ferry::cp {

struct HttpRequest;
struct HttpResponse;

enum class NodeCertificateUsage { Client, Serving };

// Validity of issued node certificates; agents renew after 70% of it.
inline constexpr int kNodeCertificateValidDays = 365;

class NodeCertificateIssuer {
 public:
  // `findNode` returns the Node object by name (nullopt when there is none).
  using NodeLookup = std::function<std::optional<api::Json>(const std::string& name)>;
  NodeCertificateIssuer(PemPair ca, NodeLookup findNode, int validDays = kNodeCertificateValidDays);

  // The certificate (PEM) for `csrPem`, or why not: EACCES (403) when `who` may not
  // have it, EINVAL (400) when the request itself is wrong.
  Result<std::string> issue(const Identity& who, NodeCertificateUsage usage, const std::string& csrPem) const;

  // The HTTP endpoint around issue().
  HttpResponse serve(const HttpRequest& request, const Identity& who) const;

 private:
  PemPair ca_;
  NodeLookup findNode_;
  int validDays_;
};

}  // namespace ferry::cp
