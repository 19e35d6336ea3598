#include "controlplane-lite/watch_cache.h"

#include "api/log.h"

namespace ferry::cp {

using api::Json;

bool WatchFilter::matches(const Json& object) const {
  if (!ns.empty() && api::namespaceOf(object) != ns) return false;
  if (!labels.matchesEverything() && !labels.matchesObject(object)) return false;
  if (!fields.empty() && !fields.matches(object)) return false;
  return true;
}

class WatchCache::Handle : public ObjectWatch {
 public:
  Handle(WatchCache* cache, std::uint64_t id, std::weak_ptr<bool> alive) : cache_(cache), id_(id), alive_(alive) {}
  ~Handle() override {
    if (auto a = alive_.lock()) cache_->removeWatcher(id_);
  }

 private:
  WatchCache* cache_;
  std::uint64_t id_;
  std::weak_ptr<bool> alive_;
};

namespace {

// What a watcher gets when its stream ends for a reason of the store's: Kubernetes'
// 410 Expired, so that clients (kubectl, informers) list again and watch from there.
Json expiredStatus(const std::string& reason) {
  return Json{{"kind", "Status"},      {"apiVersion", "v1"}, {"metadata", Json::object()}, {"status", "Failure"},
              {"message", reason},     {"reason", "Expired"}, {"code", 410}};
}

// A watcher resuming from before the cache's window: its own store watch.
class DirectWatch : public ObjectWatch {
 public:
  std::unique_ptr<StoreWatch> storeWatch;
};

}  // namespace

WatchCache::WatchCache(Store& store, std::string prefix, Decode decode, std::size_t historyLimit)
    : store_(store), prefix_(std::move(prefix)), decode_(std::move(decode)), historyLimit_(historyLimit) {}

WatchCache::~WatchCache() {
  std::unique_ptr<StoreWatch> w;
  {
    std::lock_guard lock(mu_);
    *alive_ = false;
    alive_.reset();
    w = std::move(storeWatch_);
  }
  w.reset();
}

Status WatchCache::ensureStarted() {
  if (started_) return {};
  auto page = store_.list(prefix_);
  if (!page) return fail(page.error().wrap("watch cache " + prefix_));
  for (const auto& kv : page->items) {
    auto obj = decode_(kv.value, kv.modRevision);
    if (obj)
      current_[kv.key] = {std::make_shared<const Json>(std::move(*obj)), std::make_shared<const std::string>(kv.value),
                          kv.modRevision};
  }
  oldestResumable_ = page->revision;
  latest_ = page->revision;
  auto w = store_.watch(prefix_, page->revision, [this](const StoreEvent& e) { onStoreEvent(e); });
  if (!w) return fail(w.error().wrap("watch cache " + prefix_));
  storeWatch_ = std::move(*w);
  started_ = true;
  following_ = true;
  return {};
}

void WatchCache::onStoreEvent(const StoreEvent& event) {
  std::lock_guard lock(mu_);
  if (!alive_) return;
  if (event.type == StoreEvent::Type::Error) {
    restartAfterStoreError(event.kv.value);
    return;
  }
  const bool deleted = event.type == StoreEvent::Type::Delete;
  // The writer's own object when it handed it over (Store DecodedValue): no parse of the
  // bytes it just wrote.
  ObjectPtr written = event.object;
  if (!written) {
    auto obj = decode_(event.kv.value, event.kv.modRevision);
    if (!obj) {
      log::warn("watch cache {}: undecodable value at {}: {}", prefix_, event.kv.key, obj.error().message);
      return;
    }
    written = std::make_shared<const Json>(std::move(*obj));
  }
  Entry entry;
  entry.revision = event.kv.modRevision;
  entry.deleted = deleted;
  entry.value = std::make_shared<const std::string>(event.kv.value);
  ObjectPtr object = std::move(written);
  ObjectPtr previous;
  auto it = current_.find(event.kv.key);
  if (it != current_.end()) {
    previous = it->second.object;
    entry.previousValue = it->second.value;
    entry.previousRevision = it->second.revision;
  }
  if (deleted) {
    if (it != current_.end()) current_.erase(it);
  } else {
    current_[event.kv.key] = {object, entry.value, entry.revision};
  }
  latest_ = std::max(latest_, entry.revision);
  history_.push_back(std::move(entry));
  while (history_.size() > historyLimit_) {
    oldestResumable_ = history_.front().revision;
    history_.pop_front();
  }
  std::vector<std::shared_ptr<Watcher>> snapshot;
  snapshot.reserve(watchers_.size());
  for (auto& [id, w] : watchers_) snapshot.push_back(w);
  auto encoded = std::make_shared<EncodedObject>();  // one dump of the object for all watchers
  for (auto& w : snapshot) deliver(*w, event.kv.modRevision, deleted, object, previous, encoded);
}

void WatchCache::restartAfterStoreError(const std::string& reason) {
  // Events may be missing from here on, so neither the objects nor the window can be
  // trusted: forget them, end every watcher (as Kubernetes' cacher does when its
  // reflector's watch fails) and list + watch again when the next watcher arrives.
  log::warn("watch cache {}: the store's watch ended ({}); ending {} watchers, relisting at the next watch", prefix_,
            reason, watchers_.size());
  auto ended = std::move(watchers_);
  watchers_.clear();
  storeWatch_.reset();  // called from inside this watch's own sink, which the Store allows
  started_ = false;
  following_ = false;
  current_.clear();
  history_.clear();
  oldestResumable_ = 0;
  latest_ = 0;
  auto status = std::make_shared<const Json>(expiredStatus("the store's watch ended: " + reason));
  for (auto& [id, w] : ended) w->sink(WatchEvent{"ERROR", status});
}

void WatchCache::deliver(Watcher& w, std::int64_t revision, bool deleted, const ObjectPtr& object,
                         const ObjectPtr& previous, const std::shared_ptr<EncodedObject>& encoded) {
  if (revision <= w.afterRevision) return;
  if (deleted) {
    // The deleted object itself is what a watcher sees; match it on its last state.
    if (w.filter.matches(*object)) w.sink(WatchEvent{"DELETED", object, encoded});
    return;
  }
  bool nowMatches = w.filter.matches(*object);
  bool wasMatching = previous && w.filter.matches(*previous);
  if (nowMatches && wasMatching) w.sink(WatchEvent{"MODIFIED", object, encoded});
  else if (nowMatches) w.sink(WatchEvent{"ADDED", object, encoded});
  else if (wasMatching) w.sink(WatchEvent{"DELETED", object, encoded});
}

void WatchCache::replay(Watcher& w, const Entry& e) {
  if (e.revision <= w.afterRevision) return;
  auto object = decode_(*e.value, e.revision);
  if (!object) return;  // it was decodable when it arrived
  ObjectPtr previous;
  if (e.previousValue) {
    if (auto p = decode_(*e.previousValue, e.previousRevision)) previous = std::make_shared<const Json>(std::move(*p));
  }
  deliver(w, e.revision, e.deleted, std::make_shared<const Json>(std::move(*object)), previous, nullptr);
}

Result<std::unique_ptr<ObjectWatch>> WatchCache::add(std::int64_t afterRevision, WatchFilter filter,
                                                     std::function<void(const WatchEvent&)> sink) {
  std::lock_guard lock(mu_);
  if (auto st = ensureStarted(); !st) return fail(st.error());
  if (afterRevision < 0) afterRevision = latest_;
  if (afterRevision < oldestResumable_) {
    // Too old for the cache: a store watch of its own (ERANGE when compacted).
    auto direct = std::make_unique<DirectWatch>();
    auto shared = std::make_shared<Watcher>(Watcher{0, afterRevision, std::move(filter), std::move(sink)});
    auto decode = decode_;
    auto w = store_.watch(prefix_, afterRevision, [shared, decode](const StoreEvent& e) {
      if (e.type == StoreEvent::Type::Error) {
        shared->sink(
            WatchEvent{"ERROR", std::make_shared<const Json>(expiredStatus("the store's watch ended: " + e.kv.value))});
        return;
      }
      auto obj = decode(e.kv.value, e.kv.modRevision);
      if (!obj) return;
      if (!shared->filter.matches(*obj)) return;
      std::string type = e.type == StoreEvent::Type::Delete ? "DELETED" : (e.created ? "ADDED" : "MODIFIED");
      shared->sink(WatchEvent{type, std::make_shared<const Json>(std::move(*obj))});
    });
    if (!w) return fail(w.error());
    direct->storeWatch = std::move(*w);
    return std::unique_ptr<ObjectWatch>(std::move(direct));
  }
  auto watcher = std::make_shared<Watcher>(Watcher{nextId_++, afterRevision, std::move(filter), std::move(sink)});
  for (const auto& e : history_)
    if (e.revision > afterRevision) replay(*watcher, e);
  watchers_[watcher->id] = watcher;
  return std::unique_ptr<ObjectWatch>(std::make_unique<Handle>(this, watcher->id, alive_));
}

void WatchCache::removeWatcher(std::uint64_t id) {
  std::shared_ptr<Watcher> w;
  std::lock_guard lock(mu_);
  auto it = watchers_.find(id);
  if (it != watchers_.end()) {
    w = it->second;
    watchers_.erase(it);
  }
}

Result<std::shared_ptr<const Json>> WatchCache::latestObject(const std::string& key) {
  std::lock_guard lock(mu_);
  if (auto st = ensureStarted(); !st) return fail(st.error());
  auto it = current_.find(key);
  return it == current_.end() ? nullptr : it->second.object;
}

std::size_t WatchCache::historySize() {
  std::lock_guard lock(mu_);
  return history_.size();
}

std::size_t WatchCache::watcherCount() {
  std::lock_guard lock(mu_);
  return watchers_.size();
}

}  // namespace ferry::cp
