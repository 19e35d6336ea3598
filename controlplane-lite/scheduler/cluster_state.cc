#include "controlplane-lite/scheduler/cluster_state.h"

#include "controlplane-lite/controllers/controller_util.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace ferry::cp {

namespace {

// A member of `object` by reference (null when absent): the filters run for
// every node, so they must not copy the pod's JSON.
const api::Json& member(const api::Json& object, const char* key) {
  static const api::Json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

constexpr std::int64_t kDefaultScoringMilliCpu = 100;                      // 100m
constexpr std::int64_t kDefaultScoringMemoryMilli = 200LL * 1024 * 1024 * 1000;  // 200Mi

PlacedPod describePod(const api::Json& pod, int ownerId) {
  PlacedPod placed;
  placed.requests = podRequests(pod);
  placed.scoringRequests = placed.requests;
  if (placed.scoringRequests.milliCpu == 0) placed.scoringRequests.milliCpu = kDefaultScoringMilliCpu;
  if (placed.scoringRequests.memoryMilli == 0) placed.scoringRequests.memoryMilli = kDefaultScoringMemoryMilli;
  placed.ownerId = ownerId;
  const api::Json& spec = member(pod, "spec");
  if (spec.contains("containers") && spec["containers"].is_array()) {
    for (const auto& c : spec["containers"]) {
      if (!c.contains("ports") || !c["ports"].is_array()) continue;
      for (const auto& p : c["ports"]) {
        int hostPort = p.value("hostPort", 0);
        if (hostPort <= 0) continue;
        std::string ip = p.value("hostIP", std::string("0.0.0.0"));
        if (ip.empty()) ip = "0.0.0.0";
        placed.hostPorts.push_back(fmt::format("{}/{}/{}", p.value("protocol", std::string("TCP")), ip, hostPort));
      }
    }
  }
  return placed;
}

bool hostPortConflicts(const std::set<std::string>& used, const std::string& wanted) {
  // "proto/ip/port": the same port conflicts when the IPs are equal or either is 0.0.0.0.
  auto first = wanted.find('/'), last = wanted.rfind('/');
  std::string proto = wanted.substr(0, first), ip = wanted.substr(first + 1, last - first - 1),
              port = wanted.substr(last + 1);
  for (const auto& u : used) {
    auto uf = u.find('/'), ul = u.rfind('/');
    if (u.substr(0, uf) != proto || u.substr(ul + 1) != port) continue;
    std::string uip = u.substr(uf + 1, ul - uf - 1);
    if (uip == ip || uip == "0.0.0.0" || ip == "0.0.0.0") return true;
  }
  return false;
}

bool selectorRequirementMatches(const api::Json& req, const std::string& value, bool present) {
  std::string op = req.value("operator", "");
  std::vector<std::string> values;
  if (req.contains("values") && req["values"].is_array())
    for (const auto& v : req["values"])
      if (v.is_string()) values.push_back(v.get<std::string>());
  bool in = present && std::find(values.begin(), values.end(), value) != values.end();
  if (op == "In") return in;
  if (op == "NotIn") return !in;
  if (op == "Exists") return present;
  if (op == "DoesNotExist") return !present;
  if (op == "Gt" || op == "Lt") {
    if (!present || values.size() != 1) return false;
    try {
      long long have = std::stoll(value), want = std::stoll(values[0]);
      return op == "Gt" ? have > want : have < want;
    } catch (...) {
      return false;
    }
  }
  return false;
}

std::string taintText(const Taint& t) { return fmt::format("{{{}: {}}}", t.key, t.value); }

}  // namespace

bool tolerates(const api::Json& tolerations, const Taint& taint) {
  if (!tolerations.is_array()) return false;
  for (const auto& t : tolerations) {
    std::string effect = t.value("effect", "");
    if (!effect.empty() && effect != taint.effect) continue;
    std::string key = t.value("key", "");
    std::string op = t.value("operator", std::string("Equal"));
    if (op == "Exists") {
      if (key.empty() || key == taint.key) return true;
      continue;
    }
    if (key == taint.key && t.value("value", "") == taint.value) return true;
  }
  return false;
}

PodTerms PodTerms::of(const api::Json& pod) {
  const api::Json& spec = member(pod, "spec");
  return PodTerms{&member(spec, "tolerations"), &member(spec, "nodeSelector"),
                  &member(member(member(spec, "affinity"), "nodeAffinity"), "requiredDuringSchedulingIgnoredDuringExecution")};
}

bool nodeMatchesPodAffinity(const api::Json& pod, const std::string& nodeName, const api::Json& nodeLabels) {
  return nodeMatchesPodTerms(PodTerms::of(pod), nodeName, nodeLabels);
}

bool nodeMatchesPodTerms(const PodTerms& pod, const std::string& nodeName, const api::Json& nodeLabels) {
  const api::Json& nodeSelector = *pod.nodeSelector;
  if (nodeSelector.is_object()) {
    for (const auto& [key, value] : nodeSelector.items()) {
      auto it = nodeLabels.find(key);
      if (it == nodeLabels.end() || *it != value) return false;
    }
  }
  const api::Json& required = *pod.required;
  if (required.is_null()) return true;
  const api::Json& terms = member(required, "nodeSelectorTerms");
  if (!terms.is_array()) return false;
  for (const auto& term : terms) {  // terms are ORed, requirements within a term ANDed
    bool hasRequirement = false, ok = true;
    for (const char* field : {"matchExpressions", "matchFields"}) {
      if (!term.contains(field) || !term[field].is_array()) continue;
      for (const auto& req : term[field]) {
        hasRequirement = true;
        std::string key = req.value("key", "");
        std::string value;
        bool present = false;
        if (std::string(field) == "matchFields") {
          present = key == "metadata.name";
          value = nodeName;
        } else if (nodeLabels.contains(key) && nodeLabels[key].is_string()) {
          present = true;
          value = nodeLabels[key].get<std::string>();
        }
        if (!selectorRequirementMatches(req, value, present)) ok = false;
      }
    }
    if (hasRequirement && ok) return true;  // an empty term matches nothing
  }
  return false;
}

int ClusterState::internOwner(const std::string& uid) {
  if (uid.empty()) return -1;
  auto [it, inserted] = ownerIds_.emplace(uid, static_cast<int>(ownerIds_.size()));
  return it->second;
}

const NodeInfo* ClusterState::node(const std::string& name) const {
  auto it = nodeIndex_.find(name);
  return it == nodeIndex_.end() ? nullptr : &nodes_[it->second];
}

void ClusterState::upsertNode(const api::Json& node) {
  std::string name = api::nameOf(node);
  auto it = nodeIndex_.find(name);
  if (it == nodeIndex_.end()) {
    NodeInfo info;
    info.name = name;
    auto pos = std::lower_bound(nodes_.begin(), nodes_.end(), name,
                                [](const NodeInfo& n, const std::string& v) { return n.name < v; });
    // Only the nodes from the insertion point on move: re-index those (a full rebuild
    // per node made an initial list of 5,000 nodes 12.5 M hash inserts).
    const std::size_t at = static_cast<std::size_t>(pos - nodes_.begin());
    nodes_.insert(pos, std::move(info));
    for (std::size_t i = at; i < nodes_.size(); ++i) nodeIndex_[nodes_[i].name] = i;
    it = nodeIndex_.find(name);
  }
  NodeInfo& info = nodes_[it->second];
  info.labels = api::at<api::Json>(node, {"metadata", "labels"}, api::Json::object());
  info.unschedulable = api::at<bool>(node, {"spec", "unschedulable"}, false);
  info.allocatable = nodeAllocatable(node);
  info.taints.clear();
  api::Json taints = api::at<api::Json>(node, {"spec", "taints"}, api::Json::array());
  if (taints.is_array())
    for (const auto& t : taints)
      info.taints.push_back(Taint{t.value("key", ""), t.value("value", ""), t.value("effect", "")});
  // A node that is not Ready behaves as if tainted, as the node lifecycle controller would taint it.
  api::Json ready = conditionOf(node, "Ready");
  std::string readyStatus = ready.is_object() ? ready.value("status", "Unknown") : "Unknown";
  if (readyStatus != "True") {
    std::string key = readyStatus == "False" ? "node.kubernetes.io/not-ready" : "node.kubernetes.io/unreachable";
    bool present = std::any_of(info.taints.begin(), info.taints.end(), [&](const Taint& t) { return t.key == key; });
    if (!present) info.taints.push_back(Taint{key, "", "NoSchedule"});
  }
}

int ClusterState::leastOwnerCount(int ownerId) const {
  auto it = ownerHistogram_.find(ownerId);
  if (it == ownerHistogram_.end()) return 0;
  int nodesWithPods = 0;
  for (const auto& [count, nodes] : it->second) nodesWithPods += nodes;
  if (nodesWithPods < static_cast<int>(nodes_.size()) || it->second.empty()) return 0;
  return it->second.begin()->first;
}

void ClusterState::countOwner(int ownerId, int before, int after) {
  auto& histogram = ownerHistogram_[ownerId];
  if (before > 0 && --histogram[before] <= 0) histogram.erase(before);
  if (after > 0) histogram[after]++;
}

void ClusterState::removeNode(const std::string& name) {
  auto it = nodeIndex_.find(name);
  if (it == nodeIndex_.end()) return;
  for (const auto& [owner, count] : nodes_[it->second].ownerCounts) countOwner(owner, count, 0);
  for (const auto& [podKey, placed] : nodes_[it->second].pods) podNode_.erase(podKey);
  const std::size_t at = it->second;
  nodeIndex_.erase(it);
  nodes_.erase(nodes_.begin() + static_cast<std::ptrdiff_t>(at));
  for (std::size_t i = at; i < nodes_.size(); ++i) nodeIndex_[nodes_[i].name] = i;
}

void ClusterState::placePod(const std::string& podKey, const api::Json& pod, const std::string& nodeName) {
  removePod(podKey);
  if (!nodeIndex_.count(nodeName)) return;  // node unknown (yet): nothing to account against
  const api::Json* owner = controllerRefOf(pod);
  account(podKey, describePod(pod, owner ? internOwner(owner->value("uid", "")) : -1), nodeName);
}

void ClusterState::placeScheduled(const std::string& podKey, PlacementResult& result) {
  removePod(podKey);
  if (!nodeIndex_.count(result.nodeName)) return;
  PlacedPod placed = std::move(result.placed);
  placed.ownerId = result.ownerUid.empty() ? -1 : internOwner(result.ownerUid);
  account(podKey, std::move(placed), result.nodeName);
}

void ClusterState::account(const std::string& podKey, PlacedPod placed, const std::string& nodeName) {
  auto it = nodeIndex_.find(nodeName);
  NodeInfo& info = nodes_[it->second];
  info.requested.add(placed.requests);
  info.scoringRequested.add(placed.scoringRequests);
  if (placed.ownerId >= 0) {
    int& count = info.ownerCounts[placed.ownerId];
    countOwner(placed.ownerId, count, count + 1);
    count++;
  }
  for (const auto& hp : placed.hostPorts) info.usedHostPorts.insert(hp);
  info.pods[podKey] = std::move(placed);
  podNode_[podKey] = nodeName;
}

void ClusterState::removePod(const std::string& podKey) {
  auto where = podNode_.find(podKey);
  if (where == podNode_.end()) return;
  auto it = nodeIndex_.find(where->second);
  podNode_.erase(where);
  if (it == nodeIndex_.end()) return;
  NodeInfo& info = nodes_[it->second];
  auto p = info.pods.find(podKey);
  if (p == info.pods.end()) return;
  info.requested.subtract(p->second.requests);
  info.scoringRequested.subtract(p->second.scoringRequests);
  if (p->second.ownerId >= 0) {
    int& count = info.ownerCounts[p->second.ownerId];
    countOwner(p->second.ownerId, count, count - 1);
    if (--count <= 0) info.ownerCounts.erase(p->second.ownerId);
  }
  for (const auto& hp : p->second.hostPorts) info.usedHostPorts.erase(hp);
  info.pods.erase(p);
}

std::string ClusterState::nodeOfPod(const std::string& podKey) const {
  auto it = podNode_.find(podKey);
  return it == podNode_.end() ? "" : it->second;
}

std::vector<std::string> ClusterState::filter(const NodeInfo& node, const PodTerms& pod,
                                              const PlacedPod& placed) const {
  const api::Json& tolerations = *pod.tolerations;
  if (node.unschedulable &&
      !tolerates(tolerations, Taint{"node.kubernetes.io/unschedulable", "", "NoSchedule"}))
    return {"node(s) were unschedulable"};
  for (const auto& taint : node.taints) {
    if (taint.effect != "NoSchedule" && taint.effect != "NoExecute") continue;
    if (!tolerates(tolerations, taint)) return {"node(s) had untolerated taint " + taintText(taint)};
  }
  if (!nodeMatchesPodTerms(pod, node.name, node.labels)) return {"node(s) didn't match Pod's node affinity/selector"};
  for (const auto& hp : placed.hostPorts)
    if (hostPortConflicts(node.usedHostPorts, hp)) return {"node(s) didn't have free ports for the requested pod ports"};
  std::vector<std::string> reasons;
  const ResourceList& want = placed.requests;
  if (node.requested.podsMilli + want.podsMilli > node.allocatable.podsMilli) reasons.push_back("Too many pods");
  if (want.milliCpu > 0 && node.requested.milliCpu + want.milliCpu > node.allocatable.milliCpu)
    reasons.push_back("Insufficient cpu");
  if (want.memoryMilli > 0 && node.requested.memoryMilli + want.memoryMilli > node.allocatable.memoryMilli)
    reasons.push_back("Insufficient memory");
  for (const auto& [name, amount] : want.extended) {
    if (amount <= 0) continue;
    if (node.requested.value(name) + amount > node.allocatable.value(name)) reasons.push_back("Insufficient " + name);
  }
  return reasons;
}

std::size_t ClusterState::nodesToFind() const {
  // Kubernetes' adaptive percentageOfNodesToScore: all nodes below 100, else
  // max(5%, 50% - nodes/125), at least 100 nodes.
  std::size_t n = nodes_.size();
  if (n < 100) return n;
  std::size_t percent = std::max<std::int64_t>(5, 50 - static_cast<std::int64_t>(n) / 125);
  return std::max<std::size_t>(100, n * percent / 100);
}

PlacementResult ClusterState::schedule(const api::Json& pod) {
  PlacementResult result;
  const std::size_t n = nodes_.size();
  if (n == 0) {
    result.message = "0/0 nodes are available: no nodes available to schedule pods.";
    return result;
  }
  const api::Json* owner = controllerRefOf(pod);
  int ownerId = -1;
  if (owner) {
    auto it = ownerIds_.find(owner->value("uid", ""));
    ownerId = it == ownerIds_.end() ? -2 : it->second;  // -2: owner with no pods placed yet
  }
  PlacedPod placed = describePod(pod, ownerId);
  // Looked up once here: the filters run for hundreds of nodes per pod.
  const PodTerms terms = PodTerms::of(pod);

  std::vector<std::size_t> feasible;
  const std::size_t wanted = nodesToFind();
  feasible.reserve(wanted);
  std::map<std::string, int> reasonCounts;
  std::size_t examined = 0;
  for (; examined < n && feasible.size() < wanted; ++examined) {
    std::size_t i = (nextStartIndex_ + examined) % n;
    auto reasons = filter(nodes_[i], terms, placed);
    if (reasons.empty()) {
      feasible.push_back(i);
    } else {
      for (const auto& r : reasons) reasonCounts[r]++;
    }
  }
  nextStartIndex_ = (nextStartIndex_ + examined) % n;

  if (feasible.empty()) {
    std::vector<std::pair<int, std::string>> sorted;
    for (const auto& [reason, count] : reasonCounts) sorted.emplace_back(count, reason);
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    result.message = fmt::format("0/{} nodes are available:", n);
    for (std::size_t i = 0; i < sorted.size(); ++i)
      result.message += fmt::format("{} {} {}", i ? "," : "", sorted[i].first, sorted[i].second);
    result.message += ".";
    return result;
  }

  // The owner's pods on each feasible node, looked up once (the scoring reads them twice).
  std::vector<int> ownerCount(feasible.size(), 0);
  auto countOn = [&](std::size_t i) {
    if (ownerId < 0) return 0;
    auto it = nodes_[i].ownerCounts.find(ownerId);
    return it == nodes_[i].ownerCounts.end() ? 0 : it->second;
  };
  // Sampling part of a large cluster can miss the nodes holding the fewest of
  // this owner's pods; then the rest of the nodes are searched too, so that
  // replicas stay within one pod of even.
  if (ownerId >= 0) {
    const int least = feasible.size() < n ? leastOwnerCount(ownerId) : -1;
    bool sampledLeast = least < 0;
    for (std::size_t k = 0; k < feasible.size(); ++k) {
      ownerCount[k] = countOn(feasible[k]);
      if (ownerCount[k] == least) sampledLeast = true;
    }
    if (!sampledLeast) {
      std::vector<std::size_t> widened;
      for (std::size_t i = 0; i < n; ++i)
        if (countOn(i) == least && filter(nodes_[i], terms, placed).empty()) widened.push_back(i);
      if (!widened.empty()) {
        feasible = std::move(widened);
        ownerCount.assign(feasible.size(), least);
      }
    }
  }

  // Scores (0..100 each): least allocated (cpu and memory averaged), weight 1;
  // spreading of the owner's pods, weight 2, as Kubernetes' default profile weighs
  // topology spreading over resource balance.
  int maxOwnerCount = 0;
  for (int count : ownerCount) maxOwnerCount = std::max(maxOwnerCount, count);
  double bestScore = -1;
  std::size_t best = feasible.front();
  for (std::size_t k = 0; k < feasible.size(); ++k) {
    const std::size_t i = feasible[k];
    const NodeInfo& node = nodes_[i];
    auto leastAllocated = [](std::int64_t allocatable, std::int64_t requested) {
      if (allocatable <= 0 || requested > allocatable) return 0.0;
      return 100.0 * static_cast<double>(allocatable - requested) / static_cast<double>(allocatable);
    };
    double score =
        (leastAllocated(node.allocatable.milliCpu, node.scoringRequested.milliCpu + placed.scoringRequests.milliCpu) +
         leastAllocated(node.allocatable.memoryMilli,
                        node.scoringRequested.memoryMilli + placed.scoringRequests.memoryMilli)) /
        2.0;
    if (ownerId >= 0 && maxOwnerCount > 0) {
      score += 2.0 * 100.0 * static_cast<double>(maxOwnerCount - ownerCount[k]) / static_cast<double>(maxOwnerCount);
    } else {
      score += 200.0;
    }
    // Ties go to the node whose name sorts first: nodes_ is sorted by name, so that is
    // the lower index (no string compare: in an even cluster most nodes tie, for every pod).
    if (score > bestScore + 1e-9 || (std::abs(score - bestScore) <= 1e-9 && i < best)) {
      bestScore = score;
      best = i;
    }
  }
  result.nodeName = nodes_[best].name;
  result.placed = std::move(placed);
  if (owner) result.ownerUid = owner->value("uid", "");
  return result;
}

}  // namespace ferry::cp
