#include "controlplane-lite/node_certificates.h"

#include "api/log.h"
#include "api/names.h"
#include "controlplane-lite/api_handler.h"
#include "controlplane-lite/http_server.h"

#include <fmt/format.h>

#include <algorithm>

namespace ferry::cp {

namespace {

constexpr std::string_view kNodeUserPrefix = "system:node:";

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// The addresses of a Node object, split into what may go in IP and in DNS SANs.
void nodeAddresses(const api::Json& node, std::vector<std::string>& ips, std::vector<std::string>& dnsNames) {
  dnsNames.push_back(api::nameOf(node));
  for (const auto& a : api::at<api::Json>(node, {"status", "addresses"}, api::Json::array())) {
    std::string type = a.value("type", ""), address = a.value("address", "");
    if (address.empty()) continue;
    if (type == "InternalIP" || type == "ExternalIP") ips.push_back(address);
    if (type == "Hostname" || type == "InternalDNS" || type == "ExternalDNS") dnsNames.push_back(address);
  }
}

}  // namespace

NodeCertificateIssuer::NodeCertificateIssuer(PemPair ca, NodeLookup findNode, int validDays)
    : ca_(std::move(ca)), findNode_(std::move(findNode)), validDays_(validDays) {}

Result<std::string> NodeCertificateIssuer::issue(const Identity& who, NodeCertificateUsage usage,
                                                 const std::string& csrPem) const {
  auto asked = parseCertificateRequest(csrPem);
  if (!asked) return fail(EINVAL, asked.error().message);
  if (asked->commonName.rfind(kNodeUserPrefix, 0) != 0)
    return fail(EINVAL, fmt::format("the request's common name must be \"system:node:<node name>\", not \"{}\"",
                                    asked->commonName));
  std::string node = asked->commonName.substr(kNodeUserPrefix.size());
  if (auto errors = api::dns1123SubdomainErrors(node); !errors.empty())
    return fail(EINVAL, fmt::format("node name \"{}\" in the request: {}", node, errors.front()));
  if (asked->organizations != std::vector<std::string>{"system:nodes"})
    return fail(EINVAL, "the request's organizations must be exactly [\"system:nodes\"]");

  switch (who.role) {
    case Role::Admin:
      break;
    case Role::Bootstrap:
      if (usage != NodeCertificateUsage::Client)
        return fail(EACCES, "the join token only buys a client certificate; ask for the serving certificate with it");
      [[fallthrough]];
    case Role::Node:
      if (who.nodeName != node)
        return fail(EACCES, fmt::format("user \"{}\" may not get a certificate for node \"{}\"", who.user, node));
      break;
    default:
      return fail(EACCES, fmt::format("user \"{}\" may not get node certificates", who.user));
  }

  SubjectAltNames sans;
  if (usage == NodeCertificateUsage::Client) {
    if (!asked->sans.dnsNames.empty() || !asked->sans.ips.empty() || asked->otherSans > 0)
      return fail(EINVAL, "a node client certificate request must not carry subjectAltNames");
  } else {
    if (asked->otherSans > 0)
      return fail(EINVAL, "a node serving certificate may only name DNS names and IPv4 addresses");
    if (asked->sans.dnsNames.empty() && asked->sans.ips.empty())
      return fail(EINVAL, "a node serving certificate request needs at least one DNS name or IP address");
    auto object = findNode_ ? findNode_(node) : std::nullopt;
    if (!object)
      return fail(EACCES, fmt::format("node \"{}\" is not registered: register the Node before asking for its "
                                      "serving certificate",
                                      node));
    std::vector<std::string> ips, dnsNames;
    nodeAddresses(*object, ips, dnsNames);
    for (const auto& ip : asked->sans.ips)
      if (!contains(ips, ip))
        return fail(EACCES, fmt::format("{} is not an InternalIP or ExternalIP of node \"{}\"", ip, node));
    for (const auto& name : asked->sans.dnsNames)
      if (!contains(dnsNames, name))
        return fail(EACCES, fmt::format("{} is neither the name nor a DNS address of node \"{}\"", name, node));
    sans = asked->sans;
  }
  auto cert = signCertificateRequest(ca_, csrPem, asked->commonName, asked->organizations, sans,
                                     usage == NodeCertificateUsage::Serving, validDays_);
  if (!cert) return fail(cert.error());
  log::info("issued a {} certificate for node {} (asked by {})",
            usage == NodeCertificateUsage::Client ? "client" : "serving", node, who.user);
  return cert;
}

HttpResponse NodeCertificateIssuer::serve(const HttpRequest& request, const Identity& who) const {
  if (request.method != "POST")
    return statusResponse(405, "MethodNotAllowed", fmt::format("{} takes POST only", kNodeCertificatePath));
  auto body = api::Json::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    return statusResponse(400, "BadRequest", "the body must be a JSON object {\"usage\": ..., \"csr\": ...}");
  std::string usageName = body.value("usage", std::string());
  NodeCertificateUsage usage;
  if (usageName == "client") usage = NodeCertificateUsage::Client;
  else if (usageName == "serving") usage = NodeCertificateUsage::Serving;
  else return statusResponse(400, "BadRequest", fmt::format("usage: want \"client\" or \"serving\", got \"{}\"", usageName));
  if (!body.contains("csr") || !body["csr"].is_string())
    return statusResponse(400, "BadRequest", "csr: a PEM certificate request is required");
  auto cert = issue(who, usage, body["csr"].get<std::string>());
  if (!cert) {
    if (cert.error().code == EACCES) return statusResponse(403, "Forbidden", cert.error().message);
    if (cert.error().code == EINVAL) return statusResponse(400, "BadRequest", cert.error().message);
    return statusResponse(500, "InternalError", cert.error().message);
  }
  HttpResponse r;
  r.body = api::Json{{"kind", "NodeCertificate"}, {"apiVersion", "ferry.dev/v1"}, {"certificate", *cert}, {"ca", ca_.certPem}}
               .dump();
  return r;
}

}  // namespace ferry::cp
