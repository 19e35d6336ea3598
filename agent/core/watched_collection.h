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

  // `collectionPath` is the list URL, e.g. "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1".
  WatchedCollection(ApiClient& client, std::string collectionPath, Handlers handlers);

  // Runs until `stop`; call on a thread of its own.
  void run(const std::atomic<bool>& stop);

  std::vector<api::Json> snapshot() const;
  std::optional<api::Json> find(const std::string& ns, const std::string& name) const;
  bool synced() const { return synced_; }

 private:
  Status relist();
  static std::string keyOf(const api::Json& o);

  ApiClient& client_;
  std::string path_;
  Handlers handlers_;
  mutable std::mutex mu_;
  std::map<std::string, api::Json> objects_;
  std::string resourceVersion_;
  std::atomic<bool> synced_{false};
};

}  // namespace ferry::agent
