// Who is calling (authentication) and may they (authorization). A small fixed
// policy instead of RBAC:
//   admin — client certificate with O=system:masters: everything.
//   node  — a client certificate CN=system:node:<node>, O=system:nodes (issued by
//           node_certificates.h). Kubernetes' NodeRestriction: its own Node and Lease,
//           status and deletion of pods bound to it, events, and read of what its pods
//           need (pods, services, endpoints, endpointslices, configmaps, secrets,
//           namespaces, nodes).
//   bootstrap — the join token (Authorization: Bearer <node>:<token>, or Bearer <token>
//           plus header X-Ferry-Node-Name: <node>): only POST /v1-ferry/node-certificate
//           for that node's client certificate, as a Kubernetes bootstrap token may only
//           create CertificateSigningRequests. Everything else is 403.
//   view  — client certificate with O=ferry:view: get/list/watch of everything but secrets.
// Anonymous callers reach only /healthz, /livez, /readyz and /version.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace ferry::cp {

struct HttpRequest;

enum class Role { Anonymous, Admin, Node, Bootstrap, View, Unknown };

struct Identity {
  Role role = Role::Anonymous;
  std::string user;
  std::vector<std::string> groups;
  std::string nodeName;  // for Role::Node and Role::Bootstrap
};

// Header the agent sends next to the join token to name its node.
inline constexpr const char* kNodeNameHeader = "x-ferry-node-name";

// Never fails: an unauthenticated request yields Role::Anonymous, a presented but
// wrong token yields Role::Unknown (answer 401).
Identity authenticate(const HttpRequest& request, const std::string& joinToken);

// Where a node exchanges its join token (or, to renew, its current certificate) for a
// certificate signed by the cluster CA (node_certificates.h).
inline constexpr const char* kNodeCertificatePath = "/v1-ferry/node-certificate";

// Paths anyone may fetch.
bool isPublicPath(const std::string& path);

struct RequestAttributes {
  bool resourceRequest = false;
  std::string verb;  // get list watch create update patch delete deletecollection
  std::string group;
  std::string resource;  // plural
  std::string subresource;
  std::string ns;
  std::string name;
  std::string path;
};

struct Decision {
  bool allowed = false;
  std::string reason;
};

// `boundNode` returns spec.nodeName of the pod the request targets (called only
// for node requests on a named pod).
Decision authorize(const Identity& who, const RequestAttributes& what,
                   const std::function<std::string()>& boundNode = {});

}  // namespace ferry::cp
