#include "api/defaulting.h"

namespace ferry::api {
namespace {

bool missing(const Json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null();
}

void setDefault(Json& obj, const char* key, Json value) {
  if (obj.is_object() && missing(obj, key)) obj[key] = std::move(value);
}

// The member `key` as an object, created when absent. Returns nullptr when
// it holds something else (validation reports that).
Json* objectField(Json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  Json& v = obj[key];
  if (v.is_null()) v = Json::object();
  return v.is_object() ? &v : nullptr;
}

// The member `key` when it is an object, else nullptr (never creates it).
Json* existingObject(Json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it != obj.end() && it->is_object() ? &*it : nullptr;
}

template <class F>
void forEachInList(Json& obj, const char* key, F&& f) {
  if (!obj.is_object()) return;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_array()) return;
  for (auto& item : *it) {
    if (item.is_object()) f(item);
  }
}

void probeDefaults(Json& container, const char* key) {
  Json* probe = existingObject(container, key);
  if (!probe) return;
  setDefault(*probe, "timeoutSeconds", 1);
  setDefault(*probe, "periodSeconds", 10);
  setDefault(*probe, "successThreshold", 1);
  setDefault(*probe, "failureThreshold", 3);
  if (Json* http = existingObject(*probe, "httpGet")) {
    setDefault(*http, "path", "/");
    setDefault(*http, "scheme", "HTTP");
  }
  if (Json* grpc = existingObject(*probe, "grpc")) setDefault(*grpc, "service", "");
}

void lifecycleHandlerDefaults(Json& container) {
  Json* lifecycle = existingObject(container, "lifecycle");
  if (!lifecycle) return;
  for (const char* hook : {"postStart", "preStop"}) {
    if (Json* h = existingObject(*lifecycle, hook)) {
      if (Json* http = existingObject(*h, "httpGet")) {
        setDefault(*http, "path", "/");
        setDefault(*http, "scheme", "HTTP");
      }
    }
  }
}

void envDefaults(Json& container) {
  forEachInList(container, "env", [](Json& env) {
    if (Json* from = existingObject(env, "valueFrom")) {
      if (Json* field = existingObject(*from, "fieldRef")) setDefault(*field, "apiVersion", "v1");
      if (Json* res = existingObject(*from, "resourceFieldRef")) setDefault(*res, "divisor", "0");
    }
  });
}

void volumeDefaults(Json& volume) {
  static const char* sources[] = {"hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo",
                                  "secret", "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume",
                                  "cinder", "cephfs", "flocker", "downwardAPI", "fc", "azureFile", "configMap",
                                  "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "projected",
                                  "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral", "image"};
  bool hasSource = false;
  for (const char* s : sources) {
    if (!missing(volume, s)) hasSource = true;
  }
  if (!hasSource) volume["emptyDir"] = Json::object();
  if (Json* cm = existingObject(volume, "configMap")) setDefault(*cm, "defaultMode", 420);
  if (Json* secret = existingObject(volume, "secret")) setDefault(*secret, "defaultMode", 420);
  if (Json* hp = existingObject(volume, "hostPath")) setDefault(*hp, "type", "");
  if (Json* projected = existingObject(volume, "projected")) setDefault(*projected, "defaultMode", 420);
  if (Json* downward = existingObject(volume, "downwardAPI")) {
    setDefault(*downward, "defaultMode", 420);
    forEachInList(*downward, "items", [](Json& item) {
      if (Json* field = existingObject(item, "fieldRef")) setDefault(*field, "apiVersion", "v1");
    });
  }
}

// Kubernetes copies limits into requests for resources that have a limit
// but no request (SetDefaults_Pod; pods only, not templates).
void requestsFromLimits(Json& container) {
  Json* resources = existingObject(container, "resources");
  if (!resources) return;
  Json* limits = existingObject(*resources, "limits");
  if (!limits || limits->empty()) return;
  Json* requests = objectField(*resources, "requests");
  if (!requests) return;
  for (auto& [name, value] : limits->items()) {
    if (missing(*requests, name.c_str())) (*requests)[name] = value;
  }
}

void podTemplateDefaults(Json& owner) {
  Json* spec = existingObject(owner, "spec");
  if (!spec) return;
  Json* tmpl = existingObject(*spec, "template");
  if (!tmpl) return;
  if (Json* podSpec = existingObject(*tmpl, "spec")) applyPodSpecDefaults(*podSpec);
}

Json scalingRules(int window, Json policies) {
  return Json{{"stabilizationWindowSeconds", window}, {"selectPolicy", "Max"}, {"policies", std::move(policies)}};
}

void hpaDefaults(Json& obj) {
  Json* spec = objectField(obj, "spec");
  if (!spec) return;
  setDefault(*spec, "minReplicas", 1);
  if (missing(*spec, "metrics") || ((*spec)["metrics"].is_array() && (*spec)["metrics"].empty())) {
    (*spec)["metrics"] = Json::array({Json{
        {"type", "Resource"},
        {"resource", {{"name", "cpu"}, {"target", {{"type", "Utilization"}, {"averageUtilization", 80}}}}}}});
  }
  Json* behavior = existingObject(*spec, "behavior");
  if (!behavior) return;
  Json up = scalingRules(0, Json::array({Json{{"type", "Pods"}, {"value", 4}, {"periodSeconds", 15}},
                                          Json{{"type", "Percent"}, {"value", 100}, {"periodSeconds", 15}}}));
  Json down = scalingRules(300, Json::array({Json{{"type", "Percent"}, {"value", 100}, {"periodSeconds", 15}}}));
  for (auto [key, defaults] : {std::pair<const char*, Json*>{"scaleUp", &up}, {"scaleDown", &down}}) {
    if (missing(*behavior, key)) {
      (*behavior)[key] = *defaults;
      continue;
    }
    Json& rules = (*behavior)[key];
    if (!rules.is_object()) continue;
    for (auto& [field, value] : defaults->items()) setDefault(rules, field.c_str(), value);
  }
}

void serviceDefaults(Json& obj) {
  Json* spec = objectField(obj, "spec");
  if (!spec) return;
  setDefault(*spec, "sessionAffinity", "None");
  setDefault(*spec, "type", "ClusterIP");
  const std::string type = (*spec)["type"].is_string() ? (*spec)["type"].get<std::string>() : "";
  forEachInList(*spec, "ports", [](Json& port) {
    setDefault(port, "protocol", "TCP");
    auto tp = port.find("targetPort");
    bool unset = tp == port.end() || tp->is_null() || (tp->is_number() && tp->get<double>() == 0) ||
                 (tp->is_string() && tp->get_ref<const std::string&>().empty());
    if (unset && port.contains("port")) port["targetPort"] = port["port"];
  });
  if ((*spec)["sessionAffinity"] == "ClientIP") {
    Json* config = objectField(*spec, "sessionAffinityConfig");
    if (config) {
      Json* clientIP = objectField(*config, "clientIP");
      if (clientIP) setDefault(*clientIP, "timeoutSeconds", 10800);
    }
  }
  if (type != "ExternalName") setDefault(*spec, "internalTrafficPolicy", "Cluster");
  if (type == "NodePort" || type == "LoadBalancer") setDefault(*spec, "externalTrafficPolicy", "Cluster");
  if (type == "LoadBalancer") setDefault(*spec, "allocateLoadBalancerNodePorts", true);
}

void deploymentDefaults(Json& obj) {
  Json* spec = objectField(obj, "spec");
  if (!spec) return;
  setDefault(*spec, "replicas", 1);
  Json* strategy = objectField(*spec, "strategy");
  if (strategy) {
    setDefault(*strategy, "type", "RollingUpdate");
    if ((*strategy)["type"] == "RollingUpdate") {
      if (Json* rolling = objectField(*strategy, "rollingUpdate")) {
        setDefault(*rolling, "maxUnavailable", "25%");
        setDefault(*rolling, "maxSurge", "25%");
      }
    }
  }
  setDefault(*spec, "revisionHistoryLimit", 10);
  setDefault(*spec, "progressDeadlineSeconds", 600);
  podTemplateDefaults(obj);
}

void podDefaults(Json& obj) {
  Json* spec = objectField(obj, "spec");
  if (!spec) return;
  applyPodSpecDefaults(*spec);
  forEachInList(*spec, "containers", requestsFromLimits);
  forEachInList(*spec, "initContainers", requestsFromLimits);
}

}  // namespace

std::string_view resourceBaseName(std::string_view resource) {
  return resource.substr(0, resource.find('.'));
}

std::string defaultImagePullPolicy(std::string_view image) {
  // A digest pins the content; a tag follows the last ':' after the last '/'.
  if (image.find('@') != std::string_view::npos) return "IfNotPresent";
  std::size_t slash = image.rfind('/');
  std::size_t colon = image.rfind(':');
  bool hasTag = colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash);
  if (image.empty()) return "IfNotPresent";  // Kubernetes' parser fails on "": no "latest" tag
  if (!hasTag) return "Always";
  return image.substr(colon + 1) == "latest" ? "Always" : "IfNotPresent";
}

void applyContainerDefaults(Json& container) {
  if (!container.is_object()) return;
  if (missing(container, "imagePullPolicy") ||
      (container["imagePullPolicy"].is_string() && container["imagePullPolicy"].get_ref<const std::string&>().empty())) {
    auto image = container.find("image");
    container["imagePullPolicy"] =
        defaultImagePullPolicy(image != container.end() && image->is_string() ? image->get_ref<const std::string&>() : "");
  }
  setDefault(container, "terminationMessagePath", "/dev/termination-log");
  setDefault(container, "terminationMessagePolicy", "File");
  forEachInList(container, "ports", [](Json& port) { setDefault(port, "protocol", "TCP"); });
  probeDefaults(container, "livenessProbe");
  probeDefaults(container, "readinessProbe");
  probeDefaults(container, "startupProbe");
  lifecycleHandlerDefaults(container);
  envDefaults(container);
}

void applyPodSpecDefaults(Json& spec) {
  if (!spec.is_object()) return;
  setDefault(spec, "dnsPolicy", "ClusterFirst");
  setDefault(spec, "restartPolicy", "Always");
  setDefault(spec, "terminationGracePeriodSeconds", 30);
  setDefault(spec, "securityContext", Json::object());
  setDefault(spec, "schedulerName", "default-scheduler");
  setDefault(spec, "enableServiceLinks", true);
  auto hn = spec.find("hostNetwork");
  const bool hostNetwork = hn != spec.end() && hn->is_boolean() && hn->get<bool>();
  for (const char* list : {"containers", "initContainers", "ephemeralContainers"}) {
    forEachInList(spec, list, [&](Json& c) {
      applyContainerDefaults(c);
      if (hostNetwork) {
        // With the host's network the host port is the container port.
        forEachInList(c, "ports", [](Json& port) {
          if (missing(port, "hostPort") && port.contains("containerPort")) port["hostPort"] = port["containerPort"];
        });
      }
    });
  }
  forEachInList(spec, "volumes", volumeDefaults);
}

void applyDefaults(std::string_view resource, Json& obj) {
  if (!obj.is_object()) return;
  std::string_view base = resourceBaseName(resource);
  if (base == "pods") {
    podDefaults(obj);
  } else if (base == "services") {
    serviceDefaults(obj);
  } else if (base == "deployments") {
    deploymentDefaults(obj);
  } else if (base == "replicasets") {
    if (Json* spec = objectField(obj, "spec")) setDefault(*spec, "replicas", 1);
    podTemplateDefaults(obj);
  } else if (base == "secrets") {
    setDefault(obj, "type", "Opaque");
  } else if (base == "namespaces") {
    std::string name = nameOf(obj);
    if (!name.empty()) {
      if (Json* md = objectField(obj, "metadata")) {
        if (Json* labels = objectField(*md, "labels")) (*labels)["kubernetes.io/metadata.name"] = name;
      }
    }
    if (Json* spec = objectField(obj, "spec")) setDefault(*spec, "finalizers", Json::array({"kubernetes"}));
    if (Json* status = objectField(obj, "status")) setDefault(*status, "phase", "Active");
  } else if (base == "nodes") {
    if (Json* status = existingObject(obj, "status")) {
      if (!missing(*status, "capacity")) setDefault(*status, "allocatable", (*status)["capacity"]);
    }
  } else if (base == "endpointslices") {
    forEachInList(obj, "ports", [](Json& port) {
      setDefault(port, "protocol", "TCP");
      setDefault(port, "name", "");
    });
  } else if (base == "endpoints") {
    forEachInList(obj, "subsets", [](Json& subset) {
      forEachInList(subset, "ports", [](Json& port) { setDefault(port, "protocol", "TCP"); });
    });
  } else if (base == "horizontalpodautoscalers") {
    hpaDefaults(obj);
  }
}

}  // namespace ferry::api
