#include "controlplane-lite/controllers/informer.h"

#include "api/log.h"

#include <charconv>

namespace ferry::cp {

std::string objectKey(const std::string& ns, const std::string& name) {
  return ns.empty() ? name : ns + "/" + name;
}

std::string objectKey(const api::Json& object) { return objectKey(api::namespaceOf(object), api::nameOf(object)); }

std::pair<std::string, std::string> splitKey(const std::string& key) {
  auto slash = key.find('/');
  if (slash == std::string::npos) return {"", key};
  return {key.substr(0, slash), key.substr(slash + 1)};
}

std::int64_t revisionOf(const api::Json& object) {
  std::string rv = api::resourceVersionOf(object);
  std::int64_t value = -1;
  auto [ptr, ec] = std::from_chars(rv.data(), rv.data() + rv.size(), value);
  if (ec != std::errc() || ptr != rv.data() + rv.size()) return -1;
  return value;
}

Informer::Informer(ObjectClient& client, std::string resource) : client_(client), resource_(std::move(resource)) {}

Informer::~Informer() { stop(); }

void Informer::addHandlers(InformerHandlers handlers) { handlers_.push_back(std::move(handlers)); }

void Informer::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { run(); });
}

void Informer::stop() {
  stop_ = true;
  {
    std::lock_guard lock(eventsMu_);
    eventsCv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

bool Informer::waitForSync(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!synced_) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

ObjectPtr Informer::get(const std::string& ns, const std::string& name) const { return getByKey(objectKey(ns, name)); }

ObjectPtr Informer::getByKey(const std::string& key) const {
  std::shared_lock lock(cacheMu_);
  auto it = cache_.find(key);
  return it == cache_.end() ? nullptr : it->second;
}

std::vector<ObjectPtr> Informer::list(const std::string& ns) const {
  std::vector<ObjectPtr> out;
  std::shared_lock lock(cacheMu_);
  if (ns.empty()) {
    out.reserve(cache_.size());
    for (const auto& [key, object] : cache_) out.push_back(object);
    return out;
  }
  std::string prefix = ns + "/";
  for (auto it = cache_.lower_bound(prefix); it != cache_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
    out.push_back(it->second);
  return out;
}

std::size_t Informer::size() const {
  std::shared_lock lock(cacheMu_);
  return cache_.size();
}

void Informer::assume(const api::Json& written) {
  std::string key = objectKey(written);
  std::int64_t rv = revisionOf(written);
  std::unique_lock lock(cacheMu_);
  auto it = cache_.find(key);
  if (it != cache_.end() && rv >= 0 && revisionOf(*it->second) > rv) return;
  auto tomb = tombstones_.find(key);
  if (tomb != tombstones_.end() && rv >= 0 && rv <= tomb->second) return;
  cache_[key] = std::make_shared<const api::Json>(written);
}

void Informer::assumeDeleted(const std::string& key) {
  std::unique_lock lock(cacheMu_);
  auto it = cache_.find(key);
  if (it == cache_.end()) return;
  tombstones_[key] = revisionOf(*it->second);
  cache_.erase(it);
}

void Informer::apply(const WatchEvent& event) {
  std::string key = objectKey(*event.object);
  std::int64_t rv = revisionOf(*event.object);
  ObjectPtr oldObject, newObject;
  {
    std::unique_lock lock(cacheMu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) oldObject = it->second;
    if (event.type == "DELETED") {
      tombstones_.erase(key);
      if (oldObject) cache_.erase(it);
      newObject = event.object;
    } else {
      auto tomb = tombstones_.find(key);
      if (tomb != tombstones_.end()) {
        if (rv >= 0 && rv <= tomb->second) return;  // older than our own deletion
        tombstones_.erase(tomb);
      }
      // A write-through from assume() may already be newer than this event.
      if (oldObject && rv >= 0 && revisionOf(*oldObject) > rv) return;
      newObject = event.object;  // the watch cache's own copy, shared
      cache_[key] = newObject;
    }
  }
  for (const auto& h : handlers_) {
    if (event.type == "DELETED") {
      if (h.onDelete) h.onDelete(oldObject ? oldObject : newObject);
    } else if (oldObject) {
      if (h.onUpdate) h.onUpdate(oldObject, newObject);
    } else {
      if (h.onAdd) h.onAdd(newObject);
    }
  }
}

bool Informer::listAndReplace(std::string& resourceVersion) {
  auto listed = client_.list(resource_, "");
  if (!listed) {
    log::warn("informer {}: list: {}", resource_, listed.error().message);
    return false;
  }
  std::map<std::string, ObjectPtr> fresh;
  for (auto& item : listed->items) {
    std::string key = objectKey(item);
    fresh.emplace(std::move(key), std::make_shared<const api::Json>(std::move(item)));
  }
  std::vector<ObjectPtr> added, removed;
  std::vector<std::pair<ObjectPtr, ObjectPtr>> updated;
  {
    std::unique_lock lock(cacheMu_);
    for (const auto& [key, object] : cache_)
      if (!fresh.count(key)) removed.push_back(object);
    for (const auto& [key, object] : fresh) {
      auto it = cache_.find(key);
      if (it == cache_.end()) {
        added.push_back(object);
      } else if (revisionOf(*it->second) != revisionOf(*object) || revisionOf(*object) < 0) {
        updated.emplace_back(it->second, object);
      }
    }
    cache_ = std::move(fresh);
    tombstones_.clear();
  }
  resourceVersion = listed->resourceVersion;
  for (const auto& h : handlers_) {
    for (const auto& o : removed)
      if (h.onDelete) h.onDelete(o);
    for (const auto& o : added)
      if (h.onAdd) h.onAdd(o);
    for (const auto& [o, n] : updated)
      if (h.onUpdate) h.onUpdate(o, n);
  }
  return true;
}

void Informer::run() {
  auto backoff = std::chrono::milliseconds(100);
  while (!stop_) {
    std::string resourceVersion;
    if (!listAndReplace(resourceVersion)) {
      std::unique_lock lock(eventsMu_);
      eventsCv_.wait_for(lock, backoff, [this] { return stop_.load(); });
      backoff = std::min(backoff * 2, std::chrono::milliseconds(10000));
      continue;
    }
    synced_ = true;
    {
      std::lock_guard lock(eventsMu_);
      events_.clear();
      watchBroken_ = false;
    }
    auto watch = client_.watch(resource_, "", resourceVersion, {}, [this](const WatchEvent& event) {
      std::lock_guard lock(eventsMu_);
      if (event.type == "ERROR") {
        watchBroken_ = true;
      } else if (!watchBroken_) {
        events_.push_back(event);
      }
      eventsCv_.notify_one();
    });
    if (!watch) {
      log::warn("informer {}: watch: {}", resource_, watch.error().message);
      std::unique_lock lock(eventsMu_);
      eventsCv_.wait_for(lock, backoff, [this] { return stop_.load(); });
      backoff = std::min(backoff * 2, std::chrono::milliseconds(10000));
      continue;
    }
    backoff = std::chrono::milliseconds(100);
    for (;;) {
      std::deque<WatchEvent> batch;
      bool broken = false;
      {
        std::unique_lock lock(eventsMu_);
        eventsCv_.wait(lock, [this] { return stop_ || watchBroken_ || !events_.empty(); });
        batch.swap(events_);
        broken = watchBroken_;
      }
      for (const auto& event : batch) apply(event);
      if (stop_) break;
      if (broken) {
        log::info("informer {}: watch ended, relisting", resource_);
        break;
      }
    }
    watch->reset();  // stop delivery before the next list
  }
}

Informer& InformerSet::get(const std::string& resource) {
  std::lock_guard lock(mu_);
  auto& slot = informers_[resource];
  if (!slot) slot = std::make_unique<Informer>(client_, resource);
  return *slot;
}

void InformerSet::start() {
  std::lock_guard lock(mu_);
  for (auto& [name, informer] : informers_) informer->start();
}

bool InformerSet::waitForSync(std::chrono::milliseconds timeout) {
  std::vector<Informer*> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, informer] : informers_) all.push_back(informer.get());
  }
  for (auto* informer : all)
    if (!informer->waitForSync(timeout)) return false;
  return true;
}

void InformerSet::stop() {
  std::lock_guard lock(mu_);
  for (auto& [name, informer] : informers_) informer->stop();
}

}  // namespace ferry::cp
