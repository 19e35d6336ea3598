// The API semantics over the store: keys, resourceVersion, uid, generation,
// defaulting, validation, admission (ClusterIP/NodePort/podCIDR allocation),
// optimistic concurrency, graceful deletion, finalizers, namespaces and watch
// (through one WatchCache per resource). Implements ObjectClient, so HTTP
// handlers and controllers share one path.
//
// Store layout: /registry/<plural>/<namespace>/<name> (cluster-scoped:
// /registry/<plural>/<name>); the value is the object's JSON without
// metadata.resourceVersion, which is the key's modRevision.
#pragma once

#include "controlplane-lite/object_client.h"
#include "controlplane-lite/resources.h"
#include "controlplane-lite/server_config.h"
#include "controlplane-lite/store.h"
#include "controlplane-lite/watch_cache.h"

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace ferry::cp {

// Error codes beyond ObjectClient's: EBADMSG 400 BadRequest, EACCES 403 Forbidden,
// EMSGSIZE 413, ENOTSUP 415 UnsupportedMediaType, EMLINK 429 (unused).

struct ListRequest {
  ListOptions options;
  std::int64_t limit = 0;
  std::string continueToken;
};

struct ListResult {
  ObjectList list;
  std::string continueToken;
};

struct PatchRequest {
  std::string contentType;  // application/merge-patch+json | json-patch+json | strategic-merge-patch+json | apply-patch+yaml
  std::string body;
  std::string fieldManager;
  bool force = false;
  std::string subresource;  // "" | status | scale
};

class Registry : public ObjectClient {
 public:
  Registry(Store& store, ServerConfig config);
  ~Registry() override;

  Result<api::Json> create(const std::string& resource, const api::Json& object) override;
  // The same, taking the request's object over instead of copying it (the HTTP handler).
  Result<api::Json> create(const std::string& resource, api::Json&& object);
  Result<api::Json> get(const std::string& resource, const std::string& ns, const std::string& name) override;
  Result<api::Json> update(const std::string& resource, const api::Json& object) override;
  Result<api::Json> updateStatus(const std::string& resource, const api::Json& object) override;
  Result<api::Json> remove(const std::string& resource, const std::string& ns, const std::string& name,
                           const DeleteOptions& options = {}) override;
  Result<ObjectList> list(const std::string& resource, const std::string& ns, const ListOptions& options = {}) override;
  Result<std::unique_ptr<ObjectWatch>> watch(const std::string& resource, const std::string& ns,
                                             const std::string& resourceVersion, const ListOptions& options,
                                             std::function<void(const WatchEvent&)> sink) override;

  // Paged list for the HTTP layer.
  Result<ListResult> listPage(const std::string& resource, const std::string& ns, const ListRequest& request);
  // `created` is set when server-side apply created the object.
  Result<api::Json> patch(const std::string& resource, const std::string& ns, const std::string& name,
                          const PatchRequest& request, bool* created = nullptr);
  // autoscaling/v1 Scale of a deployment or replicaset.
  Result<api::Json> getScale(const std::string& resource, const std::string& ns, const std::string& name);
  Result<api::Json> updateScale(const std::string& resource, const std::string& ns, const std::string& name,
                                const api::Json& scale);
  // pods/binding: sets spec.nodeName and the PodScheduled condition.
  Status bindPod(const std::string& ns, const std::string& name, const std::string& nodeName);
  // The current store revision, as a resourceVersion.
  Result<std::string> currentResourceVersion();

  // First-start objects: namespaces, the kubernetes and kube-dns Services, the
  // kubernetes EndpointSlice. Idempotent.
  Status bootstrap(const std::string& advertiseAddress, int apiPort);

  // Turns an object into the Scale view (exposed for tests).
  static api::Json scaleOf(const Resource& resource, const api::Json& object);

 private:
  enum class UpdateMode { Main, Status, Internal };
  Result<api::Json> doUpdate(const Resource& r, const api::Json& object, UpdateMode mode);
  Result<api::Json> read(const Resource& r, const std::string& ns, const std::string& name, std::int64_t* modRevision);
  Result<api::Json> decode(const std::string& value, std::int64_t revision);
  std::string keyFor(const Resource& r, const std::string& ns, const std::string& name) const;
  std::string prefixFor(const Resource& r, const std::string& ns) const;
  Result<api::Json> finishDelete(const Resource& r, const std::string& key, const api::Json& object, std::int64_t revision);
  Status admitCreate(const Resource& r, api::Json& object);
  Status admitUpdate(const Resource& r, const api::Json& old, api::Json& object);
  void releaseOnDelete(const Resource& r, const api::Json& object);
  Result<std::string> allocateServiceIP(const std::string& requested);   // from the IPv4 range
  Result<std::string> allocateServiceIP6(const std::string& requested);  // from the IPv6 range (dual-stack --service-cidr)
  Result<int> allocateNodePort(int requested);
  Result<std::string> allocatePodCIDR(const std::string& nodeName);
  Status checkNamespaceWritable(const std::string& ns);
  WatchCache& cacheFor(const Resource& r);
  DecodedValue decodedCopy(const Resource& r, const api::Json& object);
  void namespaceCleanupLoop();
  Status cleanupNamespace(const std::string& ns);

  Store& store_;
  ServerConfig config_;
  std::mutex cachesMu_;
  std::map<std::string, std::unique_ptr<WatchCache>> caches_;
  std::atomic<bool> stopping_{false};
  std::thread namespaceCleaner_;
  // allocatePodCIDR: serializes this server's allocations; where its scan resumes.
  std::mutex podCidrMu_;
  bool podCidrIndexed_ = false;
  std::uint64_t podCidrNext_ = 0;
};

// Parses a request body as JSON, or as YAML when `allowYaml` (apply-patch+yaml, application/yaml).
Result<api::Json> parseJsonOrYaml(const std::string& body, bool allowYaml);

// Kubernetes-style messages for the errors Registry returns.
std::string notFoundMessage(const Resource& r, const std::string& name);

}  // namespace ferry::cp
