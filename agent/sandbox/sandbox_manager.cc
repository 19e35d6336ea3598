#include "agent/sandbox/sandbox_manager.h"

#include "agent/sandbox/ipam.h"
#include "api/log.h"
#include "netns/namespace_pins.h"
#include "netns/node_network.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

namespace ferry::agent {
namespace {

constexpr const char* kHostVethPrefix = "fv";
constexpr const char* kStateFile = "sandboxes.json";

// Host veth names must fit IFNAMSIZ (15) and be stable for a uid: "fv" + 12 hex digits
// of the uid's FNV-1a hash.
std::string hostVethName(const std::string& uid) {
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : uid) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  char buf[16];
  std::snprintf(buf, sizeof buf, "%s%012llx", kHostVethPrefix,
                static_cast<unsigned long long>(hash & 0xffffffffffffull));
  return buf;
}

Status checkUid(const std::string& uid) {
  if (uid.empty() || uid.size() > 128) return fail(EINVAL, "uid: must be 1-128 characters");
  for (char c : uid) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return fail(EINVAL, "uid: character '" + std::string(1, c) + "' not allowed in \"" + uid + "\"");
    }
  }
  if (uid == "." || uid == "..") return fail(EINVAL, "uid: \"" + uid + "\" not allowed");
  return {};
}

std::string qosText(cgroup::QosClass qos) { return cgroup::qosClassName(qos); }
cgroup::QosClass qosFromText(const std::string& text) {
  if (text == "Guaranteed") return cgroup::QosClass::Guaranteed;
  if (text == "Burstable") return cgroup::QosClass::Burstable;
  return cgroup::QosClass::BestEffort;
}

}  // namespace

struct SandboxManager::Impl {
  SandboxManagerConfig config;
  Ipv4Cidr cidr;
  std::unique_ptr<netns::NodeNetwork> network;
  std::unique_ptr<cgroup::CgroupTree> cgroups;
  // Sandboxes of different pods are made and removed in parallel: under a stream of
  // pod starts and deletes, one lock around the whole of each (a netns, a veth and a
  // cgroup: 5-20 ms, more under load) held every start behind every other start and
  // delete (bench/podstart: 0.3-0.5 s of a start's time was spent waiting for it).
  // What is shared is short: `records` guards `sandboxes`, `ipam` and `busy`; `saving`
  // orders writes of the state file; NodeNetwork orders its own netlink requests.
  // `busy` holds the uids with an operation in progress, so that two on one pod (a
  // create and a remove) never overlap. `routes` serialises setPeerRoutes.
  mutable std::mutex records;
  std::condition_variable busyChanged;
  std::set<std::string> busy;
  std::mutex saving;
  std::mutex routes;
  Ipam ipam{Ipv4Cidr{}};
  std::map<std::string, PodSandbox> sandboxes;  // by uid

  // Held for the whole of one operation on a pod's sandbox.
  class PodOperation {
   public:
    PodOperation(Impl& impl, const std::string& uid) : impl_(impl), uid_(uid) {
      std::unique_lock lock(impl_.records);
      impl_.busyChanged.wait(lock, [&] { return !impl_.busy.contains(uid_); });
      impl_.busy.insert(uid_);
    }
    ~PodOperation() {
      {
        std::lock_guard lock(impl_.records);
        impl_.busy.erase(uid_);
      }
      impl_.busyChanged.notify_all();
    }
    PodOperation(const PodOperation&) = delete;
    PodOperation& operator=(const PodOperation&) = delete;

   private:
    Impl& impl_;
    std::string uid_;
  };

  std::string statePath() const { return config.dataDir + "/" + kStateFile; }
  std::string podDir(const std::string& uid) const { return config.runDir + "/pods/" + uid; }

  PodSandbox describe(const std::string& uid, uint32_t address) const {
    PodSandbox s;
    s.uid = uid;
    s.podIP = ipv4ToString(address);
    s.prefixLength = cidr.prefixLength;
    s.gateway = ipv4ToString(ipam.gateway());
    netns::NamespacePins pins = netns::podNamespacePins(podDir(uid));
    s.netnsPath = pins.net;
    s.ipcnsPath = pins.ipc;
    s.utsnsPath = pins.uts;
    s.hostVeth = hostVethName(uid);
    return s;
  }

  // {"ipam": {...}, "sandboxes": {"<uid>": {"name", "namespace", "qos"}}}
  // The records are read and the file written under `saving`: writes land in the order
  // their snapshots were taken, so the file never goes back to an older state.
  Status save() {
    std::lock_guard order(saving);
    nlohmann::json doc;
    {
      std::lock_guard lock(records);
      nlohmann::json entries = nlohmann::json::object();
      for (const auto& [uid, s] : sandboxes) {
        entries[uid] = {{"name", s.name}, {"namespace", s.namespace_}, {"qos", qosText(s.qos)}};
      }
      doc = {{"ipam", nlohmann::json::parse(ipam.serialize())}, {"sandboxes", entries}};
    }
    if (Status s = writeFileAtomically(statePath(), doc.dump(1)); !s) return fail(s.error().wrap("save sandbox state"));
    return {};
  }

  Status load() {
    if (::access(statePath().c_str(), F_OK) != 0) {
      ipam = Ipam(cidr);
      return {};
    }
    std::ifstream in(statePath());
    std::stringstream text;
    text << in.rdbuf();
    nlohmann::json doc = nlohmann::json::parse(text.str(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("ipam")) {
      return fail(EINVAL, statePath() + ": not a sandbox state file");
    }
    auto loaded = Ipam::deserialize(doc["ipam"].dump());
    if (!loaded) return fail(loaded.error().wrap(statePath()));
    if (loaded->cidr().network != cidr.network || loaded->cidr().prefixLength != cidr.prefixLength) {
      return fail(EINVAL, statePath() + ": ipam.cidr: state is for " + loaded->cidr().toString() +
                              ", node has " + cidr.toString());
    }
    ipam = std::move(*loaded);
    if (doc.contains("sandboxes") && doc["sandboxes"].is_object()) {
      for (const auto& [uid, record] : doc["sandboxes"].items()) {
        auto address = ipam.addressOf(uid);
        if (!address) continue;  // a record without an address is dropped and swept below
        PodSandbox s = describe(uid, *address);
        s.name = record.value("name", "");
        s.namespace_ = record.value("namespace", "");
        s.qos = qosFromText(record.value("qos", "BestEffort"));
        s.cgroupPath = cgroup::CgroupTree::podPath(uid, s.qos);
        sandboxes[uid] = std::move(s);
      }
    }
    return {};
  }

  // Removes every piece a sandbox for `uid` may have, whether or not it is complete.
  // Deleting a veth waits for the kernel (~25 ms here); when the pod's netns is
  // unpinned with nothing else in it, the kernel deletes the pair itself in the
  // background, so `deleteVeth` is only asked for where a netns may live on.
  Status teardown(const std::string& uid, const std::optional<cgroup::QosClass>& qos, bool deleteVeth) {
    Status first;
    auto note = [&](Status s, const char* what) {
      if (!s && first) first = fail(s.error().wrap(what));
    };
    if (qos) {
      note(cgroups->remove(cgroup::CgroupTree::podPath(uid, *qos)), "cgroup");
    } else {
      for (auto q : {cgroup::QosClass::Guaranteed, cgroup::QosClass::Burstable, cgroup::QosClass::BestEffort}) {
        note(cgroups->remove(cgroup::CgroupTree::podPath(uid, q)), "cgroup");
      }
    }
    if (deleteVeth) note(network->removePodLink(hostVethName(uid)), "veth");
    note(netns::removePodNamespaces(podDir(uid)), "namespaces");
    return first;
  }

  // After a restart: keep complete sandboxes, tear down half-made ones and orphans.
  void reconcile() {
    std::set<std::string> links;
    if (auto list = network->listLinks()) links.insert(list->begin(), list->end());
    for (auto it = sandboxes.begin(); it != sandboxes.end();) {
      const PodSandbox& s = it->second;
      bool complete = netns::isPinnedNamespace(s.netnsPath) && netns::isPinnedNamespace(s.ipcnsPath) &&
                      netns::isPinnedNamespace(s.utsnsPath) && links.count(s.hostVeth) &&
                      std::filesystem::exists(cgroups->procsFiles(s.cgroupPath).front());
      if (complete) {
        ++it;
        continue;
      }
      log::warn("sandbox {}: incomplete after restart, removing it", it->first);
      (void)teardown(it->first, std::nullopt, true);
      ipam.release(it->first);
      it = sandboxes.erase(it);
    }
    // Addresses owned by no record.
    std::vector<std::string> stale;
    for (const auto& [owner, address] : ipam.allocations()) {
      if (!sandboxes.count(owner)) stale.push_back(owner);
    }
    for (const std::string& owner : stale) ipam.release(owner);
    // Pins, veths and pod cgroups of no record.
    std::set<std::string> orphans;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(config.runDir + "/pods", ec)) {
      std::string uid = entry.path().filename();
      if (!sandboxes.count(uid)) orphans.insert(uid);
    }
    if (auto uids = cgroups->listPodUids()) {
      for (const std::string& uid : *uids) {
        if (!sandboxes.count(uid)) orphans.insert(uid);
      }
    }
    for (const std::string& uid : orphans) {
      if (!checkUid(uid)) continue;
      log::warn("sandbox {}: leftover without a record, removing it", uid);
      (void)teardown(uid, std::nullopt, true);
    }
    std::set<std::string> ownVeths;
    for (const auto& [uid, s] : sandboxes) ownVeths.insert(s.hostVeth);
    for (const std::string& link : links) {
      if (link.rfind(kHostVethPrefix, 0) == 0 && link.size() == 14 && !ownVeths.count(link)) {
        (void)network->removePodLink(link);
      }
    }
  }
};

SandboxManager::SandboxManager(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SandboxManager::~SandboxManager() = default;

Result<std::unique_ptr<SandboxManager>> SandboxManager::open(const SandboxManagerConfig& config) {
  if (config.runDir.empty()) return fail(EINVAL, "runDir: must be set");
  if (config.dataDir.empty()) return fail(EINVAL, "dataDir: must be set");
  auto cidr = Ipv4Cidr::parse(config.podCIDR);
  if (!cidr) return fail(cidr.error().wrap("podCIDR"));
  if (cidr->prefixLength > 30) return fail(EINVAL, "podCIDR: " + config.podCIDR + " is too small (at most /30)");

  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->cidr = *cidr;
  std::error_code ec;
  std::filesystem::create_directories(config.dataDir, ec);
  if (ec) return fail(ec.value(), "dataDir: create " + config.dataDir + ": " + ec.message());

  auto network = netns::NodeNetwork::open(config.nodeNetnsPath);
  if (!network) return fail(network.error().wrap("sandbox manager"));
  impl->network = std::move(*network);
  Ipam probe(*cidr);
  std::string gatewayCidr = ipv4ToString(probe.gateway()) + "/" + std::to_string(cidr->prefixLength);
  if (Status s = impl->network->ensureBridge(config.bridgeName, gatewayCidr); !s) {
    return fail(s.error().wrap("sandbox manager: node bridge"));
  }
  if (Status s = impl->network->enableIpForwarding(); !s) return fail(s.error().wrap("sandbox manager"));

  auto cgroups = cgroup::CgroupTree::open(config.cgroupRoot, config.cgroupMountRoot);
  if (!cgroups) return fail(cgroups.error().wrap("sandbox manager: cgroupRoot"));
  impl->cgroups = std::move(*cgroups);

  if (Status s = impl->load(); !s) return fail(s.error().wrap("sandbox manager"));
  impl->reconcile();
  if (Status s = impl->save(); !s) return fail(s.error().wrap("sandbox manager"));
  return std::unique_ptr<SandboxManager>(new SandboxManager(std::move(impl)));
}

Result<PodSandbox> SandboxManager::create(const PodSandboxSpec& spec) {
  if (Status s = checkUid(spec.uid); !s) return fail(s.error().wrap("create sandbox"));
  Impl::PodOperation operation(*impl_, spec.uid);
  std::string context = "create sandbox " + (spec.name.empty() ? spec.uid : spec.namespace_ + "/" + spec.name);
  PodSandbox sandbox;
  {
    std::lock_guard records(impl_->records);
    if (auto it = impl_->sandboxes.find(spec.uid); it != impl_->sandboxes.end()) return it->second;
    auto address = impl_->ipam.allocate(spec.uid);
    if (!address) return fail(address.error().wrap(context));
    sandbox = impl_->describe(spec.uid, *address);
  }
  sandbox.name = spec.name;
  sandbox.namespace_ = spec.namespace_;
  sandbox.qos = spec.qos;

  auto undo = [&](Error error) -> std::unexpected<Error> {
    (void)impl_->teardown(spec.uid, spec.qos, true);
    std::lock_guard records(impl_->records);
    impl_->ipam.release(spec.uid);
    return fail(std::move(error).wrap(context));
  };

  std::string hostname = spec.hostname.empty() ? spec.name : spec.hostname;
  if (hostname.size() > 63) hostname.resize(63);  // the kubelet truncates the same way
  if (hostname.empty()) hostname = spec.uid.substr(0, 63);
  netns::PodLinkSpec link{.podNetnsPath = sandbox.netnsPath,
                          .hostIfName = sandbox.hostVeth,
                          .bridgeName = impl_->config.bridgeName,
                          .podAddress = sandbox.podIP + "/" + std::to_string(sandbox.prefixLength),
                          .gateway = sandbox.gateway,
                          .mtu = impl_->config.mtu};
  std::string podDir = impl_->podDir(spec.uid);
  auto pins = impl_->network->createPodNamespacesAndLink(podDir, hostname, link);
  if (!pins && pins.error().code == EEXIST) {
    // The veth of an earlier sandbox with this uid whose netns the kernel is still
    // tearing down (or that something kept alive): delete it now and retry.
    (void)impl_->network->removePodLink(link.hostIfName);
    pins = impl_->network->createPodNamespacesAndLink(podDir, hostname, link);
  }
  if (!pins) return undo(pins.error());

  cgroup::Limits limits = spec.limits;
  if (!limits.pidsMax && impl_->config.podPidsLimit > 0) limits.pidsMax = impl_->config.podPidsLimit;
  auto cgroupPath = impl_->cgroups->createPod(spec.uid, spec.qos, limits);
  if (!cgroupPath) return undo(cgroupPath.error());
  sandbox.cgroupPath = *cgroupPath;

  {
    std::lock_guard records(impl_->records);
    impl_->sandboxes[spec.uid] = sandbox;
  }
  if (Status s = impl_->save(); !s) {
    {
      std::lock_guard records(impl_->records);
      impl_->sandboxes.erase(spec.uid);
    }
    return undo(s.error());
  }
  return sandbox;
}

Status SandboxManager::remove(const std::string& podUid) {
  if (Status s = checkUid(podUid); !s) return fail(s.error().wrap("remove sandbox"));
  Impl::PodOperation operation(*impl_, podUid);
  std::optional<cgroup::QosClass> qos;
  {
    std::lock_guard records(impl_->records);
    if (auto it = impl_->sandboxes.find(podUid); it != impl_->sandboxes.end()) qos = it->second.qos;
  }
  Status torn = impl_->teardown(podUid, qos, /*deleteVeth=*/false);
  if (!torn) return fail(torn.error().wrap("remove sandbox " + podUid));
  bool known = false, released = false;
  {
    std::lock_guard records(impl_->records);
    known = impl_->sandboxes.erase(podUid) > 0;
    released = impl_->ipam.release(podUid);
  }
  if (known || released) {
    if (Status s = impl_->save(); !s) return fail(s.error().wrap("remove sandbox " + podUid));
  }
  return {};
}

std::vector<PodSandbox> SandboxManager::list() const {
  std::lock_guard lock(impl_->records);
  std::vector<PodSandbox> result;
  for (const auto& [uid, s] : impl_->sandboxes) result.push_back(s);
  return result;
}

std::optional<PodSandbox> SandboxManager::find(const std::string& podUid) const {
  std::lock_guard lock(impl_->records);
  auto it = impl_->sandboxes.find(podUid);
  if (it == impl_->sandboxes.end()) return std::nullopt;
  return it->second;
}

Status SandboxManager::setPeerRoutes(const std::vector<PeerNodeRoute>& peers) {
  std::lock_guard lock(impl_->routes);
  std::set<std::string> wanted;
  for (const PeerNodeRoute& peer : peers) {
    auto cidr = Ipv4Cidr::parse(peer.podCIDR);
    if (!cidr) return fail(cidr.error().wrap("peer route: podCIDR"));
    if (Status s = impl_->network->ensureRoute(cidr->toString(), peer.nodeIP); !s) {
      return fail(s.error().wrap("peer route to " + peer.podCIDR));
    }
    wanted.insert(cidr->toString());
  }
  auto routes = impl_->network->listRoutes();
  if (!routes) return fail(routes.error().wrap("peer routes"));
  for (const netns::RouteEntry& route : *routes) {
    if (route.ownedByFerry && !wanted.count(route.destination)) {
      if (Status s = impl_->network->removeRoute(route.destination); !s) return fail(s.error().wrap("peer routes"));
    }
  }
  return {};
}

cgroup::CgroupTree& SandboxManager::cgroups() { return *impl_->cgroups; }

const SandboxManagerConfig& SandboxManager::config() const { return impl_->config; }

}  // namespace ferry::agent
