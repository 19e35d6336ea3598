#include "controlplane-lite/controllers/endpointslice_controller.h"

#include "api/types.h"
#include "controlplane-lite/controllers/controller_util.h"

#include <map>

namespace ferry::cp {

namespace {

constexpr const char* kServiceNameLabel = "kubernetes.io/service-name";
constexpr const char* kManagedByLabel = "endpointslice.kubernetes.io/managed-by";

// The port a Service port reaches on this pod, or 0 when a named port is not found.
int resolveTargetPort(const api::ServicePort& port, const api::Json& pod) {
  if (!port.targetPort.isString) return port.targetPort.number ? port.targetPort.number : port.port;
  auto containers = api::at<api::Json>(pod, {"spec", "containers"}, api::Json::array());
  if (!containers.is_array()) return 0;
  for (const auto& c : containers) {
    if (!c.contains("ports") || !c["ports"].is_array()) continue;
    for (const auto& p : c["ports"])
      if (p.value("name", "") == port.targetPort.text && p.value("protocol", std::string("TCP")) == port.protocol)
        return p.value("containerPort", 0);
  }
  return 0;
}

api::Json serviceOwnerRef(const api::Json& service) {
  return {{"apiVersion", "v1"}, {"kind", "Service"}, {"name", api::nameOf(service)}, {"uid", api::uidOf(service)},
          {"controller", true}, {"blockOwnerDeletion", true}};
}

api::Json podRef(const api::Json& pod) {
  return {{"kind", "Pod"}, {"namespace", api::namespaceOf(pod)}, {"name", api::nameOf(pod)}, {"uid", api::uidOf(pod)}};
}

}  // namespace

EndpointSliceController::EndpointSliceController(ControllerContext& context)
    : ctx_(context),
      services_(context.informers.get("services")),
      pods_(context.informers.get("pods")),
      slices_(context.informers.get("endpointslices.discovery.k8s.io")),
      endpoints_(context.informers.get("endpoints")),
      worker_(kName, [this](const std::string& key) { return sync(key); }, 2) {
  auto enqueue = [this](const ObjectPtr& s) { worker_.queue().add(objectKey(*s)); };
  services_.addHandlers({enqueue, [enqueue](const ObjectPtr&, const ObjectPtr& s) { enqueue(s); }, enqueue});
  pods_.addHandlers({[this](const ObjectPtr& p) { enqueueServicesSelecting(p); },
                     [this](const ObjectPtr& oldPod, const ObjectPtr& p) {
                       enqueueServicesSelecting(p);
                       if (api::labelsOf(*oldPod) != api::labelsOf(*p)) enqueueServicesSelecting(oldPod);
                     },
                     [this](const ObjectPtr& p) { enqueueServicesSelecting(p); }});
  // A slice changed or removed by someone else is put back.
  auto enqueueOwner = [this](const ObjectPtr& slice) {
    if (api::at<std::string>(*slice, {"metadata", "labels", kManagedByLabel}) != kManagedBy) return;
    std::string service = api::at<std::string>(*slice, {"metadata", "labels", kServiceNameLabel});
    if (!service.empty()) worker_.queue().add(objectKey(api::namespaceOf(*slice), service));
  };
  slices_.addHandlers({nullptr, [enqueueOwner](const ObjectPtr&, const ObjectPtr& s) { enqueueOwner(s); }, enqueueOwner});
}

void EndpointSliceController::enqueueServicesSelecting(const ObjectPtr& pod) {
  api::Labels labels = api::labelsOf(*pod);
  for (const auto& service : services_.list(api::namespaceOf(*pod))) {
    api::Labels selector = api::at<api::Labels>(*service, {"spec", "selector"});
    if (mapSelectorMatches(selector, labels)) worker_.queue().add(objectKey(*service));
  }
}

Status EndpointSliceController::sync(const std::string& key) {
  auto [ns, name] = splitKey(key);
  ObjectPtr cached = services_.getByKey(key);
  std::vector<ObjectPtr> existing;
  for (const auto& slice : slices_.list(ns))
    if (api::at<std::string>(*slice, {"metadata", "labels", kServiceNameLabel}) == name &&
        api::at<std::string>(*slice, {"metadata", "labels", kManagedByLabel}) == kManagedBy)
      existing.push_back(slice);

  auto parsed = cached ? api::Service::fromJson(*cached) : Result<api::Service>(fail(ENOENT, "gone"));
  if (!cached || !parsed || !parsed->hasSelector || parsed->type == "ExternalName" || api::isTerminating(*cached)) {
    // No selector (or no Service): our slices and Endpoints go; user-made ones stay.
    for (const auto& slice : existing) {
      auto removed = ctx_.client.remove("endpointslices.discovery.k8s.io", ns, api::nameOf(*slice));
      if (!removed && removed.error().code != ENOENT) return fail(removed.error().wrap("delete endpointslice"));
      slices_.assumeDeleted(objectKey(*slice));
    }
    if (!cached) {
      ObjectPtr ep = endpoints_.get(ns, name);
      if (ep && api::at<std::string>(*ep, {"metadata", "labels", kManagedByLabel}) == kManagedBy) {
        auto removed = ctx_.client.remove("endpoints", ns, name);
        if (!removed && removed.error().code != ENOENT) return fail(removed.error().wrap("delete endpoints"));
      }
    }
    return {};
  }
  const api::Json& serviceJson = *cached;
  const api::Service& service = *parsed;

  std::vector<api::Json> pods;
  for (const auto& pod : pods_.list(ns)) {
    if (!mapSelectorMatches(service.selector, api::labelsOf(*pod))) continue;
    if (api::at<std::string>(*pod, {"status", "podIP"}).empty()) continue;
    std::string phase = api::at<std::string>(*pod, {"status", "phase"});
    if (phase == "Succeeded" || phase == "Failed") continue;
    pods.push_back(*pod);
  }

  // Group endpoints by their resolved port list.
  std::map<std::string, std::pair<api::Json, std::vector<api::Json>>> groups;  // ports dump → (ports, endpoints)
  for (const auto& pod : pods) {
    api::Json ports = api::Json::array();
    for (const auto& sp : service.ports) {
      int target = resolveTargetPort(sp, pod);
      if (target == 0) continue;
      api::Json port = {{"port", target}, {"protocol", sp.protocol}, {"name", sp.name}};
      ports.push_back(port);
    }
    bool podReady = podIsReady(pod);
    bool terminating = api::isTerminating(pod);
    api::Json endpoint = {
        {"addresses", {api::at<std::string>(pod, {"status", "podIP"})}},
        {"conditions",
         {{"ready", service.publishNotReadyAddresses || (podReady && !terminating)},
          {"serving", podReady},
          {"terminating", terminating}}},
        {"targetRef", podRef(pod)}};
    std::string nodeName = api::at<std::string>(pod, {"spec", "nodeName"});
    if (!nodeName.empty()) endpoint["nodeName"] = nodeName;
    std::string hostname = api::at<std::string>(pod, {"spec", "hostname"});
    if (!hostname.empty() && api::at<std::string>(pod, {"spec", "subdomain"}) == name) endpoint["hostname"] = hostname;
    auto& group = groups[ports.dump()];
    group.first = ports;
    group.second.push_back(std::move(endpoint));
  }

  // Desired slices: each group cut into pieces of at most kMaxEndpointsPerSlice.
  std::vector<std::pair<api::Json, api::Json>> desired;  // (ports, endpoints)
  for (auto& [dump, group] : groups) {
    auto& endpoints = group.second;
    std::sort(endpoints.begin(), endpoints.end(), [](const api::Json& a, const api::Json& b) {
      return a["targetRef"]["name"].get<std::string>() < b["targetRef"]["name"].get<std::string>();
    });
    for (std::size_t i = 0; i < endpoints.size(); i += kMaxEndpointsPerSlice) {
      api::Json chunk = api::Json::array();
      for (std::size_t j = i; j < std::min(endpoints.size(), i + kMaxEndpointsPerSlice); ++j) chunk.push_back(endpoints[j]);
      desired.emplace_back(group.first, chunk);
    }
  }
  if (desired.empty()) desired.emplace_back(api::Json::array(), api::Json::array());  // an empty slice says "no endpoints"

  api::Json labels = api::at<api::Json>(serviceJson, {"metadata", "labels"}, api::Json::object());
  if (!labels.is_object()) labels = api::Json::object();
  labels[kServiceNameLabel] = name;
  labels[kManagedByLabel] = kManagedBy;

  // Reuse existing slices in name order: first those with the same ports.
  std::sort(existing.begin(), existing.end(), [](const ObjectPtr& a, const ObjectPtr& b) { return api::nameOf(*a) < api::nameOf(*b); });
  std::vector<bool> used(existing.size(), false);
  std::vector<int> assignment(desired.size(), -1);
  for (std::size_t d = 0; d < desired.size(); ++d)
    for (std::size_t e = 0; e < existing.size(); ++e)
      if (!used[e] && existing[e]->value("ports", api::Json::array()) == desired[d].first) {
        used[e] = true;
        assignment[d] = static_cast<int>(e);
        break;
      }
  for (std::size_t d = 0; d < desired.size(); ++d)
    for (std::size_t e = 0; e < existing.size() && assignment[d] < 0; ++e)
      if (!used[e]) {
        used[e] = true;
        assignment[d] = static_cast<int>(e);
      }

  for (std::size_t d = 0; d < desired.size(); ++d) {
    api::Json slice;
    if (assignment[d] >= 0) slice = *existing[static_cast<std::size_t>(assignment[d])];
    else slice = {{"apiVersion", "discovery.k8s.io/v1"},
                  {"kind", "EndpointSlice"},
                  {"metadata", {{"generateName", name + "-"}, {"namespace", ns}}}};
    api::Json before = slice;
    slice["metadata"]["labels"] = labels;
    slice["metadata"]["ownerReferences"] = api::Json::array({serviceOwnerRef(serviceJson)});
    slice["addressType"] = "IPv4";
    slice["endpoints"] = desired[d].second;
    slice["ports"] = desired[d].first;
    if (assignment[d] >= 0 && slice == before) continue;
    auto written = assignment[d] >= 0 ? ctx_.client.update("endpointslices.discovery.k8s.io", slice)
                                      : ctx_.client.create("endpointslices.discovery.k8s.io", slice);
    if (!written) return fail(written.error().wrap("write endpointslice for service " + key));
    slices_.assume(*written);
  }
  for (std::size_t e = 0; e < existing.size(); ++e) {
    if (used[e]) continue;
    auto removed = ctx_.client.remove("endpointslices.discovery.k8s.io", ns, api::nameOf(*existing[e]));
    if (!removed && removed.error().code != ENOENT) return fail(removed.error().wrap("delete endpointslice"));
    slices_.assumeDeleted(objectKey(*existing[e]));
  }
  return syncEndpoints(serviceJson, pods);
}

Status EndpointSliceController::syncEndpoints(const api::Json& serviceJson, const std::vector<api::Json>& pods) {
  auto service = api::Service::fromJson(serviceJson);
  if (!service) return fail(service.error());
  std::string ns = service->ns, name = service->name;
  // Legacy subsets: grouped by ports; terminating pods are left out unless unready addresses are published.
  std::map<std::string, api::Json> subsets;
  for (const auto& pod : pods) {
    bool terminating = api::isTerminating(pod);
    if (terminating && !service->publishNotReadyAddresses) continue;
    api::Json ports = api::Json::array();
    for (const auto& sp : service->ports) {
      int target = resolveTargetPort(sp, pod);
      if (target == 0) continue;
      api::Json port = {{"port", target}, {"protocol", sp.protocol}};
      if (!sp.name.empty()) port["name"] = sp.name;
      ports.push_back(port);
    }
    api::Json address = {{"ip", api::at<std::string>(pod, {"status", "podIP"})}, {"targetRef", podRef(pod)}};
    std::string nodeName = api::at<std::string>(pod, {"spec", "nodeName"});
    if (!nodeName.empty()) address["nodeName"] = nodeName;
    auto& subset = subsets[ports.dump()];
    if (subset.is_null()) subset = {{"ports", ports}};
    bool ready = service->publishNotReadyAddresses || podIsReady(pod);
    subset[ready ? "addresses" : "notReadyAddresses"].push_back(address);
  }
  api::Json subsetList = api::Json::array();
  for (auto& [dump, subset] : subsets) {
    if (subset["ports"].empty()) subset.erase("ports");
    subsetList.push_back(subset);
  }
  ObjectPtr existing = endpoints_.get(ns, name);
  api::Json labels = api::at<api::Json>(serviceJson, {"metadata", "labels"}, api::Json::object());
  if (!labels.is_object()) labels = api::Json::object();
  labels[kManagedByLabel] = kManagedBy;
  api::Json object = existing ? *existing
                              : api::Json{{"apiVersion", "v1"}, {"kind", "Endpoints"},
                                          {"metadata", {{"name", name}, {"namespace", ns}}}};
  api::Json before = object;
  object["metadata"]["labels"] = labels;
  if (subsetList.empty()) object.erase("subsets");
  else object["subsets"] = subsetList;
  if (existing && object == before) return {};
  auto written = existing ? ctx_.client.update("endpoints", object) : ctx_.client.create("endpoints", object);
  if (!written) {
    if (written.error().code == EEXIST) {
      worker_.queue().addAfter(objectKey(ns, name), std::chrono::milliseconds(200));
      return {};
    }
    return fail(written.error().wrap("write endpoints " + ns + "/" + name));
  }
  endpoints_.assume(*written);
  return {};
}

}  // namespace ferry::cp
