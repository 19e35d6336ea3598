#include "controlplane-lite/tables.h"

#include <fmt/format.h>

namespace ferry::cp {

using api::Json;

namespace {

struct Column {
  std::string name;
  std::string type;  // string | integer
  std::string format;
  int priority;
  std::string description;
};

using RowFn = std::function<Json(const Json& obj, std::int64_t now)>;

std::string age(const Json& obj, std::int64_t now) {
  std::string ts = api::at<std::string>(obj, {"metadata", "creationTimestamp"});
  std::int64_t t = api::parseRfc3339(ts);
  if (t < 0) return "<unknown>";
  return humanDuration(now - t);
}

std::string orNone(const std::string& s) { return s.empty() ? "<none>" : s; }

std::string joinStrings(const std::vector<std::string>& v, const char* sep = ",") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string selectorString(const Json& sel) {
  std::vector<std::string> parts;
  if (sel.is_object()) {
    if (sel.contains("matchLabels") || sel.contains("matchExpressions")) {
      const Json matchLabels = sel.value("matchLabels", Json::object());
      for (const auto& [k, v] : matchLabels.items())
        parts.push_back(k + "=" + (v.is_string() ? v.get<std::string>() : v.dump()));
      for (const auto& e : sel.value("matchExpressions", Json::array())) {
        std::string op = e.value("operator", "");
        std::vector<std::string> vals = e.value("values", std::vector<std::string>{});
        if (op == "In") parts.push_back(e.value("key", "") + " in (" + joinStrings(vals) + ")");
        else if (op == "NotIn") parts.push_back(e.value("key", "") + " notin (" + joinStrings(vals) + ")");
        else if (op == "Exists") parts.push_back(e.value("key", ""));
        else if (op == "DoesNotExist") parts.push_back("!" + e.value("key", ""));
      }
    } else {
      for (const auto& [k, v] : sel.items()) parts.push_back(k + "=" + (v.is_string() ? v.get<std::string>() : v.dump()));
    }
  }
  return orNone(joinStrings(parts));
}

std::pair<std::string, std::string> containersAndImages(const Json& podSpec) {
  std::vector<std::string> names, images;
  for (const auto& c : podSpec.value("containers", Json::array())) {
    names.push_back(c.value("name", ""));
    images.push_back(c.value("image", ""));
  }
  return {joinStrings(names), joinStrings(images)};
}

std::int64_t num(const Json& obj, std::initializer_list<const char*> path) { return api::at<std::int64_t>(obj, path, 0); }

struct Printer {
  std::vector<Column> columns;
  RowFn row;
};

Printer podPrinter() {
  return {{{"Name", "string", "name", 0, "Name must be unique within a namespace."},
           {"Ready", "string", "", 0, "The aggregate readiness state of this pod for accepting traffic."},
           {"Status", "string", "", 0, "The aggregate status of the containers in this pod."},
           {"Restarts", "string", "", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."},
           {"Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."},
           {"IP", "string", "", 1, "IP address allocated to the pod."},
           {"Node", "string", "", 1, "Name of the node this pod is running on."},
           {"Nominated Node", "string", "", 1, "Name of the node where this pod is nominated to run."},
           {"Readiness Gates", "string", "", 1, "Pod Readiness Gates."}},
          [](const Json& pod, std::int64_t now) {
            auto statuses = api::at<Json>(pod, {"status", "containerStatuses"}, Json::array());
            std::size_t total = api::at<Json>(pod, {"spec", "containers"}, Json::array()).size();
            std::size_t ready = 0;
            std::int64_t restarts = 0;
            std::int64_t lastRestart = -1;
            for (const auto& s : statuses) {
              if (s.value("ready", false)) ++ready;
              restarts += s.value("restartCount", 0);
              std::string finished = api::at<std::string>(s, {"lastState", "terminated", "finishedAt"});
              if (!finished.empty()) lastRestart = std::max(lastRestart, api::parseRfc3339(finished));
            }
            std::string restartText = std::to_string(restarts);
            if (restarts > 0 && lastRestart > 0) restartText += " (" + humanDuration(now - lastRestart) + " ago)";
            std::string gates = "<none>";
            auto rg = api::at<Json>(pod, {"spec", "readinessGates"}, Json::array());
            if (!rg.empty()) {
              std::size_t trueCount = 0;
              for (const auto& g : rg)
                for (const auto& c : api::at<Json>(pod, {"status", "conditions"}, Json::array()))
                  if (c.value("type", "") == g.value("conditionType", "") && c.value("status", "") == "True") ++trueCount;
              gates = fmt::format("{}/{}", trueCount, rg.size());
            }
            return Json::array({api::nameOf(pod), fmt::format("{}/{}", ready, total), podStatusColumn(pod), restartText,
                                age(pod, now), orNone(api::at<std::string>(pod, {"status", "podIP"})),
                                orNone(api::at<std::string>(pod, {"spec", "nodeName"})),
                                orNone(api::at<std::string>(pod, {"status", "nominatedNodeName"})), gates});
          }};
}

Printer workloadPrinter(bool deployment) {
  std::vector<Column> cols = {{"Name", "string", "name", 0, "Name must be unique within a namespace."}};
  if (deployment) {
    cols.push_back({"Ready", "string", "", 0, "Number of the pod with ready state"});
    cols.push_back({"Up-to-date", "integer", "", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."});
    cols.push_back({"Available", "integer", "", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."});
  } else {
    cols.push_back({"Desired", "integer", "", 0, "Replicas is the number of desired replicas."});
    cols.push_back({"Current", "integer", "", 0, "Replicas is the most recently observed number of replicas."});
    cols.push_back({"Ready", "integer", "", 0, "The number of ready replicas for this replica set."});
  }
  cols.push_back({"Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."});
  cols.push_back({"Containers", "string", "", 1, "Names of each container in the template."});
  cols.push_back({"Images", "string", "", 1, "Images referenced by each container in the template."});
  cols.push_back({"Selector", "string", "", 1, "Label selector for pods."});
  return {cols, [deployment](const Json& o, std::int64_t now) {
            auto [names, images] = containersAndImages(api::at<Json>(o, {"spec", "template", "spec"}, Json::object()));
            std::string sel = selectorString(api::at<Json>(o, {"spec", "selector"}, Json::object()));
            std::int64_t desired = num(o, {"spec", "replicas"});
            if (deployment)
              return Json::array({api::nameOf(o), fmt::format("{}/{}", num(o, {"status", "readyReplicas"}), desired),
                                  num(o, {"status", "updatedReplicas"}), num(o, {"status", "availableReplicas"}), age(o, now),
                                  names, images, sel});
            return Json::array({api::nameOf(o), desired, num(o, {"status", "replicas"}), num(o, {"status", "readyReplicas"}),
                                age(o, now), names, images, sel});
          }};
}

Printer servicePrinter() {
  return {{{"Name", "string", "name", 0, "Name must be unique within a namespace."},
           {"Type", "string", "", 0, "type determines how the Service is exposed."},
           {"Cluster-IP", "string", "", 0, "clusterIP is the IP address of the service."},
           {"External-IP", "string", "", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."},
           {"Port(s)", "string", "", 0, "The list of ports that are exposed by this service."},
           {"Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."},
           {"Selector", "string", "", 1, "Route service traffic to pods with label keys and values matching this selector."}},
          [](const Json& s, std::int64_t now) {
            std::string type = api::at<std::string>(s, {"spec", "type"}, "ClusterIP");
            std::vector<std::string> ports;
            for (const auto& p : api::at<Json>(s, {"spec", "ports"}, Json::array())) {
              std::string text = std::to_string(p.value("port", 0));
              if (p.value("nodePort", 0) != 0) text += ":" + std::to_string(p.value("nodePort", 0));
              ports.push_back(text + "/" + p.value("protocol", "TCP"));
            }
            std::vector<std::string> external = api::at<std::vector<std::string>>(s, {"spec", "externalIPs"});
            std::string ext;
            if (type == "ExternalName") ext = api::at<std::string>(s, {"spec", "externalName"});
            else if (type == "LoadBalancer") {
              for (const auto& i : api::at<Json>(s, {"status", "loadBalancer", "ingress"}, Json::array()))
                external.push_back(i.value("ip", i.value("hostname", "")));
              ext = external.empty() ? "<pending>" : joinStrings(external);
            } else {
              ext = orNone(joinStrings(external));
            }
            std::string clusterIP = api::at<std::string>(s, {"spec", "clusterIP"});
            return Json::array({api::nameOf(s), type, orNone(clusterIP), ext, orNone(joinStrings(ports)), age(s, now),
                                selectorString(api::at<Json>(s, {"spec", "selector"}, Json::object()))});
          }};
}

Printer nodePrinter() {
  return {{{"Name", "string", "name", 0, "Name must be unique within a namespace."},
           {"Status", "string", "", 0, "The status of the node"},
           {"Roles", "string", "", 0, "The roles of the node"},
           {"Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."},
           {"Version", "string", "", 0, "Kubelet Version reported by the node."},
           {"Internal-IP", "string", "", 1, "List of internal IPs."},
           {"External-IP", "string", "", 1, "List of external IPs."},
           {"OS-Image", "string", "", 1, "OS image reported by the node."},
           {"Kernel-Version", "string", "", 1, "Kernel version reported by the node."},
           {"Container-Runtime", "string", "", 1, "Container runtime reported by the node."}},
          [](const Json& n, std::int64_t now) {
            std::string status = "Unknown";
            for (const auto& c : api::at<Json>(n, {"status", "conditions"}, Json::array()))
              // As kubectl prints it: a Ready condition that is not True (False or Unknown) is NotReady.
              if (c.value("type", "") == "Ready") status = c.value("status", "") == "True" ? "Ready" : "NotReady";
            if (api::at<bool>(n, {"spec", "unschedulable"}, false)) status += ",SchedulingDisabled";
            std::vector<std::string> roles;
            for (const auto& [k, v] : api::labelsOf(n)) {
              const std::string prefix = "node-role.kubernetes.io/";
              if (k.rfind(prefix, 0) == 0 && k.size() > prefix.size()) roles.push_back(k.substr(prefix.size()));
              else if (k == "kubernetes.io/role") roles.push_back(v);
            }
            std::vector<std::string> internal, external;
            for (const auto& a : api::at<Json>(n, {"status", "addresses"}, Json::array())) {
              if (a.value("type", "") == "InternalIP") internal.push_back(a.value("address", ""));
              if (a.value("type", "") == "ExternalIP") external.push_back(a.value("address", ""));
            }
            const Json info = api::at<Json>(n, {"status", "nodeInfo"}, Json::object());
            return Json::array({api::nameOf(n), status, orNone(joinStrings(roles)), age(n, now),
                                info.value("kubeletVersion", ""), orNone(joinStrings(internal)),
                                orNone(joinStrings(external)), orNone(info.value("osImage", "")),
                                orNone(info.value("kernelVersion", "")), orNone(info.value("containerRuntimeVersion", ""))});
          }};
}

Printer simplePrinter(std::vector<Column> middle, std::function<Json(const Json&)> cells) {
  std::vector<Column> cols = {{"Name", "string", "name", 0, "Name must be unique within a namespace."}};
  for (auto& c : middle) cols.push_back(c);
  cols.push_back({"Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."});
  return {cols, [cells](const Json& o, std::int64_t now) {
            Json row = Json::array({api::nameOf(o)});
            for (const auto& c : cells(o)) row.push_back(c);
            row.push_back(age(o, now));
            return row;
          }};
}

Printer eventPrinter() {
  return {{{"Last Seen", "string", "", 0, "Time when last this event occurred"},
           {"Type", "string", "", 0, "Type of this event (Normal, Warning), new types could be added in the future."},
           {"Reason", "string", "", 0, "Reason of this event"},
           {"Object", "string", "", 0, "The object this event is about"},
           {"Message", "string", "", 0, "A human-readable description of the status of this operation."},
           {"Subobject", "string", "", 1, "The subobject this event is about"},
           {"Source", "string", "", 1, "The source of this event"},
           {"First Seen", "string", "", 1, "Time when first this event occurred"},
           {"Count", "integer", "", 1, "Number of times this event has occurred"},
           {"Name", "string", "name", 1, "Name must be unique within a namespace."}},
          [](const Json& e, std::int64_t now) {
            std::string last = api::at<std::string>(e, {"lastTimestamp"});
            if (last.empty()) last = api::at<std::string>(e, {"eventTime"});
            if (last.empty()) last = api::at<std::string>(e, {"metadata", "creationTimestamp"});
            std::string first = api::at<std::string>(e, {"firstTimestamp"});
            if (first.empty()) first = last;
            auto ago = [now](const std::string& ts) {
              std::int64_t t = api::parseRfc3339(ts);
              return t < 0 ? std::string("<unknown>") : humanDuration(now - t);
            };
            std::string kind = api::at<std::string>(e, {"involvedObject", "kind"});
            for (auto& c : kind) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            std::string source = api::at<std::string>(e, {"source", "component"});
            if (source.empty()) source = api::at<std::string>(e, {"reportingComponent"});
            std::string host = api::at<std::string>(e, {"source", "host"});
            if (!host.empty()) source += ", " + host;
            return Json::array({ago(last), api::at<std::string>(e, {"type"}), api::at<std::string>(e, {"reason"}),
                                kind + "/" + api::at<std::string>(e, {"involvedObject", "name"}),
                                api::at<std::string>(e, {"message"}),
                                api::at<std::string>(e, {"involvedObject", "fieldPath"}), source, ago(first),
                                api::at<std::int64_t>(e, {"count"}, 1), api::nameOf(e)});
          }};
}

Printer printerFor(const Resource& r) {
  const std::string& k = r.kind;
  if (k == "Pod") return podPrinter();
  if (k == "Deployment") return workloadPrinter(true);
  if (k == "ReplicaSet") return workloadPrinter(false);
  if (k == "Service") return servicePrinter();
  if (k == "Node") return nodePrinter();
  if (k == "Event") return eventPrinter();
  if (k == "Namespace")
    return simplePrinter({{"Status", "string", "", 0, "The status of the namespace"}},
                         [](const Json& o) { return Json::array({api::at<std::string>(o, {"status", "phase"}, "Active")}); });
  if (k == "ConfigMap")
    return simplePrinter({{"Data", "integer", "", 0, "Number of data entries"}}, [](const Json& o) {
      return Json::array({o.value("data", Json::object()).size() + o.value("binaryData", Json::object()).size()});
    });
  if (k == "Secret")
    return simplePrinter({{"Type", "string", "", 0, "The type of the secret"}, {"Data", "integer", "", 0, "Number of data entries"}},
                         [](const Json& o) {
                           return Json::array({o.value("type", "Opaque"), o.value("data", Json::object()).size()});
                         });
  if (k == "ServiceAccount")
    return simplePrinter({{"Secrets", "integer", "", 0, "Number of secrets"}},
                         [](const Json& o) { return Json::array({o.value("secrets", Json::array()).size()}); });
  if (k == "EndpointSlice")
    return simplePrinter({{"AddressType", "string", "", 0, "The IP protocol for this slice"},
                          {"Ports", "string", "", 0, "The ports in this slice"},
                          {"Endpoints", "string", "", 0, "The endpoints in this slice"}},
                         [](const Json& o) {
                           std::vector<std::string> ports, addrs;
                           for (const auto& p : o.value("ports", Json::array())) ports.push_back(std::to_string(p.value("port", 0)));
                           std::size_t count = 0;
                           for (const auto& e : o.value("endpoints", Json::array()))
                             for (const auto& a : e.value("addresses", Json::array())) {
                               ++count;
                               if (addrs.size() < 3) addrs.push_back(a.get<std::string>());
                             }
                           std::string ep = joinStrings(addrs);
                           if (count > 3) ep += fmt::format(" + {} more...", count - 3);
                           return Json::array({o.value("addressType", "IPv4"), ports.empty() ? "<unset>" : joinStrings(ports),
                                               ep.empty() ? "<unset>" : ep});
                         });
  if (k == "Endpoints")
    return simplePrinter({{"Endpoints", "string", "", 0, "Endpoints of the service"}}, [](const Json& o) {
      std::vector<std::string> eps;
      for (const auto& s : o.value("subsets", Json::array()))
        for (const auto& a : s.value("addresses", Json::array()))
          for (const auto& p : s.value("ports", Json::array()))
            eps.push_back(a.value("ip", "") + ":" + std::to_string(p.value("port", 0)));
      return Json::array({orNone(joinStrings(eps))});
    });
  if (k == "Lease")
    return simplePrinter({{"Holder", "string", "", 0, "The holder of the lease"}},
                         [](const Json& o) { return Json::array({api::at<std::string>(o, {"spec", "holderIdentity"})}); });
  if (k == "HorizontalPodAutoscaler")
    return {{{"Name", "string", "name", 0, "Name must be unique within a namespace."},
             {"Reference", "string", "", 0, "Reference to target resource"},
             {"Targets", "string", "", 0, "Current and desired value"},
             {"MinPods", "string", "", 0, "Minimum number of replicas"},
             {"MaxPods", "integer", "", 0, "Maximum number of replicas"},
             {"Replicas", "integer", "", 0, "Current number of replicas"},
             {"Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."}},
            [](const Json& o, std::int64_t now) {
              std::vector<std::string> targets;
              auto current = api::at<Json>(o, {"status", "currentMetrics"}, Json::array());
              auto metrics = api::at<Json>(o, {"spec", "metrics"}, Json::array());
              for (std::size_t i = 0; i < metrics.size(); ++i) {
                const Json& m = metrics[i];
                if (m.value("type", "") != "Resource") continue;
                std::string name = api::at<std::string>(m, {"resource", "name"});
                std::string want;
                if (auto u = api::at<Json>(m, {"resource", "target", "averageUtilization"}); !u.is_null()) want = u.dump() + "%";
                else want = api::at<std::string>(m, {"resource", "target", "averageValue"});
                std::string have = "<unknown>";
                if (i < current.size()) {
                  if (auto u = api::at<Json>(current[i], {"resource", "current", "averageUtilization"}); !u.is_null()) have = u.dump() + "%";
                  else if (auto v = api::at<std::string>(current[i], {"resource", "current", "averageValue"}); !v.empty()) have = v;
                }
                targets.push_back(name + ": " + have + "/" + want);
              }
              return Json::array({api::nameOf(o),
                                  api::at<std::string>(o, {"spec", "scaleTargetRef", "kind"}) + "/" +
                                      api::at<std::string>(o, {"spec", "scaleTargetRef", "name"}),
                                  orNone(joinStrings(targets, ", ")), std::to_string(num(o, {"spec", "minReplicas"})),
                                  num(o, {"spec", "maxReplicas"}), num(o, {"status", "currentReplicas"}), age(o, now)});
            }};
  return simplePrinter({}, [](const Json&) { return Json::array(); });
}

Json partialMetadata(const Json& obj) {
  Json meta = obj.value("metadata", Json::object());
  meta.erase("managedFields");
  return {{"kind", "PartialObjectMetadata"}, {"apiVersion", "meta.k8s.io/v1"}, {"metadata", meta}};
}

}  // namespace

std::string humanDuration(std::int64_t seconds) {
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return fmt::format("{}s", seconds);
  std::int64_t minutes = seconds / 60;
  if (minutes < 10) {
    std::int64_t s = seconds % 60;
    return s == 0 ? fmt::format("{}m", minutes) : fmt::format("{}m{}s", minutes, s);
  }
  if (minutes < 180) return fmt::format("{}m", minutes);
  std::int64_t hours = minutes / 60;
  if (hours < 8) {
    std::int64_t m = minutes % 60;
    return m == 0 ? fmt::format("{}h", hours) : fmt::format("{}h{}m", hours, m);
  }
  if (hours < 48) return fmt::format("{}h", hours);
  if (hours < 24 * 8) {
    std::int64_t h = hours % 24;
    return h == 0 ? fmt::format("{}d", hours / 24) : fmt::format("{}d{}h", hours / 24, h);
  }
  if (hours < 24 * 365 * 2) return fmt::format("{}d", hours / 24);
  if (hours < 24 * 365 * 8) {
    std::int64_t d = (hours / 24) % 365;
    return d == 0 ? fmt::format("{}y", hours / 24 / 365) : fmt::format("{}y{}d", hours / 24 / 365, d);
  }
  return fmt::format("{}y", hours / 24 / 365);
}

std::string podStatusColumn(const Json& pod) {
  std::string reason = api::at<std::string>(pod, {"status", "phase"}, "Pending");
  if (auto r = api::at<std::string>(pod, {"status", "reason"}); !r.empty()) reason = r;
  auto initSpecs = api::at<Json>(pod, {"spec", "initContainers"}, Json::array());
  auto initStatuses = api::at<Json>(pod, {"status", "initContainerStatuses"}, Json::array());
  bool initializing = false;
  for (std::size_t i = 0; i < initStatuses.size(); ++i) {
    const Json& s = initStatuses[i];
    const Json term = api::at<Json>(s, {"state", "terminated"});
    if (term.is_object() && term.value("exitCode", 0) == 0) continue;
    if (term.is_object()) {
      reason = term.value("reason", "").empty() ? fmt::format("Init:ExitCode:{}", term.value("exitCode", 0)) : "Init:" + term.value("reason", "");
    } else {
      std::string waiting = api::at<std::string>(s, {"state", "waiting", "reason"});
      reason = !waiting.empty() && waiting != "PodInitializing" ? "Init:" + waiting : fmt::format("Init:{}/{}", i, initSpecs.size());
    }
    initializing = true;
    break;
  }
  if (!initializing) {
    bool hasRunning = false;
    auto statuses = api::at<Json>(pod, {"status", "containerStatuses"}, Json::array());
    for (auto it = statuses.rbegin(); it != statuses.rend(); ++it) {
      const Json& s = *it;
      std::string waiting = api::at<std::string>(s, {"state", "waiting", "reason"});
      const Json term = api::at<Json>(s, {"state", "terminated"});
      if (!waiting.empty()) reason = waiting;
      else if (term.is_object() && !term.value("reason", "").empty()) reason = term.value("reason", "");
      else if (term.is_object()) reason = term.contains("signal") && term.value("signal", 0) != 0
                                              ? fmt::format("Signal:{}", term.value("signal", 0))
                                              : fmt::format("ExitCode:{}", term.value("exitCode", 0));
      else if (s.value("ready", false) && api::at<Json>(s, {"state", "running"}).is_object()) hasRunning = true;
    }
    if (reason == "Completed" && hasRunning) reason = "Running";
  }
  if (api::isTerminating(pod)) reason = api::at<std::string>(pod, {"status", "reason"}) == "NodeLost" ? "Unknown" : "Terminating";
  return reason;
}

Json toTable(const Resource& r, const std::vector<Json>& objects, const std::string& resourceVersion,
             const std::string& continueToken, bool withHeaders, TableObjects include, std::int64_t now) {
  Printer p = printerFor(r);
  Json cols = Json::array();
  for (const auto& c : p.columns)
    cols.push_back({{"name", c.name}, {"type", c.type}, {"format", c.format}, {"description", c.description}, {"priority", c.priority}});
  Json rows = Json::array();
  for (const auto& obj : objects) {
    Json row = {{"cells", p.row(obj, now)}};
    if (include == TableObjects::Metadata) row["object"] = partialMetadata(obj);
    else if (include == TableObjects::Full) row["object"] = obj;
    rows.push_back(row);
  }
  Json meta = {{"resourceVersion", resourceVersion}};
  if (!continueToken.empty()) meta["continue"] = continueToken;
  return {{"kind", "Table"},
          {"apiVersion", "meta.k8s.io/v1"},
          {"metadata", meta},
          {"columnDefinitions", withHeaders ? cols : Json::array()},
          {"rows", rows}};
}

}  // namespace ferry::cp
