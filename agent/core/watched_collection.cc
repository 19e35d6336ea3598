#include "agent/core/watched_collection.h"

#include "api/log.h"

#include <chrono>
#include <thread>

namespace ferry::agent {

WatchedCollection::WatchedCollection(ApiClient& client, std::string collectionPath, Handlers handlers, Keep keep)
    : client_(client), path_(std::move(collectionPath)), handlers_(std::move(handlers)), keep_(keep) {}

api::Json WatchedCollection::kept(const api::Json& o) const {
  if (keep_ == Keep::Objects) return o;
  return {{"metadata",
           {{"name", api::nameOf(o)}, {"namespace", api::namespaceOf(o)}, {"uid", api::uidOf(o)},
            {"resourceVersion", api::resourceVersionOf(o)}}}};
}

std::string WatchedCollection::keyOf(const api::Json& o) { return api::namespaceOf(o) + "/" + api::nameOf(o); }

Status WatchedCollection::relist() {
  auto list = client_.get(path_);
  if (!list) return fail(list.error());
  std::map<std::string, api::Json> fresh;
  for (const auto& item : list->value("items", api::Json::array())) fresh[keyOf(item)] = kept(item);
  std::vector<api::Json> vanished;
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, obj] : objects_)
      if (!fresh.contains(key)) vanished.push_back(obj);
    objects_ = std::move(fresh);
    resourceVersion_ = api::at<std::string>(*list, {"metadata", "resourceVersion"});
  }
  for (const auto& obj : vanished)
    if (handlers_.onDelete) handlers_.onDelete(obj);
  for (const auto& item : list->value("items", api::Json::array()))
    if (handlers_.onUpsert) handlers_.onUpsert(item);
  synced_ = true;
  if (handlers_.onSynced) handlers_.onSynced();
  return {};
}

void WatchedCollection::run(const std::atomic<bool>& stop) {
  using namespace std::chrono_literals;
  auto backoff = 200ms;
  bool needList = true;
  while (!stop) {
    if (needList) {
      if (auto st = relist(); !st) {
        log::warn("list {}: {}", path_, st.error().message);
        for (auto waited = 0ms; waited < backoff && !stop; waited += 100ms) std::this_thread::sleep_for(100ms);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(10s));
        continue;
      }
      needList = false;
    }
    std::string rv;
    {
      std::lock_guard lock(mu_);
      rv = resourceVersion_;
    }
    std::string watchPath = path_ + (path_.find('?') == std::string::npos ? "?" : "&") +
                            "watch=true&allowWatchBookmarks=true&resourceVersion=" + rv;
    auto st = client_.watch(
        watchPath,
        [&](const std::string& type, const api::Json& obj) {
          backoff = 200ms;
          std::string newRv = api::resourceVersionOf(obj);
          if (type == "BOOKMARK") {
            std::lock_guard lock(mu_);
            if (!newRv.empty()) resourceVersion_ = newRv;
            return;
          }
          {
            std::lock_guard lock(mu_);
            if (!newRv.empty()) resourceVersion_ = newRv;
            if (type == "DELETED") objects_.erase(keyOf(obj));
            else objects_[keyOf(obj)] = kept(obj);
          }
          if (type == "DELETED") {
            if (handlers_.onDelete) handlers_.onDelete(obj);
          } else if (handlers_.onUpsert) {
            handlers_.onUpsert(obj);
          }
        },
        stop);
    if (stop) break;
    if (!st) {
      if (st.error().code == ERANGE) {
        needList = true;  // our version was compacted away
        continue;
      }
      log::warn("watch {}: {}", path_, st.error().message);
      for (auto waited = 0ms; waited < backoff && !stop; waited += 100ms) std::this_thread::sleep_for(100ms);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(10s));
    }
  }
}

std::vector<api::Json> WatchedCollection::snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<api::Json> out;
  out.reserve(objects_.size());
  for (const auto& [key, obj] : objects_) out.push_back(obj);
  return out;
}

std::optional<api::Json> WatchedCollection::find(const std::string& ns, const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = objects_.find(ns + "/" + name);
  if (it == objects_.end()) return std::nullopt;
  return it->second;
}

}  // namespace ferry::agent
