#include "api/types.h"

namespace ferry::api {

IntOrString IntOrString::fromJson(const Json& j) {
  IntOrString v;
  if (j.is_number_integer()) {
    v.number = j.get<int>();
  } else if (j.is_string()) {
    v.isString = true;
    v.text = j.get<std::string>();
  }
  return v;
}

Result<Service> Service::fromJson(const Json& j) {
  if (!j.is_object()) return fail(EINVAL, "service: not an object");
  Service s;
  s.name = nameOf(j);
  s.ns = namespaceOf(j);
  s.uid = uidOf(j);
  const Json spec = j.value("spec", Json::object());
  s.type = spec.value("type", std::string("ClusterIP"));
  s.clusterIP = spec.value("clusterIP", std::string());
  if (spec.contains("clusterIPs") && spec["clusterIPs"].is_array()) {
    for (const auto& ip : spec["clusterIPs"])
      if (ip.is_string()) s.clusterIPs.push_back(ip.get<std::string>());
  }
  if (spec.contains("selector") && spec["selector"].is_object()) {
    s.hasSelector = true;
    s.selector = at<Labels>(spec, {"selector"});
  }
  s.sessionAffinity = spec.value("sessionAffinity", std::string("None"));
  s.affinityTimeoutSeconds = at<int>(spec, {"sessionAffinityConfig", "clientIP", "timeoutSeconds"}, 10800);
  s.externalName = spec.value("externalName", std::string());
  s.externalTrafficPolicy = spec.value("externalTrafficPolicy", std::string("Cluster"));
  s.internalTrafficPolicy = spec.value("internalTrafficPolicy", std::string("Cluster"));
  s.publishNotReadyAddresses = spec.value("publishNotReadyAddresses", false);
  if (spec.contains("ports") && spec["ports"].is_array()) {
    for (size_t i = 0; i < spec["ports"].size(); ++i) {
      const Json& p = spec["ports"][i];
      ServicePort port;
      port.name = p.value("name", std::string());
      port.protocol = p.value("protocol", std::string("TCP"));
      port.port = p.value("port", 0);
      if (port.port <= 0 || port.port > 65535)
        return fail(EINVAL, "service " + s.ns + "/" + s.name + ": spec.ports[" + std::to_string(i) + "].port: out of range");
      port.targetPort = p.contains("targetPort") ? IntOrString::fromJson(p["targetPort"]) : IntOrString{false, port.port, {}};
      if (!port.targetPort.isString && port.targetPort.number == 0) port.targetPort.number = port.port;
      port.nodePort = p.value("nodePort", 0);
      s.ports.push_back(std::move(port));
    }
  }
  return s;
}

Result<EndpointSlice> EndpointSlice::fromJson(const Json& j) {
  if (!j.is_object()) return fail(EINVAL, "endpointslice: not an object");
  EndpointSlice e;
  e.name = nameOf(j);
  e.ns = namespaceOf(j);
  e.serviceName = at<std::string>(j, {"metadata", "labels", "kubernetes.io/service-name"});
  e.addressType = j.value("addressType", std::string("IPv4"));
  if (j.contains("ports") && j["ports"].is_array()) {
    for (const auto& p : j["ports"]) {
      EndpointPort port;
      port.name = p.value("name", std::string());
      port.protocol = p.value("protocol", std::string("TCP"));
      port.port = p.value("port", 0);
      e.ports.push_back(std::move(port));
    }
  }
  if (j.contains("endpoints") && j["endpoints"].is_array()) {
    for (const auto& ep : j["endpoints"]) {
      Endpoint end;
      if (ep.contains("addresses") && ep["addresses"].is_array())
        for (const auto& a : ep["addresses"])
          if (a.is_string()) end.addresses.push_back(a.get<std::string>());
      const Json cond = ep.value("conditions", Json::object());
      // A nil `ready` means ready; `serving` defaults to `ready` (KEP-1672).
      end.ready = cond.contains("ready") && cond["ready"].is_boolean() ? cond["ready"].get<bool>() : true;
      end.serving = cond.contains("serving") && cond["serving"].is_boolean() ? cond["serving"].get<bool>() : end.ready;
      end.terminating = cond.contains("terminating") && cond["terminating"].is_boolean() && cond["terminating"].get<bool>();
      end.nodeName = ep.value("nodeName", std::string());
      end.hostname = ep.value("hostname", std::string());
      if (at<std::string>(ep, {"targetRef", "kind"}) == "Pod") end.targetPodName = at<std::string>(ep, {"targetRef", "name"});
      e.endpoints.push_back(std::move(end));
    }
  }
  return e;
}

std::string Node::internalIP() const {
  for (const auto& a : addresses)
    if (a.type == "InternalIP") return a.address;
  return {};
}

Result<Node> Node::fromJson(const Json& j) {
  if (!j.is_object()) return fail(EINVAL, "node: not an object");
  Node n;
  n.name = nameOf(j);
  n.podCIDR = at<std::string>(j, {"spec", "podCIDR"});
  n.unschedulable = at<bool>(j, {"spec", "unschedulable"});
  const Json status = j.value("status", Json::object());
  if (status.contains("addresses") && status["addresses"].is_array())
    for (const auto& a : status["addresses"])
      n.addresses.push_back({a.value("type", std::string()), a.value("address", std::string())});
  if (status.contains("conditions") && status["conditions"].is_array())
    for (const auto& c : status["conditions"])
      if (c.value("type", std::string()) == "Ready") n.ready = c.value("status", std::string()) == "True";
  return n;
}

}  // namespace ferry::api
