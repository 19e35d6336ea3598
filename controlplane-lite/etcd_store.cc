#include "controlplane-lite/etcd_store.h"

#include "api/base64.h"
#include "api/log.h"
#include "controlplane-lite/etcd_client.h"

#include "controlplane-lite/http_client.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

namespace ferry::cp {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// etcd's range_end for "every key starting with prefix": "\0" means "to the end".
std::string rangeEndOf(std::string prefix) {
  while (!prefix.empty()) {
    auto last = static_cast<unsigned char>(prefix.back());
    if (last < 0xff) {
      prefix.back() = static_cast<char>(last + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');
}

Result<KeyValue> decodeKeyValue(const Json& kv) {
  KeyValue out;
  auto key = api::base64Decode(kv.value("key", std::string()));
  auto value = api::base64Decode(kv.value("value", std::string()));
  if (!key || !value) return fail(EIO, "etcd: a key or value is not valid base64");
  out.key = std::move(*key);
  out.value = std::move(*value);
  out.createRevision = etcdInt(kv, "create_revision");
  out.modRevision = etcdInt(kv, "mod_revision");
  return out;
}

Json compareCreateRevision(const std::string& key, const char* result, std::int64_t revision) {
  return {{"key", api::base64Encode(key)}, {"target", "CREATE"}, {"result", result},
          {"create_revision", std::to_string(revision)}};
}

Json compareModRevision(const std::string& key, std::int64_t revision) {
  return {{"key", api::base64Encode(key)}, {"target", "MOD"}, {"result", "EQUAL"},
          {"mod_revision", std::to_string(revision)}};
}

Json rangeRequest(const std::string& key) { return {{"request_range", {{"key", api::base64Encode(key)}}}}; }

// One /v3/watch stream.
struct WatchStream {
  std::string prefix;
  std::function<void(const StoreEvent&)> sink;
  std::int64_t nextRevision = 0;  // where the stream (re)starts
  // The stream's own thread only:
  std::string buffer;
  std::string endpoint;
  bool ended = false;  // compacted or failed for good: no reconnect
  bool sawResponse = false;
  int failures = 0;
  std::thread thread;
  std::thread::id threadId;
  // Set when the handle goes away or the store shuts down; the sink is never called afterwards.
  std::atomic<bool> cancelled{false};
  std::atomic<bool> finished{false};  // the thread has returned (it can be joined at once)
  std::mutex callMutex;
};

}  // namespace

struct EtcdStore::Impl {
  std::unique_ptr<EtcdClient> client;

  // Each watch stream has a thread of its own (the server opens a handful); finished
  // ones are joined when the next watch starts and at shutdown.
  std::mutex mutex;
  bool stopping = false;
  std::vector<std::shared_ptr<WatchStream>> streams;

  ~Impl() { shutdown(); }

  // Stops every stream; watch handles that outlive the store are inert.
  void shutdown() {
    std::vector<std::shared_ptr<WatchStream>> all;
    {
      std::lock_guard lock(mutex);
      if (stopping) return;
      stopping = true;
      all.swap(streams);
    }
    for (auto& stream : all) stream->cancelled = true;
    for (auto& stream : all) {
      if (stream->thread.joinable() && stream->threadId != std::this_thread::get_id()) stream->thread.join();
      else if (stream->thread.joinable()) stream->thread.detach();
    }
  }

  // Joins the threads of streams that have ended; the caller holds `mutex`.
  void reapLocked() {
    for (auto it = streams.begin(); it != streams.end();) {
      if ((*it)->finished) {
        if ((*it)->thread.joinable()) (*it)->thread.join();
        it = streams.erase(it);
      } else {
        ++it;
      }
    }
  }

  // ---- unary

  Result<Json> txn(const Json& compare, const Json& success, const Json& failure) {
    Json request{{"compare", Json::array({compare})}, {"success", Json::array({success})}};
    if (!failure.is_null()) request["failure"] = Json::array({failure});
    return client->call("/v3/kv/txn", request);
  }

  // After a failed conditional write: ENOENT when the key is missing, else ECANCELED.
  Error refusal(const Json& response, const std::string& verb, const std::string& key, std::int64_t expected) {
    auto responses = response.find("responses");
    if (responses != response.end()) {
      for (const auto& part : *responses) {
        auto range = part.find("response_range");
        if (range == part.end()) continue;
        auto kvs = range->find("kvs");
        if (kvs == range->end() || kvs->empty()) continue;
        return Error{ECANCELED, fmt::format("{} {}: revision is {}, not {}", verb, key,
                                            etcdInt((*kvs)[0], "mod_revision"), expected)};
      }
    }
    return Error{ENOENT, verb + " " + key + ": not found"};
  }

  Result<std::int64_t> conditionalWrite(const char* verb, const std::string& key, std::int64_t expected,
                                        Json operation) {
    Json compare = expected != 0 ? compareModRevision(key, expected) : compareCreateRevision(key, "GREATER", 0);
    auto response = txn(compare, operation, rangeRequest(key));
    if (!response) return fail(response.error().wrap(std::string(verb) + " " + key));
    if (!response->value("succeeded", false)) return fail(refusal(*response, verb, key, expected));
    return etcdInt((*response)["header"], "revision");
  }

  // ---- watches

  // One connection's worth of a stream: POST /v3/watch from nextRevision, events to the sink
  // until the stream breaks, ends or is cancelled.
  void runStreamOnce(WatchStream& stream) {
    stream.endpoint = client->currentEndpoint();
    Json create{{"key", api::base64Encode(stream.prefix.empty() ? std::string(1, '\0') : stream.prefix)},
                {"range_end", api::base64Encode(rangeEndOf(stream.prefix))},
                {"start_revision", std::to_string(stream.nextRevision)},
                {"prev_kv", true}};
    stream.buffer.clear();
    stream.sawResponse = false;
    auto url = http::parseUrl(stream.endpoint + "/v3/watch");
    if (!url) return;
    auto connection = http::Connection::open(*url, {}, std::chrono::milliseconds(2000));
    if (!connection) {
      log::debug("etcd watch {}: {}", stream.prefix, connection.error().message);
      return;
    }
    http::Request request{"POST", url->target, {{"Content-Type", "application/json"}},
                          Json{{"create_request", create}}.dump()};
    http::BodySink sink = [&stream](std::string_view piece) { return onData(stream, piece); };
    auto answer = (*connection)->exchange(request, {.sink = &sink, .stop = &stream.cancelled});
    if (!answer) log::debug("etcd watch {}: {}", stream.prefix, answer.error().message);
  }

  // The stream's thread: reconnects a broken stream from the next revision (to another
  // endpoint when this one is down) until it is cancelled or ends for good.
  void runStream(const std::shared_ptr<WatchStream>& stream) {
    while (!stream->cancelled && !stream->ended) {
      runStreamOnce(*stream);
      if (stream->cancelled || stream->ended) break;
      if (!stream->sawResponse) {
        client->endpointFailed(stream->endpoint);
        ++stream->failures;
      }
      auto retryAt = Clock::now() + std::chrono::milliseconds(std::min(2000, 100 << std::min(stream->failures, 5)));
      while (!stream->cancelled && Clock::now() < retryAt) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      log::debug("etcd watch {}: stream ended, reconnecting from revision {}", stream->prefix, stream->nextRevision);
    }
    stream->finished = true;
  }

  static bool onData(WatchStream& stream, std::string_view data) {
    stream.buffer.append(data);
    std::size_t start = 0;
    while (true) {
      auto end = stream.buffer.find('\n', start);
      if (end == std::string::npos) break;
      Json message = Json::parse(stream.buffer.begin() + start, stream.buffer.begin() + end, nullptr, false);
      start = end + 1;
      if (message.is_discarded()) continue;
      if (!handleMessage(stream, message)) return false;  // ends the transfer
    }
    stream.buffer.erase(0, start);
    return true;
  }

  static void callSink(WatchStream& stream, const StoreEvent& event) {
    std::lock_guard call(stream.callMutex);
    if (stream.cancelled) return;
    try {
      stream.sink(event);
    } catch (const std::exception& e) {
      log::error("etcd watch {}: sink threw: {}", stream.prefix, e.what());
    }
  }

  static void endWith(WatchStream& stream, std::string reason) {
    StoreEvent end;
    end.type = StoreEvent::Type::Error;
    end.kv.key = stream.prefix;
    end.kv.value = std::move(reason);
    callSink(stream, end);
    stream.ended = true;
  }

  // false: stop this stream.
  static bool handleMessage(WatchStream& stream, const Json& message) {
    if (message.contains("error")) {
      const Json& error = message["error"];
      std::string text = error.is_object() ? error.value("message", error.dump()) : error.dump();
      log::warn("etcd watch {}: {}", stream.prefix, text);
      return false;  // reconnects
    }
    auto found = message.find("result");
    if (found == message.end()) return true;
    const Json& result = *found;
    stream.sawResponse = true;
    stream.failures = 0;
    if (std::int64_t compacted = etcdInt(result, "compact_revision"); compacted > 0) {
      endWith(stream, fmt::format("watch {} from revision {}: history before revision {} is compacted",
                                  stream.prefix, stream.nextRevision - 1, compacted));
      return false;
    }
    if (result.value("canceled", false)) {
      endWith(stream, "watch " + stream.prefix + ": canceled by etcd: " + result.value("cancel_reason", std::string()));
      return false;
    }
    for (const auto& item : result.value("events", Json::array())) {
      StoreEvent event;
      auto kv = decodeKeyValue(item.value("kv", Json::object()));
      if (!kv) continue;
      event.kv = std::move(*kv);
      if (item.value("type", std::string("PUT")) == "DELETE") {
        event.type = StoreEvent::Type::Delete;
        if (item.contains("prev_kv")) {
          if (auto prev = decodeKeyValue(item["prev_kv"])) {
            event.kv.value = std::move(prev->value);
            event.kv.createRevision = prev->createRevision;
          }
        }
      } else {
        event.created = event.kv.createRevision == event.kv.modRevision;
      }
      stream.nextRevision = event.kv.modRevision + 1;
      callSink(stream, event);
      if (stream.cancelled) return false;
    }
    return true;
  }

  class Handle final : public StoreWatch {
   public:
    Handle(std::shared_ptr<Impl> impl, std::shared_ptr<WatchStream> stream)
        : impl_(std::move(impl)), stream_(std::move(stream)) {}
    ~Handle() override {
      if (std::this_thread::get_id() == stream_->threadId) {
        stream_->cancelled = true;  // from a sink: the stream's thread holds callMutex
      } else {
        std::lock_guard call(stream_->callMutex);
        stream_->cancelled = true;
      }
      // The thread notices within 250 ms and ends; it is joined by the next watch() or at shutdown.
    }

   private:
    std::shared_ptr<Impl> impl_;
    std::shared_ptr<WatchStream> stream_;
  };
};

EtcdStore::EtcdStore(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

EtcdStore::~EtcdStore() { impl_->shutdown(); }

Result<std::unique_ptr<EtcdStore>> EtcdStore::open(const std::vector<std::string>& endpoints) {
  auto client = EtcdClient::connect(endpoints);
  if (!client) return fail(client.error());
  auto impl = std::make_shared<Impl>();
  impl->client = std::move(*client);
  // Fail now rather than at the first request when nothing answers.
  auto probe = impl->client->call("/v3/kv/range", Json{{"key", api::base64Encode("/")}, {"count_only", true}});
  if (!probe) return fail(probe.error().wrap("etcd store"));
  return std::unique_ptr<EtcdStore>(new EtcdStore(std::move(impl)));
}

// `decoded` is not used: watchers get etcd's own events, which carry only the bytes.
Result<std::int64_t> EtcdStore::create(const std::string& key, const std::string& value, DecodedValue) {
  if (key.empty()) return fail(EINVAL, "create: empty key");
  auto response = impl_->txn(compareCreateRevision(key, "EQUAL", 0),
                             Json{{"request_put", {{"key", api::base64Encode(key)}, {"value", api::base64Encode(value)}}}},
                             nullptr);
  if (!response) return fail(response.error().wrap("create " + key));
  if (!response->value("succeeded", false)) return fail(EEXIST, "create " + key + ": already exists");
  return etcdInt((*response)["header"], "revision");
}

Result<std::int64_t> EtcdStore::update(const std::string& key, const std::string& value,
                                       std::int64_t expectedRevision, DecodedValue) {
  if (key.empty()) return fail(EINVAL, "update: empty key");
  return impl_->conditionalWrite(
      "update", key, expectedRevision,
      Json{{"request_put", {{"key", api::base64Encode(key)}, {"value", api::base64Encode(value)}}}});
}

Result<std::int64_t> EtcdStore::remove(const std::string& key, std::int64_t expectedRevision) {
  if (key.empty()) return fail(EINVAL, "delete: empty key");
  return impl_->conditionalWrite("delete", key, expectedRevision,
                                 Json{{"request_delete_range", {{"key", api::base64Encode(key)}}}});
}

Result<KeyValue> EtcdStore::get(const std::string& key) {
  auto response = impl_->client->call("/v3/kv/range", Json{{"key", api::base64Encode(key)}});
  if (!response) return fail(response.error().wrap("get " + key));
  auto kvs = response->find("kvs");
  if (kvs == response->end() || kvs->empty()) return fail(ENOENT, "get " + key + ": not found");
  auto kv = decodeKeyValue((*kvs)[0]);
  if (!kv) return fail(kv.error().wrap("get " + key));
  return kv;
}

Result<ListPage> EtcdStore::list(const std::string& prefix, const std::string& startAfter, std::int64_t limit) {
  // The smallest key after startAfter is startAfter + "\0".
  std::string from = startAfter.empty() || startAfter < prefix ? prefix : startAfter + std::string(1, '\0');
  if (from.empty()) from = std::string(1, '\0');
  Json request{{"key", api::base64Encode(from)}, {"range_end", api::base64Encode(rangeEndOf(prefix))}};
  if (limit > 0) request["limit"] = std::to_string(limit);
  auto response = impl_->client->call("/v3/kv/range", request);
  if (!response) return fail(response.error().wrap("list " + prefix));
  ListPage page;
  page.revision = etcdInt((*response)["header"], "revision");
  page.more = response->value("more", false);
  for (const auto& item : response->value("kvs", Json::array())) {
    auto kv = decodeKeyValue(item);
    if (!kv) return fail(kv.error().wrap("list " + prefix));
    page.items.push_back(std::move(*kv));
  }
  return page;
}

Result<std::unique_ptr<StoreWatch>> EtcdStore::watch(const std::string& prefix, std::int64_t afterRevision,
                                                     std::function<void(const StoreEvent&)> sink) {
  afterRevision = std::max<std::int64_t>(afterRevision, 0);
  auto current = currentRevision();
  if (!current) return fail(current.error().wrap("watch " + prefix));
  if (afterRevision + 1 <= *current) {
    // A read at the first revision the watch needs fails the same way the watch would.
    Json probe{{"key", api::base64Encode("/")}, {"count_only", true}, {"revision", std::to_string(afterRevision + 1)}};
    auto response = impl_->client->call("/v3/kv/range", probe);
    if (!response && response.error().code == ERANGE) {
      return fail(ERANGE, fmt::format("watch {} from revision {}: history is compacted", prefix, afterRevision));
    }
    if (!response) return fail(response.error().wrap("watch " + prefix));
  }
  auto stream = std::make_shared<WatchStream>();
  stream->prefix = prefix;
  stream->sink = std::move(sink);
  stream->nextRevision = afterRevision + 1;
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopping) return fail(ESHUTDOWN, "watch " + prefix + ": the store is closed");
    impl_->reapLocked();
    Impl* impl = impl_.get();
    stream->thread = std::thread([impl, stream] {
      { std::lock_guard started(impl->mutex); }  // threadId is assigned under it
      impl->runStream(stream);
    });
    stream->threadId = stream->thread.get_id();
    impl_->streams.push_back(stream);
  }
  // No waiting for etcd to confirm the stream: callers often hold a lock their
  // sinks take, and the stream's thread must never wait for them. The stream starts
  // at afterRevision + 1, so nothing written meanwhile is missed.
  return std::make_unique<Impl::Handle>(impl_, std::move(stream));
}

Result<std::int64_t> EtcdStore::currentRevision() {
  auto response = impl_->client->call("/v3/kv/range", Json{{"key", api::base64Encode("/")}, {"count_only", true}});
  if (!response) return fail(response.error().wrap("current revision"));
  return etcdInt((*response)["header"], "revision");
}

Status EtcdStore::compact(std::int64_t revision) {
  auto current = currentRevision();
  if (!current) return fail(current.error());
  std::int64_t target = std::min(revision + 1, *current);
  auto response = impl_->client->call("/v3/kv/compaction", Json{{"revision", std::to_string(target)}, {"physical", true}});
  // ERANGE: already compacted that far.
  if (!response && response.error().code != ERANGE) return fail(response.error().wrap("compact"));
  return {};
}

}  // namespace ferry::cp
