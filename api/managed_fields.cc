#include "api/managed_fields.h"

#include "api/patch.h"

namespace ferry::api {

namespace {

bool isDirective(const std::string& key) { return !key.empty() && key[0] == '$'; }

class FieldSetBuilder {
 public:
  explicit FieldSetBuilder(std::string_view resource) : resource_(resource) {}

  void object(const Json& obj, Json& set) {
    for (const auto& [k, v] : obj.items()) {
      if (isDirective(k)) continue;
      Json& child = set["f:" + k];
      if (!child.is_object()) child = Json::object();
      path_.push_back(k);
      value(v, child);
      path_.pop_back();
    }
  }

 private:
  void value(const Json& v, Json& set) {
    if (v.is_object()) {
      object(v, set);
      return;
    }
    if (!v.is_array()) return;
    std::string key = listMergeKey(resource_, path_);
    if (key.empty()) return;  // atomic list: owned as a whole
    for (const auto& e : v) {
      if (!e.is_object() || !e.contains(key)) continue;
      Json id = Json::object();
      id[key] = e[key];
      Json& child = set["k:" + id.dump()];
      child = Json::object();
      child["."] = Json::object();
      object(e, child);
    }
  }

  std::string_view resource_;
  std::vector<std::string> path_;
};

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

Json fieldSetOf(std::string_view resource, const Json& object) {
  Json set = Json::object();
  if (!object.is_object()) return set;
  Json copy = object;
  copy.erase("apiVersion");
  copy.erase("kind");
  if (copy.contains("metadata") && copy["metadata"].is_object()) {
    for (const char* k : {"name", "namespace", "resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"})
      copy["metadata"].erase(k);
    if (copy["metadata"].empty()) copy.erase("metadata");
  }
  FieldSetBuilder(resource).object(copy, set);
  return set;
}

std::vector<std::string> fieldSetLeaves(const Json& fieldsV1) {
  std::vector<std::string> out;
  if (fieldsV1.is_object()) leaves(fieldsV1, "", out);
  return out;
}

}  // namespace ferry::api
