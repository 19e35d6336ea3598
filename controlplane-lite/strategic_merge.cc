#include "controlplane-lite/strategic_merge.h"

#include <algorithm>
#include <set>

namespace ferry::cp {

using api::Json;

namespace {

// The patch merge key of a list field, judged by its name and its elements;
// "" means the list is atomic (replaced as a whole).
std::string mergeKeyFor(const std::string& field, const Json& a, const Json& b) {
  auto elementsHave = [&](const char* key) {
    for (const Json* list : {&a, &b})
      if (list->is_array())
        for (const auto& e : *list)
          if (e.is_object() && e.contains(key)) return true;
    return false;
  };
  static const std::map<std::string, std::string> byName = {
      {"containers", "name"},        {"initContainers", "name"},   {"ephemeralContainers", "name"},
      {"env", "name"},               {"volumes", "name"},          {"imagePullSecrets", "name"},
      {"volumeMounts", "mountPath"}, {"volumeDevices", "devicePath"}, {"conditions", "type"},
      {"hostAliases", "ip"},         {"ownerReferences", "uid"},   {"topologySpreadConstraints", "topologyKey"},
      {"resourceClaims", "name"},    {"readinessGates", "conditionType"}, {"addresses", "type"},
  };
  if (field == "ports") {
    if (elementsHave("containerPort")) return "containerPort";
    if (elementsHave("port")) return "port";
    return "";
  }
  auto it = byName.find(field);
  return it == byName.end() ? "" : it->second;
}

bool isMergedPrimitiveList(const std::string& field) { return field == "finalizers"; }

bool isDirective(const std::string& key) { return !key.empty() && key[0] == '$'; }

Json mergeValue(const std::string& field, const Json& original, const Json& patch);

Json mergeList(const std::string& field, const Json& original, const Json& patch, const Json* order) {
  std::string key = mergeKeyFor(field, original, patch);
  if (key.empty()) {
    if (isMergedPrimitiveList(field) && original.is_array()) {
      Json out = original;
      for (const auto& v : patch)
        if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
      return out;
    }
    return stripDirectives(patch);
  }
  for (const auto& e : patch)
    if (e.is_object() && e.value("$patch", "") == "replace") {
      Json out = Json::array();
      for (const auto& x : patch)
        if (!(x.is_object() && x.contains("$patch"))) out.push_back(stripDirectives(x));
      return out;
    }
  Json out = original.is_array() ? original : Json::array();
  for (const auto& e : patch) {
    if (!e.is_object() || !e.contains(key)) {
      out.push_back(stripDirectives(e));
      continue;
    }
    auto same = std::find_if(out.begin(), out.end(), [&](const Json& o) {
      return o.is_object() && o.contains(key) && o[key] == e[key];
    });
    if (e.value("$patch", "") == "delete") {
      if (same != out.end()) out.erase(same);
      continue;
    }
    if (same != out.end()) *same = mergeValue("", *same, e);
    else out.push_back(stripDirectives(e));
  }
  if (order && order->is_array()) {
    Json ordered = Json::array();
    std::vector<bool> used(out.size(), false);
    for (const auto& o : *order) {
      if (!o.is_object() || !o.contains(key)) continue;
      for (std::size_t i = 0; i < out.size(); ++i)
        if (!used[i] && out[i].is_object() && out[i].contains(key) && out[i][key] == o[key]) {
          ordered.push_back(out[i]);
          used[i] = true;
          break;
        }
    }
    for (std::size_t i = 0; i < out.size(); ++i)
      if (!used[i]) ordered.push_back(out[i]);
    out = std::move(ordered);
  }
  return out;
}

Json mergeMap(const Json& original, const Json& patch) {
  std::string directive = patch.value("$patch", "");
  if (directive == "replace") return stripDirectives(patch);
  Json out = original.is_object() ? original : Json::object();
  for (const auto& [k, v] : patch.items()) {
    if (isDirective(k)) continue;
    if (v.is_null()) {
      out.erase(k);
      continue;
    }
    if (v.is_object() && v.value("$patch", "") == "delete") {
      out.erase(k);
      continue;
    }
    const Json* order = nullptr;
    auto ord = patch.find("$setElementOrder/" + k);
    if (ord != patch.end()) order = &*ord;
    if (v.is_array()) {
      out[k] = mergeList(k, out.contains(k) ? out[k] : Json(), v, order);
    } else {
      out[k] = mergeValue(k, out.contains(k) ? out[k] : Json(), v);
    }
  }
  for (const auto& [k, v] : patch.items()) {
    const std::string prefix = "$deleteFromPrimitiveList/";
    if (k.rfind(prefix, 0) == 0) {
      std::string field = k.substr(prefix.size());
      if (out.contains(field) && out[field].is_array() && v.is_array()) {
        Json kept = Json::array();
        for (const auto& x : out[field])
          if (std::find(v.begin(), v.end(), x) == v.end()) kept.push_back(x);
        out[field] = kept;
      }
    }
    // A $setElementOrder for a list the patch did not touch still reorders it.
    const std::string orderPrefix = "$setElementOrder/";
    if (k.rfind(orderPrefix, 0) == 0) {
      std::string field = k.substr(orderPrefix.size());
      if (!patch.contains(field) && out.contains(field) && out[field].is_array())
        out[field] = mergeList(field, out[field], Json::array(), &v);
    }
  }
  if (auto retain = patch.find("$retainKeys"); retain != patch.end() && retain->is_array()) {
    std::set<std::string> keep;
    for (const auto& r : *retain)
      if (r.is_string()) keep.insert(r.get<std::string>());
    for (auto it = out.begin(); it != out.end();) {
      if (!keep.count(it.key())) it = out.erase(it);
      else ++it;
    }
  }
  return out;
}

Json mergeValue(const std::string& field, const Json& original, const Json& patch) {
  if (patch.is_object() && (original.is_object() || original.is_null())) return mergeMap(original, patch);
  if (patch.is_array()) return mergeList(field, original, patch, nullptr);
  return patch;
}

void collectFields(const std::string& field, const Json& value, Json& set);

void collectObject(const Json& obj, Json& set) {
  for (const auto& [k, v] : obj.items()) {
    if (isDirective(k)) continue;
    Json& child = set["f:" + k];
    if (!child.is_object()) child = Json::object();
    collectFields(k, v, child);
  }
}

void collectFields(const std::string& field, const Json& value, Json& set) {
  if (value.is_object()) {
    collectObject(value, set);
  } else if (value.is_array()) {
    std::string key = mergeKeyFor(field, value, Json());
    if (key.empty()) return;  // atomic list: owned as a whole
    for (const auto& e : value) {
      if (!e.is_object() || !e.contains(key)) continue;
      Json k = Json::object();
      k[key] = e[key];
      Json& child = set["k:" + k.dump()];
      child = Json::object();
      child["."] = Json::object();
      collectObject(e, child);
    }
  }
}

void leaves(const Json& set, const std::string& prefix, std::vector<std::string>& out) {
  bool any = false;
  for (const auto& [k, v] : set.items()) {
    if (k == ".") continue;
    any = true;
    leaves(v, prefix.empty() ? k : prefix + "/" + k, out);
  }
  if (!any && !prefix.empty()) out.push_back(prefix);
}

}  // namespace

Json stripDirectives(const Json& doc) {
  if (doc.is_object()) {
    Json out = Json::object();
    for (const auto& [k, v] : doc.items())
      if (!isDirective(k)) out[k] = stripDirectives(v);
    return out;
  }
  if (doc.is_array()) {
    Json out = Json::array();
    for (const auto& e : doc) out.push_back(stripDirectives(e));
    return out;
  }
  return doc;
}

Result<Json> strategicMergePatch(const Json& original, const Json& patch) {
  if (!patch.is_object()) return fail(EBADMSG, "a strategic merge patch must be a JSON object");
  return mergeMap(original, patch);
}

Json fieldSetOf(const Json& object) {
  Json set = Json::object();
  if (object.is_object()) {
    Json copy = object;
    copy.erase("apiVersion");
    copy.erase("kind");
    if (copy.contains("metadata") && copy["metadata"].is_object()) {
      for (const char* k : {"name", "namespace", "resourceVersion", "uid", "creationTimestamp", "generation",
                            "managedFields"})
        copy["metadata"].erase(k);
      if (copy["metadata"].empty()) copy.erase("metadata");
    }
    collectObject(copy, set);
  }
  return set;
}

std::vector<std::string> fieldSetLeaves(const Json& fieldsV1) {
  std::vector<std::string> out;
  if (fieldsV1.is_object()) leaves(fieldsV1, "", out);
  return out;
}

}  // namespace ferry::cp
