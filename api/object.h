// Kubernetes objects are kept as JSON documents so that every field a user sent
// survives a round trip (`kubectl get -o yaml` shows what was applied). The
// fields Ferry interprets are read through typed views (types.h) or these helpers.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>

namespace ferry::api {

using Json = nlohmann::json;
using Labels = std::map<std::string, std::string>;

// Reads `obj` at a JSON pointer-like path of keys; returns `fallback` when any
// step is missing or of another type.
template <class T>
T at(const Json& obj, std::initializer_list<const char*> path, T fallback = T{}) {
  const Json* cur = &obj;
  for (const char* key : path) {
    if (!cur->is_object()) return fallback;
    auto it = cur->find(key);
    if (it == cur->end()) return fallback;
    cur = &*it;
  }
  try {
    return cur->get<T>();
  } catch (const Json::exception&) {
    return fallback;
  }
}

inline std::string nameOf(const Json& o) { return at<std::string>(o, {"metadata", "name"}); }
inline std::string namespaceOf(const Json& o) { return at<std::string>(o, {"metadata", "namespace"}); }
inline std::string uidOf(const Json& o) { return at<std::string>(o, {"metadata", "uid"}); }
inline std::string resourceVersionOf(const Json& o) { return at<std::string>(o, {"metadata", "resourceVersion"}); }
inline Labels labelsOf(const Json& o) { return at<Labels>(o, {"metadata", "labels"}); }
inline Labels annotationsOf(const Json& o) { return at<Labels>(o, {"metadata", "annotations"}); }
inline bool isTerminating(const Json& o) {
  return o.contains("metadata") && o["metadata"].contains("deletionTimestamp") &&
         !o["metadata"]["deletionTimestamp"].is_null();
}

// RFC 3339 UTC timestamp with seconds precision, as Kubernetes writes metav1.Time.
std::string nowRfc3339();
std::string toRfc3339(std::int64_t unixSeconds);
// Parses what nowRfc3339 writes (and fractional seconds / offsets); -1 when malformed.
std::int64_t parseRfc3339(const std::string& text);

}  // namespace ferry::api
