#include "controlplane-lite/leader_election.h"

#include "api/log.h"

#include <nlohmann/json.hpp>

#include <ctime>
#include <random>

#include <fmt/format.h>

namespace ferry::cp {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::int64_t steadyNs(Clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
}

// Kubernetes MicroTime: 2006-01-02T15:04:05.000000Z
std::string microTimeNow() {
  auto now = std::chrono::system_clock::now();
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  std::time_t seconds = micros / 1000000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  return fmt::format("{}.{:06}Z", text, micros % 1000000);
}

std::string randomUid() {
  std::random_device device;
  std::mt19937_64 random(device());
  auto a = random(), b = random();
  return fmt::format("{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xfff,
                     0x8000 | (b >> 48 & 0x3fff), b & 0xffffffffffffULL);
}

std::string holderOf(const std::string& value) {
  Json lease = Json::parse(value, nullptr, false);
  if (!lease.is_object()) return {};
  auto spec = lease.find("spec");
  if (spec == lease.end() || !spec->is_object()) return {};
  auto holder = spec->find("holderIdentity");
  return holder != spec->end() && holder->is_string() ? holder->get<std::string>() : std::string();
}

}  // namespace

LeaderElector::LeaderElector(Store& store, std::string key, std::string identity, LeaderElectionOptions options)
    : store_(store), key_(std::move(key)), identity_(std::move(identity)), options_(std::move(options)) {}

LeaderElector::~LeaderElector() { stop(); }

void LeaderElector::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void LeaderElector::stop() {
  {
    std::lock_guard lock(mutex_);
    if (!thread_.joinable()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  if (leading_ && options_.releaseOnStop) {
    auto current = store_.get(key_);
    if (current && holderOf(current->value) == identity_) {
      auto released = store_.update(key_, record(current->value, "", false), current->modRevision);
      if (!released) log::warn("leader election {}: release: {}", key_, released.error().message);
    }
  }
  setLeading(false);
}

bool LeaderElector::isLeader() const {
  return leading_ && steadyNs(Clock::now()) < validUntilNs_.load();
}

std::string LeaderElector::leader() const {
  std::lock_guard lock(mutex_);
  return holder_;
}

void LeaderElector::setLeading(bool leading) {
  if (leading_.exchange(leading) == leading) return;
  log::info("leader election {}: {} {}", key_, identity_, leading ? "is now the leader" : "is no longer the leader");
  if (leading && options_.onStartedLeading) options_.onStartedLeading();
  if (!leading && options_.onStoppedLeading) options_.onStoppedLeading();
}

std::string LeaderElector::record(const std::string& existing, const std::string& holder, bool newHolder) {
  Json lease = Json::parse(existing, nullptr, false);
  if (!lease.is_object()) {
    // A fresh Lease named after the key's last two parts: .../<namespace>/<name>.
    std::string name = key_.substr(key_.rfind('/') + 1);
    std::string rest = key_.substr(0, key_.rfind('/'));
    std::string ns = rest.substr(rest.rfind('/') + 1);
    lease = Json{{"apiVersion", "coordination.k8s.io/v1"},
                 {"kind", "Lease"},
                 {"metadata", {{"name", name}, {"namespace", ns}, {"uid", randomUid()},
                               {"creationTimestamp", microTimeNow().substr(0, 19) + "Z"}}},
                 {"spec", Json::object()}};
  }
  Json& spec = lease["spec"];
  if (!spec.is_object()) spec = Json::object();
  std::string now = microTimeNow();
  std::string previous = spec.value("holderIdentity", std::string());
  spec["holderIdentity"] = holder;
  spec["leaseDurationSeconds"] = (options_.ttl.count() + 999) / 1000;
  spec["renewTime"] = now;
  if (newHolder) {
    spec["acquireTime"] = now;
    if (!previous.empty() && previous != holder) spec["leaseTransitions"] = spec.value("leaseTransitions", 0) + 1;
  }
  return lease.dump();
}

void LeaderElector::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    attempt();
    if (leading_ && steadyNs(Clock::now()) >= validUntilNs_.load()) setLeading(false);
    lock.lock();
    wake_.wait_for(lock, options_.retry, [&] { return stopping_; });
  }
}

void LeaderElector::attempt() {
  auto sentAt = Clock::now();
  auto won = [&](std::int64_t revision) {
    validUntilNs_ = steadyNs(sentAt + options_.ttl);
    observedRevision_ = revision;
    observedAt_ = sentAt;
    {
      std::lock_guard lock(mutex_);
      holder_ = identity_;
    }
    setLeading(true);
  };

  auto current = store_.get(key_);
  if (!current) {
    if (current.error().code != ENOENT) {
      log::warn("leader election {}: {}", key_, current.error().message);
      return;
    }
    auto created = store_.create(key_, record("", identity_, true));
    if (created) won(*created);
    return;
  }

  std::string holder = holderOf(current->value);
  {
    std::lock_guard lock(mutex_);
    holder_ = holder;
  }
  if (current->modRevision != observedRevision_) {
    observedRevision_ = current->modRevision;
    observedAt_ = sentAt;
  }

  if (holder == identity_) {
    auto renewed = store_.update(key_, record(current->value, identity_, false), current->modRevision);
    if (renewed) {
      won(*renewed);
    } else if (renewed.error().code == ECANCELED || renewed.error().code == ENOENT) {
      setLeading(false);  // someone else wrote the record meanwhile
    } else {
      log::warn("leader election {}: renew: {}", key_, renewed.error().message);
    }
    return;
  }

  if (leading_) setLeading(false);  // the record names another holder
  if (holder.empty() || sentAt - observedAt_ >= options_.ttl) {
    auto taken = store_.update(key_, record(current->value, identity_, true), current->modRevision);
    if (taken) {
      log::info("leader election {}: {} takes over from \"{}\"", key_, identity_, holder);
      won(*taken);
    }
  }
}

}  // namespace ferry::cp
