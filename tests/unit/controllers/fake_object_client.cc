#include "fake_object_client.h"

#include <fmt/format.h>

namespace ferry::cp::testing {

namespace {

std::string keyOf(const std::string& ns, const std::string& name) { return ns.empty() ? name : ns + "/" + name; }

bool hasStatusSubresource(const std::string& resource) {
  return resource != "events" && resource != "leases.coordination.k8s.io" && resource != "endpoints" &&
         resource != "endpointslices.discovery.k8s.io" && resource != "configmaps" && resource != "secrets";
}

api::Json withoutMetaAndStatus(const api::Json& o) {
  api::Json copy = o;
  copy.erase("metadata");
  copy.erase("status");
  return copy;
}

}  // namespace

class FakeObjectClient::Handle : public ObjectWatch {
 public:
  Handle(FakeObjectClient& owner, std::uint64_t id) : owner_(owner), id_(id) {}
  ~Handle() override {
    std::lock_guard lock(owner_.mu_);
    owner_.watchers_.erase(id_);
  }

 private:
  FakeObjectClient& owner_;
  std::uint64_t id_;
};

bool FakeObjectClient::clusterScoped(const std::string& resource) {
  return resource == "nodes" || resource == "namespaces";
}

void FakeObjectClient::emitLocked(const std::string& resource, const std::string& type, const api::Json& object) {
  WatchEvent event{type, std::make_shared<const api::Json>(object)};
  history_.push_back(Recorded{resource, revision_, event});
  writes_[resource]++;
  for (auto& [id, w] : watchers_) {
    if (w.resource != resource) continue;
    if (!w.ns.empty() && api::namespaceOf(object) != w.ns) continue;
    w.sink(event);
  }
}

Result<api::Json> FakeObjectClient::bindLocked(const api::Json& binding) {
  std::string ns = api::namespaceOf(binding), name = api::nameOf(binding);
  auto& pods = objects_["pods"];
  auto it = pods.find(keyOf(ns, name));
  if (it == pods.end()) return fail(ENOENT, fmt::format("pods \"{}\" not found", name));
  if (!api::at<std::string>(it->second, {"spec", "nodeName"}).empty())
    return fail(ECANCELED, fmt::format("pod {} is already assigned", name));
  api::Json& pod = it->second;
  pod["spec"]["nodeName"] = api::at<std::string>(binding, {"target", "name"});
  if (!pod["status"].is_object()) pod["status"] = api::Json::object();
  auto& conditions = pod["status"]["conditions"];
  if (!conditions.is_array()) conditions = api::Json::array();
  api::Json fresh = api::Json::array();
  for (const auto& c : conditions)
    if (c.value("type", "") != "PodScheduled") fresh.push_back(c);
  fresh.push_back({{"type", "PodScheduled"}, {"status", "True"}, {"lastTransitionTime", api::nowRfc3339()}});
  conditions = fresh;
  pod["metadata"]["resourceVersion"] = std::to_string(++revision_);
  emitLocked("pods", "MODIFIED", pod);
  return binding;
}

Result<api::Json> FakeObjectClient::create(const std::string& resource, const api::Json& input) {
  std::lock_guard lock(mu_);
  if (resource == "bindings") return bindLocked(input);
  api::Json object = input;
  if (!object["metadata"].is_object()) object["metadata"] = api::Json::object();
  auto& meta = object["metadata"];
  if (!clusterScoped(resource) && api::namespaceOf(object).empty()) meta["namespace"] = "default";
  if (api::nameOf(object).empty()) {
    std::string prefix = meta.value("generateName", "");
    if (prefix.empty()) return fail(EINVAL, "metadata.name: Required value");
    meta["name"] = fmt::format("{}{:05x}", prefix, (nextUid_ * 2654435761u) & 0xfffff);
  }
  std::string key = keyOf(api::namespaceOf(object), api::nameOf(object));
  auto& bucket = objects_[resource];
  if (bucket.count(key)) return fail(EEXIST, fmt::format("{} \"{}\" already exists", resource, api::nameOf(object)));
  if (!clusterScoped(resource) && resource != "namespaces") {
    auto nsIt = objects_["namespaces"].find(api::namespaceOf(object));
    if (nsIt != objects_["namespaces"].end() && api::isTerminating(nsIt->second))
      return fail(EACCES, "namespace is being terminated");
  }
  meta["uid"] = fmt::format("uid-{}", nextUid_++);
  meta["creationTimestamp"] = api::nowRfc3339();
  meta["generation"] = 1;
  meta["resourceVersion"] = std::to_string(++revision_);
  meta.erase("deletionTimestamp");
  if (resource == "pods" && !object["status"].is_object()) object["status"] = {{"phase", "Pending"}};
  bucket[key] = object;
  emitLocked(resource, "ADDED", object);
  return object;
}

Result<api::Json> FakeObjectClient::get(const std::string& resource, const std::string& ns, const std::string& name) {
  std::lock_guard lock(mu_);
  auto& bucket = objects_[resource];
  auto it = bucket.find(keyOf(clusterScoped(resource) ? "" : ns, name));
  if (it == bucket.end()) return fail(ENOENT, fmt::format("{} \"{}\" not found", resource, name));
  return it->second;
}

Result<api::Json> FakeObjectClient::update(const std::string& resource, const api::Json& input) {
  std::lock_guard lock(mu_);
  std::string key = keyOf(api::namespaceOf(input), api::nameOf(input));
  if (!clusterScoped(resource) && api::namespaceOf(input).empty()) key = keyOf("default", api::nameOf(input));
  auto& bucket = objects_[resource];
  auto it = bucket.find(key);
  if (it == bucket.end()) return fail(ENOENT, fmt::format("{} \"{}\" not found", resource, api::nameOf(input)));
  api::Json& stored = it->second;
  std::string rv = api::resourceVersionOf(input);
  if (!rv.empty() && rv != api::resourceVersionOf(stored))
    return fail(ECANCELED, fmt::format("Operation cannot be fulfilled on {} \"{}\": the object has been modified",
                                       resource, api::nameOf(input)));
  api::Json object = input;
  for (const char* kept : {"uid", "creationTimestamp", "deletionTimestamp", "namespace", "generation"}) {
    if (stored["metadata"].contains(kept)) object["metadata"][kept] = stored["metadata"][kept];
    else object["metadata"].erase(kept);
  }
  if (hasStatusSubresource(resource)) {
    if (stored.contains("status")) object["status"] = stored["status"];
    else object.erase("status");
  }
  if (withoutMetaAndStatus(object) != withoutMetaAndStatus(stored))
    object["metadata"]["generation"] = stored["metadata"].value("generation", 1) + 1;
  object["metadata"]["resourceVersion"] = std::to_string(++revision_);
  if (api::isTerminating(object)) {
    auto finalizers = api::at<api::Json>(object, {"metadata", "finalizers"}, api::Json::array());
    // A bound pod still waits for its kubelet (finishPodDeletions).
    bool waitsForKubelet = resource == "pods" && !api::at<std::string>(object, {"spec", "nodeName"}).empty();
    if (finalizers.empty() && !waitsForKubelet) {
      bucket.erase(it);
      emitLocked(resource, "DELETED", object);
      return object;
    }
  }
  stored = object;
  emitLocked(resource, "MODIFIED", object);
  return object;
}

Result<api::Json> FakeObjectClient::updateStatus(const std::string& resource, const api::Json& input) {
  std::lock_guard lock(mu_);
  std::string ns = clusterScoped(resource) ? "" : api::namespaceOf(input);
  auto& bucket = objects_[resource];
  auto it = bucket.find(keyOf(ns, api::nameOf(input)));
  if (it == bucket.end()) return fail(ENOENT, fmt::format("{} \"{}\" not found", resource, api::nameOf(input)));
  std::string rv = api::resourceVersionOf(input);
  if (!rv.empty() && rv != api::resourceVersionOf(it->second))
    return fail(ECANCELED, fmt::format("Operation cannot be fulfilled on {} \"{}\": the object has been modified",
                                       resource, api::nameOf(input)));
  it->second["status"] = input.value("status", api::Json::object());
  it->second["metadata"]["resourceVersion"] = std::to_string(++revision_);
  emitLocked(resource, "MODIFIED", it->second);
  return it->second;
}

Result<api::Json> FakeObjectClient::deleteOrFinalizeLocked(const std::string& resource, const std::string& key,
                                                           api::Json object) {
  auto& bucket = objects_[resource];
  auto finalizers = api::at<api::Json>(object, {"metadata", "finalizers"}, api::Json::array());
  bool graceful = resource == "pods" && !api::at<std::string>(object, {"spec", "nodeName"}).empty() &&
                  api::at<std::int64_t>(object, {"metadata", "deletionGracePeriodSeconds"}, 30) > 0;
  if (!finalizers.empty() || graceful) {
    if (!api::isTerminating(object)) object["metadata"]["deletionTimestamp"] = api::nowRfc3339();
    object["metadata"]["resourceVersion"] = std::to_string(++revision_);
    bucket[key] = object;
    emitLocked(resource, "MODIFIED", object);
    return object;
  }
  bucket.erase(key);
  ++revision_;
  api::Json gone = object;
  gone["metadata"]["resourceVersion"] = std::to_string(revision_);
  emitLocked(resource, "DELETED", gone);
  return object;
}

Result<api::Json> FakeObjectClient::remove(const std::string& resource, const std::string& ns, const std::string& name,
                                           const DeleteOptions& options) {
  std::lock_guard lock(mu_);
  std::string key = keyOf(clusterScoped(resource) ? "" : ns, name);
  auto& bucket = objects_[resource];
  auto it = bucket.find(key);
  if (it == bucket.end()) return fail(ENOENT, fmt::format("{} \"{}\" not found", resource, name));
  api::Json object = it->second;
  if (!options.preconditionUid.empty() && options.preconditionUid != api::uidOf(object))
    return fail(ECANCELED, "precondition failed: uid");
  if (!options.preconditionResourceVersion.empty() && options.preconditionResourceVersion != api::resourceVersionOf(object))
    return fail(ECANCELED, "precondition failed: resourceVersion");
  if (options.gracePeriodSeconds) object["metadata"]["deletionGracePeriodSeconds"] = *options.gracePeriodSeconds;
  auto addFinalizer = [&](const std::string& f) {
    auto& list = object["metadata"]["finalizers"];
    if (!list.is_array()) list = api::Json::array();
    for (const auto& x : list)
      if (x == f) return;
    list.push_back(f);
  };
  if (!api::isTerminating(object)) {
    if (options.propagationPolicy == "Foreground") addFinalizer("foregroundDeletion");
    if (options.propagationPolicy == "Orphan") addFinalizer("orphan");
    if (resource == "namespaces") {
      object["status"]["phase"] = "Terminating";
      addFinalizer("kubernetes");  // stands in for spec.finalizers: the namespace controller removes it
    }
  } else if (resource == "pods" && options.gracePeriodSeconds && *options.gracePeriodSeconds == 0) {
    // force deletion of a terminating pod
  } else if (!options.gracePeriodSeconds) {
    return object;
  }
  return deleteOrFinalizeLocked(resource, key, object);
}

Result<ObjectList> FakeObjectClient::list(const std::string& resource, const std::string& ns, const ListOptions&) {
  std::lock_guard lock(mu_);
  ObjectList out;
  for (const auto& [key, object] : objects_[resource])
    if (ns.empty() || api::namespaceOf(object) == ns) out.items.push_back(object);
  out.resourceVersion = std::to_string(revision_);
  return out;
}

Result<std::unique_ptr<ObjectWatch>> FakeObjectClient::watch(const std::string& resource, const std::string& ns,
                                                             const std::string& resourceVersion, const ListOptions&,
                                                             std::function<void(const WatchEvent&)> sink) {
  std::lock_guard lock(mu_);
  std::int64_t after = resourceVersion.empty() || resourceVersion == "0" ? revision_ : std::stoll(resourceVersion);
  for (const auto& r : history_)
    if (r.resource == resource && r.revision > after && (ns.empty() || api::namespaceOf(*r.event.object) == ns))
      sink(r.event);
  std::uint64_t id = nextWatcher_++;
  watchers_[id] = Watcher{id, resource, ns, std::move(sink)};
  return std::unique_ptr<ObjectWatch>(new Handle(*this, id));
}

std::vector<api::Json> FakeObjectClient::all(const std::string& resource, const std::string& ns) {
  auto listed = list(resource, ns);
  return listed->items;
}

Result<api::Json> FakeObjectClient::mutate(const std::string& resource, const std::string& ns, const std::string& name,
                                           const std::function<void(api::Json&)>& fn) {
  std::lock_guard lock(mu_);
  auto& bucket = objects_[resource];
  auto it = bucket.find(keyOf(clusterScoped(resource) ? "" : ns, name));
  if (it == bucket.end()) return fail(ENOENT, "not found");
  fn(it->second);
  it->second["metadata"]["resourceVersion"] = std::to_string(++revision_);
  emitLocked(resource, "MODIFIED", it->second);
  return it->second;
}

void FakeObjectClient::finishPodDeletions() {
  std::lock_guard lock(mu_);
  std::vector<std::string> keys;
  for (const auto& [key, pod] : objects_["pods"]) {
    auto finalizers = api::at<api::Json>(pod, {"metadata", "finalizers"}, api::Json::array());
    if (api::isTerminating(pod) && (finalizers.empty() || finalizers.is_null())) keys.push_back(key);
  }
  for (const auto& key : keys) {
    api::Json gone = objects_["pods"][key];
    objects_["pods"].erase(key);
    gone["metadata"]["resourceVersion"] = std::to_string(++revision_);
    emitLocked("pods", "DELETED", gone);
  }
}

int FakeObjectClient::writes(const std::string& resource) {
  std::lock_guard lock(mu_);
  return writes_[resource];
}

}  // namespace ferry::cp::testing
