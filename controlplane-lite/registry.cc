#include "controlplane-lite/registry.h"

#include "api/log.h"
#include "api/managed_fields.h"
#include "api/patch.h"
#include "api/qos.h"
#include "api/yaml.h"
#include "controlplane-lite/certs.h"
#include "controlplane-lite/object_policy.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <openssl/rand.h>

#include <charconv>
#include <chrono>
#include <ctime>
#include <random>

namespace ferry::cp {

using api::Json;

namespace {

std::string newUid() {
  unsigned char b[16];
  RAND_bytes(b, sizeof b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  return fmt::format("{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                     b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                     b[15]);
}

std::string randomSuffix(std::size_t n) {
  static const char alphabet[] = "bcdfghjklmnpqrstvwxz2456789";
  unsigned char b[16];
  RAND_bytes(b, sizeof b);
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += alphabet[b[i] % (sizeof alphabet - 1)];
  return out;
}

std::string kindAndName(const Resource& r, const std::string& name) {
  return fmt::format("{}{} \"{}\"", r.kind, r.group.empty() ? "" : "." + r.group, name);
}

std::string resourceAndName(const Resource& r, const std::string& name) {
  return fmt::format("{}{} \"{}\"", r.plural, r.group.empty() ? "" : "." + r.group, name);
}

Error conflictError(const Resource& r, const std::string& name) {
  return Error{ECANCELED, fmt::format("Operation cannot be fulfilled on {}: the object has been modified; please apply "
                                      "your changes to the latest version and try again",
                                      resourceAndName(r, name))};
}

std::string hexEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) out += fmt::format("{:02x}", c);
  return out;
}

std::string hexDecode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i + 1 < s.size(); i += 2) out += static_cast<char>(std::stoi(s.substr(i, 2), nullptr, 16));
  return out;
}

struct Cidr {
  std::uint32_t base = 0;
  int prefix = 0;
  std::uint64_t size() const { return 1ULL << (32 - prefix); }
};

Result<Cidr> parseCidr(const std::string& text, const std::string& what) {
  auto slash = text.find('/');
  if (slash == std::string::npos) return fail(EINVAL, what + ": want a.b.c.d/n, got \"" + text + "\"");
  in_addr a{};
  if (inet_pton(AF_INET, text.substr(0, slash).c_str(), &a) != 1) return fail(EINVAL, what + ": bad address in \"" + text + "\"");
  int prefix = std::atoi(text.c_str() + slash + 1);
  if (prefix < 8 || prefix > 30) return fail(EINVAL, what + ": prefix /" + std::to_string(prefix) + " unsupported");
  Cidr c;
  c.prefix = prefix;
  c.base = ntohl(a.s_addr) & (prefix == 0 ? 0 : ~((1U << (32 - prefix)) - 1));
  return c;
}

std::string ipString(std::uint32_t ip) {
  in_addr a{};
  a.s_addr = htonl(ip);
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

std::optional<std::uint32_t> parseIp(const std::string& s) {
  in_addr a{};
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) return std::nullopt;
  return ntohl(a.s_addr);
}

// An IPv6 Service range: /108 to /124 (at most 2^20 addresses, as Kubernetes
// limits it), so an offset in it fits the low 32 bits.
struct Cidr6 {
  in6_addr base{};
  int prefix = 0;
  std::uint64_t size() const { return 1ULL << (128 - prefix); }
  bool contains(const in6_addr& a) const {
    for (int bit = 0; bit < prefix; ++bit) {
      int byte = bit / 8, mask = 0x80 >> (bit % 8);
      if ((a.s6_addr[byte] & mask) != (base.s6_addr[byte] & mask)) return false;
    }
    return true;
  }
  in6_addr at(std::uint32_t offset) const {
    in6_addr a = base;
    for (int i = 15; i >= 12; --i, offset >>= 8) a.s6_addr[i] = static_cast<std::uint8_t>(a.s6_addr[i] | (offset & 0xff));
    return a;
  }
};

std::string ip6String(const in6_addr& a) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, &a, buf, sizeof buf);
  return buf;
}

// --service-cidr: an IPv4 range, optionally followed by ",<IPv6 range>" for
// dual-stack Services. The IPv4 range is the primary one (the kubernetes and
// DNS Services and single-stack Services without a family live in it).
struct ServiceRanges {
  Cidr v4;
  std::optional<Cidr6> v6;
};

Result<ServiceRanges> parseServiceRanges(const std::string& text) {
  const std::string what = "--service-cidr";
  ServiceRanges r;
  auto comma = text.find(',');
  auto v4 = parseCidr(text.substr(0, comma), what);
  if (!v4) return fail(v4.error().wrap("the first (primary) range must be IPv4"));
  r.v4 = *v4;
  if (comma == std::string::npos) return r;
  std::string second = text.substr(comma + 1);
  auto slash = second.find('/');
  Cidr6 c;
  if (second.find(',') != std::string::npos)
    return fail(EINVAL, what + ": at most two ranges (IPv4,IPv6), got \"" + text + "\"");
  if (slash == std::string::npos || inet_pton(AF_INET6, second.substr(0, slash).c_str(), &c.base) != 1)
    return fail(EINVAL, what + ": the second range must be IPv6 (like fd00:43::/112), got \"" + second + "\"");
  c.prefix = std::atoi(second.c_str() + slash + 1);
  if (c.prefix < 108 || c.prefix > 124)
    return fail(EINVAL, what + ": IPv6 prefix /" + std::to_string(c.prefix) + " unsupported (want /108 to /124)");
  for (int bit = c.prefix; bit < 128; ++bit) c.base.s6_addr[bit / 8] &= static_cast<std::uint8_t>(~(0x80 >> (bit % 8)));
  r.v6 = c;
  return r;
}

std::string familyOf(const std::string& ip) { return ip.find(':') == std::string::npos ? "IPv4" : "IPv6"; }

}  // namespace

Result<Json> parseJsonOrYaml(const std::string& body, bool allowYaml) {
  // YAML is a superset of JSON, but a JSON body is read as JSON (exact numbers, its own error messages).
  auto json = api::parseJson(body);
  if (json || !allowYaml) {
    if (!json) return fail(EBADMSG, "the request body is not valid JSON: " + json.error().message);
    return json;
  }
  auto yaml = api::parseYaml(body);
  if (!yaml) return fail(EBADMSG, "the request body is not valid YAML: " + yaml.error().message);
  return yaml;
}

namespace {

Json specOrRest(const Json& obj) {
  Json c = obj;
  c.erase("metadata");
  c.erase("status");
  return c;
}

// The fields server-side apply records per manager.
void recordManagedFields(Json& object, const std::string& manager, const std::string& operation,
                         const std::string& apiVersion, const Json& fieldSet, const std::string& subresource = "") {
  if (manager.empty()) return;
  Json& meta = object["metadata"];
  Json entries = meta.contains("managedFields") && meta["managedFields"].is_array() ? meta["managedFields"] : Json::array();
  Json kept = Json::array();
  for (auto& e : entries)
    if (!(e.value("manager", "") == manager && e.value("operation", "") == operation &&
          e.value("subresource", "") == subresource))
      kept.push_back(e);
  Json entry = {{"manager", manager},     {"operation", operation}, {"apiVersion", apiVersion},
                {"time", api::nowRfc3339()}, {"fieldsType", "FieldsV1"}, {"fieldsV1", fieldSet}};
  if (!subresource.empty()) entry["subresource"] = subresource;
  kept.push_back(entry);
  meta["managedFields"] = kept;
}

// Value of `object` at a fieldsV1 leaf path, for conflict detection; nullopt when absent.
std::optional<Json> valueAtLeaf(const Json& object, const std::string& leaf) {
  const Json* cur = &object;
  std::size_t start = 0;
  while (start < leaf.size()) {
    auto slash = leaf.find('/', start);
    // keys in k:{...} never contain "/" followed by f: or k:, but values may contain "/": find the next segment start.
    std::size_t next = start;
    while (true) {
      next = leaf.find('/', next);
      if (next == std::string::npos) break;
      if (leaf.compare(next + 1, 2, "f:") == 0 || leaf.compare(next + 1, 2, "k:") == 0 ||
          leaf.compare(next + 1, 2, "v:") == 0)
        break;
      ++next;
    }
    slash = next;
    std::string seg = leaf.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (seg.rfind("f:", 0) == 0) {
      if (!cur->is_object()) return std::nullopt;
      auto it = cur->find(seg.substr(2));
      if (it == cur->end()) return std::nullopt;
      cur = &*it;
    } else if (seg.rfind("k:", 0) == 0) {
      if (!cur->is_array()) return std::nullopt;
      Json key;
      try {
        key = Json::parse(seg.substr(2));
      } catch (...) {
        return std::nullopt;
      }
      const Json* found = nullptr;
      for (const auto& e : *cur) {
        bool match = e.is_object();
        for (const auto& [k, v] : key.items())
          if (!e.contains(k) || e[k] != v) match = false;
        if (match) {
          found = &e;
          break;
        }
      }
      if (!found) return std::nullopt;
      cur = found;
    } else {
      return std::nullopt;
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return *cur;
}

}  // namespace

std::string notFoundMessage(const Resource& r, const std::string& name) {
  return fmt::format("{} not found", resourceAndName(r, name));
}

Registry::Registry(Store& store, ServerConfig config) : store_(store), config_(std::move(config)) {
  namespaceCleaner_ = std::thread([this] { namespaceCleanupLoop(); });
}

Registry::~Registry() {
  stopping_ = true;
  if (namespaceCleaner_.joinable()) namespaceCleaner_.join();
  std::lock_guard lock(cachesMu_);
  caches_.clear();
}

std::string Registry::keyFor(const Resource& r, const std::string& ns, const std::string& name) const {
  return r.namespaced ? fmt::format("/registry/{}/{}/{}", r.plural, ns, name) : fmt::format("/registry/{}/{}", r.plural, name);
}

std::string Registry::prefixFor(const Resource& r, const std::string& ns) const {
  if (r.namespaced && !ns.empty()) return fmt::format("/registry/{}/{}/", r.plural, ns);
  return fmt::format("/registry/{}/", r.plural);
}

Result<Json> Registry::decode(const std::string& value, std::int64_t revision) {
  try {
    Json obj = Json::parse(value);
    obj["metadata"]["resourceVersion"] = std::to_string(revision);
    return obj;
  } catch (const Json::exception& e) {
    return fail(EIO, std::string("stored object is not JSON: ") + e.what());
  }
}

// The stored bytes: the object's JSON without metadata.resourceVersion (the key's
// modRevision is the resourceVersion). Dumped in place rather than from a copy.
static std::string encode(Json& object) {
  auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return object.dump();
  auto rv = meta->find("resourceVersion");
  if (rv == meta->end()) return object.dump();
  Json saved = std::move(*rv);
  meta->erase(rv);
  std::string out = object.dump();
  (*meta)["resourceVersion"] = std::move(saved);
  return out;
}

// Hands the store the writer's own copy of what it writes (see DecodedValue): in-process
// watchers (the watch cache, and through it informers and API watchers) share it instead
// of parsing the bytes back. Nothing touches `object` after the write but the store.
static DecodedValue decodedFor(std::shared_ptr<Json> object) {
  return [object = std::move(object)](std::int64_t revision) -> std::shared_ptr<const Json> {
    (*object)["metadata"]["resourceVersion"] = std::to_string(revision);
    return object;
  };
}

// The same for a copy of `object`, made only when the resource's watch cache follows the
// store (no watcher: no copy; a cache starting meanwhile parses the bytes as before).
DecodedValue Registry::decodedCopy(const Resource& r, const Json& object) {
  if (!cacheFor(r).following()) return {};
  return decodedFor(std::make_shared<Json>(object));
}

Result<Json> Registry::read(const Resource& r, const std::string& ns, const std::string& name, std::int64_t* modRevision) {
  auto kv = store_.get(keyFor(r, ns, name));
  if (!kv) {
    if (kv.error().code == ENOENT) return fail(ENOENT, notFoundMessage(r, name));
    return fail(kv.error());
  }
  if (modRevision) *modRevision = kv->modRevision;
  return decode(kv->value, kv->modRevision);
}

static const Resource* requireResource(const std::string& name) { return findResource(name); }

#define REQUIRE_RESOURCE(var, name)                                                   \
  const Resource* var = requireResource(name);                                         \
  if (!var) return fail(ENOENT, "the server doesn't have a resource type \"" + (name) + "\"")

Status Registry::checkNamespaceWritable(const std::string& ns) {
  const Resource* nsr = findResource("namespaces");
  // Every create in a namespace asks this: the namespaces watch cache answers without a
  // store read (as Kubernetes' NamespaceLifecycle admission reads its informer). A
  // namespace the cache does not know (yet) is read from the store.
  if (auto cached = cacheFor(*nsr).latestObject(keyFor(*nsr, "", ns)); cached && *cached) {
    if (api::isTerminating(**cached))
      return fail(EACCES, fmt::format("unable to create new content in namespace {} because it is being terminated", ns));
    return {};
  }
  auto obj = read(*nsr, "", ns, nullptr);
  if (!obj) {
    if (obj.error().code == ENOENT) return fail(ENOENT, notFoundMessage(*nsr, ns));
    return fail(obj.error());
  }
  if (api::isTerminating(*obj))
    return fail(EACCES, fmt::format("unable to create new content in namespace {} because it is being terminated", ns));
  return {};
}

Result<Json> Registry::create(const std::string& resource, const Json& input) { return create(resource, Json(input)); }

Result<Json> Registry::create(const std::string& resource, Json&& input) {
  // pods/binding for in-process clients (the scheduler): a Binding is not stored, it binds.
  if (resource == "bindings") {
    auto st = bindPod(api::namespaceOf(input), api::nameOf(input), api::at<std::string>(input, {"target", "name"}));
    if (!st) return fail(st.error());
    return input;
  }
  REQUIRE_RESOURCE(r, resource);
  if (!input.is_object()) return fail(EBADMSG, "the object must be a JSON object");
  Json obj = std::move(input);
  obj["apiVersion"] = r->apiVersion();
  obj["kind"] = r->kind;
  if (!obj.contains("metadata") || !obj["metadata"].is_object()) obj["metadata"] = Json::object();
  Json& meta = obj["metadata"];
  std::string ns = api::namespaceOf(obj);
  if (r->namespaced) {
    if (ns.empty()) return fail(invalidError(kindAndName(*r, api::nameOf(obj)), {{"metadata.namespace", "Required value", api::Cause::kRequired}}));
    if (auto st = checkNamespaceWritable(ns); !st) return fail(st.error());
  } else {
    meta.erase("namespace");
  }
  if (api::nameOf(obj).empty()) {
    std::string gen = api::at<std::string>(obj, {"metadata", "generateName"});
    if (!gen.empty()) meta["name"] = gen + randomSuffix(5);
  }
  for (const char* k : {"resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"}) meta.erase(k);
  meta["uid"] = newUid();
  meta["creationTimestamp"] = api::nowRfc3339();
  meta["generation"] = 1;
  if (r->kind == "Pod") {
    obj["status"] = Json{{"phase", "Pending"}};
  } else if (r->kind == "Deployment" || r->kind == "ReplicaSet" || r->kind == "HorizontalPodAutoscaler") {
    obj.erase("status");
  }
  // Admission defaults include DefaultTolerationSeconds with the server's --pod-eviction-timeout.
  applyDefaults(*r, obj, config_.podEvictionTimeoutSeconds);
  auto causes = validateObject(*r, obj, nullptr);
  if (!causes.empty()) return fail(invalidError(kindAndName(*r, api::nameOf(obj)) + " is invalid", causes));
  // As Kubernetes does at creation, from the defaulted spec (requests copied from limits).
  if (r->kind == "Pod") obj["status"]["qosClass"] = api::qosClass(obj["spec"]);
  std::string name = api::nameOf(obj);
  // Kinds whose admission allocates (ClusterIP, NodePort, podCIDR) check for a duplicate
  // first, so that it gets AlreadyExists rather than an allocation error; for the others
  // the store's create answers EEXIST itself and the read would only cost a round trip.
  bool allocates = r->kind == "Service" || r->kind == "Node";
  if (allocates && store_.get(keyFor(*r, ns, name)))
    return fail(EEXIST, fmt::format("{} already exists", resourceAndName(*r, name)));
  if (auto st = admitCreate(*r, obj); !st) return fail(st.error());
  std::string value = encode(obj);
  auto rev = store_.create(keyFor(*r, ns, name), value, decodedCopy(*r, obj));
  if (!rev) {
    releaseOnDelete(*r, obj);
    if (rev.error().code == EEXIST)
      return fail(EEXIST, fmt::format("{} already exists", resourceAndName(*r, name)));
    return fail(rev.error());
  }
  obj["metadata"]["resourceVersion"] = std::to_string(*rev);
  return obj;
}

Result<Json> Registry::get(const std::string& resource, const std::string& ns, const std::string& name) {
  REQUIRE_RESOURCE(r, resource);
  return read(*r, r->namespaced ? ns : "", name, nullptr);
}

Result<Json> Registry::update(const std::string& resource, const Json& object) {
  REQUIRE_RESOURCE(r, resource);
  return doUpdate(*r, object, UpdateMode::Main);
}

Result<Json> Registry::updateStatus(const std::string& resource, const Json& object) {
  REQUIRE_RESOURCE(r, resource);
  return doUpdate(*r, object, UpdateMode::Status);
}

Result<Json> Registry::doUpdate(const Resource& r, const Json& input, UpdateMode mode) {
  if (!input.is_object()) return fail(EBADMSG, "the object must be a JSON object");
  std::string ns = r.namespaced ? api::namespaceOf(input) : "";
  std::string name = api::nameOf(input);
  if (name.empty()) return fail(invalidError(kindAndName(r, name) + " is invalid", {{"metadata.name", "Required value", api::Cause::kRequired}}));
  std::string wantedRv = api::resourceVersionOf(input);
  std::string key = keyFor(r, ns, name);
  for (int attempt = 0; attempt < 20; ++attempt) {
    std::int64_t modRevision = 0;
    auto current = read(r, ns, name, &modRevision);
    if (!current) return fail(current.error());
    if (!wantedRv.empty() && wantedRv != std::to_string(modRevision)) return fail(conflictError(r, name));
    Json obj;
    if (mode == UpdateMode::Status) {
      obj = *current;
      if (input.contains("status")) obj["status"] = input["status"];
      else obj.erase("status");
    } else {
      obj = input;
      obj["apiVersion"] = r.apiVersion();
      obj["kind"] = r.kind;
      Json& meta = obj["metadata"];
      const Json& oldMeta = (*current)["metadata"];
      for (const char* k : {"uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"}) {
        if (oldMeta.contains(k)) meta[k] = oldMeta[k];
        else meta.erase(k);
      }
      if (!meta.contains("managedFields") && oldMeta.contains("managedFields")) meta["managedFields"] = oldMeta["managedFields"];
      if (r.namespaced) meta["namespace"] = ns;
      if (r.hasStatusSubresource && mode == UpdateMode::Main) {
        if (current->contains("status")) obj["status"] = (*current)["status"];
        else obj.erase("status");
      }
      applyDefaults(r, obj, config_.podEvictionTimeoutSeconds);
      api::carryOverAllocatedFields(r.qualifiedName(), obj, *current);
      if (specOrRest(obj) != specOrRest(*current))
        meta["generation"] = api::at<std::int64_t>(*current, {"metadata", "generation"}, 1) + 1;
      auto causes = validateObject(r, obj, &*current);
      if (!causes.empty()) return fail(invalidError(kindAndName(r, name) + " is invalid", causes));
      if (auto st = admitUpdate(r, *current, obj); !st) return fail(st.error());
    }
    obj["metadata"]["resourceVersion"] = std::to_string(modRevision);
    // Removing the last finalizer of an object being deleted completes its deletion.
    if (api::isTerminating(obj)) {
      auto fins = api::at<std::vector<std::string>>(obj, {"metadata", "finalizers"});
      bool podWaitingForNode = r.kind == "Pod" && !api::at<std::string>(obj, {"spec", "nodeName"}).empty() &&
                               api::at<std::int64_t>(obj, {"metadata", "deletionGracePeriodSeconds"}, 0) > 0;
      if (fins.empty() && !podWaitingForNode) {
        auto done = finishDelete(r, key, obj, modRevision);
        if (!done && done.error().code == ECANCELED && wantedRv.empty()) continue;
        return done;
      }
    }
    if (obj == *current) return obj;
    std::string value = encode(obj);
    auto rev = store_.update(key, value, modRevision, decodedCopy(r, obj));
    if (!rev) {
      if (rev.error().code == ECANCELED) {
        if (wantedRv.empty()) continue;
        return fail(conflictError(r, name));
      }
      if (rev.error().code == ENOENT) return fail(ENOENT, notFoundMessage(r, name));
      return fail(rev.error());
    }
    obj["metadata"]["resourceVersion"] = std::to_string(*rev);
    return obj;
  }
  return fail(conflictError(r, name));
}

Result<Json> Registry::finishDelete(const Resource& r, const std::string& key, const Json& object, std::int64_t revision) {
  auto rev = store_.remove(key, revision);
  if (!rev) {
    if (rev.error().code == ENOENT) return fail(ENOENT, notFoundMessage(r, api::nameOf(object)));
    if (rev.error().code == ECANCELED) return fail(conflictError(r, api::nameOf(object)));
    return fail(rev.error());
  }
  releaseOnDelete(r, object);
  Json out = object;
  out["metadata"]["resourceVersion"] = std::to_string(*rev);
  return out;
}

Result<Json> Registry::remove(const std::string& resource, const std::string& nsIn, const std::string& name,
                              const DeleteOptions& options) {
  REQUIRE_RESOURCE(r, resource);
  std::string ns = r->namespaced ? nsIn : "";
  std::string key = keyFor(*r, ns, name);
  for (int attempt = 0; attempt < 20; ++attempt) {
    std::int64_t modRevision = 0;
    auto current = read(*r, ns, name, &modRevision);
    if (!current) return fail(current.error());
    Json obj = *current;
    if (!options.preconditionUid.empty() && options.preconditionUid != api::uidOf(obj))
      return fail(ECANCELED, fmt::format("Precondition failed: UID in precondition: {}, UID in object meta: {}",
                                         options.preconditionUid, api::uidOf(obj)));
    if (!options.preconditionResourceVersion.empty() && options.preconditionResourceVersion != std::to_string(modRevision))
      return fail(ECANCELED, fmt::format("Precondition failed: ResourceVersion in precondition: {}, ResourceVersion in object meta: {}",
                                         options.preconditionResourceVersion, modRevision));
    auto fins = api::at<std::vector<std::string>>(obj, {"metadata", "finalizers"});
    Json& meta = obj["metadata"];
    bool changed = false;

    if (r->kind == "Namespace") {
      if (!api::isTerminating(obj)) {
        meta["deletionTimestamp"] = api::nowRfc3339();
        meta["deletionGracePeriodSeconds"] = 0;
        obj["status"]["phase"] = "Terminating";
        changed = true;
      } else {
        return obj;
      }
    } else if (r->kind == "Pod") {
      std::int64_t grace = options.gracePeriodSeconds.value_or(
          api::at<std::int64_t>(obj, {"spec", "terminationGracePeriodSeconds"}, 30));
      std::string phase = api::at<std::string>(obj, {"status", "phase"});
      bool bound = !api::at<std::string>(obj, {"spec", "nodeName"}).empty();
      if (!bound || phase == "Succeeded" || phase == "Failed") grace = 0;
      if (grace < 0) grace = 0;
      if (grace > 0) {
        std::int64_t existing = api::at<std::int64_t>(obj, {"metadata", "deletionGracePeriodSeconds"}, -1);
        if (api::isTerminating(obj) && existing >= 0 && existing <= grace) return obj;
        meta["deletionTimestamp"] = api::toRfc3339(std::time(nullptr) + grace);
        meta["deletionGracePeriodSeconds"] = grace;
        changed = true;
      } else if (!fins.empty()) {
        if (!api::isTerminating(obj) || api::at<std::int64_t>(obj, {"metadata", "deletionGracePeriodSeconds"}, 0) != 0) {
          if (!api::isTerminating(obj)) meta["deletionTimestamp"] = api::nowRfc3339();
          meta["deletionGracePeriodSeconds"] = 0;
          changed = true;
        } else {
          return obj;
        }
      }
    } else {
      // Foreground and Orphan propagation: a finalizer that the garbage collector
      // removes once the dependents are gone (foreground) or released (orphan).
      bool collected = r->kind == "Deployment" || r->kind == "ReplicaSet" || r->kind == "Service";
      std::string gcFinalizer = options.propagationPolicy == "Foreground" ? "foregroundDeletion"
                                : options.propagationPolicy == "Orphan"   ? "orphan"
                                                                          : "";
      if (collected && !gcFinalizer.empty() && !api::isTerminating(obj) &&
          std::find(fins.begin(), fins.end(), gcFinalizer) == fins.end()) {
        fins.push_back(gcFinalizer);
        meta["finalizers"] = fins;
      }
      if (!fins.empty()) {
        if (api::isTerminating(obj)) return obj;
        meta["deletionTimestamp"] = api::nowRfc3339();
        meta["deletionGracePeriodSeconds"] = 0;
        changed = true;
      }
    }


    if (changed) {
      std::string value = encode(obj);
      auto rev = store_.update(key, value, modRevision, decodedCopy(*r, obj));
      if (!rev) {
        if (rev.error().code == ECANCELED) continue;
        return fail(rev.error());
      }
      obj["metadata"]["resourceVersion"] = std::to_string(*rev);
      return obj;
    }
    auto done = finishDelete(*r, key, obj, modRevision);
    if (!done && done.error().code == ECANCELED && options.preconditionResourceVersion.empty()) continue;
    return done;
  }
  return fail(conflictError(*r, name));
}

Result<ObjectList> Registry::list(const std::string& resource, const std::string& ns, const ListOptions& options) {
  ListRequest req;
  req.options = options;
  auto page = listPage(resource, ns, req);
  if (!page) return fail(page.error());
  return std::move(page->list);
}

Result<ListResult> Registry::listPage(const std::string& resource, const std::string& nsIn, const ListRequest& request) {
  REQUIRE_RESOURCE(r, resource);
  std::string ns = r->namespaced ? nsIn : "";
  auto labels = api::LabelSelector::parse(request.options.labelSelector);
  if (!labels) return fail(EBADMSG, labels.error().message);
  auto fields = api::FieldSelector::parse(request.options.fieldSelector);
  if (!fields) return fail(EBADMSG, fields.error().message);
  std::string prefix = prefixFor(*r, ns);
  ListResult out;
  std::string startAfter;
  if (!request.continueToken.empty()) {
    startAfter = hexDecode(request.continueToken);
    if (startAfter.rfind(prefix, 0) != 0) return fail(EBADMSG, "continue: the token does not belong to this list");
  }
  // An exact name narrows the read to one key.
  std::string exactName = fields->exactValue("metadata.name").value_or("");
  if (!exactName.empty() && (!r->namespaced || !ns.empty()) && request.continueToken.empty()) {
    auto kv = store_.get(keyFor(*r, ns, exactName));
    auto rev = store_.currentRevision();
    if (!rev) return fail(rev.error());
    out.list.resourceVersion = std::to_string(*rev);
    if (kv) {
      auto obj = decode(kv->value, kv->modRevision);
      if (obj && labels->matchesObject(*obj) && fields->matches(*obj)) out.list.items.push_back(std::move(*obj));
    } else if (kv.error().code != ENOENT) {
      return fail(kv.error());
    }
    return out;
  }
  const std::int64_t pageSize = request.limit > 0 ? std::max<std::int64_t>(request.limit, 100) : 0;
  std::int64_t readRevision = 0;
  while (true) {
    auto page = store_.list(prefix, startAfter, pageSize);
    if (!page) return fail(page.error());
    if (readRevision == 0) readRevision = page->revision;
    for (const auto& kv : page->items) {
      startAfter = kv.key;
      auto obj = decode(kv.value, kv.modRevision);
      if (!obj) continue;
      if (!labels->matchesObject(*obj) || !fields->matches(*obj)) continue;
      out.list.items.push_back(std::move(*obj));
      if (request.limit > 0 && static_cast<std::int64_t>(out.list.items.size()) >= request.limit) {
        // More may follow: hand out a token unless this was the last key.
        if (&kv != &page->items.back() || page->more) out.continueToken = hexEncode(startAfter);
        out.list.resourceVersion = std::to_string(readRevision);
        return out;
      }
    }
    if (!page->more || pageSize == 0) break;
  }
  out.list.resourceVersion = std::to_string(readRevision);
  return out;
}

WatchCache& Registry::cacheFor(const Resource& r) {
  std::lock_guard lock(cachesMu_);
  auto& slot = caches_[r.plural];
  if (!slot)
    slot = std::make_unique<WatchCache>(store_, prefixFor(r, ""),
                                        [this](const std::string& v, std::int64_t rev) { return decode(v, rev); });
  return *slot;
}

Result<std::unique_ptr<ObjectWatch>> Registry::watch(const std::string& resource, const std::string& ns,
                                                     const std::string& resourceVersion, const ListOptions& options,
                                                     std::function<void(const WatchEvent&)> sink) {
  REQUIRE_RESOURCE(r, resource);
  WatchFilter filter;
  filter.ns = r->namespaced ? ns : "";
  auto labels = api::LabelSelector::parse(options.labelSelector);
  if (!labels) return fail(EBADMSG, labels.error().message);
  auto fields = api::FieldSelector::parse(options.fieldSelector);
  if (!fields) return fail(EBADMSG, fields.error().message);
  filter.labels = std::move(*labels);
  filter.fields = std::move(*fields);
  std::int64_t after = -1;
  if (!resourceVersion.empty() && resourceVersion != "0") {
    try {
      after = std::stoll(resourceVersion);
    } catch (...) {
      return fail(EBADMSG, "resourceVersion: not a number: \"" + resourceVersion + "\"");
    }
  }
  return cacheFor(*r).add(after, std::move(filter), std::move(sink));
}

Result<std::string> Registry::currentResourceVersion() {
  auto rev = store_.currentRevision();
  if (!rev) return fail(rev.error());
  return std::to_string(*rev);
}

Result<Json> Registry::patch(const std::string& resource, const std::string& nsIn, const std::string& name,
                             const PatchRequest& request, bool* created) {
  REQUIRE_RESOURCE(r, resource);
  std::string ns = r->namespaced ? nsIn : "";
  const std::string& type = request.contentType;
  bool apply = type == "application/apply-patch+yaml";
  auto patchDoc = parseJsonOrYaml(request.body, apply);
  if (!patchDoc) return fail(patchDoc.error());
  if (created) *created = false;
  for (int attempt = 0; attempt < 20; ++attempt) {
    std::int64_t modRevision = 0;
    auto current = read(*r, ns, name, &modRevision);
    if (!current) {
      if (current.error().code == ENOENT && apply && request.subresource.empty()) {
        Json obj = *patchDoc;
        if (!obj.is_object()) return fail(EBADMSG, "an apply patch must be an object");
        if (api::nameOf(obj) != name)
          return fail(EBADMSG, "the name of the object (" + api::nameOf(obj) + ") does not match the name on the URL (" + name + ")");
        obj["metadata"]["namespace"] = ns;
        if (!r->namespaced) obj["metadata"].erase("namespace");
        recordManagedFields(obj, request.fieldManager, "Apply", r->apiVersion(), api::fieldSetOf(r->qualifiedName(), *patchDoc));
        auto made = create(resource, obj);
        if (made && created) *created = true;
        if (!made && made.error().code == EEXIST) continue;
        return made;
      }
      return fail(current.error());
    }
    Json base = *current;
    if (request.subresource == "scale") base = scaleOf(*r, *current);
    // A Scale has no merge keys of its own.
    const std::string smpResource = request.subresource == "scale" ? "scales.autoscaling" : r->qualifiedName();
    Json patched;
    try {
      // A patch that cannot be applied is the request's fault: 400, as Kubernetes answers.
      auto badPatch = [](const Error& e) { return fail(EBADMSG, "the patch could not be applied: " + e.message); };
      if (type == "application/merge-patch+json" || type == "application/merge-json-patch+json") {
        auto merged = api::jsonMergePatch(base, *patchDoc);
        if (!merged) return badPatch(merged.error());
        patched = std::move(*merged);
      } else if (type == "application/json-patch+json") {
        auto merged = api::jsonPatch(base, *patchDoc);
        if (!merged) return badPatch(merged.error());
        patched = std::move(*merged);
      } else if (type == "application/strategic-merge-patch+json") {
        auto merged = api::strategicMergePatch(smpResource, base, *patchDoc);
        if (!merged) return badPatch(merged.error());
        patched = std::move(*merged);
      } else if (apply) {
        Json applied = api::stripDirectives(*patchDoc);
        // Conflicts: fields another manager set to a different value.
        Json fieldSet = api::fieldSetOf(r->qualifiedName(), applied);
        std::vector<std::string> mine = api::fieldSetLeaves(fieldSet);
        std::vector<std::string> conflicts;
        Json managed = api::at<Json>(base, {"metadata", "managedFields"}, Json::array());
        for (const auto& entry : managed) {
          if (entry.value("manager", "") == request.fieldManager) continue;
          for (const auto& leaf : api::fieldSetLeaves(entry.value("fieldsV1", Json::object()))) {
            if (std::find(mine.begin(), mine.end(), leaf) == mine.end()) continue;
            auto have = valueAtLeaf(base, leaf);
            auto want = valueAtLeaf(applied, leaf);
            if (have && want && *have != *want)
              conflicts.push_back(fmt::format("conflict with \"{}\": {}", entry.value("manager", ""), leaf));
          }
        }
        if (!conflicts.empty() && !request.force) {
          std::string msg = fmt::format("Apply failed with {} conflict{}:", conflicts.size(), conflicts.size() > 1 ? "s" : "");
          for (const auto& c : conflicts) msg += " " + c;
          return fail(EALREADY, msg);
        }
        auto merged = api::strategicMergePatch(smpResource, base, applied);
        if (!merged) return badPatch(merged.error());
        patched = std::move(*merged);
        recordManagedFields(patched, request.fieldManager, "Apply", r->apiVersion(), fieldSet);
      } else {
        return fail(ENOTSUP, "the body of the request was in an unknown format - accepted media types include: "
                             "application/json-patch+json, application/merge-patch+json, "
                             "application/apply-patch+yaml, application/strategic-merge-patch+json");
      }
    } catch (const Json::exception& e) {
      return fail(EBADMSG, std::string("the patch could not be applied: ") + e.what());
    }
    if (!patched.is_object()) return fail(EBADMSG, "the patch did not produce an object");
    if (!apply && !request.fieldManager.empty() && request.subresource.empty())
      recordManagedFields(patched, request.fieldManager, "Update", r->apiVersion(), api::fieldSetOf(r->qualifiedName(), api::stripDirectives(*patchDoc)));
    if (request.subresource == "scale") {
      auto updated = updateScale(resource, ns, name, patched);
      if (!updated && updated.error().code == ECANCELED && api::resourceVersionOf(*patchDoc).empty()) continue;
      return updated;
    }
    // A patch carries the revision it was computed against unless it names one itself.
    std::string patchRv = api::resourceVersionOf(patched);
    if (patchRv.empty() || patchRv == std::to_string(modRevision)) patched["metadata"]["resourceVersion"] = std::to_string(modRevision);
    patched["metadata"]["name"] = name;
    if (r->namespaced) patched["metadata"]["namespace"] = ns;
    auto result = doUpdate(*r, patched, request.subresource == "status" ? UpdateMode::Status : UpdateMode::Main);
    if (!result && result.error().code == ECANCELED && patchRv.empty()) continue;
    return result;
  }
  return fail(conflictError(*r, name));
}

Json Registry::scaleOf(const Resource& r, const Json& obj) {
  Json selector = api::at<Json>(obj, {"spec", "selector"}, Json::object());
  std::string sel;
  const Json matchLabels = selector.value("matchLabels", Json::object());
  for (const auto& [k, v] : matchLabels.items())
    sel += (sel.empty() ? "" : ",") + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  return Json{{"kind", "Scale"},
              {"apiVersion", "autoscaling/v1"},
              {"metadata",
               {{"name", api::nameOf(obj)},
                {"namespace", api::namespaceOf(obj)},
                {"uid", api::uidOf(obj)},
                {"resourceVersion", api::resourceVersionOf(obj)},
                {"creationTimestamp", api::at<std::string>(obj, {"metadata", "creationTimestamp"})}}},
              {"spec", {{"replicas", api::at<std::int64_t>(obj, {"spec", "replicas"}, 0)}}},
              {"status", {{"replicas", api::at<std::int64_t>(obj, {"status", "replicas"}, 0)}, {"selector", sel}}}};
}

Result<Json> Registry::getScale(const std::string& resource, const std::string& ns, const std::string& name) {
  REQUIRE_RESOURCE(r, resource);
  auto obj = read(*r, ns, name, nullptr);
  if (!obj) return fail(obj.error());
  return scaleOf(*r, *obj);
}

Result<Json> Registry::updateScale(const std::string& resource, const std::string& ns, const std::string& name,
                                   const Json& scale) {
  REQUIRE_RESOURCE(r, resource);
  auto replicas = api::at<Json>(scale, {"spec", "replicas"});
  if (!replicas.is_number_integer() || replicas.get<std::int64_t>() < 0)
    return fail(invalidError(fmt::format("Scale.autoscaling \"{}\" is invalid", name),
                             {{"spec.replicas", "Invalid value: " + replicas.dump() + ": must be greater than or equal to 0", api::Cause::kInvalid}}));
  std::string rv = api::resourceVersionOf(scale);
  for (int attempt = 0; attempt < 20; ++attempt) {
    std::int64_t modRevision = 0;
    auto obj = read(*r, ns, name, &modRevision);
    if (!obj) return fail(obj.error());
    if (!rv.empty() && rv != std::to_string(modRevision)) return fail(conflictError(*r, name));
    (*obj)["spec"]["replicas"] = replicas;
    (*obj)["metadata"]["resourceVersion"] = std::to_string(modRevision);
    auto updated = doUpdate(*r, *obj, UpdateMode::Main);
    if (!updated && updated.error().code == ECANCELED && rv.empty()) continue;
    if (!updated) return fail(updated.error());
    return scaleOf(*r, *updated);
  }
  return fail(conflictError(*r, name));
}

Status Registry::bindPod(const std::string& ns, const std::string& name, const std::string& nodeName) {
  const Resource* r = findResource("pods");
  if (nodeName.empty()) return fail(invalidError("Binding \"" + name + "\" is invalid", {{"target.name", "Required value", api::Cause::kRequired}}));
  const std::string key = keyFor(*r, ns, name);
  for (int attempt = 0; attempt < 20; ++attempt) {
    std::int64_t modRevision = 0;
    std::shared_ptr<Json> obj;
    // First from the pods watch cache (the scheduler's informer keeps it running): the
    // compare-and-swap on its revision makes that exactly as safe as a store read, and a
    // stale copy only costs a retry that reads the store. A copy that looks bound or
    // terminating is confirmed from the store before the bind is refused.
    if (attempt == 0) {
      if (auto cached = cacheFor(*r).latestObject(key); cached && *cached) {
        const Json& pod = **cached;
        std::int64_t rev = 0;
        const std::string rv = api::resourceVersionOf(pod);
        auto [end, ec] = std::from_chars(rv.data(), rv.data() + rv.size(), rev);
        if (ec == std::errc() && end == rv.data() + rv.size() && rev > 0 &&
            api::at<std::string>(pod, {"spec", "nodeName"}).empty() && !api::isTerminating(pod)) {
          obj = std::make_shared<Json>(pod);
          modRevision = rev;
        }
      }
    }
    if (!obj) {
      auto pod = read(*r, ns, name, &modRevision);
      if (!pod) return fail(pod.error());
      std::string bound = api::at<std::string>(*pod, {"spec", "nodeName"});
      if (!bound.empty())
        return fail(ECANCELED, fmt::format("Operation cannot be fulfilled on pods/binding \"{}\": pod {} is already assigned to node \"{}\"",
                                           name, name, bound));
      if (api::isTerminating(*pod)) return fail(ECANCELED, fmt::format("pod {} is being deleted, cannot be assigned to a host", name));
      obj = std::make_shared<Json>(std::move(*pod));
    }
    // A binding changes two fields: spec.nodeName and the PodScheduled condition.
    (*obj)["spec"]["nodeName"] = nodeName;
    Json& status = (*obj)["status"];
    if (!status.is_object()) status = Json::object();
    Json& conds = status["conditions"];
    if (!conds.is_array()) conds = Json::array();
    for (auto it = conds.begin(); it != conds.end();) {
      if (it->is_object() && it->value("type", "") == "PodScheduled") it = conds.erase(it);
      else ++it;
    }
    conds.push_back({{"type", "PodScheduled"}, {"status", "True"}, {"lastProbeTime", nullptr}, {"lastTransitionTime", api::nowRfc3339()}});
    std::string value = encode(*obj);
    auto rev = store_.update(key, value, modRevision, decodedFor(obj));
    if (rev) return {};
    if (rev.error().code != ECANCELED) return fail(rev.error());
  }
  return fail(conflictError(*r, name));
}

Status Registry::admitCreate(const Resource& r, Json& obj) {
  if (r.kind == "Service") {
    Json& spec = obj["spec"];
    std::string type = spec.value("type", "ClusterIP");
    if (type == "ExternalName") return {};
    auto invalid = [&](const std::string& field, const std::string& message) {
      return fail(invalidError(kindAndName(r, api::nameOf(obj)) + " is invalid", {{field, message, api::Cause::kInvalid}}));
    };
    auto ranges = parseServiceRanges(config_.serviceCIDR);
    if (!ranges) return fail(ranges.error());
    // Families as Kubernetes resolves them: spec.ipFamilies, else those of the
    // requested clusterIPs, else the primary (IPv4); PreferDualStack and
    // RequireDualStack add the other family when the cluster has both ranges.
    std::string policy = spec.value("ipFamilyPolicy", "SingleStack");
    if (policy != "SingleStack" && policy != "PreferDualStack" && policy != "RequireDualStack")
      return invalid("spec.ipFamilyPolicy", "Unsupported value: \"" + policy + "\": supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\"");
    std::vector<std::string> requested;
    if (spec.contains("clusterIPs") && spec["clusterIPs"].is_array() && !spec["clusterIPs"].empty()) {
      for (const auto& ip : spec["clusterIPs"]) requested.push_back(ip.is_string() ? ip.get<std::string>() : "");
    } else if (!spec.value("clusterIP", "").empty()) {
      requested.push_back(spec.value("clusterIP", ""));
    }
    const bool headless = !requested.empty() && requested[0] == "None";
    if (headless && requested.size() > 1) return invalid("spec.clusterIPs", "Invalid value: must be [\"None\"] for a headless service");
    std::vector<std::string> families;
    if (spec.contains("ipFamilies") && spec["ipFamilies"].is_array()) {
      for (std::size_t i = 0; i < spec["ipFamilies"].size(); ++i) {
        const Json& f = spec["ipFamilies"][i];
        std::string family = f.is_string() ? f.get<std::string>() : f.dump();
        if (family != "IPv4" && family != "IPv6")
          return invalid(fmt::format("spec.ipFamilies[{}]", i), "Unsupported value: \"" + family + "\": supported values: \"IPv4\", \"IPv6\"");
        if (std::find(families.begin(), families.end(), family) != families.end())
          return invalid(fmt::format("spec.ipFamilies[{}]", i), "Duplicate value: \"" + family + "\"");
        families.push_back(family);
      }
    }
    if (families.empty() && !headless)
      for (const std::string& ip : requested) families.push_back(familyOf(ip));
    if (families.empty()) families.push_back("IPv4");
    if (families.size() > 2 || (families.size() == 2 && families[0] == families[1]))
      return invalid("spec.ipFamilies", "Invalid value: at most one IPv4 and one IPv6 family");
    if (policy == "SingleStack" && families.size() > 1)
      return invalid("spec.ipFamilyPolicy", "Invalid value: \"SingleStack\": takes one family, spec.ipFamilies has two");
    if (policy == "RequireDualStack" && !ranges->v6)
      return invalid("spec.ipFamilyPolicy", "Invalid value: \"RequireDualStack\": this cluster is not dual-stack (--service-cidr has no IPv6 range)");
    if (policy != "SingleStack" && ranges->v6 && families.size() == 1) families.push_back(families[0] == "IPv4" ? "IPv6" : "IPv4");
    for (std::size_t i = 0; i < families.size(); ++i) {
      if (families[i] == "IPv6" && !ranges->v6)
        return invalid(fmt::format("spec.ipFamilies[{}]", i), "Invalid value: \"IPv6\": not configured on this cluster (--service-cidr has no IPv6 range)");
    }
    if (!headless) {
      if (requested.size() > families.size())
        return invalid("spec.clusterIPs", fmt::format("Invalid value: {} addresses for {} families", requested.size(), families.size()));
      std::vector<std::string> ips;
      for (std::size_t i = 0; i < families.size(); ++i) {
        std::string want = i < requested.size() ? requested[i] : "";
        if (!want.empty() && familyOf(want) != families[i]) {
          for (const std::string& ip : ips) (void)store_.remove("/registry/serviceips/" + ip, 0);
          return invalid(fmt::format("spec.clusterIPs[{}]", i), "Invalid value: \"" + want + "\": expected an " + families[i] + " address (spec.ipFamilies[" + std::to_string(i) + "])");
        }
        auto ip = families[i] == "IPv6" ? allocateServiceIP6(want) : allocateServiceIP(want);
        if (!ip) {
          for (const std::string& done : ips) (void)store_.remove("/registry/serviceips/" + done, 0);
          return invalid(fmt::format("spec.clusterIPs[{}]", i), "Invalid value: \"" + want + "\": " + ip.error().message);
        }
        ips.push_back(*ip);
      }
      spec["clusterIP"] = ips[0];
      spec["clusterIPs"] = ips;
    } else {
      spec["clusterIPs"] = Json::array({"None"});
    }
    spec["ipFamilies"] = families;
    spec["ipFamilyPolicy"] = policy;
    if (type == "NodePort" || type == "LoadBalancer") {
      for (std::size_t i = 0; i < spec["ports"].size(); ++i) {
        Json& p = spec["ports"][i];
        auto port = allocateNodePort(p.value("nodePort", 0));
        if (!port) {
          releaseOnDelete(r, obj);
          return fail(invalidError(kindAndName(r, api::nameOf(obj)) + " is invalid",
                                   {{fmt::format("spec.ports[{}].nodePort", i), "Invalid value: " + p.value("nodePort", Json(0)).dump() + ": " + port.error().message, api::Cause::kInvalid}}));
        }
        p["nodePort"] = *port;
      }
    }
  } else if (r.kind == "Node") {
    Json& spec = obj["spec"];
    if (!spec.is_object()) spec = Json::object();
    if (spec.value("podCIDR", "").empty()) {
      auto cidr = allocatePodCIDR(api::nameOf(obj));
      if (!cidr) return fail(cidr.error().wrap("allocate podCIDR"));
      spec["podCIDR"] = *cidr;
      spec["podCIDRs"] = Json::array({*cidr});
    }
  }
  return {};
}

Status Registry::admitUpdate(const Resource& r, const Json& old, Json& obj) {
  if (r.kind == "Service") {
    Json& spec = obj["spec"];
    const Json oldSpec = old.value("spec", Json::object());
    std::string oldIp = oldSpec.value("clusterIP", "");
    std::string newIp = spec.value("clusterIP", "");
    if (newIp.empty()) {
      if (!oldIp.empty()) spec["clusterIP"] = oldIp;
      if (oldSpec.contains("clusterIPs")) spec["clusterIPs"] = oldSpec["clusterIPs"];
    } else if (newIp != oldIp && !oldIp.empty()) {
      return fail(invalidError(kindAndName(r, api::nameOf(obj)) + " is invalid",
                               {{"spec.clusterIPs[0]", "Invalid value: []string{\"" + newIp + "\"}: may not change once set", api::Cause::kInvalid}}));
    }
    if (!spec.contains("clusterIPs") && oldSpec.contains("clusterIPs")) spec["clusterIPs"] = oldSpec["clusterIPs"];
    std::string type = spec.value("type", "ClusterIP");
    if ((type == "NodePort" || type == "LoadBalancer") && spec.contains("ports")) {
      for (auto& p : spec["ports"]) {
        if (p.value("nodePort", 0) != 0) continue;
        for (const auto& op : oldSpec.value("ports", Json::array()))
          if (op.value("port", 0) == p.value("port", -1) && op.value("nodePort", 0) != 0) p["nodePort"] = op["nodePort"];
        if (p.value("nodePort", 0) == 0) {
          auto port = allocateNodePort(0);
          if (!port) return fail(port.error());
          p["nodePort"] = *port;
        }
      }
    }
  } else if (r.kind == "Node") {
    std::string oldCidr = api::at<std::string>(old, {"spec", "podCIDR"});
    if (!oldCidr.empty() && api::at<std::string>(obj, {"spec", "podCIDR"}).empty()) {
      obj["spec"]["podCIDR"] = oldCidr;
      obj["spec"]["podCIDRs"] = Json::array({oldCidr});
    }
  } else if (r.kind == "Pod") {
    std::string oldNode = api::at<std::string>(old, {"spec", "nodeName"});
    std::string newNode = api::at<std::string>(obj, {"spec", "nodeName"});
    if (!oldNode.empty() && oldNode != newNode)
      return fail(invalidError(kindAndName(r, api::nameOf(obj)) + " is invalid",
                               {{"spec.nodeName", "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds`", api::Cause::kForbidden}}));
  }
  return {};
}

void Registry::releaseOnDelete(const Resource& r, const Json& obj) {
  if (r.kind != "Service") return;
  std::vector<std::string> ips = api::at<std::vector<std::string>>(obj, {"spec", "clusterIPs"});
  if (ips.empty()) ips.push_back(api::at<std::string>(obj, {"spec", "clusterIP"}));
  for (const std::string& ip : ips)
    if (!ip.empty() && ip != "None") (void)store_.remove("/registry/serviceips/" + ip, 0);
  for (const auto& p : api::at<Json>(obj, {"spec", "ports"}, Json::array())) {
    int np = p.value("nodePort", 0);
    if (np) (void)store_.remove("/registry/servicenodeports/" + std::to_string(np), 0);
  }
}

Result<std::string> Registry::allocateServiceIP6(const std::string& requested) {
  auto ranges = parseServiceRanges(config_.serviceCIDR);
  if (!ranges) return fail(ranges.error());
  if (!ranges->v6) return fail(EINVAL, "no IPv6 range in --service-cidr " + config_.serviceCIDR);
  const Cidr6& cidr = *ranges->v6;
  const std::string range = ip6String(cidr.base) + "/" + std::to_string(cidr.prefix);
  if (!requested.empty()) {
    in6_addr a{};
    if (inet_pton(AF_INET6, requested.c_str(), &a) != 1 || !cidr.contains(a))
      return fail(EINVAL, "provided IP is not in the valid range. The range of valid IPs is " + range);
    std::string ip = ip6String(a);  // one spelling per address in the allocation keys
    auto made = store_.create("/registry/serviceips/" + ip, "{}");
    if (!made) {
      if (made.error().code == EEXIST) return fail(EINVAL, "provided IP is already allocated");
      return fail(made.error());
    }
    return ip;
  }
  std::uint64_t n = cidr.size();
  std::mt19937_64 rng(std::random_device{}());
  std::uint64_t start = rng() % (n - 2);
  for (std::uint64_t i = 0; i < n - 2; ++i) {
    std::uint64_t offset = 1 + (start + i) % (n - 2);
    if (offset < 16) continue;  // the low addresses are kept for fixed Services, as in the IPv4 range
    std::string ip = ip6String(cidr.at(static_cast<std::uint32_t>(offset)));
    auto made = store_.create("/registry/serviceips/" + ip, "{}");
    if (made) return ip;
    if (made.error().code != EEXIST) return fail(made.error());
  }
  return fail(ENOSPC, "range is full");
}

Result<std::string> Registry::allocateServiceIP(const std::string& requested) {
  auto ranges = parseServiceRanges(config_.serviceCIDR);
  if (!ranges) return fail(ranges.error());
  const Cidr* cidr = &ranges->v4;
  if (!requested.empty()) {
    auto ip = parseIp(requested);
    if (!ip || (*ip & ~((1U << (32 - cidr->prefix)) - 1)) != cidr->base)
      return fail(EINVAL, "provided IP is not in the valid range. The range of valid IPs is " + config_.serviceCIDR.substr(0, config_.serviceCIDR.find(',')));
    auto made = store_.create("/registry/serviceips/" + requested, "{}");
    if (!made) {
      if (made.error().code == EEXIST) return fail(EINVAL, "provided IP is already allocated");
      return fail(made.error());
    }
    return requested;
  }
  std::uint64_t n = cidr->size();
  std::mt19937_64 rng(std::random_device{}());
  std::uint64_t start = rng() % (n - 2);
  for (std::uint64_t i = 0; i < n - 2; ++i) {
    std::uint64_t offset = 1 + (start + i) % (n - 2);
    if (offset < 16) continue;  // the low addresses are for fixed Services (kubernetes .1, DNS .10)
    std::string ip = ipString(cidr->base + static_cast<std::uint32_t>(offset));
    auto made = store_.create("/registry/serviceips/" + ip, "{}");
    if (made) return ip;
    if (made.error().code != EEXIST) return fail(made.error());
  }
  return fail(ENOSPC, "range is full");
}

Result<int> Registry::allocateNodePort(int requested) {
  if (requested != 0) {
    if (requested < 30000 || requested > 32767)
      return fail(EINVAL, "provided port is not in the valid range. The range of valid ports is 30000-32767");
    auto made = store_.create("/registry/servicenodeports/" + std::to_string(requested), "{}");
    if (!made) return fail(EINVAL, "provided port is already allocated");
    return requested;
  }
  std::mt19937 rng(std::random_device{}());
  int start = static_cast<int>(rng() % 2768);
  for (int i = 0; i < 2768; ++i) {
    int port = 30000 + (start + i) % 2768;
    auto made = store_.create("/registry/servicenodeports/" + std::to_string(port), "{}");
    if (made) return port;
    if (made.error().code != EEXIST) return fail(made.error());
  }
  return fail(ENOSPC, "range is full");
}

Result<std::string> Registry::allocatePodCIDR(const std::string& nodeName) {
  auto cidr = parseCidr(config_.clusterCIDR, "--cluster-cidr");
  if (!cidr) return fail(cidr.error());
  if (cidr->prefix > 24) return fail(EINVAL, "--cluster-cidr must be /24 or larger");
  const std::string rangesPrefix = "/registry/podcidrs/";  // <network> -> node name
  const std::string byNode = "/registry/podcidrs-by-node/" + nodeName;  // node name -> <network>/24
  // A node that comes back keeps its range: one read, not a list of every range
  // (that made registering N nodes quadratic).
  std::lock_guard lock(podCidrMu_);
  auto kept = store_.get(byNode);
  if (kept) return kept->value;
  if (kept.error().code != ENOENT) return fail(kept.error());
  const std::uint64_t count = 1ULL << (24 - cidr->prefix);
  if (!podCidrIndexed_) {
    // Once per process: ranges given out before the by-node keys existed get theirs,
    // and the scan for a free range starts after the highest one taken.
    auto existing = store_.list(rangesPrefix);
    if (!existing) return fail(existing.error());
    std::string found;
    for (const auto& kv : existing->items) {
      std::string net = kv.key.substr(rangesPrefix.size());
      auto indexed = store_.create("/registry/podcidrs-by-node/" + kv.value, net + "/24");
      if (!indexed && indexed.error().code != EEXIST) return fail(indexed.error());
      if (kv.value == nodeName) found = net + "/24";
      if (auto base = parseCidr(net + "/24", "podCIDR"); base && base->base >= cidr->base)
        podCidrNext_ = std::max<std::uint64_t>(podCidrNext_, ((base->base - cidr->base) >> 8) + 1);
    }
    podCidrIndexed_ = true;
    if (!found.empty()) return found;
  }
  // Ranges are tried from where the last allocation ended; the store's create is what
  // decides (another server may have taken a range meanwhile), the hint only saves work.
  for (std::uint64_t i = 0; i < count; ++i) {
    std::uint64_t index = (podCidrNext_ + i) % count;
    std::string net = ipString(cidr->base + static_cast<std::uint32_t>(index << 8));
    auto made = store_.create(rangesPrefix + net, nodeName);
    if (!made) {
      if (made.error().code != EEXIST) return fail(made.error());
      continue;
    }
    podCidrNext_ = index + 1;
    auto indexed = store_.create(byNode, net + "/24");
    if (!indexed && indexed.error().code != EEXIST) return fail(indexed.error());
    return net + "/24";
  }
  return fail(ENOSPC, "no /24 left in " + config_.clusterCIDR);
}

Status Registry::bootstrap(const std::string& advertiseAddress, int apiPort) {
  for (const char* ns : {"default", "kube-system", "kube-public", "kube-node-lease"}) {
    auto made = create("namespaces", Json{{"metadata", {{"name", ns}}}});
    if (!made && made.error().code != EEXIST) return fail(made.error().wrap(std::string("namespace ") + ns));
  }
  auto ranges = parseServiceRanges(config_.serviceCIDR);
  if (!ranges) return fail(ranges.error());
  std::string kubernetesIP = ipString(ranges->v4.base + 1);
  Json kubernetes = {{"metadata", {{"name", "kubernetes"}, {"namespace", "default"},
                                   {"labels", {{"component", "apiserver"}, {"provider", "kubernetes"}}}}},
                     {"spec", {{"clusterIP", kubernetesIP}, {"type", "ClusterIP"},
                               {"ports", Json::array({{{"name", "https"}, {"port", 443}, {"protocol", "TCP"}, {"targetPort", apiPort}}})}}}};
  auto made = create("services", kubernetes);
  if (!made && made.error().code != EEXIST) return fail(made.error().wrap("service kubernetes"));
  Json slice = {{"metadata", {{"name", "kubernetes"}, {"namespace", "default"},
                              {"labels", {{"kubernetes.io/service-name", "kubernetes"},
                                          {"endpointslice.kubernetes.io/managed-by", "ferry-apiserver"}}}}},
                {"addressType", "IPv4"},
                {"endpoints", Json::array({{{"addresses", Json::array({advertiseAddress})},
                                            {"conditions", {{"ready", true}, {"serving", true}, {"terminating", false}}}}})},
                {"ports", Json::array({{{"name", "https"}, {"port", apiPort}, {"protocol", "TCP"}}})}};
  auto existing = get("endpointslices.discovery.k8s.io", "default", "kubernetes");
  if (existing) {
    Json updated = *existing;
    updated["endpoints"] = slice["endpoints"];
    updated["ports"] = slice["ports"];
    auto st = update("endpointslices.discovery.k8s.io", updated);
    if (!st) log::warn("update kubernetes EndpointSlice: {}", st.error().message);
  } else {
    auto st = create("endpointslices.discovery.k8s.io", slice);
    if (!st && st.error().code != EEXIST) return fail(st.error().wrap("endpointslice kubernetes"));
  }
  Json dns = {{"metadata", {{"name", "kube-dns"}, {"namespace", "kube-system"},
                            {"labels", {{"k8s-app", "kube-dns"}, {"kubernetes.io/name", "CoreDNS"}}}}},
              {"spec", {{"clusterIP", config_.clusterDNS}, {"type", "ClusterIP"},
                        {"ports", Json::array({{{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}, {"targetPort", 53}},
                                               {{"name", "dns-tcp"}, {"port", 53}, {"protocol", "TCP"}, {"targetPort", 53}}})}}}};
  made = create("services", dns);
  if (!made && made.error().code != EEXIST) return fail(made.error().wrap("service kube-dns"));
  return {};
}

void Registry::namespaceCleanupLoop() {
  while (!stopping_) {
    for (int i = 0; i < 20 && !stopping_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (stopping_) break;
    auto namespaces = list("namespaces", "");
    if (!namespaces) continue;
    for (const auto& ns : namespaces->items)
      if (api::isTerminating(ns)) {
        auto st = cleanupNamespace(api::nameOf(ns));
        if (!st) log::debug("namespace {} cleanup: {}", api::nameOf(ns), st.error().message);
      }
  }
}

Status Registry::cleanupNamespace(const std::string& ns) {
  bool empty = true;
  for (const auto& r : servedResources()) {
    if (!r.namespaced || r.servedVirtually) continue;
    auto items = list(r.qualifiedName(), ns);
    if (!items) return fail(items.error());
    for (const auto& obj : items->items) {
      empty = false;
      if (!api::isTerminating(obj)) (void)remove(r.qualifiedName(), ns, api::nameOf(obj));
    }
  }
  if (!empty) return {};
  const Resource* nsr = findResource("namespaces");
  std::int64_t rev = 0;
  auto obj = read(*nsr, "", ns, &rev);
  if (!obj) return fail(obj.error());
  auto done = finishDelete(*nsr, keyFor(*nsr, "", ns), *obj, rev);
  if (!done) return fail(done.error());
  return {};
}

}  // namespace ferry::cp
