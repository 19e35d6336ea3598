#include "controlplane-lite/object_policy.h"

#include "api/defaulting.h"

namespace ferry::cp {

using api::Json;

namespace {

void setDefault(Json& obj, const char* key, const Json& value) {
  if (!obj.contains(key) || obj[key].is_null()) obj[key] = value;
}

// DefaultTolerationSeconds admission: tolerate a not-ready or unreachable
// node for `seconds` unless the pod already says how it tolerates them.
void addDefaultTolerations(Json& spec, std::int64_t seconds) {
  Json& tolerations = spec["tolerations"];
  if (!tolerations.is_array()) tolerations = Json::array();
  for (const char* key : {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}) {
    bool handled = false;
    for (const auto& t : tolerations) {
      if (!t.is_object()) continue;
      std::string effect = t.value("effect", "");
      bool coversKey = t.value("key", "") == key || (t.value("key", "").empty() && t.value("operator", "") == "Exists");
      if (coversKey && (effect.empty() || effect == "NoExecute")) handled = true;
    }
    if (!handled)
      tolerations.push_back({{"key", key}, {"operator", "Exists"}, {"effect", "NoExecute"}, {"tolerationSeconds", seconds}});
  }
}

void podAdmissionDefaults(Json& obj, std::int64_t tolerationSeconds) {
  auto spec = obj.find("spec");
  if (spec == obj.end() || !spec->is_object()) return;
  setDefault(*spec, "serviceAccountName", "default");
  setDefault(*spec, "priority", 0);
  setDefault(*spec, "preemptionPolicy", "PreemptLowerPriority");
  addDefaultTolerations(*spec, tolerationSeconds);
}

void serviceRegistryDefaults(Json& obj) {
  auto spec = obj.find("spec");
  if (spec == obj.end() || !spec->is_object()) return;
  // ipFamilies and ipFamilyPolicy are set at admission (Registry::admitCreate),
  // where the requested clusterIPs and the cluster's ranges are known; an
  // update that leaves them out keeps the stored ones (carryOverAllocatedFields).
  if (!obj.contains("status")) obj["status"] = {{"loadBalancer", Json::object()}};
}

}  // namespace

void applyDefaults(const Resource& r, Json& obj, std::int64_t tolerationSeconds) {
  if (!obj.is_object()) return;
  api::applyDefaults(r.qualifiedName(), obj);
  if (r.group.empty() && r.plural == "pods") podAdmissionDefaults(obj, tolerationSeconds);
  if (r.group.empty() && r.plural == "services") serviceRegistryDefaults(obj);
}

std::vector<api::Cause> validateObject(const Resource& r, const Json& obj, const Json* old) {
  if (old && r.group.empty() && r.plural == "pods") {
    std::string oldNode = api::at<std::string>(*old, {"spec", "nodeName"});
    std::string newNode = api::at<std::string>(obj, {"spec", "nodeName"});
    if (oldNode.empty() && !newNode.empty() && (*old)["spec"].is_object()) {
      Json bound = *old;
      bound["spec"]["nodeName"] = newNode;
      return api::validate(r.qualifiedName(), obj, &bound);
    }
  }
  return api::validate(r.qualifiedName(), obj, old);
}

Error invalidError(const std::string& summary, const std::vector<api::Cause>& causes) {
  std::string msg = summary;
  for (const auto& cause : causes) msg += "\n" + cause.field + ": " + cause.message;
  return Error{EINVAL, msg};
}

std::vector<api::Cause> causesFromInvalidError(const std::string& message, std::string* summary) {
  static const std::pair<const char*, const char*> kReasons[] = {
      {"Required value", api::Cause::kRequired},   {"Unsupported value", api::Cause::kNotSupported},
      {"Duplicate value", api::Cause::kDuplicate}, {"Forbidden", api::Cause::kForbidden},
      {"Not found", api::Cause::kNotFound},        {"Too long", api::Cause::kTooLong},
      {"Too many", api::Cause::kTooMany},
  };
  std::vector<api::Cause> out;
  std::size_t start = 0;
  bool first = true;
  while (start <= message.size()) {
    auto nl = message.find('\n', start);
    std::string line = message.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    if (first) {
      if (summary) *summary = line;
      first = false;
    } else if (!line.empty()) {
      api::Cause cause;
      auto sep = line.find(": ");
      cause.field = sep == std::string::npos ? "" : line.substr(0, sep);
      cause.message = sep == std::string::npos ? line : line.substr(sep + 2);
      cause.reason = api::Cause::kInvalid;
      for (const auto& [prefix, reason] : kReasons)
        if (cause.message.rfind(prefix, 0) == 0) cause.reason = reason;
      out.push_back(cause);
    }
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return out;
}

}  // namespace ferry::cp
