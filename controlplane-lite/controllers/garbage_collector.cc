#include "controlplane-lite/controllers/garbage_collector.h"

#include "api/log.h"

#include <unordered_map>
#include <unordered_set>

namespace ferry::cp {

namespace {

const char* const kTracked[] = {"deployments.apps", "replicasets.apps", "pods", "services",
                                "endpointslices.discovery.k8s.io"};

bool hasFinalizer(const api::Json& object, const std::string& finalizer) {
  auto list = api::at<api::Json>(object, {"metadata", "finalizers"}, api::Json::array());
  if (!list.is_array()) return false;
  for (const auto& f : list)
    if (f.is_string() && f.get<std::string>() == finalizer) return true;
  return false;
}

api::Json withoutFinalizer(const api::Json& object, const std::string& finalizer) {
  api::Json copy = object;
  api::Json kept = api::Json::array();
  for (const auto& f : copy["metadata"]["finalizers"])
    if (!(f.is_string() && f.get<std::string>() == finalizer)) kept.push_back(f);
  copy["metadata"]["finalizers"] = kept;
  return copy;
}

struct Tracked {
  std::string resource;
  ObjectPtr object;
};

}  // namespace

std::string resourceForKind(const std::string& apiVersion, const std::string& kind) {
  if (kind == "Deployment" && apiVersion.rfind("apps/", 0) == 0) return "deployments.apps";
  if (kind == "ReplicaSet" && apiVersion.rfind("apps/", 0) == 0) return "replicasets.apps";
  if (kind == "Pod" && apiVersion == "v1") return "pods";
  if (kind == "Service" && apiVersion == "v1") return "services";
  if (kind == "EndpointSlice") return "endpointslices.discovery.k8s.io";
  return "";
}

GarbageCollector::GarbageCollector(ControllerContext& context) : ctx_(context) {
  for (const char* resource : kTracked) {
    Informer& informer = context.informers.get(resource);
    informer.addHandlers({[this](const ObjectPtr&) { markDirty(); },
                          [this](const ObjectPtr&, const ObjectPtr&) { markDirty(); },
                          [this](const ObjectPtr&) { markDirty(); }});
    informers_.push_back(&informer);
  }
}

GarbageCollector::~GarbageCollector() { stop(); }

void GarbageCollector::markDirty() {
  std::lock_guard lock(mu_);
  dirty_ = true;
  cv_.notify_all();
}

void GarbageCollector::start() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::seconds(5), [this] { return stop_ || dirty_; });
      if (stop_) break;
      dirty_ = false;
      lock.unlock();
      // Let a burst of changes settle into one pass.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      collect();
      lock.lock();
    }
  });
}

void GarbageCollector::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void GarbageCollector::collect() {
  std::unordered_map<std::string, Tracked> byUid;
  std::unordered_map<std::string, std::vector<Tracked>> dependents;  // owner uid → dependents
  for (std::size_t i = 0; i < informers_.size(); ++i) {
    for (const auto& object : informers_[i]->list()) {
      Tracked t{kTracked[i], object};
      byUid[api::uidOf(*object)] = t;
      auto refs = api::at<api::Json>(*object, {"metadata", "ownerReferences"}, api::Json::array());
      if (refs.is_array())
        for (const auto& ref : refs) dependents[ref.value("uid", "")].push_back(t);
    }
  }

  for (const auto& [uid, owner] : byUid) {
    const api::Json& o = *owner.object;
    if (!api::isTerminating(o)) continue;
    const std::string ns = api::namespaceOf(o);
    auto deps = dependents.find(uid);
    if (hasFinalizer(o, "orphan")) {
      bool allReleased = true;
      if (deps != dependents.end())
        for (const auto& dep : deps->second) {
          api::Json released = *dep.object;
          api::Json kept = api::Json::array();
          for (const auto& ref : released["metadata"]["ownerReferences"])
            if (ref.value("uid", "") != uid) kept.push_back(ref);
          released["metadata"]["ownerReferences"] = kept;
          auto st = ctx_.client.update(dep.resource, released);
          if (!st && st.error().code != ENOENT) allReleased = false;
        }
      if (allReleased) {
        auto st = ctx_.client.update(owner.resource, withoutFinalizer(o, "orphan"));
        if (!st) log::debug("gc: drop orphan finalizer of {}: {}", objectKey(o), st.error().message);
      }
      continue;
    }
    if (hasFinalizer(o, "foregroundDeletion")) {
      bool blocked = false;
      if (deps != dependents.end())
        for (const auto& dep : deps->second) {
          blocked = true;
          if (api::isTerminating(*dep.object)) continue;
          DeleteOptions options;
          // Foreground again only where the dependent has dependents of its own, as Kubernetes does.
          auto grandchildren = dependents.find(api::uidOf(*dep.object));
          options.propagationPolicy =
              grandchildren != dependents.end() && !grandchildren->second.empty() ? "Foreground" : "Background";
          options.preconditionUid = api::uidOf(*dep.object);
          auto st = ctx_.client.remove(dep.resource, api::namespaceOf(*dep.object), api::nameOf(*dep.object), options);
          if (!st && st.error().code != ENOENT)
            log::debug("gc: delete dependent {}: {}", objectKey(*dep.object), st.error().message);
        }
      if (!blocked) {
        auto st = ctx_.client.update(owner.resource, withoutFinalizer(o, "foregroundDeletion"));
        if (!st) log::debug("gc: drop foreground finalizer of {}: {}", objectKey(o), st.error().message);
      }
    }
  }

  // Background: dependents whose owners are all gone.
  for (const auto& [uid, dep] : byUid) {
    const api::Json& o = *dep.object;
    if (api::isTerminating(o)) continue;
    auto refs = api::at<api::Json>(o, {"metadata", "ownerReferences"}, api::Json::array());
    if (!refs.is_array() || refs.empty()) continue;
    bool ownerLeft = false;
    for (const auto& ref : refs) {
      std::string ownerUid = ref.value("uid", "");
      auto found = byUid.find(ownerUid);
      if (found != byUid.end()) {
        // An owner waiting for its dependents (foreground) is handled above.
        ownerLeft = true;
        break;
      }
      std::string resource = resourceForKind(ref.value("apiVersion", ""), ref.value("kind", ""));
      if (resource.empty()) {
        ownerLeft = true;  // an owner kind we do not track: assume it exists
        break;
      }
      // Not in the cache: ask the API, the cache may be behind a fresh owner.
      auto live = ctx_.client.get(resource, api::namespaceOf(o), ref.value("name", ""));
      if (live && api::uidOf(*live) == ownerUid) {
        ownerLeft = true;
        break;
      }
      if (!live && live.error().code != ENOENT) {
        ownerLeft = true;
        break;
      }
    }
    if (ownerLeft) continue;
    DeleteOptions options;
    options.propagationPolicy = "Background";
    options.preconditionUid = uid;
    auto st = ctx_.client.remove(dep.resource, api::namespaceOf(o), api::nameOf(o), options);
    if (!st && st.error().code != ENOENT) log::debug("gc: delete {}: {}", objectKey(o), st.error().message);
  }
}

}  // namespace ferry::cp
