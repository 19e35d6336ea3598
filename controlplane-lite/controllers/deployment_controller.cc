#include "controlplane-lite/controllers/deployment_controller.h"

#include "controlplane-lite/controllers/controller_util.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace ferry::cp {

namespace {

constexpr const char* kHashLabel = "pod-template-hash";
constexpr const char* kRevision = "deployment.kubernetes.io/revision";
constexpr const char* kDesiredReplicas = "deployment.kubernetes.io/desired-replicas";
constexpr const char* kMaxReplicas = "deployment.kubernetes.io/max-replicas";

std::int64_t revisionOfRS(const api::Json& rs) {
  std::string text = api::at<std::string>(rs, {"metadata", "annotations", kRevision});
  try {
    return text.empty() ? 0 : std::stoll(text);
  } catch (...) {
    return 0;
  }
}

int specReplicas(const api::Json& rs) { return api::at<int>(rs, {"spec", "replicas"}, 0); }
int statusInt(const api::Json& rs, const char* field) { return api::at<int>(rs, {"status", field}, 0); }

api::Json templateWithoutHash(const api::Json& rs) {
  api::Json tmpl = api::at<api::Json>(rs, {"spec", "template"}, api::Json::object());
  if (tmpl.contains("metadata") && tmpl["metadata"].contains("labels") && tmpl["metadata"]["labels"].is_object()) {
    tmpl["metadata"]["labels"].erase(kHashLabel);
    if (tmpl["metadata"]["labels"].empty()) tmpl["metadata"].erase("labels");
  }
  if (tmpl.contains("metadata") && tmpl["metadata"].is_object() && tmpl["metadata"].empty()) tmpl.erase("metadata");
  return tmpl;
}

api::Json normalizedTemplate(const api::Json& tmpl) {
  api::Json t = tmpl;
  if (t.contains("metadata") && t["metadata"].is_object()) {
    t["metadata"].erase("creationTimestamp");
    if (t["metadata"].contains("labels") && t["metadata"]["labels"].is_object() && t["metadata"]["labels"].empty())
      t["metadata"].erase("labels");
    if (t["metadata"].empty()) t.erase("metadata");
  }
  return t;
}

}  // namespace

std::string podTemplateHash(const api::Json& podTemplate, int collisionCount) {
  std::string text = normalizedTemplate(podTemplate).dump();
  if (collisionCount > 0) text += std::to_string(collisionCount);
  std::uint32_t hash = 2166136261u;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 16777619u;
  }
  // Kubernetes' SafeEncodeString alphabet: no vowels, no confusable digits.
  static const char alphabet[] = "bcdfghjklmnpqrstvwxz2456789";
  std::string decimal = std::to_string(hash), out;
  for (unsigned char c : decimal) out.push_back(alphabet[c % (sizeof(alphabet) - 1)]);
  return out;
}

int resolveIntOrPercent(const api::Json& value, int replicas, bool roundUp, int fallback) {
  if (value.is_number_integer()) return std::max(0, value.get<int>());
  if (value.is_string()) {
    std::string text = value.get<std::string>();
    if (!text.empty() && text.back() == '%') {
      try {
        double percent = std::stod(text.substr(0, text.size() - 1));
        double v = percent * replicas / 100.0;
        return std::max(0, static_cast<int>(roundUp ? std::ceil(v) : std::floor(v)));
      } catch (...) {
        return fallback;
      }
    }
    try {
      return std::max(0, std::stoi(text));
    } catch (...) {
      return fallback;
    }
  }
  return fallback;
}

DeploymentController::DeploymentController(ControllerContext& context)
    : ctx_(context),
      deployments_(context.informers.get("deployments.apps")),
      replicaSets_(context.informers.get("replicasets.apps")),
      pods_(context.informers.get("pods")),
      worker_(kName, [this](const std::string& key) { return sync(key); }, 2) {
  auto enqueue = [this](const ObjectPtr& d) { worker_.queue().add(objectKey(*d)); };
  deployments_.addHandlers({enqueue, [enqueue](const ObjectPtr&, const ObjectPtr& d) { enqueue(d); }, enqueue});
  replicaSets_.addHandlers({[this](const ObjectPtr& rs) { enqueueOwner(rs); },
                            [this](const ObjectPtr&, const ObjectPtr& rs) { enqueueOwner(rs); },
                            [this](const ObjectPtr& rs) { enqueueOwner(rs); }});
  // Recreate waits for the old pods to be gone.
  pods_.addHandlers({nullptr, nullptr, [this](const ObjectPtr& pod) {
                       const api::Json* ref = controllerRefOf(*pod);
                       if (!ref || ref->value("kind", "") != "ReplicaSet") return;
                       if (auto rs = replicaSets_.get(api::namespaceOf(*pod), ref->value("name", ""))) enqueueOwner(rs);
                     }});
}

void DeploymentController::enqueueOwner(const ObjectPtr& rs) {
  std::string ns = api::namespaceOf(*rs);
  if (const api::Json* ref = controllerRefOf(*rs)) {
    if (ref->value("kind", "") == "Deployment") worker_.queue().add(objectKey(ns, ref->value("name", "")));
    return;
  }
  for (const auto& d : deployments_.list(ns))
    if (labelSelectorMatches(api::at<api::Json>(*d, {"spec", "selector"}, api::Json()), api::labelsOf(*rs)))
      worker_.queue().add(objectKey(*d));
}

Status DeploymentController::sync(const std::string& key) {
  ObjectPtr cached = deployments_.getByKey(key);
  if (!cached) return {};
  api::Json d = *cached;
  const std::string ns = api::namespaceOf(d);
  const std::string uid = api::uidOf(d);
  const std::string name = api::nameOf(d);
  const api::Json selector = api::at<api::Json>(d, {"spec", "selector"}, api::Json());
  const int replicas = api::at<int>(d, {"spec", "replicas"}, 1);
  const bool paused = api::at<bool>(d, {"spec", "paused"}, false);
  const std::string strategy = api::at<std::string>(d, {"spec", "strategy", "type"}, "RollingUpdate");
  const api::Json tmpl = api::at<api::Json>(d, {"spec", "template"}, api::Json::object());
  const int minReadySeconds = api::at<int>(d, {"spec", "minReadySeconds"}, 0);
  const int historyLimit = api::at<int>(d, {"spec", "revisionHistoryLimit"}, 10);
  const int progressDeadline = api::at<int>(d, {"spec", "progressDeadlineSeconds"}, 600);
  int collisionCount = api::at<int>(d, {"status", "collisionCount"}, 0);

  // Claim ReplicaSets: ours by controllerRef, adopt matching orphans, release non-matching.
  std::vector<api::Json> rss;
  for (const auto& rsPtr : replicaSets_.list(ns)) {
    const api::Json& rs = *rsPtr;
    const api::Json* ref = controllerRefOf(rs);
    bool matches = labelSelectorMatches(selector, api::labelsOf(rs));
    if (ref) {
      if (ref->value("uid", "") != uid) continue;
      if (matches) {
        rss.push_back(rs);
        continue;
      }
      api::Json released = rs;
      api::Json refs = api::Json::array();
      for (const auto& r : rs["metadata"]["ownerReferences"])
        if (r.value("uid", "") != uid) refs.push_back(r);
      released["metadata"]["ownerReferences"] = refs;
      auto updated = ctx_.client.update("replicasets.apps", released);
      if (updated) replicaSets_.assume(*updated);
    } else if (matches && !api::isTerminating(d) && !api::isTerminating(rs)) {
      api::Json adopted = rs;
      if (!adopted["metadata"]["ownerReferences"].is_array()) adopted["metadata"]["ownerReferences"] = api::Json::array();
      adopted["metadata"]["ownerReferences"].push_back(makeControllerRef("Deployment", d));
      auto updated = ctx_.client.update("replicasets.apps", adopted);
      if (!updated) return fail(updated.error().wrap("adopt replicaset " + api::nameOf(rs)));
      replicaSets_.assume(*updated);
      rss.push_back(*updated);
    }
  }

  // The new ReplicaSet is the one whose template is the Deployment's.
  const api::Json wantedTemplate = normalizedTemplate(tmpl);
  std::string hash = podTemplateHash(tmpl, collisionCount);
  int newIndex = -1;
  for (std::size_t i = 0; i < rss.size(); ++i) {
    if (api::nameOf(rss[i]) == name + "-" + hash ||
        normalizedTemplate(templateWithoutHash(rss[i])) == wantedTemplate) {
      newIndex = static_cast<int>(i);
      break;
    }
  }
  std::int64_t maxOldRevision = 0;
  for (std::size_t i = 0; i < rss.size(); ++i)
    if (static_cast<int>(i) != newIndex) maxOldRevision = std::max(maxOldRevision, revisionOfRS(rss[i]));

  bool progressed = false;
  std::string progressReason;
  bool writeFailed = false;
  Error lastError;

  auto writeRS = [&](api::Json& rs, int newReplicas, bool annotate) -> bool {
    int oldReplicas = specReplicas(rs);
    api::Json updated = rs;
    updated["spec"]["replicas"] = newReplicas;
    if (annotate) {
      updated["metadata"]["annotations"][kDesiredReplicas] = std::to_string(replicas);
      updated["metadata"]["annotations"][kMaxReplicas] =
          std::to_string(replicas + (strategy == "RollingUpdate"
                                         ? resolveIntOrPercent(api::at<api::Json>(d, {"spec", "strategy", "rollingUpdate", "maxSurge"}, "25%"),
                                                               replicas, true, 0)
                                         : 0));
    }
    if (updated == rs) return true;
    auto written = ctx_.client.update("replicasets.apps", updated);
    if (!written) {
      writeFailed = true;
      lastError = written.error().wrap("scale replicaset " + api::nameOf(rs));
      return false;
    }
    replicaSets_.assume(*written);
    rs = *written;
    if (newReplicas != oldReplicas) {
      progressed = true;
      ctx_.events.record("Deployment", d, "Normal", "ScalingReplicaSet",
                         fmt::format("Scaled {} replica set {} to {} from {}", newReplicas > oldReplicas ? "up" : "down",
                                     api::nameOf(rs), newReplicas, oldReplicas),
                         kName);
    }
    return true;
  };

  auto createNewRS = [&](int newReplicas) -> bool {
    for (int attempt = 0; attempt < 5; ++attempt) {
      std::string h = podTemplateHash(tmpl, collisionCount);
      api::Json rsTemplate = tmpl;
      rsTemplate["metadata"]["labels"][kHashLabel] = h;
      api::Json rsSelector = selector;
      rsSelector["matchLabels"][kHashLabel] = h;
      api::Json labels = rsTemplate["metadata"]["labels"];
      api::Json annotations = api::at<api::Json>(d, {"metadata", "annotations"}, api::Json::object());
      if (!annotations.is_object()) annotations = api::Json::object();
      annotations.erase("kubectl.kubernetes.io/last-applied-configuration");
      annotations[kRevision] = std::to_string(maxOldRevision + 1);
      annotations[kDesiredReplicas] = std::to_string(replicas);
      annotations[kMaxReplicas] = std::to_string(replicas);
      api::Json rs = {{"apiVersion", "apps/v1"},
                      {"kind", "ReplicaSet"},
                      {"metadata",
                       {{"name", name + "-" + h},
                        {"namespace", ns},
                        {"labels", labels},
                        {"annotations", annotations},
                        {"ownerReferences", api::Json::array({makeControllerRef("Deployment", d)})}}},
                      {"spec",
                       {{"replicas", newReplicas},
                        {"minReadySeconds", minReadySeconds},
                        {"selector", rsSelector},
                        {"template", rsTemplate}}}};
      auto created = ctx_.client.create("replicasets.apps", rs);
      if (created) {
        replicaSets_.assume(*created);
        rss.push_back(*created);
        newIndex = static_cast<int>(rss.size()) - 1;
        progressed = true;
        progressReason = "NewReplicaSetCreated";
        ctx_.events.record("Deployment", d, "Normal", "ScalingReplicaSet",
                           fmt::format("Scaled up replica set {} to {}", api::nameOf(*created), newReplicas), kName);
        return true;
      }
      if (created.error().code != EEXIST) {
        writeFailed = true;
        lastError = created.error().wrap("create replicaset");
        return false;
      }
      auto existing = ctx_.client.get("replicasets.apps", ns, name + "-" + h);
      if (existing) {
        const api::Json* ref = controllerRefOf(*existing);
        if (ref && ref->value("uid", "") == uid &&
            normalizedTemplate(templateWithoutHash(*existing)) == wantedTemplate) {
          replicaSets_.assume(*existing);
          rss.push_back(*existing);
          newIndex = static_cast<int>(rss.size()) - 1;
          return true;
        }
      }
      collisionCount++;  // a different template hashed to the same name
    }
    writeFailed = true;
    lastError = Error{EEXIST, "replicaset name collisions"};
    return false;
  };

  if (!api::isTerminating(d)) {
    // The new ReplicaSet carries the newest revision (a rollback renumbers the old one).
    if (newIndex >= 0) {
      api::Json& newRS = rss[static_cast<std::size_t>(newIndex)];
      if (revisionOfRS(newRS) <= maxOldRevision || revisionOfRS(newRS) == 0) {
        api::Json updated = newRS;
        updated["metadata"]["annotations"][kRevision] = std::to_string(maxOldRevision + 1);
        auto written = ctx_.client.update("replicasets.apps", updated);
        if (!written) return fail(written.error().wrap("set revision of " + api::nameOf(newRS)));
        replicaSets_.assume(*written);
        newRS = *written;
      }
    }

    auto activeOld = [&] {
      std::vector<std::size_t> out;
      for (std::size_t i = 0; i < rss.size(); ++i)
        if (static_cast<int>(i) != newIndex && specReplicas(rss[i]) > 0) out.push_back(i);
      // Oldest revision first: scaled down first.
      std::sort(out.begin(), out.end(), [&](std::size_t a, std::size_t b) { return revisionOfRS(rss[a]) < revisionOfRS(rss[b]); });
      return out;
    };

    if (paused) {
      // Only scaling happens while paused: the newest active ReplicaSet takes the replica count.
      if (newIndex >= 0 && activeOld().empty()) writeRS(rss[static_cast<std::size_t>(newIndex)], replicas, true);
    } else if (strategy == "Recreate") {
      bool oldScaled = true;
      for (std::size_t i : activeOld()) oldScaled = writeRS(rss[i], 0, true) && oldScaled;
      bool oldPodsRunning = false;
      for (const auto& pod : pods_.list(ns)) {
        const api::Json* ref = controllerRefOf(*pod);
        if (!ref) continue;
        std::string phase = api::at<std::string>(*pod, {"status", "phase"});
        if (phase == "Succeeded" || phase == "Failed") continue;
        for (std::size_t i = 0; i < rss.size(); ++i)
          if (static_cast<int>(i) != newIndex && ref->value("uid", "") == api::uidOf(rss[i])) oldPodsRunning = true;
      }
      if (oldScaled && !oldPodsRunning) {
        if (newIndex < 0) createNewRS(replicas);
        else writeRS(rss[static_cast<std::size_t>(newIndex)], replicas, true);
      }
    } else {
      const int maxSurgeRaw = resolveIntOrPercent(
          api::at<api::Json>(d, {"spec", "strategy", "rollingUpdate", "maxSurge"}, "25%"), replicas, true, 1);
      int maxUnavailable = resolveIntOrPercent(
          api::at<api::Json>(d, {"spec", "strategy", "rollingUpdate", "maxUnavailable"}, "25%"), replicas, false, 0);
      if (maxSurgeRaw == 0 && maxUnavailable == 0) maxUnavailable = 1;
      maxUnavailable = std::min(maxUnavailable, replicas);
      auto totalSpec = [&] {
        int sum = 0;
        for (const auto& rs : rss) sum += specReplicas(rs);
        return sum;
      };
      // Scale up the new ReplicaSet within maxSurge.
      int currentNew = newIndex >= 0 ? specReplicas(rss[static_cast<std::size_t>(newIndex)]) : 0;
      int target = currentNew;
      if (currentNew > replicas) {
        target = replicas;
      } else if (currentNew < replicas) {
        int room = replicas + maxSurgeRaw - totalSpec();
        target = currentNew + std::max(0, std::min(room, replicas - currentNew));
      }
      if (newIndex < 0) {
        createNewRS(target);
      } else if (target != currentNew || api::at<std::string>(rss[static_cast<std::size_t>(newIndex)],
                                                                {"metadata", "annotations", kDesiredReplicas}) !=
                                             std::to_string(replicas)) {
        writeRS(rss[static_cast<std::size_t>(newIndex)], target, true);
      }
      // Scale down old ReplicaSets while keeping replicas - maxUnavailable available.
      auto old = activeOld();
      if (!old.empty() && newIndex >= 0) {
        const api::Json& newRS = rss[static_cast<std::size_t>(newIndex)];
        int minAvailable = replicas - maxUnavailable;
        int newUnavailable = std::max(0, specReplicas(newRS) - statusInt(newRS, "availableReplicas"));
        int maxScaledDown = totalSpec() - minAvailable - newUnavailable;
        if (maxScaledDown > 0) {
          // First the old pods that are not available anyway.
          for (std::size_t i : old) {
            if (maxScaledDown <= 0) break;
            int unhealthy = specReplicas(rss[i]) - statusInt(rss[i], "availableReplicas");
            int cut = std::min({unhealthy, maxScaledDown, specReplicas(rss[i])});
            if (cut <= 0) continue;
            if (writeRS(rss[i], specReplicas(rss[i]) - cut, true)) maxScaledDown -= cut;
          }
          int available = 0;
          for (const auto& rs : rss) available += statusInt(rs, "availableReplicas");
          int canCut = std::min(maxScaledDown, available - minAvailable);
          for (std::size_t i : activeOld()) {
            if (canCut <= 0) break;
            int cut = std::min(canCut, specReplicas(rss[i]));
            if (writeRS(rss[i], specReplicas(rss[i]) - cut, true)) canCut -= cut;
          }
        }
      }
    }
  }

  // Status.
  api::Json status = d.value("status", api::Json::object());
  api::Json wanted = status;
  int statusReplicas = 0, ready = 0, available = 0;
  for (const auto& rs : rss) {
    statusReplicas += statusInt(rs, "replicas");
    ready += statusInt(rs, "readyReplicas");
    available += statusInt(rs, "availableReplicas");
  }
  int updated = newIndex >= 0 ? statusInt(rss[static_cast<std::size_t>(newIndex)], "replicas") : 0;
  wanted["observedGeneration"] = api::at<std::int64_t>(d, {"metadata", "generation"}, 1);
  wanted["replicas"] = statusReplicas;
  wanted["updatedReplicas"] = updated;
  wanted["readyReplicas"] = ready;
  wanted["availableReplicas"] = available;
  wanted["unavailableReplicas"] = std::max(0, replicas - available);
  if (collisionCount > 0) wanted["collisionCount"] = collisionCount;
  for (const char* zeroable : {"replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"})
    if (wanted[zeroable] == 0) wanted.erase(zeroable);  // omitempty, as Kubernetes serializes them

  int maxUnavailableForAvailability =
      strategy == "RollingUpdate"
          ? resolveIntOrPercent(api::at<api::Json>(d, {"spec", "strategy", "rollingUpdate", "maxUnavailable"}, "25%"),
                                replicas, false, 0)
          : 0;
  api::Json& conditions = wanted["conditions"];
  if (available >= replicas - maxUnavailableForAvailability)
    setCondition(conditions, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.",
                 "lastUpdateTime");
  else
    setCondition(conditions, "Available", "False", "MinimumReplicasUnavailable",
                 "Deployment does not have minimum availability.", "lastUpdateTime");

  std::string newName = newIndex >= 0 ? api::nameOf(rss[static_cast<std::size_t>(newIndex)]) : "";
  bool oldLeft = false;
  for (std::size_t i = 0; i < rss.size(); ++i)
    if (static_cast<int>(i) != newIndex && (specReplicas(rss[i]) > 0 || statusInt(rss[i], "replicas") > 0)) oldLeft = true;
  bool complete = newIndex >= 0 && updated == replicas && statusReplicas == replicas && available >= replicas && !oldLeft &&
                  specReplicas(rss[static_cast<std::size_t>(newIndex)]) == replicas;
  // Progress: more updated/ready/available pods than the last status said, or fewer old ones.
  int oldUpdated = status.value("updatedReplicas", 0), oldReady = status.value("readyReplicas", 0),
      oldAvailable = status.value("availableReplicas", 0), oldReplicas = status.value("replicas", 0);
  if (updated > oldUpdated || ready > oldReady || available > oldAvailable ||
      statusReplicas - updated < oldReplicas - oldUpdated)
    progressed = true;
  std::optional<std::chrono::seconds> recheck;
  api::Json progressing = api::Json::object();
  if (const api::Json* c = findCondition(conditions, "Progressing")) progressing = *c;
  if (paused) {
    setCondition(conditions, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", "lastUpdateTime");
  } else if (complete) {
    setCondition(conditions, "Progressing", "True", "NewReplicaSetAvailable",
                 fmt::format("ReplicaSet \"{}\" has successfully progressed.", newName), "lastUpdateTime");
  } else if (progressed || progressing.empty() ||
             progressing.value("reason", "") == "DeploymentPaused" ||
             progressing.value("reason", "") == "NewReplicaSetAvailable") {
    std::string reason = progressReason.empty() ? "ReplicaSetUpdated" : progressReason;
    std::string message = reason == "NewReplicaSetCreated" ? fmt::format("Created new replica set \"{}\"", newName)
                          : progressing.value("reason", "") == "DeploymentPaused"
                              ? std::string("Deployment is resumed")
                              : fmt::format("ReplicaSet \"{}\" is progressing.", newName);
    if (progressing.value("reason", "") == "DeploymentPaused") reason = "DeploymentResumed";
    // Progress refreshes lastUpdateTime even when the condition reads the same.
    bool changed = setCondition(conditions, "Progressing", "True", reason, message, "lastUpdateTime");
    if (!changed)
      for (auto& c : conditions)
        if (c.value("type", "") == "Progressing") c["lastUpdateTime"] = api::nowRfc3339();
    recheck = std::chrono::seconds(progressDeadline + 1);
  } else if (progressing.value("reason", "") != "ProgressDeadlineExceeded") {
    std::int64_t last = api::parseRfc3339(progressing.value("lastUpdateTime", progressing.value("lastTransitionTime", "")));
    std::int64_t now = nowSeconds();
    if (last >= 0 && now > last + progressDeadline) {
      setCondition(conditions, "Progressing", "False", "ProgressDeadlineExceeded",
                   fmt::format("ReplicaSet \"{}\" has timed out progressing.", newName), "lastUpdateTime");
    } else if (last >= 0) {
      recheck = std::chrono::seconds(last + progressDeadline - now + 1);
    }
  }

  // Revision annotation on the Deployment mirrors its new ReplicaSet.
  if (newIndex >= 0) {
    std::string rev = std::to_string(revisionOfRS(rss[static_cast<std::size_t>(newIndex)]));
    if (api::at<std::string>(d, {"metadata", "annotations", kRevision}) != rev) {
      api::Json annotated = d;
      annotated["metadata"]["annotations"][kRevision] = rev;
      auto written = ctx_.client.update("deployments.apps", annotated);
      if (!written) return fail(written.error().wrap("annotate deployment " + key));
      deployments_.assume(*written);
      d = *written;
    }
  }
  if (wanted != status) {
    api::Json withStatus = d;
    withStatus["status"] = wanted;
    auto written = ctx_.client.updateStatus("deployments.apps", withStatus);
    if (!written) {
      if (written.error().code == ENOENT) return {};
      return fail(written.error().wrap("status of deployment " + key));
    }
    deployments_.assume(*written);
  }

  // Old revisions beyond revisionHistoryLimit go once the rollout is complete.
  if (complete && !paused) {
    std::vector<std::size_t> idle;
    for (std::size_t i = 0; i < rss.size(); ++i)
      if (static_cast<int>(i) != newIndex && specReplicas(rss[i]) == 0 && statusInt(rss[i], "replicas") == 0 &&
          !api::isTerminating(rss[i]))
        idle.push_back(i);
    std::sort(idle.begin(), idle.end(), [&](std::size_t a, std::size_t b) { return revisionOfRS(rss[a]) < revisionOfRS(rss[b]); });
    for (std::size_t k = 0; static_cast<int>(idle.size() - k) > historyLimit && k < idle.size(); ++k) {
      auto removed = ctx_.client.remove("replicasets.apps", ns, api::nameOf(rss[idle[k]]));
      if (!removed && removed.error().code != ENOENT) return fail(removed.error().wrap("clean up old replicaset"));
    }
  }
  if (minReadySeconds > 0 && !complete) worker_.queue().addAfter(key, std::chrono::seconds(minReadySeconds));
  if (recheck && !complete) worker_.queue().addAfter(key, *recheck);
  if (writeFailed) return fail(lastError);
  return {};
}

}  // namespace ferry::cp
