#include "controlplane-lite/object_policy.h"

#include <fmt/format.h>

#include <set>

namespace ferry::cp {

using api::Json;

namespace {

void setDefault(Json& obj, const char* key, const Json& value) {
  if (!obj.contains(key) || obj[key].is_null()) obj[key] = value;
}

bool hasLatestOrNoTag(const std::string& image) {
  auto at = image.find('@');
  if (at != std::string::npos) return false;
  auto slash = image.rfind('/');
  auto colon = image.rfind(':');
  if (colon == std::string::npos || (slash != std::string::npos && colon < slash)) return true;
  return image.substr(colon + 1) == "latest";
}

void defaultContainer(Json& c) {
  if (!c.is_object()) return;
  std::string image = api::at<std::string>(c, {"image"});
  setDefault(c, "imagePullPolicy", hasLatestOrNoTag(image) ? "Always" : "IfNotPresent");
  setDefault(c, "terminationMessagePath", "/dev/termination-log");
  setDefault(c, "terminationMessagePolicy", "File");
  setDefault(c, "resources", Json::object());
  if (c.contains("ports") && c["ports"].is_array())
    for (auto& p : c["ports"])
      if (p.is_object()) setDefault(p, "protocol", "TCP");
  if (c.contains("env") && c["env"].is_array()) {
    for (auto& e : c["env"])
      if (e.is_object() && e.contains("valueFrom") && e["valueFrom"].contains("fieldRef"))
        setDefault(e["valueFrom"]["fieldRef"], "apiVersion", "v1");
  }
}

void defaultPodSpec(Json& spec) {
  if (!spec.is_object()) return;
  setDefault(spec, "restartPolicy", "Always");
  setDefault(spec, "terminationGracePeriodSeconds", 30);
  setDefault(spec, "dnsPolicy", "ClusterFirst");
  setDefault(spec, "securityContext", Json::object());
  setDefault(spec, "schedulerName", "default-scheduler");
  setDefault(spec, "enableServiceLinks", true);
  for (const char* list : {"containers", "initContainers"})
    if (spec.contains(list) && spec[list].is_array())
      for (auto& c : spec[list]) defaultContainer(c);
  if (spec.contains("volumes") && spec["volumes"].is_array()) {
    for (auto& v : spec["volumes"]) {
      if (!v.is_object()) continue;
      for (const char* src : {"configMap", "secret"})
        if (v.contains(src) && v[src].is_object()) setDefault(v[src], "defaultMode", 420);
    }
  }
}

void defaultTemplate(Json& spec) {
  if (spec.is_object() && spec.contains("template") && spec["template"].is_object()) {
    auto& t = spec["template"];
    if (t.contains("spec")) defaultPodSpec(t["spec"]);
  }
}

struct Causes {
  std::vector<FieldCause> list;
  void required(const std::string& f) { list.push_back({f, "FieldValueRequired", "Required value"}); }
  void invalid(const std::string& f, const Json& value, const std::string& why) {
    list.push_back({f, "FieldValueInvalid",
                    fmt::format("Invalid value: {}: {}", value.is_string() ? Json(value).dump() : value.dump(), why)});
  }
  void unsupported(const std::string& f, const Json& value, const std::vector<std::string>& allowed) {
    std::string s;
    for (const auto& a : allowed) s += (s.empty() ? "" : ", ") + Json(a).dump();
    list.push_back({f, "FieldValueNotSupported", fmt::format("Unsupported value: {}: supported values: {}", value.dump(), s)});
  }
  void duplicate(const std::string& f, const Json& value) {
    list.push_back({f, "FieldValueDuplicate", "Duplicate value: " + value.dump()});
  }
};

const char* kSubdomainMsg =
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const char* kLabelMsg =
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with "
    "an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

bool isLabelValue(const std::string& v) {
  if (v.size() > 63) return false;
  if (v.empty()) return true;
  auto ok = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'; };
  for (char c : v)
    if (!ok(c)) return false;
  return std::isalnum(static_cast<unsigned char>(v.front())) && std::isalnum(static_cast<unsigned char>(v.back()));
}

bool isQualifiedName(const std::string& k) {
  std::string name = k;
  auto slash = k.find('/');
  if (slash != std::string::npos) {
    if (!isDns1123Subdomain(k.substr(0, slash))) return false;
    name = k.substr(slash + 1);
  }
  return !name.empty() && isLabelValue(name);
}

void validateMetadata(const Resource& r, const Json& obj, Causes& c) {
  const Json meta = obj.value("metadata", Json::object());
  std::string name = api::at<std::string>(meta, {"name"});
  if (name.empty()) {
    c.required("metadata.name");
  } else if (r.group.empty() && (r.plural == "namespaces" || r.plural == "services")) {
    if (!isDns1123Label(name)) c.invalid("metadata.name", name, kLabelMsg);
  } else if (!isDns1123Subdomain(name)) {
    c.invalid("metadata.name", name, kSubdomainMsg);
  }
  if (meta.contains("labels") && meta["labels"].is_object()) {
    for (const auto& [k, v] : meta["labels"].items()) {
      if (!isQualifiedName(k)) c.invalid("metadata.labels", k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
      if (!v.is_string() || !isLabelValue(v.get<std::string>()))
        c.invalid("metadata.labels", v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
    }
  }
}

void validateContainers(const Json& spec, const std::string& path, Causes& c) {
  const Json containers = spec.value("containers", Json());
  if (!containers.is_array() || containers.empty()) {
    c.required(path + ".containers");
    return;
  }
  std::set<std::string> names;
  for (std::size_t i = 0; i < containers.size(); ++i) {
    std::string p = fmt::format("{}.containers[{}]", path, i);
    const Json& ctr = containers[i];
    std::string name = api::at<std::string>(ctr, {"name"});
    if (name.empty()) c.required(p + ".name");
    else if (!isDns1123Label(name)) c.invalid(p + ".name", name, kLabelMsg);
    else if (!names.insert(name).second) c.duplicate(p + ".name", name);
    if (api::at<std::string>(ctr, {"image"}).empty()) c.required(p + ".image");
    if (ctr.contains("ports") && ctr["ports"].is_array()) {
      for (std::size_t j = 0; j < ctr["ports"].size(); ++j) {
        const Json& port = ctr["ports"][j];
        int n = api::at<int>(port, {"containerPort"}, 0);
        if (n < 1 || n > 65535)
          c.invalid(fmt::format("{}.ports[{}].containerPort", p, j), port.value("containerPort", Json(0)),
                    "must be between 1 and 65535, inclusive");
      }
    }
    std::string policy = api::at<std::string>(ctr, {"imagePullPolicy"});
    if (!policy.empty() && policy != "Always" && policy != "IfNotPresent" && policy != "Never")
      c.unsupported(p + ".imagePullPolicy", policy, {"Always", "IfNotPresent", "Never"});
  }
}

void validatePodSpec(const Json& spec, const std::string& path, Causes& c) {
  if (!spec.is_object()) {
    c.required(path);
    return;
  }
  validateContainers(spec, path, c);
  std::string rp = api::at<std::string>(spec, {"restartPolicy"});
  if (!rp.empty() && rp != "Always" && rp != "OnFailure" && rp != "Never")
    c.unsupported(path + ".restartPolicy", rp, {"Always", "OnFailure", "Never"});
}

void validateWorkload(const Json& obj, Causes& c) {
  const Json spec = obj.value("spec", Json());
  if (!spec.is_object()) {
    c.required("spec");
    return;
  }
  if (spec.contains("replicas") && (!spec["replicas"].is_number_integer() || spec["replicas"].get<long>() < 0))
    c.invalid("spec.replicas", spec["replicas"], "must be greater than or equal to 0");
  const Json selector = spec.value("selector", Json());
  bool emptySelector = !selector.is_object() ||
                       ((!selector.contains("matchLabels") || selector["matchLabels"].empty()) &&
                        (!selector.contains("matchExpressions") || selector["matchExpressions"].empty()));
  if (emptySelector) c.required("spec.selector");
  const Json tmpl = spec.value("template", Json());
  if (!tmpl.is_object()) {
    c.required("spec.template");
    return;
  }
  if (!emptySelector) {
    auto labels = api::at<api::Labels>(tmpl, {"metadata", "labels"});
    bool match = true;
    if (selector.contains("matchLabels") && selector["matchLabels"].is_object())
      for (const auto& [k, v] : selector["matchLabels"].items())
        if (!labels.count(k) || !v.is_string() || labels[k] != v.get<std::string>()) match = false;
    if (!match)
      c.invalid("spec.template.metadata.labels", tmpl.value("metadata", Json::object()).value("labels", Json::object()),
                "`selector` does not match template `labels`");
  }
  validatePodSpec(tmpl.value("spec", Json()), "spec.template.spec", c);
}

void validateService(const Json& obj, Causes& c) {
  const Json spec = obj.value("spec", Json::object());
  std::string type = api::at<std::string>(spec, {"type"}, "ClusterIP");
  if (type != "ClusterIP" && type != "NodePort" && type != "LoadBalancer" && type != "ExternalName")
    c.unsupported("spec.type", type, {"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"});
  const Json ports = spec.value("ports", Json::array());
  if (type != "ExternalName" && api::at<std::string>(spec, {"clusterIP"}) != "None" &&
      (!ports.is_array() || ports.empty()))
    c.required("spec.ports");
  if (ports.is_array()) {
    std::set<std::string> names;
    for (std::size_t i = 0; i < ports.size(); ++i) {
      const Json& p = ports[i];
      std::string path = fmt::format("spec.ports[{}]", i);
      int port = api::at<int>(p, {"port"}, 0);
      if (port < 1 || port > 65535)
        c.invalid(path + ".port", p.value("port", Json(0)), "must be between 1 and 65535, inclusive");
      std::string proto = api::at<std::string>(p, {"protocol"}, "TCP");
      if (proto != "TCP" && proto != "UDP" && proto != "SCTP") c.unsupported(path + ".protocol", proto, {"SCTP", "TCP", "UDP"});
      std::string name = api::at<std::string>(p, {"name"});
      if (ports.size() > 1 && name.empty()) c.required(path + ".name");
      if (!name.empty() && !names.insert(name).second) c.duplicate(path + ".name", name);
    }
  }
}

}  // namespace

bool isDns1123Label(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return s.front() != '-' && s.back() != '-';
}

bool isDns1123Subdomain(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t start = 0;
  while (true) {
    auto dot = s.find('.', start);
    std::string part = s.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!isDns1123Label(part)) return false;
    if (dot == std::string::npos) return true;
    start = dot + 1;
  }
}

void applyDefaults(const Resource& r, Json& obj) {
  if (!obj.is_object()) return;
  const std::string& k = r.kind;
  if (k == "Pod") {
    if (obj.contains("spec")) defaultPodSpec(obj["spec"]);
    if (obj.contains("spec") && obj["spec"].is_object()) {
      setDefault(obj["spec"], "serviceAccountName", "default");
      setDefault(obj["spec"], "priority", 0);
      setDefault(obj["spec"], "preemptionPolicy", "PreemptLowerPriority");
      if (!obj["spec"].contains("tolerations")) {
        obj["spec"]["tolerations"] = Json::array(
            {{{"key", "node.kubernetes.io/not-ready"}, {"operator", "Exists"}, {"effect", "NoExecute"}, {"tolerationSeconds", 300}},
             {{"key", "node.kubernetes.io/unreachable"}, {"operator", "Exists"}, {"effect", "NoExecute"}, {"tolerationSeconds", 300}}});
      }
    }
  } else if (k == "Deployment") {
    Json& spec = obj["spec"];
    if (!spec.is_object()) return;
    setDefault(spec, "replicas", 1);
    setDefault(spec, "revisionHistoryLimit", 10);
    setDefault(spec, "progressDeadlineSeconds", 600);
    if (!spec.contains("strategy")) spec["strategy"] = Json::object();
    Json& strategy = spec["strategy"];
    setDefault(strategy, "type", "RollingUpdate");
    if (strategy["type"] == "RollingUpdate") {
      if (!strategy.contains("rollingUpdate")) strategy["rollingUpdate"] = Json::object();
      setDefault(strategy["rollingUpdate"], "maxUnavailable", "25%");
      setDefault(strategy["rollingUpdate"], "maxSurge", "25%");
    }
    defaultTemplate(spec);
  } else if (k == "ReplicaSet") {
    Json& spec = obj["spec"];
    if (!spec.is_object()) return;
    setDefault(spec, "replicas", 1);
    defaultTemplate(spec);
  } else if (k == "Service") {
    if (!obj.contains("spec")) obj["spec"] = Json::object();
    Json& spec = obj["spec"];
    setDefault(spec, "type", "ClusterIP");
    if (spec["type"] != "ExternalName") {
      setDefault(spec, "sessionAffinity", "None");
      setDefault(spec, "ipFamilies", Json::array({"IPv4"}));
      setDefault(spec, "ipFamilyPolicy", "SingleStack");
      setDefault(spec, "internalTrafficPolicy", "Cluster");
      if (spec["type"] == "NodePort" || spec["type"] == "LoadBalancer") setDefault(spec, "externalTrafficPolicy", "Cluster");
    }
    if (spec.contains("ports") && spec["ports"].is_array())
      for (auto& p : spec["ports"]) {
        if (!p.is_object()) continue;
        setDefault(p, "protocol", "TCP");
        if (p.contains("port")) setDefault(p, "targetPort", p["port"]);
      }
    if (!obj.contains("status")) obj["status"] = {{"loadBalancer", Json::object()}};
  } else if (k == "Namespace") {
    if (!obj.contains("spec")) obj["spec"] = {{"finalizers", Json::array({"kubernetes"})}};
    if (!obj.contains("status") || !obj["status"].contains("phase")) obj["status"] = {{"phase", "Active"}};
    obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = api::nameOf(obj);
  } else if (k == "Secret") {
    setDefault(obj, "type", "Opaque");
  } else if (k == "HorizontalPodAutoscaler") {
    Json& spec = obj["spec"];
    if (spec.is_object()) setDefault(spec, "minReplicas", 1);
  }
}

std::vector<FieldCause> validateObject(const Resource& r, const Json& obj) {
  Causes c;
  validateMetadata(r, obj, c);
  const std::string& k = r.kind;
  if (k == "Pod") validatePodSpec(obj.value("spec", Json()), "spec", c);
  else if (k == "Deployment" || k == "ReplicaSet") validateWorkload(obj, c);
  else if (k == "Service") validateService(obj, c);
  else if (k == "ConfigMap") {
    if (obj.contains("data") && obj["data"].is_object())
      for (const auto& [key, v] : obj["data"].items())
        if (!v.is_string()) c.invalid("data[" + key + "]", v, "must be a string");
  } else if (k == "HorizontalPodAutoscaler") {
    if (api::at<std::string>(obj, {"spec", "scaleTargetRef", "name"}).empty()) c.required("spec.scaleTargetRef.name");
    if (api::at<int>(obj, {"spec", "maxReplicas"}, 0) < 1)
      c.invalid("spec.maxReplicas", obj.value("spec", Json::object()).value("maxReplicas", Json(0)), "must be greater than or equal to 1");
  }
  return c.list;
}

Error invalidError(const std::string& kindAndName, const std::vector<FieldCause>& causes) {
  std::string msg = kindAndName;
  for (const auto& cause : causes) msg += "\n" + cause.field + ": " + cause.message;
  return Error{EINVAL, msg};
}

std::vector<FieldCause> causesFromInvalidError(const std::string& message, std::string* summary) {
  std::vector<FieldCause> out;
  std::size_t start = 0;
  bool first = true;
  while (start <= message.size()) {
    auto nl = message.find('\n', start);
    std::string line = message.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    if (first) {
      if (summary) *summary = line;
      first = false;
    } else if (!line.empty()) {
      FieldCause cause;
      auto sep = line.find(": ");
      cause.field = sep == std::string::npos ? "" : line.substr(0, sep);
      cause.message = sep == std::string::npos ? line : line.substr(sep + 2);
      cause.reason = cause.message.rfind("Required value", 0) == 0        ? "FieldValueRequired"
                     : cause.message.rfind("Unsupported value", 0) == 0   ? "FieldValueNotSupported"
                     : cause.message.rfind("Duplicate value", 0) == 0     ? "FieldValueDuplicate"
                     : cause.message.rfind("Forbidden", 0) == 0           ? "FieldValueForbidden"
                                                                          : "FieldValueInvalid";
      out.push_back(cause);
    }
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return out;
}

}  // namespace ferry::cp
