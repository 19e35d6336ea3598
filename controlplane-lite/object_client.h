// In-process access to API objects with the API server's semantics
// (validation, defaulting, resourceVersion, generation, watch). The HTTP
// handlers and the controllers/scheduler both go through it, so a controller
// sees exactly what kubectl sees without an HTTP hop.
#pragma once

#include "api/error.h"
#include "api/object.h"

#include <functional>
#include <mutex>
#include <optional>
#include <memory>
#include <string>
#include <vector>

namespace ferry::cp {

// Resources are named as kubectl does: "pods", "services", "deployments.apps",
// "endpointslices.discovery.k8s.io", "leases.coordination.k8s.io".
//
// Errors carry errno-style codes the HTTP layer maps to Kubernetes Status:
// ENOENT 404 NotFound, EEXIST 409 AlreadyExists, ECANCELED 409 Conflict,
// EINVAL 422 Invalid (message lists "field: message" causes), EACCES 403, ERANGE 410 Gone.

struct ListOptions {
  std::string labelSelector;
  std::string fieldSelector;
};

struct ObjectList {
  std::vector<api::Json> items;
  std::string resourceVersion;
};

// An object as the server's caches hold it: shared and never modified, so a watch event
// reaches every in-process watcher (informers) without a copy per watcher.
using ObjectPtr = std::shared_ptr<const api::Json>;

// An object's JSON text, dumped once by the first watcher that wants it and shared by the
// others: an HTTP watch line is this text spliced between `{"object":` and the type, so
// 1,000 watchers of one change cost one dump, not 1,000.
class EncodedObject {
 public:
  const std::string& text(const api::Json& object) {
    std::call_once(once_, [&] { text_ = object.dump(); });
    return text_;
  }

 private:
  std::once_flag once_;
  std::string text_;
};

struct WatchEvent {
  std::string type;  // ADDED | MODIFIED | DELETED | ERROR (object: a Status)
  ObjectPtr object;  // never null
  // Shared by every watcher of one change (null: made on first use for this event alone).
  mutable std::shared_ptr<EncodedObject> encoded;

  // `object->dump()`, made at most once per change.
  const std::string& json() const {
    if (!encoded) encoded = std::make_shared<EncodedObject>();
    return encoded->text(*object);
  }
};

class ObjectWatch {
 public:
  virtual ~ObjectWatch() = default;
};

struct DeleteOptions {
  std::optional<std::int64_t> gracePeriodSeconds;
  std::string propagationPolicy;  // Background (default) | Foreground | Orphan
  std::string preconditionUid;
  std::string preconditionResourceVersion;
};

class ObjectClient {
 public:
  virtual ~ObjectClient() = default;

  virtual Result<api::Json> create(const std::string& resource, const api::Json& object) = 0;
  virtual Result<api::Json> get(const std::string& resource, const std::string& ns, const std::string& name) = 0;
  // Replaces the object; metadata.resourceVersion, when set, must match (else ECANCELED).
  virtual Result<api::Json> update(const std::string& resource, const api::Json& object) = 0;
  // The status subresource: only .status is taken from `object`.
  virtual Result<api::Json> updateStatus(const std::string& resource, const api::Json& object) = 0;
  // Returns the object as it stands after the request (with deletionTimestamp when graceful).
  virtual Result<api::Json> remove(const std::string& resource, const std::string& ns, const std::string& name,
                                   const DeleteOptions& options = {}) = 0;
  // `ns` empty: all namespaces.
  virtual Result<ObjectList> list(const std::string& resource, const std::string& ns,
                                  const ListOptions& options = {}) = 0;
  // Events strictly after `resourceVersion` ("" or "0": from now). The sink runs on
  // a server thread; it must not block for long.
  virtual Result<std::unique_ptr<ObjectWatch>> watch(const std::string& resource, const std::string& ns,
                                                     const std::string& resourceVersion, const ListOptions& options,
                                                     std::function<void(const WatchEvent&)> sink) = 0;
};

}  // namespace ferry::cp
