#include "controlplane-lite/controllers/replicaset_controller.h"

#include "controlplane-lite/controllers/controller_util.h"

#include <fmt/format.h>

#include <algorithm>

namespace ferry::cp {

namespace {

int phaseRank(const api::Json& pod) {
  std::string phase = api::at<std::string>(pod, {"status", "phase"});
  if (phase == "Pending" || phase.empty()) return 0;
  if (phase == "Unknown") return 1;
  if (phase == "Running") return 2;
  return 3;
}

int restarts(const api::Json& pod) {
  int most = 0;
  auto statuses = api::at<api::Json>(pod, {"status", "containerStatuses"}, api::Json::array());
  if (statuses.is_array())
    for (const auto& s : statuses) most = std::max(most, s.value("restartCount", 0));
  return most;
}

std::int64_t readySince(const api::Json& pod) {
  api::Json c = conditionOf(pod, "Ready");
  return c.is_object() ? api::parseRfc3339(c.value("lastTransitionTime", "")) : 0;
}

}  // namespace

void sortPodsForDeletion(std::vector<api::Json>& pods) {
  std::stable_sort(pods.begin(), pods.end(), [](const api::Json& a, const api::Json& b) {
    bool aBound = !api::at<std::string>(a, {"spec", "nodeName"}).empty();
    bool bBound = !api::at<std::string>(b, {"spec", "nodeName"}).empty();
    if (aBound != bBound) return !aBound;
    if (phaseRank(a) != phaseRank(b)) return phaseRank(a) < phaseRank(b);
    bool aReady = podIsReady(a), bReady = podIsReady(b);
    if (aReady != bReady) return !aReady;
    if (aReady && readySince(a) != readySince(b)) return readySince(a) > readySince(b);
    if (restarts(a) != restarts(b)) return restarts(a) > restarts(b);
    std::int64_t ca = api::parseRfc3339(api::at<std::string>(a, {"metadata", "creationTimestamp"}));
    std::int64_t cb = api::parseRfc3339(api::at<std::string>(b, {"metadata", "creationTimestamp"}));
    if (ca != cb) return ca > cb;
    return api::nameOf(a) > api::nameOf(b);
  });
}

api::Json podFromTemplate(const api::Json& tmpl, const std::string& ownerKind, const api::Json& owner,
                          const std::string& generateNamePrefix) {
  api::Json pod = {{"apiVersion", "v1"}, {"kind", "Pod"}};
  api::Json meta = tmpl.value("metadata", api::Json::object());
  meta.erase("name");
  meta.erase("uid");
  meta.erase("resourceVersion");
  meta.erase("creationTimestamp");
  meta["generateName"] = generateNamePrefix;
  meta["namespace"] = api::namespaceOf(owner);
  meta["ownerReferences"] = api::Json::array({makeControllerRef(ownerKind, owner)});
  pod["metadata"] = meta;
  pod["spec"] = tmpl.value("spec", api::Json::object());
  return pod;
}

ReplicaSetController::ReplicaSetController(ControllerContext& context)
    : ctx_(context),
      replicaSets_(context.informers.get("replicasets.apps")),
      pods_(context.informers.get("pods")),
      worker_(kName, [this](const std::string& key) { return sync(key); }, 2) {
  auto enqueue = [this](const ObjectPtr& rs) { worker_.queue().add(objectKey(*rs)); };
  replicaSets_.addHandlers({enqueue, [enqueue](const ObjectPtr&, const ObjectPtr& rs) { enqueue(rs); }, enqueue});
  pods_.addHandlers({[this](const ObjectPtr& p) { enqueueOwnerOrMatching(p); },
                     [this](const ObjectPtr& oldPod, const ObjectPtr& p) {
                       enqueueOwnerOrMatching(p);
                       if (api::labelsOf(*oldPod) != api::labelsOf(*p)) enqueueOwnerOrMatching(oldPod);
                     },
                     [this](const ObjectPtr& p) { enqueueOwnerOrMatching(p); }});
}

void ReplicaSetController::enqueueOwnerOrMatching(const ObjectPtr& pod) {
  const api::Json* ref = controllerRefOf(*pod);
  std::string ns = api::namespaceOf(*pod);
  if (ref) {
    if (ref->value("kind", "") == "ReplicaSet") worker_.queue().add(objectKey(ns, ref->value("name", "")));
    return;
  }
  api::Labels labels = api::labelsOf(*pod);
  for (const auto& rs : replicaSets_.list(ns))
    if (labelSelectorMatches(api::at<api::Json>(*rs, {"spec", "selector"}, api::Json()), labels))
      worker_.queue().add(objectKey(*rs));
}

Status ReplicaSetController::sync(const std::string& key) {
  ObjectPtr cached = replicaSets_.getByKey(key);
  if (!cached) return {};
  const api::Json& rs = *cached;
  const std::string ns = api::namespaceOf(rs);
  const std::string uid = api::uidOf(rs);
  const api::Json selector = api::at<api::Json>(rs, {"spec", "selector"}, api::Json());
  const bool rsTerminating = api::isTerminating(rs);

  std::vector<api::Json> owned;
  for (const auto& podPtr : pods_.list(ns)) {
    const api::Json& pod = *podPtr;
    const api::Json* ref = controllerRefOf(pod);
    bool matches = labelSelectorMatches(selector, api::labelsOf(pod));
    if (ref) {
      if (ref->value("uid", "") != uid) continue;
      if (matches) {
        owned.push_back(pod);
      } else if (!api::isTerminating(pod)) {  // release
        api::Json released = pod;
        api::Json refs = api::Json::array();
        for (const auto& r : pod["metadata"]["ownerReferences"])
          if (r.value("uid", "") != uid) refs.push_back(r);
        released["metadata"]["ownerReferences"] = refs;
        auto updated = ctx_.client.update("pods", released);
        if (!updated && updated.error().code != ENOENT) return fail(updated.error().wrap("release pod " + api::nameOf(pod)));
        if (updated) pods_.assume(*updated);
      }
    } else if (matches && !api::isTerminating(pod) && !rsTerminating) {  // adopt
      api::Json adopted = pod;
      if (!adopted["metadata"]["ownerReferences"].is_array()) adopted["metadata"]["ownerReferences"] = api::Json::array();
      adopted["metadata"]["ownerReferences"].push_back(makeControllerRef("ReplicaSet", rs));
      auto updated = ctx_.client.update("pods", adopted);
      if (!updated) {
        if (updated.error().code == ENOENT) continue;
        return fail(updated.error().wrap("adopt pod " + api::nameOf(pod)));
      }
      pods_.assume(*updated);
      owned.push_back(*updated);
    }
  }

  std::vector<api::Json> active;
  for (const auto& pod : owned)
    if (podIsActive(pod)) active.push_back(pod);

  const int replicas = api::at<int>(rs, {"spec", "replicas"}, 1);
  const int minReadySeconds = api::at<int>(rs, {"spec", "minReadySeconds"}, 0);
  Status manageResult;
  if (!rsTerminating) {
    int diff = static_cast<int>(active.size()) - replicas;
    if (diff < 0) {
      int toCreate = std::min(-diff, 500);
      api::Json tmpl = api::at<api::Json>(rs, {"spec", "template"}, api::Json::object());
      for (int i = 0; i < toCreate; ++i) {
        auto created = ctx_.client.create("pods", podFromTemplate(tmpl, "ReplicaSet", rs, api::nameOf(rs) + "-"));
        if (!created) {
          ctx_.events.record("ReplicaSet", rs, "Warning", "FailedCreate",
                             fmt::format("Error creating: {}", created.error().message), kName);
          manageResult = fail(created.error().wrap("create pod for " + key));
          break;
        }
        pods_.assume(*created);
        ctx_.events.record("ReplicaSet", rs, "Normal", "SuccessfulCreate",
                           fmt::format("Created pod: {}", api::nameOf(*created)), kName);
      }
      if (toCreate < -diff) worker_.queue().add(key);
    } else if (diff > 0) {
      sortPodsForDeletion(active);
      for (int i = 0; i < diff; ++i) {
        const api::Json& victim = active[static_cast<std::size_t>(i)];
        DeleteOptions options;
        options.preconditionUid = api::uidOf(victim);
        auto removed = ctx_.client.remove("pods", ns, api::nameOf(victim), options);
        if (!removed) {
          if (removed.error().code == ENOENT) continue;
          ctx_.events.record("ReplicaSet", rs, "Warning", "FailedDelete",
                             fmt::format("Error deleting: {}", removed.error().message), kName);
          manageResult = fail(removed.error().wrap("delete pod " + api::nameOf(victim)));
          break;
        }
        if (api::isTerminating(*removed)) pods_.assume(*removed);
        else pods_.assumeDeleted(objectKey(victim));
        ctx_.events.record("ReplicaSet", rs, "Normal", "SuccessfulDelete",
                           fmt::format("Deleted pod: {}", api::nameOf(victim)), kName);
      }
    }
  }

  // Status from the pods as they were at the start of this sync; the writes above
  // come back as pod events and trigger the next sync.
  api::Labels templateLabels = api::at<api::Labels>(rs, {"spec", "template", "metadata", "labels"});
  int fullyLabeled = 0, ready = 0, available = 0;
  bool waitingForMinReady = false;
  std::int64_t now = nowSeconds();
  for (const auto& pod : active) {
    api::Labels labels = api::labelsOf(pod);
    bool full = std::all_of(templateLabels.begin(), templateLabels.end(), [&](const auto& kv) {
      auto it = labels.find(kv.first);
      return it != labels.end() && it->second == kv.second;
    });
    if (full) fullyLabeled++;
    if (podIsReady(pod)) {
      ready++;
      if (podIsAvailable(pod, minReadySeconds, now)) available++;
      else waitingForMinReady = true;
    }
  }
  api::Json status = rs.value("status", api::Json::object());
  api::Json wanted = status;
  wanted["replicas"] = static_cast<int>(active.size());
  wanted["fullyLabeledReplicas"] = fullyLabeled;
  wanted["readyReplicas"] = ready;
  wanted["availableReplicas"] = available;
  wanted["observedGeneration"] = api::at<std::int64_t>(rs, {"metadata", "generation"}, 1);
  if (wanted != status) {
    api::Json updated = rs;
    updated["status"] = wanted;
    auto written = ctx_.client.updateStatus("replicasets.apps", updated);
    if (!written) {
      if (written.error().code == ENOENT) return {};
      return fail(written.error().wrap("status of replicaset " + key));
    }
    replicaSets_.assume(*written);
  }
  if (waitingForMinReady) worker_.queue().addAfter(key, std::chrono::seconds(std::max(1, minReadySeconds)));
  return manageResult;
}

}  // namespace ferry::cp
