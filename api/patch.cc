#include "api/patch.h"

#include "api/defaulting.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>

namespace ferry::api {

// ---------------------------------------------------------------------------
// JSON merge patch

Result<Json> jsonMergePatch(const Json& target, const Json& patch) {
  Json out = target;
  out.merge_patch(patch);
  return out;
}

// ---------------------------------------------------------------------------
// JSON patch

namespace {

// A parsed JSON pointer: its reference tokens, unescaped.
Result<std::vector<std::string>> parsePointer(const std::string& pointer) {
  std::vector<std::string> tokens;
  if (pointer.empty()) return tokens;
  if (pointer[0] != '/') return fail(Error::invalid(fmt::format("JSON pointer \"{}\" must start with '/'", pointer)));
  std::string token;
  for (std::size_t i = 1; i <= pointer.size(); ++i) {
    if (i == pointer.size() || pointer[i] == '/') {
      tokens.push_back(std::move(token));
      token.clear();
      continue;
    }
    if (pointer[i] == '~') {
      if (i + 1 < pointer.size() && (pointer[i + 1] == '0' || pointer[i + 1] == '1')) {
        token.push_back(pointer[i + 1] == '0' ? '~' : '/');
        ++i;
        continue;
      }
      return fail(Error::invalid(fmt::format("JSON pointer \"{}\": '~' must be followed by 0 or 1", pointer)));
    }
    token.push_back(pointer[i]);
  }
  return tokens;
}

// An array index token: digits without leading zeros, below `limit`
// (limit included when `allowEnd`).
std::optional<std::size_t> arrayIndex(const std::string& token, std::size_t size, bool allowEnd) {
  if (token.empty() || token.size() > 18) return std::nullopt;
  if (token.size() > 1 && token[0] == '0') return std::nullopt;
  if (!std::all_of(token.begin(), token.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  std::size_t i = std::stoull(token);
  if (i > size || (i == size && !allowEnd)) return std::nullopt;
  return i;
}

// The value `tokens` point to, or nullptr.
Json* resolve(Json& doc, const std::vector<std::string>& tokens, std::size_t count) {
  Json* cur = &doc;
  for (std::size_t i = 0; i < count; ++i) {
    const std::string& t = tokens[i];
    if (cur->is_object()) {
      auto it = cur->find(t);
      if (it == cur->end()) return nullptr;
      cur = &*it;
    } else if (cur->is_array()) {
      auto index = arrayIndex(t, cur->size(), false);
      if (!index) return nullptr;
      cur = &(*cur)[*index];
    } else {
      return nullptr;
    }
  }
  return cur;
}

Status addAt(Json& doc, const std::vector<std::string>& tokens, Json value, const std::string& path) {
  if (tokens.empty()) {
    doc = std::move(value);
    return {};
  }
  Json* parent = resolve(doc, tokens, tokens.size() - 1);
  if (!parent) return fail(Error::invalid(fmt::format("path \"{}\": parent does not exist", path)));
  const std::string& last = tokens.back();
  if (parent->is_object()) {
    (*parent)[last] = std::move(value);
    return {};
  }
  if (parent->is_array()) {
    if (last == "-") {
      parent->push_back(std::move(value));
      return {};
    }
    auto index = arrayIndex(last, parent->size(), true);
    if (!index) return fail(Error::invalid(fmt::format("path \"{}\": array index out of range", path)));
    parent->insert(parent->begin() + static_cast<std::ptrdiff_t>(*index), std::move(value));
    return {};
  }
  return fail(Error::invalid(fmt::format("path \"{}\": parent is not an object or array", path)));
}

Result<Json> removeAt(Json& doc, const std::vector<std::string>& tokens, const std::string& path) {
  if (tokens.empty()) return fail(Error::invalid("cannot remove the whole document"));
  Json* parent = resolve(doc, tokens, tokens.size() - 1);
  const std::string& last = tokens.back();
  if (parent && parent->is_object()) {
    auto it = parent->find(last);
    if (it != parent->end()) {
      Json removed = std::move(*it);
      parent->erase(it);
      return removed;
    }
  } else if (parent && parent->is_array()) {
    if (auto index = arrayIndex(last, parent->size(), false)) {
      Json removed = std::move((*parent)[*index]);
      parent->erase(*index);
      return removed;
    }
  }
  return fail(Error::invalid(fmt::format("path \"{}\" does not exist", path)));
}

}  // namespace

Result<Json> jsonPatch(const Json& target, const Json& operations) {
  if (!operations.is_array()) return fail(Error::invalid("json patch: must be a list of operations"));
  Json doc = target;
  for (std::size_t i = 0; i < operations.size(); ++i) {
    const Json& op = operations[i];
    auto wrap = [&](const Error& e) { return fail(e.wrap(fmt::format("json patch: operation {}", i))); };
    if (!op.is_object() || !op.contains("op") || !op["op"].is_string()) {
      return wrap(Error::invalid("must be an object with a string \"op\""));
    }
    const std::string& name = op["op"].get_ref<const std::string&>();
    if (!op.contains("path") || !op["path"].is_string()) return wrap(Error::invalid(fmt::format("{}: missing \"path\"", name)));
    const std::string& path = op["path"].get_ref<const std::string&>();
    auto tokens = parsePointer(path);
    if (!tokens) return wrap(tokens.error());
    auto needValue = [&]() -> Status {
      if (!op.contains("value")) return fail(Error::invalid(fmt::format("{}: missing \"value\"", name)));
      return {};
    };
    if (name == "add") {
      if (auto st = needValue(); !st) return wrap(st.error());
      if (auto st = addAt(doc, *tokens, op["value"], path); !st) return wrap(st.error());
    } else if (name == "remove") {
      if (auto r = removeAt(doc, *tokens, path); !r) return wrap(r.error());
    } else if (name == "replace") {
      if (auto st = needValue(); !st) return wrap(st.error());
      Json* at = resolve(doc, *tokens, tokens->size());
      if (!at) return wrap(Error::invalid(fmt::format("path \"{}\" does not exist", path)));
      *at = op["value"];
    } else if (name == "move" || name == "copy") {
      if (!op.contains("from") || !op["from"].is_string()) return wrap(Error::invalid(fmt::format("{}: missing \"from\"", name)));
      const std::string& from = op["from"].get_ref<const std::string&>();
      auto fromTokens = parsePointer(from);
      if (!fromTokens) return wrap(fromTokens.error());
      Json value;
      if (name == "move") {
        if (path.starts_with(from + "/")) return wrap(Error::invalid("move: cannot move a value into itself"));
        if (path == from) continue;
        auto removed = removeAt(doc, *fromTokens, from);
        if (!removed) return wrap(removed.error());
        value = std::move(*removed);
      } else {
        Json* source = resolve(doc, *fromTokens, fromTokens->size());
        if (!source) return wrap(Error::invalid(fmt::format("path \"{}\" does not exist", from)));
        value = *source;
      }
      if (auto st = addAt(doc, *tokens, std::move(value), path); !st) return wrap(st.error());
    } else if (name == "test") {
      if (auto st = needValue(); !st) return wrap(st.error());
      Json* at = resolve(doc, *tokens, tokens->size());
      if (!at || *at != op["value"]) {
        return wrap(Error::invalid(fmt::format("test failed: \"{}\" is {}, not {}", path, at ? at->dump(-1, ' ', false, Json::error_handler_t::replace) : "absent",
                                               op["value"].dump(-1, ' ', false, Json::error_handler_t::replace))));
      }
    } else {
      return wrap(Error::invalid(fmt::format("unknown op \"{}\"", name)));
    }
  }
  return doc;
}

// ---------------------------------------------------------------------------
// Strategic merge patch

namespace {

// What Kubernetes' Go types declare about a field (patchStrategy and
// patchMergeKey struct tags), and the type of its value or list elements.
struct Schema;
struct FieldMeta {
  bool merge = false;    // patchStrategy "merge" (lists merge by key, or as sets for scalars)
  bool replace = false;  // patchStrategy "replace"
  std::string mergeKey;
  const Schema* type = nullptr;
};
struct Schema {
  std::map<std::string, FieldMeta, std::less<>> fields;
  const FieldMeta* find(std::string_view name) const {
    auto it = fields.find(name);
    return it == fields.end() ? nullptr : &it->second;
  }
};

FieldMeta typed(const Schema* s) { return FieldMeta{false, false, "", s}; }
FieldMeta mergeBy(std::string key, const Schema* s = nullptr) { return FieldMeta{true, false, std::move(key), s}; }
FieldMeta mergeScalars() { return FieldMeta{true, false, "", nullptr}; }

struct Schemas {
  Schema objectMeta, container, volume, podSpec, podStatus, podTemplate, pod;
  Schema deploymentSpec, deploymentStatus, deployment, replicaSetSpec, replicaSetStatus, replicaSet;
  Schema serviceSpec, serviceStatus, service, nodeSpec, nodeStatus, node, namespaceStatus, namespaceKind;
  Schema hpaStatus, hpa, loadBalancerStatus, plain;

  Schemas() {
    objectMeta.fields = {{"finalizers", mergeScalars()}, {"ownerReferences", mergeBy("uid")}};
    container.fields = {{"ports", mergeBy("containerPort")},
                        {"env", mergeBy("name")},
                        {"volumeMounts", mergeBy("mountPath")},
                        {"volumeDevices", mergeBy("devicePath")}};
    podSpec.fields = {{"volumes", mergeBy("name", &volume)},
                      {"initContainers", mergeBy("name", &container)},
                      {"containers", mergeBy("name", &container)},
                      {"ephemeralContainers", mergeBy("name", &container)},
                      {"imagePullSecrets", mergeBy("name")},
                      {"hostAliases", mergeBy("ip")},
                      {"topologySpreadConstraints", mergeBy("topologyKey")},
                      {"resourceClaims", mergeBy("name")},
                      {"schedulingGates", mergeBy("name")}};
    podStatus.fields = {{"conditions", mergeBy("type")}, {"podIPs", mergeBy("ip")}, {"hostIPs", mergeBy("ip")}};
    podTemplate.fields = {{"metadata", typed(&objectMeta)}, {"spec", typed(&podSpec)}};
    pod.fields = {{"metadata", typed(&objectMeta)}, {"spec", typed(&podSpec)}, {"status", typed(&podStatus)}};

    deploymentSpec.fields = {{"template", typed(&podTemplate)}, {"strategy", FieldMeta{}}};
    deploymentStatus.fields = {{"conditions", mergeBy("type")}};
    deployment.fields = {{"metadata", typed(&objectMeta)}, {"spec", typed(&deploymentSpec)},
                         {"status", typed(&deploymentStatus)}};
    replicaSetSpec.fields = {{"template", typed(&podTemplate)}};
    replicaSetStatus.fields = {{"conditions", mergeBy("type")}};
    replicaSet.fields = {{"metadata", typed(&objectMeta)}, {"spec", typed(&replicaSetSpec)},
                         {"status", typed(&replicaSetStatus)}};

    serviceSpec.fields = {{"ports", mergeBy("port")}};
    serviceStatus.fields = {{"conditions", mergeBy("type")}};
    service.fields = {{"metadata", typed(&objectMeta)}, {"spec", typed(&serviceSpec)}, {"status", typed(&serviceStatus)}};

    nodeSpec.fields = {{"podCIDRs", mergeScalars()}};
    nodeStatus.fields = {{"conditions", mergeBy("type")}, {"addresses", mergeBy("type")}};
    node.fields = {{"metadata", typed(&objectMeta)}, {"spec", typed(&nodeSpec)}, {"status", typed(&nodeStatus)}};

    namespaceStatus.fields = {{"conditions", mergeBy("type")}};
    namespaceKind.fields = {{"metadata", typed(&objectMeta)}, {"status", typed(&namespaceStatus)}};

    hpaStatus.fields = {{"conditions", mergeBy("type")}};
    hpa.fields = {{"metadata", typed(&objectMeta)}, {"status", typed(&hpaStatus)}};

    plain.fields = {{"metadata", typed(&objectMeta)}};
  }

  const Schema* forResource(std::string_view resource) const {
    std::string_view base = resourceBaseName(resource);
    if (base == "pods") return &pod;
    if (base == "deployments") return &deployment;
    if (base == "replicasets") return &replicaSet;
    if (base == "services") return &service;
    if (base == "nodes") return &node;
    if (base == "namespaces") return &namespaceKind;
    if (base == "horizontalpodautoscalers") return &hpa;
    return &plain;
  }
};

const Schemas& schemas() {
  static const Schemas s;
  return s;
}

constexpr std::string_view kPatch = "$patch";
constexpr std::string_view kRetainKeys = "$retainKeys";
constexpr std::string_view kSetElementOrder = "$setElementOrder/";
constexpr std::string_view kDeleteFromPrimitiveList = "$deleteFromPrimitiveList/";

bool isDirectiveKey(std::string_view k) {
  return k == kPatch || k == kRetainKeys || k.starts_with(kSetElementOrder) || k.starts_with(kDeleteFromPrimitiveList);
}

// A value taken from the patch as is: drop nulls (nothing to delete) and any
// directives, which have no meaning where nothing is merged.
void cleanInsertedValue(Json& v) {
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end();) {
      if (it->is_null() || isDirectiveKey(it.key())) {
        it = v.erase(it);
      } else {
        cleanInsertedValue(*it);
        ++it;
      }
    }
  } else if (v.is_array()) {
    for (auto it = v.begin(); it != v.end();) {
      if (it->is_object() && it->contains(kPatch) && (*it)[kPatch] == "delete") {
        it = v.erase(it);
      } else {
        cleanInsertedValue(*it);
        ++it;
      }
    }
  }
}

// The identity of a list element for ordering: its merge key value, or the
// element itself for scalar lists.
const Json* identity(const Json& element, const std::string& mergeKey) {
  if (mergeKey.empty()) return &element;
  if (!element.is_object()) return nullptr;
  auto it = element.find(mergeKey);
  return it == element.end() ? nullptr : &*it;
}

std::vector<Json> identities(const Json& list, const std::string& mergeKey) {
  std::vector<Json> out;
  if (!list.is_array()) return out;
  out.reserve(list.size());
  for (const auto& e : list) {
    const Json* id = identity(e, mergeKey);
    out.push_back(id ? *id : Json());
  }
  return out;
}

long indexIn(const std::vector<Json>& order, const Json& element, const std::string& mergeKey) {
  const Json* id = identity(element, mergeKey);
  if (!id) return -1;
  for (std::size_t i = 0; i < order.size(); ++i) {
    if (order[i] == *id) return static_cast<long>(i);
  }
  return -1;
}

void sortByOrder(std::vector<Json>& items, const std::vector<Json>& order, const std::string& mergeKey) {
  std::vector<std::pair<long, std::size_t>> keyed;
  keyed.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    long at = indexIn(order, items[i], mergeKey);
    keyed.emplace_back(at < 0 ? std::numeric_limits<long>::max() : at, i);
  }
  std::stable_sort(keyed.begin(), keyed.end(), [](auto& a, auto& b) { return a.first < b.first; });
  std::vector<Json> sorted;
  sorted.reserve(items.size());
  for (auto& [_, i] : keyed) sorted.push_back(std::move(items[i]));
  items = std::move(sorted);
}

// Kubernetes' ordering of a merged list: the patch's items in the patch's
// order, with items only the server had slotted in where they stood
// relative to them in the live list.
Json orderMerged(Json merged, const std::vector<Json>& patchOrder, const std::vector<Json>& serverOrder,
                 const std::string& mergeKey) {
  std::vector<Json> patchItems, serverOnly;
  for (auto& e : merged) {
    if (indexIn(patchOrder, e, mergeKey) >= 0) patchItems.push_back(std::move(e));
    else serverOnly.push_back(std::move(e));
  }
  sortByOrder(patchItems, patchOrder, mergeKey);
  sortByOrder(serverOnly, serverOrder, mergeKey);
  Json out = Json::array();
  std::size_t i = 0, j = 0;
  while (i < serverOnly.size() || j < patchItems.size()) {
    if (i >= serverOnly.size()) {
      out.push_back(std::move(patchItems[j++]));
    } else if (j >= patchItems.size()) {
      out.push_back(std::move(serverOnly[i++]));
    } else {
      long li = indexIn(serverOrder, serverOnly[i], mergeKey);
      long ri = indexIn(serverOrder, patchItems[j], mergeKey);
      if (li >= 0 && ri >= 0 && li < ri) out.push_back(std::move(serverOnly[i++]));
      else out.push_back(std::move(patchItems[j++]));
    }
  }
  return out;
}

class StrategicMerger {
 public:
  Status mergeMap(Json& original, Json& patch, const Schema* schema) {
    if (!patch.is_object()) return error("expected an object in the patch");
    if (auto d = patch.find(kPatch); d != patch.end()) {
      if (*d == "replace") {
        patch.erase(d);
        cleanInsertedValue(patch);
        original = std::move(patch);
        return {};
      }
      if (*d == "delete") {
        original = Json::object();
        return {};
      }
      return error(fmt::format("unknown $patch directive {} for an object (use replace or delete)", d->dump(-1, ' ', false, Json::error_handler_t::replace)));
    }
    if (!original.is_object()) original = Json::object();

    if (auto r = patch.find(kRetainKeys); r != patch.end()) {
      if (!r->is_array()) return error("$retainKeys must be a list of field names");
      std::vector<std::string> keep;
      for (const auto& k : *r) {
        if (!k.is_string()) return error("$retainKeys must be a list of field names");
        keep.push_back(k.get<std::string>());
      }
      patch.erase(r);
      for (auto it = original.begin(); it != original.end();) {
        if (std::find(keep.begin(), keep.end(), it.key()) == keep.end()) it = original.erase(it);
        else ++it;
      }
    }

    // $setElementOrder/<list>: merge that list now and impose the order.
    std::vector<std::string> orderKeys;
    for (auto it = patch.begin(); it != patch.end(); ++it) {
      if (std::string_view(it.key()).starts_with(kSetElementOrder)) orderKeys.push_back(it.key());
    }
    for (const auto& directive : orderKeys) {
      std::string listKey = directive.substr(kSetElementOrder.size());
      Json order = std::move(patch[directive]);
      patch.erase(directive);
      if (!order.is_array()) return error(fmt::format("{} must be a list", directive));
      const FieldMeta* meta = schema ? schema->find(listKey) : nullptr;
      static const FieldMeta none;
      if (!meta) meta = &none;
      auto originalIt = original.find(listKey);
      bool haveOriginal = originalIt != original.end() && originalIt->is_array();
      auto patchIt = patch.find(listKey);
      bool havePatch = patchIt != patch.end() && patchIt->is_array();
      if (!haveOriginal && !havePatch) continue;
      std::vector<Json> serverOrder = haveOriginal ? identities(*originalIt, meta->mergeKey) : std::vector<Json>{};
      Json merged = haveOriginal ? std::move(*originalIt) : Json::array();
      if (havePatch) {
        path_.push_back(listKey);
        auto st = mergeList(merged, *patchIt, *meta, false);
        path_.pop_back();
        if (!st) return st;
        patch.erase(listKey);
      }
      if (!merged.is_array()) {
        original[listKey] = std::move(merged);
        continue;
      }
      std::vector<Json> patchOrder = identities(order, meta->mergeKey);
      original[listKey] = orderMerged(std::move(merged), patchOrder, serverOrder, meta->mergeKey);
    }

    for (auto it = patch.begin(); it != patch.end(); ++it) {
      std::string_view rawKey = it.key();
      if (rawKey.starts_with(kSetElementOrder)) continue;
      bool isDeleteList = rawKey.starts_with(kDeleteFromPrimitiveList);
      std::string key(isDeleteList ? rawKey.substr(kDeleteFromPrimitiveList.size()) : rawKey);
      Json& patchValue = it.value();
      if (patchValue.is_null()) {
        original.erase(key);
        continue;
      }
      auto originalIt = original.find(key);
      if (originalIt == original.end()) {
        if (!isDeleteList) {
          cleanInsertedValue(patchValue);
          original[key] = std::move(patchValue);
        }
        continue;
      }
      Json& originalValue = *originalIt;
      const FieldMeta* meta = schema ? schema->find(key) : nullptr;
      static const FieldMeta none;
      if (!meta) meta = &none;
      path_.push_back(key);
      Status st;
      if (originalValue.is_object() && patchValue.is_object()) {
        if (meta->replace) {
          cleanInsertedValue(patchValue);
          originalValue = std::move(patchValue);
        } else {
          st = mergeMap(originalValue, patchValue, meta->type);
        }
      } else if (originalValue.is_array() && patchValue.is_array()) {
        st = mergeList(originalValue, patchValue, *meta, isDeleteList);
      } else if (!isDeleteList) {
        cleanInsertedValue(patchValue);
        originalValue = std::move(patchValue);
      }
      path_.pop_back();
      if (!st) return st;
    }
    return {};
  }

  std::string where() const {
    std::string out;
    for (const auto& p : path_) {
      if (!out.empty()) out += '.';
      out += p;
    }
    return out.empty() ? "strategic merge patch" : "strategic merge patch: " + out;
  }

 private:
  std::unexpected<Error> error(std::string_view what) const {
    return fail(Error::invalid(fmt::format("{}: {}", where(), what)));
  }

  Status mergeList(Json& original, Json& patch, const FieldMeta& meta, bool isDeleteList) {
    if (isDeleteList) {
      // $deleteFromPrimitiveList/<list>: remove these values.
      for (auto it = original.begin(); it != original.end();) {
        if (std::find(patch.begin(), patch.end(), *it) != patch.end()) it = original.erase(it);
        else ++it;
      }
      return {};
    }
    if (!meta.merge) {
      cleanInsertedValue(patch);
      original = std::move(patch);
      return {};
    }
    if (original.empty() && patch.empty()) return {};
    const Json& sample = patch.empty() ? original[0] : patch[0];
    if (!sample.is_object()) {
      // A set of scalars: union, patch order first.
      std::vector<Json> serverOrder(original.begin(), original.end());
      std::vector<Json> patchOrder(patch.begin(), patch.end());
      Json merged = Json::array();
      for (auto* list : {&original, &patch}) {
        for (auto& v : *list) {
          if (v.is_object() || v.is_array()) return error("list mixes scalars and objects");
          if (std::find(merged.begin(), merged.end(), v) == merged.end()) merged.push_back(v);
        }
      }
      original = orderMerged(std::move(merged), patchOrder, serverOrder, "");
      return {};
    }
    if (meta.mergeKey.empty()) return error("cannot merge lists without merge key");
    const std::string& key = meta.mergeKey;

    // Elements carrying $patch first: delete matches, or replace the list.
    Json plainPatch = Json::array();
    bool replaceAll = false;
    for (auto& element : patch) {
      if (!element.is_object()) return error("list mixes scalars and objects");
      auto d = element.find(kPatch);
      if (d == element.end()) {
        plainPatch.push_back(std::move(element));
        continue;
      }
      if (*d == "delete") {
        auto id = element.find(key);
        if (id == element.end()) return error(fmt::format("element {} does not contain declared merge key: {}", element.dump(-1, ' ', false, Json::error_handler_t::replace), key));
        for (auto it = original.begin(); it != original.end();) {
          const Json* have = identity(*it, key);
          if (have && *have == *id) it = original.erase(it);
          else ++it;
        }
      } else if (*d == "replace") {
        replaceAll = true;
      } else if (*d == "merge") {
        return error("merging lists cannot yet be specified in the patch");
      } else {
        return error(fmt::format("unknown $patch directive {}", d->dump(-1, ' ', false, Json::error_handler_t::replace)));
      }
    }
    if (replaceAll) {
      cleanInsertedValue(plainPatch);
      original = std::move(plainPatch);
      return {};
    }
    std::vector<Json> serverOrder = identities(original, key);
    std::vector<Json> patchOrder = identities(plainPatch, key);
    for (auto& element : plainPatch) {
      auto id = element.find(key);
      if (id == element.end()) return error(fmt::format("element {} does not contain declared merge key: {}", element.dump(-1, ' ', false, Json::error_handler_t::replace), key));
      Json* match = nullptr;
      for (auto& have : original) {
        const Json* haveId = identity(have, key);
        if (haveId && *haveId == *id) {
          match = &have;
          break;
        }
      }
      if (match) {
        path_.push_back(fmt::format("[{}={}]", key, id->is_string() ? id->get<std::string>() : id->dump(-1, ' ', false, Json::error_handler_t::replace)));
        auto st = mergeMap(*match, element, meta.type);
        path_.pop_back();
        if (!st) return st;
      } else {
        cleanInsertedValue(element);
        original.push_back(std::move(element));
      }
    }
    original = orderMerged(std::move(original), patchOrder, serverOrder, key);
    return {};
  }

  std::vector<std::string> path_;
};

}  // namespace

Result<Json> strategicMergePatch(std::string_view resource, const Json& original, const Json& patch) {
  if (!patch.is_object()) return fail(Error::invalid("strategic merge patch: the patch must be a JSON object"));
  Json result = original.is_object() ? original : Json::object();
  Json work = patch;  // consumed while merging
  StrategicMerger merger;
  if (auto st = merger.mergeMap(result, work, schemas().forResource(resource)); !st) return fail(st.error());
  return result;
}

std::string listMergeKey(std::string_view resource, const std::vector<std::string>& path) {
  const Schema* schema = schemas().forResource(resource);
  const FieldMeta* meta = nullptr;
  for (const auto& field : path) {
    if (!schema) return "";
    meta = schema->find(field);
    if (!meta) return "";
    schema = meta->type;
  }
  return meta && meta->merge ? meta->mergeKey : "";
}

}  // namespace ferry::api
