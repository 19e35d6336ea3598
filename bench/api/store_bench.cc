// Store-level load generator for bench/api: single-object writes/s and latency
// percentiles with N concurrent clients, and watch fan-out (W watchers, one
// write → time until every watcher has it). Talks to the Store directly, so it
// measures the backends without the API server's HTTP/TLS layer.
//
//   ferry_store_bench --datastore sqlite|etcd://host:port --data-dir DIR
//                     [--clients 1,16,64] [--seconds 5] [--value-bytes 1000] [--watchers 1000]
#include "controlplane-lite/sqlite_store.h"
#include "controlplane-lite/store.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace ferry;
using namespace ferry::cp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string datastore = "sqlite";
  std::string dataDir;
  std::vector<int> clients{1, 16, 64};
  double seconds = 5;
  std::size_t valueBytes = 1000;
  int watchers = 1000;
  bool sqliteFsync = true;  // --sqlite-sync full|normal
};

struct Outcome {
  double perSecond = 0;
  double p50Ms = 0, p99Ms = 0, maxMs = 0;
  std::size_t errors = 0;
};

double percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  std::size_t at = std::min(sorted.size() - 1, static_cast<std::size_t>(p * sorted.size()));
  return sorted[at];
}

// Each client writes its own keys: `update` false → creates, true → CAS updates of its key.
Outcome load(Store& store, const std::string& run, int clients, double seconds, const std::string& value,
             bool update) {
  std::vector<std::vector<double>> latencies(clients);
  std::atomic<std::size_t> errors{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  // Updates need a key per client first.
  std::vector<std::int64_t> revisions(clients, 0);
  if (update) {
    for (int c = 0; c < clients; ++c) {
      auto rev = store.create(fmt::format("/bench/{}/u/c{}", run, c), value);
      revisions[c] = rev ? *rev : 0;
    }
  }
  auto start = Clock::now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto& mine = latencies[c];
      mine.reserve(100000);
      for (std::size_t i = 0; !stop; ++i) {
        auto t0 = Clock::now();
        Result<std::int64_t> rev;
        if (update) {
          rev = store.update(fmt::format("/bench/{}/u/c{}", run, c), value, revisions[c]);
          if (rev) revisions[c] = *rev;
        } else {
          rev = store.create(fmt::format("/bench/{}/c/c{}/k{}", run, c, i), value);
        }
        auto t1 = Clock::now();
        if (!rev) {
          ++errors;
          continue;
        }
        mine.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  Outcome out;
  out.perSecond = all.size() / elapsed;
  out.p50Ms = percentile(all, 0.50);
  out.p99Ms = percentile(all, 0.99);
  out.maxMs = all.empty() ? 0 : all.back();
  out.errors = errors;
  return out;
}

// W watchers on one prefix; one write; time until the last watcher has the event. Median of 5.
Result<double> fanOut(Store& store, int watchers) {
  std::mutex mutex;
  std::condition_variable done;
  std::vector<double> samples;
  for (int round = 0; round < 5; ++round) {
    auto base = store.currentRevision();
    if (!base) return std::unexpected(base.error());
    std::string key = fmt::format("/bench/fanout/r{}", round);
    std::atomic<int> remaining{watchers};
    Clock::time_point last;
    std::vector<std::unique_ptr<StoreWatch>> handles;
    for (int w = 0; w < watchers; ++w) {
      auto watch = store.watch("/bench/fanout/", *base, [&](const StoreEvent& event) {
        if (event.kv.key != key) return;
        if (--remaining == 0) {
          std::lock_guard lock(mutex);
          last = Clock::now();
          done.notify_all();
        }
      });
      if (!watch) return std::unexpected(watch.error());
      handles.push_back(std::move(*watch));
    }
    // Let every watch get established (etcd: one HTTP stream each) before the write.
    std::this_thread::sleep_for(std::chrono::milliseconds(500 + 3 * watchers));
    auto t0 = Clock::now();
    if (auto rev = store.create(key, "x"); !rev) return std::unexpected(rev.error());
    std::unique_lock lock(mutex);
    if (!done.wait_for(lock, std::chrono::seconds(30), [&] { return remaining == 0; })) {
      return std::unexpected(Error{ETIMEDOUT, fmt::format("{} watchers never got the event", remaining.load())});
    }
    samples.push_back(std::chrono::duration<double, std::milli>(last - t0).count());
    lock.unlock();
    handles.clear();
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

std::vector<int> parseList(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) out.push_back(std::stoi(part));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--datastore") options.datastore = value;
    else if (flag == "--data-dir") options.dataDir = value;
    else if (flag == "--clients") options.clients = parseList(value);
    else if (flag == "--seconds") options.seconds = std::stod(value);
    else if (flag == "--value-bytes") options.valueBytes = std::stoul(value);
    else if (flag == "--watchers") options.watchers = std::stoi(value);
    else if (flag == "--sqlite-sync") options.sqliteFsync = value != "normal";
    else {
      fmt::print(stderr, "unknown flag {}\n", flag);
      return 2;
    }
  }
  Result<std::unique_ptr<Store>> store = std::unexpected(Error{});
  if (options.datastore == "sqlite" && !options.sqliteFsync) {
    SqliteStoreOptions sqlite;
    sqlite.fsyncEveryCommit = false;
    auto opened = SqliteStore::open(options.dataDir + "/state.db", sqlite);
    if (opened) store = std::unique_ptr<Store>(std::move(*opened));
    else store = std::unexpected(opened.error());
  } else {
    store = openStore(options.datastore, options.dataDir);
  }
  if (!store) {
    fmt::print(stderr, "open: {}\n", store.error().message);
    return 1;
  }
  std::string value(options.valueBytes, 'v');
  std::string backend = options.datastore.starts_with("etcd") ? "etcd"
                        : options.sqliteFsync                 ? "sqlite (sync=FULL)"
                                                              : "sqlite (sync=NORMAL)";
  fmt::print("| backend | operation | clients | writes/s | p50 ms | p99 ms | max ms | errors |\n");
  fmt::print("|---|---|---|---|---|---|---|---|\n");
  int run = 0;
  for (int clients : options.clients) {
    for (bool update : {false, true}) {
      auto out = load(**store, fmt::format("r{}", run++), clients, options.seconds, value, update);
      fmt::print("| {} | {} | {} | {:.0f} | {:.2f} | {:.2f} | {:.1f} | {} |\n", backend, update ? "update (CAS)" : "create",
                 clients, out.perSecond, out.p50Ms, out.p99Ms, out.maxMs, out.errors);
      std::fflush(stdout);
    }
  }
  if (options.watchers > 0) {
    auto ms = fanOut(**store, options.watchers);
    if (ms) fmt::print("\n{} watch fan-out: {} watchers, one write → all have it in {:.2f} ms (median of 5)\n",
                       backend, options.watchers, *ms);
    else fmt::print("\n{} watch fan-out: {}\n", backend, ms.error().message);
  }
  return 0;
}
