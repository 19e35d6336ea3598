#include "controlplane-lite/controllers/controller_util.h"

#include <ctime>

namespace ferry::cp {

bool labelSelectorMatches(const api::Json& selector, const api::Labels& labels) {
  if (!selector.is_object()) return false;
  if (selector.contains("matchLabels") && selector["matchLabels"].is_object()) {
    for (const auto& [key, value] : selector["matchLabels"].items()) {
      auto it = labels.find(key);
      if (it == labels.end() || !value.is_string() || it->second != value.get<std::string>()) return false;
    }
  }
  if (selector.contains("matchExpressions") && selector["matchExpressions"].is_array()) {
    for (const auto& expr : selector["matchExpressions"]) {
      std::string key = expr.value("key", "");
      std::string op = expr.value("operator", "");
      auto it = labels.find(key);
      bool inValues = false;
      if (it != labels.end() && expr.contains("values") && expr["values"].is_array())
        for (const auto& v : expr["values"])
          if (v.is_string() && v.get<std::string>() == it->second) inValues = true;
      if (op == "In" && !inValues) return false;
      if (op == "NotIn" && inValues) return false;
      if (op == "Exists" && it == labels.end()) return false;
      if (op == "DoesNotExist" && it != labels.end()) return false;
      if (op != "In" && op != "NotIn" && op != "Exists" && op != "DoesNotExist") return false;
    }
  }
  return true;
}

bool mapSelectorMatches(const api::Labels& selector, const api::Labels& labels) {
  if (selector.empty()) return false;
  for (const auto& [key, value] : selector) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}

const api::Json* controllerRefOf(const api::Json& object) {
  if (!object.contains("metadata")) return nullptr;
  const auto& meta = object["metadata"];
  if (!meta.contains("ownerReferences") || !meta["ownerReferences"].is_array()) return nullptr;
  for (const auto& ref : meta["ownerReferences"])
    if (ref.value("controller", false)) return &ref;
  return nullptr;
}

api::Json makeControllerRef(const std::string& kind, const api::Json& owner) {
  std::string apiVersion = (kind == "Deployment" || kind == "ReplicaSet") ? "apps/v1" : "v1";
  return {{"apiVersion", apiVersion}, {"kind", kind},          {"name", api::nameOf(owner)},
          {"uid", api::uidOf(owner)},  {"controller", true}, {"blockOwnerDeletion", true}};
}

std::int64_t nowSeconds() { return static_cast<std::int64_t>(std::time(nullptr)); }

bool podIsActive(const api::Json& pod) {
  std::string phase = api::at<std::string>(pod, {"status", "phase"});
  return phase != "Succeeded" && phase != "Failed" && !api::isTerminating(pod);
}

bool podIsReady(const api::Json& pod) {
  api::Json c = conditionOf(pod, "Ready");
  return c.is_object() && c.value("status", "") == "True";
}

bool podIsAvailable(const api::Json& pod, int minReadySeconds, std::int64_t now) {
  auto conditions = api::at<api::Json>(pod, {"status", "conditions"});
  const api::Json* c = findCondition(conditions, "Ready");
  if (!c || c->value("status", "") != "True") return false;
  if (minReadySeconds <= 0) return true;
  std::int64_t since = api::parseRfc3339(c->value("lastTransitionTime", ""));
  return since >= 0 && since + minReadySeconds <= now;
}

const api::Json* findCondition(const api::Json& conditions, const std::string& type) {
  if (!conditions.is_array()) return nullptr;
  for (const auto& c : conditions)
    if (c.value("type", "") == type) return &c;
  return nullptr;
}

api::Json conditionOf(const api::Json& object, const std::string& type) {
  if (!object.is_object() || !object.contains("status") || !object["status"].is_object()) return api::Json::object();
  const api::Json& status = object["status"];
  if (!status.contains("conditions")) return api::Json::object();
  const api::Json* c = findCondition(status["conditions"], type);
  return c ? *c : api::Json::object();
}

bool setCondition(api::Json& conditions, const std::string& type, const std::string& status,
                  const std::string& reason, const std::string& message, const std::string& updateTimeField) {
  if (!conditions.is_array()) conditions = api::Json::array();
  std::string now = api::nowRfc3339();
  for (auto& c : conditions) {
    if (c.value("type", "") != type) continue;
    if (c.value("status", "") == status && c.value("reason", "") == reason && c.value("message", "") == message)
      return false;
    if (c.value("status", "") != status) c["lastTransitionTime"] = now;
    c["status"] = status;
    c["reason"] = reason;
    c["message"] = message;
    if (!updateTimeField.empty()) c[updateTimeField] = now;
    return true;
  }
  api::Json c = {{"type", type}, {"status", status}, {"reason", reason}, {"message", message}, {"lastTransitionTime", now}};
  if (!updateTimeField.empty()) c[updateTimeField] = now;
  conditions.push_back(std::move(c));
  return true;
}

}  // namespace ferry::cp
