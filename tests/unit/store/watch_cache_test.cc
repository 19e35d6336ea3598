// WatchCache when the store ends its watch (StoreEvent::Type::Error): every
// watcher gets ERROR 410 and nothing after it; the next watcher makes the cache
// list again, so it sees what changed while no watch was running.
#include "controlplane-lite/sqlite_store.h"
#include "controlplane-lite/watch_cache.h"
#include "tests/unit/store/store_fixture.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

namespace ferry::cp {
namespace {

using api::Json;

// A real SQLite store whose watches the test can end with an Error, as etcd's
// watch does when history was compacted while it reconnected (that path cannot be
// provoked on demand against a real etcd).
class EndableStore : public Store {
 public:
  explicit EndableStore(Store& inner) : inner_(inner) {}
  Result<std::int64_t> create(const std::string& k, const std::string& v, DecodedValue d = {}) override {
    return inner_.create(k, v, std::move(d));
  }
  Result<std::int64_t> update(const std::string& k, const std::string& v, std::int64_t rev,
                              DecodedValue d = {}) override {
    return inner_.update(k, v, rev, std::move(d));
  }
  Result<std::int64_t> remove(const std::string& k, std::int64_t rev) override { return inner_.remove(k, rev); }
  Result<KeyValue> get(const std::string& k) override { return inner_.get(k); }
  Result<ListPage> list(const std::string& prefix, const std::string& after, std::int64_t limit) override {
    ++lists;
    return inner_.list(prefix, after, limit);
  }
  Result<std::unique_ptr<StoreWatch>> watch(const std::string& prefix, std::int64_t after,
                                            std::function<void(const StoreEvent&)> sink) override {
    ++watches;
    lastSink = sink;
    return inner_.watch(prefix, after, std::move(sink));
  }
  Result<std::int64_t> currentRevision() override { return inner_.currentRevision(); }

  void endLastWatch(const std::string& reason) {
    StoreEvent end;
    end.type = StoreEvent::Type::Error;
    end.kv.value = reason;
    lastSink(end);
  }

  int lists = 0;
  int watches = 0;
  std::function<void(const StoreEvent&)> lastSink;

 private:
  Store& inner_;
};

struct Received {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<WatchEvent> events;
  std::function<void(const WatchEvent&)> sink() {
    return [this](const WatchEvent& e) {
      std::lock_guard lock(mu);
      events.push_back(e);
      cv.notify_all();
    };
  }
  bool waitFor(std::size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(30), [&] { return events.size() >= n; });
  }
  std::vector<WatchEvent> snapshot() {
    std::lock_guard lock(mu);
    return events;
  }
};

std::string configMap(const std::string& name, const std::string& value) {
  return Json{{"metadata", {{"name", name}, {"namespace", "default"}}}, {"data", {{"v", value}}}}.dump();
}

// The decoder the tests give the cache: the stored JSON with its revision as resourceVersion.
Result<Json> decodeWithRevision(const std::string& value, std::int64_t revision) {
  Json obj = Json::parse(value);
  obj["metadata"]["resourceVersion"] = std::to_string(revision);
  return obj;
}

TEST(WatchCacheStoreError, EndsEveryWatcherWith410AndRelistsForTheNext) {
  auto dir = testing::makeTempDir("watch-cache");
  auto sqlite = SqliteStore::open((dir / "state.db").string());
  ASSERT_TRUE(sqlite) << sqlite.error().message;
  EndableStore store(**sqlite);
  WatchCache cache(store, "/registry/configmaps/", decodeWithRevision);

  ASSERT_TRUE(store.create("/registry/configmaps/default/a", configMap("a", "1")));
  Received first;
  auto watch = cache.add(-1, {}, first.sink());
  ASSERT_TRUE(watch) << watch.error().message;
  EXPECT_EQ(store.lists, 1);
  ASSERT_TRUE(store.create("/registry/configmaps/default/b", configMap("b", "1")));
  ASSERT_TRUE(first.waitFor(1));
  EXPECT_EQ(first.snapshot()[0].type, "ADDED");

  store.endLastWatch("compacted while reconnecting");
  ASSERT_TRUE(first.waitFor(2));
  auto got = first.snapshot();
  EXPECT_EQ(got[1].type, "ERROR");
  EXPECT_EQ(got[1].object->value("code", 0), 410);
  EXPECT_EQ(got[1].object->value("reason", ""), "Expired");
  EXPECT_NE(got[1].object->value("message", "").find("compacted while reconnecting"), std::string::npos);
  EXPECT_EQ(cache.watcherCount(), 0u);

  // Changed while nothing watched: the ended watcher hears nothing more...
  auto b = store.get("/registry/configmaps/default/b");
  ASSERT_TRUE(b);
  auto changedAt = store.update("/registry/configmaps/default/b", configMap("b", "2"), b->modRevision);
  ASSERT_TRUE(changedAt);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(first.snapshot().size(), 2u);

  // ...and the next watcher makes the cache list and watch again, then gets new events.
  Received second;
  auto again = cache.add(-1, {}, second.sink());
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(store.lists, 2);
  EXPECT_EQ(store.watches, 2);
  ASSERT_TRUE(store.create("/registry/configmaps/default/c", configMap("c", "1")));
  ASSERT_TRUE(second.waitFor(1));
  EXPECT_EQ(second.snapshot()[0].type, "ADDED");
  EXPECT_EQ(second.snapshot()[0].object->at("metadata").value("name", ""), "c");
  // The relisted cache knows b's new state: a label-less change of b is a MODIFIED of it.
  b = store.get("/registry/configmaps/default/b");
  ASSERT_TRUE(store.update("/registry/configmaps/default/b", configMap("b", "3"), b->modRevision));
  ASSERT_TRUE(second.waitFor(2));
  EXPECT_EQ(second.snapshot()[1].type, "MODIFIED");

  // A watcher resuming from before the relist gets the change it missed (from the store).
  Received resumed;
  auto resume = cache.add(*changedAt - 1, {}, resumed.sink());
  ASSERT_TRUE(resume) << resume.error().message;
  ASSERT_TRUE(resumed.waitFor(1));
  EXPECT_EQ(resumed.snapshot()[0].object->at("data").value("v", ""), "2");

  first.events.clear();
  watch->reset();
  again->reset();
  resume->reset();
  std::filesystem::remove_all(dir);
}

std::string labelled(const std::string& name, const std::string& app, const std::string& value) {
  return Json{{"metadata", {{"name", name}, {"namespace", "default"}, {"labels", {{"app", app}}}}},
              {"data", {{"v", value}}}}
      .dump();
}

// The window keeps the stored text, not parsed objects: a watcher resuming from inside it
// gets each event decoded again, with the label moves seen against the previous version.
TEST(WatchCacheWindow, AResumingWatcherGetsTheEventsDecodedWithSelectorMoves) {
  auto dir = testing::makeTempDir("watch-cache");
  auto sqlite = SqliteStore::open((dir / "state.db").string());
  ASSERT_TRUE(sqlite) << sqlite.error().message;
  WatchCache cache(**sqlite, "/registry/configmaps/", decodeWithRevision);
  Received live;
  auto watch = cache.add(-1, {}, live.sink());
  ASSERT_TRUE(watch) << watch.error().message;
  auto created = (*sqlite)->create("/registry/configmaps/default/a", labelled("a", "x", "1"));
  ASSERT_TRUE(created);
  auto moved = (*sqlite)->update("/registry/configmaps/default/a", labelled("a", "y", "2"), *created);
  ASSERT_TRUE(moved);
  auto changed = (*sqlite)->update("/registry/configmaps/default/a", labelled("a", "y", "3"), *moved);
  ASSERT_TRUE(changed);
  ASSERT_TRUE(live.waitFor(3));
  EXPECT_EQ(cache.historySize(), 3u);
  // Every live watcher gets the cache's one object, not a copy.
  EXPECT_EQ(live.snapshot()[2].object, *cache.latestObject("/registry/configmaps/default/a"));

  auto selector = [](const std::string& s) {
    WatchFilter f;
    f.labels = *api::LabelSelector::parse(s);
    return f;
  };
  Received x, y;
  auto wx = cache.add(*created, selector("app=x"), x.sink());
  auto wy = cache.add(*created, selector("app=y"), y.sink());
  ASSERT_TRUE(wx && wy);
  ASSERT_TRUE(x.waitFor(1));
  ASSERT_TRUE(y.waitFor(2));
  auto xs = x.snapshot(), ys = y.snapshot();
  ASSERT_EQ(xs.size(), 1u);
  EXPECT_EQ(xs[0].type, "DELETED");  // moved out of app=x
  EXPECT_EQ(api::resourceVersionOf(*xs[0].object), std::to_string(*moved));
  ASSERT_EQ(ys.size(), 2u);
  EXPECT_EQ(ys[0].type, "ADDED");  // moved into app=y
  EXPECT_EQ(ys[1].type, "MODIFIED");
  EXPECT_EQ(ys[1].object->at("data").value("v", ""), "3");
  EXPECT_EQ(api::resourceVersionOf(*ys[1].object), std::to_string(*changed));
  watch->reset();
  wx->reset();
  wy->reset();
  std::filesystem::remove_all(dir);
}

// The HTTP watch line splices WatchEvent::json(): live watchers of one change share one
// dump of the object (made by the first that asks), and it is the object's own dump.
TEST(WatchCacheWindow, LiveWatchersOfOneChangeShareOneDump) {
  auto dir = testing::makeTempDir("watch-cache-dump");
  auto sqlite = SqliteStore::open((dir / "state.db").string());
  ASSERT_TRUE(sqlite) << sqlite.error().message;
  WatchCache cache(**sqlite, "/registry/configmaps/", decodeWithRevision);
  Received a, b;
  auto wa = cache.add(-1, {}, a.sink());
  auto wb = cache.add(-1, {}, b.sink());
  ASSERT_TRUE(wa && wb);
  auto created = (*sqlite)->create("/registry/configmaps/default/d", configMap("d", "1"));
  ASSERT_TRUE(created);
  auto changed = (*sqlite)->update("/registry/configmaps/default/d", configMap("d", "2"), *created);
  ASSERT_TRUE(changed);
  ASSERT_TRUE(a.waitFor(2));
  ASSERT_TRUE(b.waitFor(2));
  auto as = a.snapshot(), bs = b.snapshot();
  for (std::size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(as[i].encoded && bs[i].encoded);
    EXPECT_EQ(as[i].encoded, bs[i].encoded) << "event " << i << ": one dump per change";
    EXPECT_EQ(as[i].json(), as[i].object->dump());
    EXPECT_EQ(&as[i].json(), &bs[i].json());
  }
  EXPECT_NE(as[0].encoded, as[1].encoded);  // two changes, two dumps
  EXPECT_NE(as[1].json().find("\"v\":\"2\""), std::string::npos);
  // An event made without the cache's sharing still answers json() (its own dump).
  WatchEvent lone{"ADDED", as[0].object};
  EXPECT_EQ(lone.json(), as[0].object->dump());
  wa->reset();
  wb->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ferry::cp
