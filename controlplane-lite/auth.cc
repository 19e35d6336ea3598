#include "controlplane-lite/auth.h"

#include "controlplane-lite/http_server.h"

#include <fmt/format.h>
#include <openssl/crypto.h>

#include <algorithm>

namespace ferry::cp {

namespace {

bool constantTimeEquals(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool isValidNodeName(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

bool isReadVerb(const std::string& verb) { return verb == "get" || verb == "list" || verb == "watch"; }

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

Decision allow() { return {true, ""}; }
Decision deny(std::string reason) { return {false, std::move(reason)}; }

Decision authorizeNode(const Identity& who, const RequestAttributes& a, const std::function<std::string()>& boundNode) {
  if (!a.resourceRequest) return allow();
  const std::string& r = a.resource;
  const std::string& g = a.group;
  bool read = isReadVerb(a.verb);
  if (g.empty() && r == "nodes") {
    if (read && a.subresource.empty()) return allow();
    if ((a.verb == "create" || a.verb == "update" || a.verb == "patch" || a.verb == "get") &&
        (a.subresource.empty() || a.subresource == "status") && a.name == who.nodeName)
      return allow();
    return deny("a node may only change its own Node object");
  }
  if (g == "coordination.k8s.io" && r == "leases") {
    if (a.ns == "kube-node-lease" && (a.name == who.nodeName || (read && a.name.empty()))) return allow();
    return deny("a node may only use its own Lease in kube-node-lease");
  }
  if (g.empty() && r == "pods") {
    if (read && (a.subresource.empty())) return allow();
    if (a.name.empty()) return deny("a node may not create or change pods in bulk");
    bool mine = boundNode && boundNode() == who.nodeName;
    if (!mine) return deny("the pod is not bound to node " + who.nodeName);
    if ((a.verb == "update" || a.verb == "patch" || a.verb == "get") && a.subresource == "status") return allow();
    if (a.verb == "delete" && a.subresource.empty()) return allow();
    return deny("a node may only update the status of and delete pods bound to it");
  }
  if (g.empty() && r == "events") {
    if (a.verb == "create" || a.verb == "update" || a.verb == "patch" || read) return allow();
    return deny("a node may not delete events");
  }
  static const std::vector<std::pair<std::string, std::string>> readable = {
      {"", "services"}, {"", "endpoints"}, {"discovery.k8s.io", "endpointslices"}, {"", "configmaps"},
      {"", "secrets"},  {"", "namespaces"}, {"", "serviceaccounts"}};
  for (const auto& [rg, rr] : readable)
    if (rg == g && rr == r) {
      if (read && a.subresource.empty()) return allow();
      return deny("a node may only read " + r);
    }
  return deny("a node may not access " + (g.empty() ? r : r + "." + g));
}

}  // namespace

Identity authenticate(const HttpRequest& request, const std::string& joinToken) {
  Identity id;
  if (request.clientCertVerified) {
    id.user = request.clientCertCommonName;
    id.groups = request.clientCertOrganizations;
    if (contains(id.groups, "system:masters")) {
      id.role = Role::Admin;
    } else if (contains(id.groups, "system:nodes") && id.user.rfind("system:node:", 0) == 0) {
      id.role = Role::Node;
      id.nodeName = id.user.substr(std::string("system:node:").size());
    } else if (contains(id.groups, "ferry:view")) {
      id.role = Role::View;
    } else {
      id.role = Role::Unknown;
    }
    return id;
  }
  std::string auth = request.header("authorization");
  if (auth.empty()) return id;
  id.role = Role::Unknown;
  const std::string bearer = "Bearer ";
  if (auth.rfind(bearer, 0) != 0 || joinToken.empty()) return id;
  std::string token = auth.substr(bearer.size());
  while (!token.empty() && token.back() == ' ') token.pop_back();
  std::string node = request.header(kNodeNameHeader);
  if (auto colon = token.rfind(':'); colon != std::string::npos) {
    node = token.substr(0, colon);
    token = token.substr(colon + 1);
  }
  if (!constantTimeEquals(token, joinToken) || !isValidNodeName(node)) return id;
  // The shared token proves only that the caller may join, not which node it is:
  // it buys a certificate request for the name it gives, nothing else.
  id.role = Role::Bootstrap;
  id.nodeName = node;
  id.user = "system:bootstrap:" + node;
  id.groups = {"system:bootstrappers", "system:authenticated"};
  return id;
}

bool isPublicPath(const std::string& path) {
  return path == "/healthz" || path == "/livez" || path == "/readyz" || path == "/version" ||
         path.rfind("/healthz/", 0) == 0 || path.rfind("/livez/", 0) == 0 || path.rfind("/readyz/", 0) == 0;
}

Decision authorize(const Identity& who, const RequestAttributes& what, const std::function<std::string()>& boundNode) {
  switch (who.role) {
    case Role::Admin:
      return allow();
    case Role::Node:
      return authorizeNode(who, what, boundNode);
    case Role::Bootstrap:
      if (!what.resourceRequest && what.path == kNodeCertificatePath && what.verb == "create") return allow();
      return deny(fmt::format("the join token only allows requesting the node's certificate (POST {}); "
                              "authenticate with the certificate it issues",
                              kNodeCertificatePath));
    case Role::View:
      if (!what.resourceRequest) return allow();
      if (!isReadVerb(what.verb)) return deny("the view role is read-only");
      if (what.group.empty() && what.resource == "secrets") return deny("the view role may not read secrets");
      if (!what.subresource.empty() && what.subresource != "status" && what.subresource != "scale" &&
          what.subresource != "log")
        return deny("the view role may not use " + what.subresource);
      return allow();
    case Role::Anonymous:
      if (isPublicPath(what.path)) return allow();
      return deny("anonymous access");
    case Role::Unknown:
      return deny("unknown user");
  }
  return deny("no rule");
}

}  // namespace ferry::cp
