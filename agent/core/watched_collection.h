// A list+watch mirror of one collection on the API server (the agent's
// informer): lists, then watches from the list's resourceVersion, resumes from
// the last seen version after a dropped stream and relists on 410 Gone.
#pragma once

#include "agent/core/api_client.h"

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace ferry::agent {

class WatchedCollection {
 public:
  struct Handlers {
    std::function<void(const api::Json& object)> onUpsert;
    std::function<void(const api::Json& lastKnown)> onDelete;
    std::function<void()> onSynced;  // after each (re)list has been delivered
  };

  // What the mirror keeps of each object. Identity: only metadata name, namespace, uid
  // and resourceVersion — for a collection whose handlers keep what they need (the
  // agent's pods: PodManager has each pod, and a full copy here was 20 KB per pod);
  // snapshot(), find() and onDelete's lastKnown then carry only those fields.
  enum class Keep { Objects, Identity };

  // `collectionPath` is the list URL, e.g. "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1".
  WatchedCollection(ApiClient& client, std::string collectionPath, Handlers handlers, Keep keep = Keep::Objects);

  // Runs until `stop`; call on a thread of its own.
  void run(const std::atomic<bool>& stop);

  std::vector<api::Json> snapshot() const;
  std::optional<api::Json> find(const std::string& ns, const std::string& name) const;
  bool synced() const { return synced_; }

 private:
  Status relist();
  static std::string keyOf(const api::Json& o);
  api::Json kept(const api::Json& o) const;

  ApiClient& client_;
  std::string path_;
  Handlers handlers_;
  Keep keep_;
  mutable std::mutex mu_;
  std::map<std::string, api::Json> objects_;
  std::string resourceVersion_;
  std::atomic<bool> synced_{false};
};

}  // namespace ferry::agent
