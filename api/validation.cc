#include "api/validation.h"

#include "api/defaulting.h"
#include "api/names.h"
#include "api/quantity.h"
#include "api/selector.h"

#include <fmt/format.h>

#include <arpa/inet.h>

#include <algorithm>
#include <set>

namespace ferry::api {
namespace {

// Values as Kubernetes prints them in "Invalid value: <v>": strings quoted,
// numbers bare, structures as JSON.
std::string show(const Json& v) { return v.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string quoteList(std::initializer_list<const char*> values) {
  std::string out;
  for (const char* v : values) {
    if (!out.empty()) out += ", ";
    out += fmt::format("\"{}\"", v);
  }
  return out;
}

std::string idx(const std::string& path, std::size_t i) { return fmt::format("{}[{}]", path, i); }
std::string key(const std::string& path, std::string_view k) { return fmt::format("{}[{}]", path, k); }

const Json& member(const Json& obj, const char* name) {
  static const Json null;
  if (!obj.is_object()) return null;
  auto it = obj.find(name);
  return it == obj.end() ? null : *it;
}

std::string str(const Json& obj, const char* name) {
  const Json& v = member(obj, name);
  return v.is_string() ? v.get<std::string>() : std::string();
}

bool has(const Json& obj, const char* name) { return !member(obj, name).is_null(); }

bool isIPv4(const std::string& s) {
  in_addr a{};
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}
bool isIPv6(const std::string& s) {
  in6_addr a{};
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}
bool isIP(const std::string& s) { return isIPv4(s) || isIPv6(s); }

bool isCidr(const std::string& s) {
  auto slash = s.find('/');
  if (slash == std::string::npos) return false;
  std::string ip = s.substr(0, slash), bits = s.substr(slash + 1);
  if (bits.empty() || bits.size() > 3 || !std::all_of(bits.begin(), bits.end(), ::isdigit)) return false;
  int n = std::stoi(bits);
  return (isIPv4(ip) && n <= 32) || (isIPv6(ip) && n <= 128);
}

bool isConfigKey(const std::string& k) {
  if (k.empty() || k.size() > 253 || k == "." || k == "..") return false;
  if (k.starts_with("..")) return false;
  for (char c : k) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.';
    if (!ok) return false;
  }
  return true;
}

class Validator {
 public:
  std::vector<Cause> causes;

  void required(const std::string& field, std::string_view detail = {}) {
    add(field, detail.empty() ? "Required value" : fmt::format("Required value: {}", detail), Cause::kRequired);
  }
  void invalid(const std::string& field, const Json& value, std::string_view detail) {
    add(field, fmt::format("Invalid value: {}: {}", show(value), detail), Cause::kInvalid);
  }
  void duplicate(const std::string& field, const Json& value) {
    add(field, fmt::format("Duplicate value: {}", show(value)), Cause::kDuplicate);
  }
  void notSupported(const std::string& field, const Json& value, std::initializer_list<const char*> supported) {
    add(field, fmt::format("Unsupported value: {}: supported values: {}", show(value), quoteList(supported)),
        Cause::kNotSupported);
  }
  void forbidden(const std::string& field, std::string_view detail) {
    add(field, fmt::format("Forbidden: {}", detail), Cause::kForbidden);
  }
  void notFound(const std::string& field, const Json& value) {
    add(field, fmt::format("Not found: {}", show(value)), Cause::kNotFound);
  }
  void tooLong(const std::string& field, std::size_t max) {
    add(field, fmt::format("Too long: must have at most {} bytes", max), Cause::kTooLong);
  }

  // ---- generic field checks ----

  // A string field; reports wrong JSON types. Returns "" when absent.
  std::string stringField(const Json& obj, const char* name, const std::string& field) {
    const Json& v = member(obj, name);
    if (v.is_null()) return {};
    if (!v.is_string()) {
      invalid(field, v, "must be a string");
      return {};
    }
    return v.get<std::string>();
  }

  // An integer field; reports wrong types. Returns `fallback` when absent.
  long long intField(const Json& obj, const char* name, const std::string& field, long long fallback = 0) {
    const Json& v = member(obj, name);
    if (v.is_null()) return fallback;
    if (!v.is_number_integer()) {
      invalid(field, v, "must be an integer");
      return fallback;
    }
    return v.get<long long>();
  }

  void nonNegative(const Json& obj, const char* name, const std::string& field) {
    const Json& v = member(obj, name);
    if (v.is_null()) return;
    long long n = intField(obj, name, field, 0);
    if (n < 0) invalid(field, v, "must be greater than or equal to 0");
  }

  void supported(const Json& obj, const char* name, const std::string& field, std::initializer_list<const char*> values,
                 bool requiredField = false) {
    const Json& v = member(obj, name);
    if (v.is_null() || (v.is_string() && v.get_ref<const std::string&>().empty())) {
      if (requiredField) required(field);
      return;
    }
    for (const char* s : values) {
      if (v == s) return;
    }
    notSupported(field, v, values);
  }

  void portNumber(const Json& v, const std::string& field) {
    if (!v.is_number_integer() || v.get<long long>() < 1 || v.get<long long>() > 65535) {
      invalid(field, v, "must be between 1 and 65535, inclusive");
    }
  }

  // int-or-string port reference: a number in range or an IANA service name.
  void portReference(const Json& v, const std::string& field) {
    if (v.is_string()) {
      for (const auto& e : portNameErrors(v.get<std::string>())) invalid(field, v, e);
    } else {
      portNumber(v, field);
    }
  }

  void listOf(const Json& obj, const char* name, const std::string& field) {
    const Json& v = member(obj, name);
    if (!v.is_null() && !v.is_array()) invalid(field, v, "must be a list");
  }

  void nameSyntax(const std::string& field, const std::string& value, std::vector<std::string> (*check)(std::string_view)) {
    for (const auto& e : check(value)) invalid(field, value, e);
  }

  void labels(const Json& labelsObj, const std::string& field) {
    if (labelsObj.is_null()) return;
    if (!labelsObj.is_object()) {
      invalid(field, labelsObj, "must be a map of string keys to string values");
      return;
    }
    for (auto& [k, v] : labelsObj.items()) {
      for (const auto& e : qualifiedNameErrors(k)) invalid(field, k, e);
      if (!v.is_string()) {
        invalid(key(field, k), v, "must be a string");
        continue;
      }
      for (const auto& e : labelValueErrors(v.get<std::string>())) invalid(field, v, e);
    }
  }

  void annotations(const Json& ann, const std::string& field) {
    if (ann.is_null()) return;
    if (!ann.is_object()) {
      invalid(field, ann, "must be a map of string keys to string values");
      return;
    }
    std::size_t total = 0;
    for (auto& [k, v] : ann.items()) {
      for (const auto& e : qualifiedNameErrors(k)) invalid(field, k, e);
      if (!v.is_string()) {
        invalid(key(field, k), v, "must be a string");
        continue;
      }
      total += k.size() + v.get_ref<const std::string&>().size();
    }
    if (total > 256 * 1024) tooLong(field, 256 * 1024);
  }

  // ObjectMeta. `nameCheck` is the kind's name rule; `namespaced` says
  // whether metadata.namespace belongs on the kind.
  void objectMeta(const Json& obj, const Json* old, std::vector<std::string> (*nameCheck)(std::string_view),
                  bool namespaced) {
    const Json& md = member(obj, "metadata");
    if (!md.is_object()) {
      required("metadata.name", "name or generateName is required");
      return;
    }
    std::string name = stringField(md, "name", "metadata.name");
    std::string generateName = stringField(md, "generateName", "metadata.generateName");
    if (name.empty()) {
      if (generateName.empty()) required("metadata.name", "name or generateName is required");
    } else {
      nameSyntax("metadata.name", name, nameCheck);
    }
    if (!generateName.empty()) {
      // The prefix is checked with a trailing '-' trimmed, as Kubernetes does.
      std::string prefix = generateName;
      if (prefix.ends_with('-')) prefix.pop_back();
      if (!prefix.empty()) {
        for (const auto& e : nameCheck(prefix)) invalid("metadata.generateName", generateName, e);
      }
    }
    std::string ns = stringField(md, "namespace", "metadata.namespace");
    if (namespaced) {
      if (!ns.empty()) nameSyntax("metadata.namespace", ns, dns1123LabelErrors);
    } else if (!ns.empty()) {
      forbidden("metadata.namespace", "not allowed on this type");
    }
    labels(member(md, "labels"), "metadata.labels");
    annotations(member(md, "annotations"), "metadata.annotations");
    listOf(md, "finalizers", "metadata.finalizers");
    if (old) {
      const Json& oldMd = member(*old, "metadata");
      for (const char* f : {"name", "namespace", "uid", "creationTimestamp"}) {
        const Json& before = member(oldMd, f);
        const Json& after = member(md, f);
        if (!before.is_null() && !after.is_null() && before != after) {
          invalid(std::string("metadata.") + f, after, "field is immutable");
        }
      }
    }
  }

  // ---- pods ----

  void resourceList(const Json& list, const std::string& field, std::map<std::string, Quantity>& out) {
    if (list.is_null()) return;
    if (!list.is_object()) {
      invalid(field, list, "must be a map of resource names to quantities");
      return;
    }
    for (auto& [name, value] : list.items()) {
      std::string f = key(field, name);
      bool standard = name == "cpu" || name == "memory" || name == "ephemeral-storage" || name.starts_with("hugepages-");
      if (!standard && name.find('/') == std::string::npos) {
        invalid(f, name, "must be a standard resource type or fully qualified");
      } else if (!standard) {
        for (const auto& e : qualifiedNameErrors(name)) invalid(f, name, e);
      }
      auto q = Quantity::fromJson(value);
      if (!q) {
        invalid(f, value, "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
        continue;
      }
      if (q->sign() < 0) invalid(f, value, "must be greater than or equal to 0");
      out.emplace(name, *q);
    }
  }

  void resources(const Json& res, const std::string& field) {
    if (res.is_null()) return;
    if (!res.is_object()) {
      invalid(field, res, "must be an object");
      return;
    }
    std::map<std::string, Quantity> limits, requests;
    resourceList(member(res, "limits"), field + ".limits", limits);
    resourceList(member(res, "requests"), field + ".requests", requests);
    for (const auto& [name, request] : requests) {
      auto limit = limits.find(name);
      if (limit != limits.end() && request > limit->second) {
        invalid(key(field + ".requests", name), request.toString(),
                fmt::format("must be less than or equal to {} limit of {}", name, limit->second.toString()));
      }
    }
  }

  void probe(const Json& p, const std::string& field) {
    if (p.is_null()) return;
    if (!p.is_object()) {
      invalid(field, p, "must be an object");
      return;
    }
    int handlers = 0;
    if (has(p, "exec")) {
      ++handlers;
      if (member(member(p, "exec"), "command").empty()) required(field + ".exec.command");
    }
    if (has(p, "httpGet")) {
      ++handlers;
      const Json& port = member(member(p, "httpGet"), "port");
      if (port.is_null()) required(field + ".httpGet.port");
      else portReference(port, field + ".httpGet.port");
      supported(member(p, "httpGet"), "scheme", field + ".httpGet.scheme", {"HTTP", "HTTPS"});
    }
    if (has(p, "tcpSocket")) {
      ++handlers;
      const Json& port = member(member(p, "tcpSocket"), "port");
      if (port.is_null()) required(field + ".tcpSocket.port");
      else portReference(port, field + ".tcpSocket.port");
    }
    if (has(p, "grpc")) {
      ++handlers;
      portNumber(member(member(p, "grpc"), "port"), field + ".grpc.port");
    }
    if (handlers == 0) required(field, "must specify a handler type");
    if (handlers > 1) forbidden(field, "may not specify more than 1 handler type");
    for (const char* n : {"initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
                          "failureThreshold", "terminationGracePeriodSeconds"}) {
      nonNegative(p, n, field + "." + n);
    }
  }

  void container(const Json& c, const std::string& field, const std::set<std::string>& volumeNames,
                 std::set<std::string>& containerNames, bool isInit) {
    if (!c.is_object()) {
      invalid(field, c, "must be an object");
      return;
    }
    std::string name = stringField(c, "name", field + ".name");
    if (name.empty()) {
      required(field + ".name");
    } else {
      nameSyntax(field + ".name", name, dns1123LabelErrors);
      if (!containerNames.insert(name).second) duplicate(field + ".name", name);
    }
    if (stringField(c, "image", field + ".image").empty()) required(field + ".image");
    supported(c, "imagePullPolicy", field + ".imagePullPolicy", {"Always", "IfNotPresent", "Never"});
    supported(c, "terminationMessagePolicy", field + ".terminationMessagePolicy", {"File", "FallbackToLogsOnError"});
    listOf(c, "command", field + ".command");
    listOf(c, "args", field + ".args");

    const Json& ports = member(c, "ports");
    listOf(c, "ports", field + ".ports");
    if (ports.is_array()) {
      std::set<std::string> portNames;
      for (std::size_t i = 0; i < ports.size(); ++i) {
        const Json& p = ports[i];
        std::string pf = idx(field + ".ports", i);
        std::string portName = stringField(p, "name", pf + ".name");
        if (!portName.empty()) {
          for (const auto& e : portNameErrors(portName)) invalid(pf + ".name", portName, e);
          if (!portNames.insert(portName).second) duplicate(pf + ".name", portName);
        }
        const Json& cp = member(p, "containerPort");
        if (cp.is_null() || cp == 0) required(pf + ".containerPort");
        else portNumber(cp, pf + ".containerPort");
        const Json& hp = member(p, "hostPort");
        if (!hp.is_null() && hp != 0) portNumber(hp, pf + ".hostPort");
        supported(p, "protocol", pf + ".protocol", {"SCTP", "TCP", "UDP"}, true);
        std::string hostIP = stringField(p, "hostIP", pf + ".hostIP");
        if (!hostIP.empty() && !isIP(hostIP)) invalid(pf + ".hostIP", hostIP, "must be a valid IP address");
      }
    }

    const Json& env = member(c, "env");
    listOf(c, "env", field + ".env");
    if (env.is_array()) {
      for (std::size_t i = 0; i < env.size(); ++i) {
        std::string ef = idx(field + ".env", i);
        std::string envName = stringField(env[i], "name", ef + ".name");
        if (envName.empty()) required(ef + ".name");
        else nameSyntax(ef + ".name", envName, envVarNameErrors);
        if (has(env[i], "valueFrom") && !str(env[i], "value").empty()) {
          invalid(ef + ".valueFrom", "", "may not be specified when `value` is not empty");
        }
      }
    }
    listOf(c, "envFrom", field + ".envFrom");

    const Json& mounts = member(c, "volumeMounts");
    listOf(c, "volumeMounts", field + ".volumeMounts");
    if (mounts.is_array()) {
      std::set<std::string> paths;
      for (std::size_t i = 0; i < mounts.size(); ++i) {
        std::string mf = idx(field + ".volumeMounts", i);
        std::string mountName = stringField(mounts[i], "name", mf + ".name");
        if (mountName.empty()) required(mf + ".name");
        else if (!volumeNames.contains(mountName)) notFound(mf + ".name", mountName);
        std::string path = stringField(mounts[i], "mountPath", mf + ".mountPath");
        if (path.empty()) required(mf + ".mountPath");
        else if (!paths.insert(path).second) invalid(mf + ".mountPath", path, "must be unique");
      }
    }
    resources(member(c, "resources"), field + ".resources");
    probe(member(c, "livenessProbe"), field + ".livenessProbe");
    probe(member(c, "readinessProbe"), field + ".readinessProbe");
    probe(member(c, "startupProbe"), field + ".startupProbe");
    if (isInit) {
      // Only sidecars (restartPolicy Always) may have probes other than startup.
      bool sidecar = str(c, "restartPolicy") == "Always";
      if (!sidecar) {
        for (const char* p : {"livenessProbe", "readinessProbe", "startupProbe"}) {
          if (has(c, p)) forbidden(field + "." + p, "may not be set for init containers without restartPolicy=Always");
        }
      }
      supported(c, "restartPolicy", field + ".restartPolicy", {"Always"});
    } else if (has(c, "restartPolicy")) {
      forbidden(field + ".restartPolicy", "may not be set for non-init containers");
    }
  }

  std::set<std::string> volumes(const Json& spec, const std::string& field) {
    std::set<std::string> names;
    const Json& vols = member(spec, "volumes");
    listOf(spec, "volumes", field);
    if (!vols.is_array()) return names;
    static const char* sources[] = {"hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo",
                                    "secret", "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume",
                                    "cinder", "cephfs", "flocker", "downwardAPI", "fc", "azureFile", "configMap",
                                    "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "projected",
                                    "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral", "image"};
    for (std::size_t i = 0; i < vols.size(); ++i) {
      const Json& v = vols[i];
      std::string vf = idx(field, i);
      std::string name = stringField(v, "name", vf + ".name");
      if (name.empty()) {
        required(vf + ".name");
      } else {
        nameSyntax(vf + ".name", name, dns1123LabelErrors);
        if (!names.insert(name).second) duplicate(vf + ".name", name);
      }
      int count = 0;
      for (const char* s : sources) count += has(v, s) ? 1 : 0;
      if (count == 0) required(vf, "must specify a volume type");
      if (count > 1) forbidden(vf, "may not specify more than 1 volume type");
      if (has(v, "hostPath")) {
        const Json& hp = member(v, "hostPath");
        if (str(hp, "path").empty()) required(vf + ".hostPath.path");
        supported(hp, "type", vf + ".hostPath.type",
                  {"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"});
      }
      if (has(v, "configMap") && str(member(v, "configMap"), "name").empty()) required(vf + ".configMap.name");
      if (has(v, "secret") && str(member(v, "secret"), "secretName").empty()) required(vf + ".secret.secretName");
      if (has(v, "persistentVolumeClaim") && str(member(v, "persistentVolumeClaim"), "claimName").empty()) {
        required(vf + ".persistentVolumeClaim.claimName");
      }
      for (const char* s : {"configMap", "secret", "projected", "downwardAPI"}) {
        const Json& mode = member(member(v, s), "defaultMode");
        if (!mode.is_null() && (!mode.is_number_integer() || mode.get<long long>() < 0 || mode.get<long long>() > 0777)) {
          invalid(vf + "." + s + ".defaultMode", mode, "must be a number between 0 and 0777 (octal), both inclusive");
        }
      }
      if (has(v, "emptyDir")) {
        const Json& ed = member(v, "emptyDir");
        supported(ed, "medium", vf + ".emptyDir.medium", {"", "Memory", "HugePages"});
        const Json& limit = member(ed, "sizeLimit");
        if (!limit.is_null() && !Quantity::fromJson(limit)) {
          invalid(vf + ".emptyDir.sizeLimit", limit, "quantities must match the regular expression "
                                                     "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
        }
      }
    }
    return names;
  }

  void podSpec(const Json& spec, const std::string& field, bool inTemplate) {
    if (!spec.is_object()) {
      if (spec.is_null()) required(field + ".containers");
      else invalid(field, spec, "must be an object");
      return;
    }
    std::set<std::string> volumeNames = volumes(spec, field + ".volumes");
    std::set<std::string> containerNames;
    const Json& containers = member(spec, "containers");
    if (!containers.is_array() || containers.empty()) {
      if (!containers.is_null() && !containers.is_array()) invalid(field + ".containers", containers, "must be a list");
      else required(field + ".containers");
    } else {
      for (std::size_t i = 0; i < containers.size(); ++i) {
        container(containers[i], idx(field + ".containers", i), volumeNames, containerNames, false);
      }
    }
    const Json& inits = member(spec, "initContainers");
    listOf(spec, "initContainers", field + ".initContainers");
    if (inits.is_array()) {
      for (std::size_t i = 0; i < inits.size(); ++i) {
        container(inits[i], idx(field + ".initContainers", i), volumeNames, containerNames, true);
      }
    }
    supported(spec, "restartPolicy", field + ".restartPolicy", {"Always", "OnFailure", "Never"}, true);
    supported(spec, "dnsPolicy", field + ".dnsPolicy", {"ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"},
              true);
    nonNegative(spec, "terminationGracePeriodSeconds", field + ".terminationGracePeriodSeconds");
    const Json& deadline = member(spec, "activeDeadlineSeconds");
    if (!deadline.is_null() && (!deadline.is_number_integer() || deadline.get<long long>() <= 0)) {
      invalid(field + ".activeDeadlineSeconds", deadline, "must be between 1 and 2147483647, inclusive");
    }
    labels(member(spec, "nodeSelector"), field + ".nodeSelector");
    std::string hostname = stringField(spec, "hostname", field + ".hostname");
    if (!hostname.empty()) nameSyntax(field + ".hostname", hostname, dns1123LabelErrors);
    std::string subdomain = stringField(spec, "subdomain", field + ".subdomain");
    if (!subdomain.empty()) nameSyntax(field + ".subdomain", subdomain, dns1123LabelErrors);
    std::string nodeName = stringField(spec, "nodeName", field + ".nodeName");
    if (!nodeName.empty()) nameSyntax(field + ".nodeName", nodeName, dns1123SubdomainErrors);
    std::string serviceAccount = stringField(spec, "serviceAccountName", field + ".serviceAccountName");
    if (!serviceAccount.empty()) nameSyntax(field + ".serviceAccountName", serviceAccount, dns1123SubdomainErrors);
    if (str(spec, "dnsPolicy") == "None" && !has(spec, "dnsConfig")) {
      required(field + ".dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None");
    }
    const Json& tolerations = member(spec, "tolerations");
    listOf(spec, "tolerations", field + ".tolerations");
    if (tolerations.is_array()) {
      for (std::size_t i = 0; i < tolerations.size(); ++i) {
        const Json& t = tolerations[i];
        std::string tf = idx(field + ".tolerations", i);
        std::string k = str(t, "key");
        if (!k.empty()) for (const auto& e : qualifiedNameErrors(k)) invalid(tf + ".key", k, e);
        supported(t, "operator", tf + ".operator", {"Equal", "Exists"});
        if (str(t, "operator") == "Exists" && !str(t, "value").empty()) {
          invalid(tf + ".operator", t["value"], "value must be empty when `operator` is 'Exists'");
        }
        supported(t, "effect", tf + ".effect", {"NoSchedule", "PreferNoSchedule", "NoExecute"});
      }
    }
    const Json& pullSecrets = member(spec, "imagePullSecrets");
    listOf(spec, "imagePullSecrets", field + ".imagePullSecrets");
    (void)pullSecrets;
    (void)inTemplate;
  }

  // Pod updates may change only images, activeDeadlineSeconds,
  // terminationGracePeriodSeconds (from negative) and add tolerations.
  void podSpecUpdate(const Json& spec, const Json& oldSpec) {
    if (!spec.is_object() || !oldSpec.is_object()) return;
    Json candidate = spec;
    for (const char* list : {"containers", "initContainers"}) {
      Json& now = candidate[list];
      const Json& before = member(oldSpec, list);
      if (now.is_array() && before.is_array() && now.size() == before.size()) {
        for (std::size_t i = 0; i < now.size(); ++i) {
          if (now[i].is_object() && before[i].is_object() && before[i].contains("image")) {
            now[i]["image"] = before[i]["image"];
          }
        }
      }
      if (now.is_null() && before.is_null()) candidate.erase(list);
    }
    for (const char* f : {"activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"}) {
      if (oldSpec.contains(f)) candidate[f] = oldSpec[f];
      else candidate.erase(f);
    }
    // Kubernetes lets a once-set activeDeadlineSeconds only shrink.
    const Json& newDeadline = member(spec, "activeDeadlineSeconds");
    const Json& oldDeadline = member(oldSpec, "activeDeadlineSeconds");
    if (!oldDeadline.is_null() && oldDeadline.is_number_integer()) {
      if (newDeadline.is_null()) {
        invalid("spec.activeDeadlineSeconds", nullptr, "must not update from a positive integer to nil value");
      } else if (newDeadline.is_number_integer() && newDeadline.get<long long>() > oldDeadline.get<long long>()) {
        invalid("spec.activeDeadlineSeconds", newDeadline,
                "must be less than or equal to previous value");
      }
    }
    if (candidate != oldSpec) {
      forbidden("spec",
                "pod updates may not change fields other than `spec.containers[*].image`,"
                "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
                "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                "previously negative)");
    }
    const Json& oldTol = member(oldSpec, "tolerations");
    const Json& newTol = member(spec, "tolerations");
    if (oldTol.is_array()) {
      for (const auto& t : oldTol) {
        bool kept = newTol.is_array() && std::find(newTol.begin(), newTol.end(), t) != newTol.end();
        if (!kept) {
          forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds");
          break;
        }
      }
    }
  }

  // ---- workloads ----

  void selectorAndTemplate(const Json& spec, const std::string& kindName) {
    const Json& selector = member(spec, "selector");
    std::optional<LabelSelector> parsed;
    if (selector.is_null()) {
      required("spec.selector");
    } else {
      auto s = LabelSelector::fromJson(selector);
      if (!s) {
        // fromJson names the part: "selector.matchExpressions[0].operator: Unsupported value: ...".
        const std::string& m = s.error().message;
        std::size_t colon = m.find(": ");
        if (m.starts_with("selector.") && colon != std::string::npos) {
          std::string message = m.substr(colon + 2);
          const char* reason = message.starts_with("Required") ? Cause::kRequired
                               : message.starts_with("Unsupported") ? Cause::kNotSupported
                               : message.starts_with("Forbidden") ? Cause::kForbidden
                                                                  : Cause::kInvalid;
          add("spec." + m.substr(0, colon), std::move(message), reason);
        } else {
          invalid("spec.selector", selector, m);
        }
      } else if (s->matchesEverything()) {
        invalid("spec.selector", selector, fmt::format("empty selector is invalid for {}", kindName));
      } else {
        parsed = std::move(*s);
      }
    }
    const Json& tmpl = member(spec, "template");
    if (!tmpl.is_object()) {
      required("spec.template");
      return;
    }
    const Json& tmplLabels = member(member(tmpl, "metadata"), "labels");
    labels(tmplLabels, "spec.template.metadata.labels");
    if (parsed && !parsed->matchesJson(tmplLabels)) {
      invalid("spec.template.metadata.labels", tmplLabels.is_null() ? Json::object() : tmplLabels,
              "`selector` does not match template `labels`");
    }
    annotations(member(member(tmpl, "metadata"), "annotations"), "spec.template.metadata.annotations");
    podSpec(member(tmpl, "spec"), "spec.template.spec", true);
    const Json& restart = member(member(tmpl, "spec"), "restartPolicy");
    if (restart.is_string() && restart != "Always") notSupported("spec.template.spec.restartPolicy", restart, {"Always"});
    const Json& deadline = member(member(tmpl, "spec"), "activeDeadlineSeconds");
    if (!deadline.is_null()) forbidden("spec.template.spec.activeDeadlineSeconds", "activeDeadlineSeconds in ReplicaSet is not Supported");
  }

  void intOrPercent(const Json& v, const std::string& field) {
    if (v.is_null()) return;
    if (v.is_number_integer()) {
      if (v.get<long long>() < 0) invalid(field, v, "must be greater than or equal to 0");
      return;
    }
    if (v.is_string()) {
      const std::string& s = v.get_ref<const std::string&>();
      bool ok = s.size() >= 2 && s.back() == '%' &&
                std::all_of(s.begin(), s.end() - 1, [](char c) { return c >= '0' && c <= '9'; });
      if (!ok) {
        invalid(field, v, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or "
                          "'93%', regex used for validation is '[0-9]+%')");
      } else if (std::stoll(s.substr(0, std::min<std::size_t>(s.size() - 1, 12))) > 100) {
        invalid(field, v, "must not be greater than 100%");
      }
      return;
    }
    invalid(field, v, "must be an integer or percentage (e.g '5%')");
  }

  bool isZeroIntOrPercent(const Json& v) { return v == 0 || v == "0%"; }

  void deployment(const Json& obj, const Json* old) {
    objectMeta(obj, old, dns1123SubdomainErrors, true);
    const Json& spec = member(obj, "spec");
    if (!spec.is_object()) {
      required("spec.selector");
      required("spec.template");
      return;
    }
    nonNegative(spec, "replicas", "spec.replicas");
    selectorAndTemplate(spec, "deployment");
    const Json& strategy = member(spec, "strategy");
    supported(strategy, "type", "spec.strategy.type", {"Recreate", "RollingUpdate"});
    const Json& rolling = member(strategy, "rollingUpdate");
    if (str(strategy, "type") == "Recreate" && !rolling.is_null()) {
      forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'");
    } else if (rolling.is_object()) {
      intOrPercent(member(rolling, "maxUnavailable"), "spec.strategy.rollingUpdate.maxUnavailable");
      intOrPercent(member(rolling, "maxSurge"), "spec.strategy.rollingUpdate.maxSurge");
      if (isZeroIntOrPercent(member(rolling, "maxUnavailable")) && isZeroIntOrPercent(member(rolling, "maxSurge"))) {
        invalid("spec.strategy.rollingUpdate.maxUnavailable", member(rolling, "maxUnavailable"),
                "may not be 0 when `maxSurge` is 0");
      }
    }
    nonNegative(spec, "minReadySeconds", "spec.minReadySeconds");
    nonNegative(spec, "revisionHistoryLimit", "spec.revisionHistoryLimit");
    const Json& deadline = member(spec, "progressDeadlineSeconds");
    if (!deadline.is_null()) {
      long long d = intField(spec, "progressDeadlineSeconds", "spec.progressDeadlineSeconds");
      if (deadline.is_number_integer() && d <= intField(spec, "minReadySeconds", "spec.minReadySeconds")) {
        invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds");
      }
    }
    if (old) immutableSelector(spec, member(*old, "spec"));
  }

  void replicaSet(const Json& obj, const Json* old) {
    objectMeta(obj, old, dns1123SubdomainErrors, true);
    const Json& spec = member(obj, "spec");
    if (!spec.is_object()) {
      required("spec.selector");
      return;
    }
    nonNegative(spec, "replicas", "spec.replicas");
    nonNegative(spec, "minReadySeconds", "spec.minReadySeconds");
    selectorAndTemplate(spec, "replicaset");
    if (old) immutableSelector(spec, member(*old, "spec"));
  }

  void immutableSelector(const Json& spec, const Json& oldSpec) {
    const Json& now = member(spec, "selector");
    const Json& before = member(oldSpec, "selector");
    if (!before.is_null() && now != before) invalid("spec.selector", now, "field is immutable");
  }

  // ---- services ----

  void service(const Json& obj, const Json* old) {
    objectMeta(obj, old, dns1035LabelErrors, true);
    const Json& spec = member(obj, "spec");
    if (!spec.is_object()) {
      required("spec");
      return;
    }
    supported(spec, "type", "spec.type", {"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"}, true);
    const std::string type = str(spec, "type");
    const std::string clusterIP = stringField(spec, "clusterIP", "spec.clusterIP");
    const bool headless = clusterIP == "None";
    if (!clusterIP.empty() && !headless && !isIP(clusterIP)) {
      invalid("spec.clusterIP", clusterIP, "must be empty, 'None', or a valid IP address");
    }
    const Json& clusterIPs = member(spec, "clusterIPs");
    listOf(spec, "clusterIPs", "spec.clusterIPs");
    if (clusterIPs.is_array() && !clusterIPs.empty()) {
      if (clusterIPs[0] != clusterIP && !clusterIP.empty()) {
        invalid("spec.clusterIPs[0]", clusterIPs[0], "must be same as `clusterIP`");
      }
      for (std::size_t i = 1; i < clusterIPs.size(); ++i) {
        if (!clusterIPs[i].is_string() || !isIP(clusterIPs[i].get<std::string>())) {
          invalid(idx("spec.clusterIPs", i), clusterIPs[i], "must be a valid IP address");
        }
      }
    }
    if (type == "ExternalName") {
      std::string external = stringField(spec, "externalName", "spec.externalName");
      if (external.empty()) required("spec.externalName");
      else {
        std::string trimmed = external.ends_with('.') ? external.substr(0, external.size() - 1) : external;
        nameSyntax("spec.externalName", trimmed, dns1123SubdomainErrors);
      }
      if (!clusterIP.empty()) forbidden("spec.clusterIP", "may not be set for ExternalName services");
    }
    const Json& ports = member(spec, "ports");
    listOf(spec, "ports", "spec.ports");
    if ((!ports.is_array() || ports.empty()) && type != "ExternalName" && !headless) required("spec.ports");
    if (ports.is_array()) {
      std::set<std::string> names;
      std::set<std::pair<long long, std::string>> portProtocols;
      std::set<std::pair<long long, std::string>> nodePorts;
      for (std::size_t i = 0; i < ports.size(); ++i) {
        const Json& p = ports[i];
        std::string pf = idx("spec.ports", i);
        std::string name = stringField(p, "name", pf + ".name");
        if (name.empty()) {
          if (ports.size() > 1) required(pf + ".name");
        } else {
          nameSyntax(pf + ".name", name, dns1123LabelErrors);
          if (!names.insert(name).second) duplicate(pf + ".name", name);
        }
        const Json& port = member(p, "port");
        portNumber(port, pf + ".port");
        supported(p, "protocol", pf + ".protocol", {"SCTP", "TCP", "UDP"}, true);
        const Json& target = member(p, "targetPort");
        if (!target.is_null()) portReference(target, pf + ".targetPort");
        std::string protocol = str(p, "protocol");
        if (port.is_number_integer() && !portProtocols.emplace(port.get<long long>(), protocol).second) {
          duplicate(pf, Json{{"port", port}, {"protocol", protocol}});
        }
        const Json& nodePort = member(p, "nodePort");
        if (!nodePort.is_null() && nodePort != 0) {
          if (type != "NodePort" && type != "LoadBalancer") {
            forbidden(pf + ".nodePort", fmt::format("may not be used when `type` is '{}'", type));
          } else {
            portNumber(nodePort, pf + ".nodePort");
            if (nodePort.is_number_integer() && !nodePorts.emplace(nodePort.get<long long>(), protocol).second) {
              duplicate(pf + ".nodePort", nodePort);
            }
          }
        }
      }
    }
    labels(member(spec, "selector"), "spec.selector");
    supported(spec, "sessionAffinity", "spec.sessionAffinity", {"ClientIP", "None"}, true);
    const Json& affinityConfig = member(spec, "sessionAffinityConfig");
    if (str(spec, "sessionAffinity") == "ClientIP") {
      const Json& timeout = member(member(affinityConfig, "clientIP"), "timeoutSeconds");
      if (timeout.is_null()) {
        required("spec.sessionAffinityConfig.clientIP.timeoutSeconds");
      } else if (!timeout.is_number_integer() || timeout.get<long long>() <= 0 || timeout.get<long long>() > 86400) {
        invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                "must be greater than 0 and less than 86400");
      }
    } else if (!affinityConfig.is_null() && str(spec, "sessionAffinity") == "None") {
      forbidden("spec.sessionAffinityConfig",
                "must not be set when session affinity is None");
    }
    bool external = type == "NodePort" || type == "LoadBalancer" ||
                    (member(spec, "externalIPs").is_array() && !member(spec, "externalIPs").empty());
    const Json& etp = member(spec, "externalTrafficPolicy");
    if (!etp.is_null() && !external) {
      invalid("spec.externalTrafficPolicy", etp, "may only be set for externally-accessible services");
    } else {
      supported(spec, "externalTrafficPolicy", "spec.externalTrafficPolicy", {"Cluster", "Local"}, type == "NodePort" || type == "LoadBalancer");
    }
    if (type != "ExternalName") {
      supported(spec, "internalTrafficPolicy", "spec.internalTrafficPolicy", {"Cluster", "Local"}, true);
    }
    const Json& externalIPs = member(spec, "externalIPs");
    if (externalIPs.is_array()) {
      for (std::size_t i = 0; i < externalIPs.size(); ++i) {
        if (!externalIPs[i].is_string() || !isIP(externalIPs[i].get<std::string>())) {
          invalid(idx("spec.externalIPs", i), externalIPs[i], "must be a valid IP address");
        }
      }
    }
    if (old) {
      const Json& oldSpec = member(*old, "spec");
      std::string oldIP = str(oldSpec, "clusterIP");
      if (!oldIP.empty() && type != "ExternalName" && str(oldSpec, "type") != "ExternalName" && oldIP != clusterIP) {
        invalid("spec.clusterIP", clusterIP, "field is immutable");
      }
    }
  }

  // ---- small kinds ----

  void configData(const Json& obj, const std::string& dataField, const std::string& otherField, bool stringValues,
                  std::set<std::string>& keys, std::size_t& total) {
    const Json& data = member(obj, dataField.c_str());
    if (data.is_null()) return;
    if (!data.is_object()) {
      invalid(dataField, data, "must be a map");
      return;
    }
    for (auto& [k, v] : data.items()) {
      std::string f = key(dataField, k);
      if (!isConfigKey(k)) {
        invalid(f, k, "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  "
                      "or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')");
      }
      if (!keys.insert(k).second) invalid(f, k, fmt::format("duplicate of key present in {}", otherField));
      if (!v.is_string()) {
        invalid(f, v, stringValues ? "must be a string" : "must be a base64-encoded string");
        continue;
      }
      total += v.get_ref<const std::string&>().size();
    }
  }

  void configMap(const Json& obj, const Json* old) {
    objectMeta(obj, old, dns1123SubdomainErrors, true);
    std::set<std::string> keys;
    std::size_t total = 0;
    configData(obj, "data", "binaryData", true, keys, total);
    configData(obj, "binaryData", "data", false, keys, total);
    if (total > 1024 * 1024) tooLong("", 1024 * 1024);
    immutableData(obj, old, {"data", "binaryData"});
  }

  void immutableData(const Json& obj, const Json* old, std::initializer_list<const char*> fields) {
    if (!old) return;
    if (member(*old, "immutable") == true) {
      if (member(obj, "immutable") != true) forbidden("immutable", "field is immutable when `immutable` is set");
      for (const char* f : fields) {
        if (member(obj, f) != member(*old, f)) forbidden(f, "field is immutable when `immutable` is set");
      }
    }
  }

  void secret(const Json& obj, const Json* old) {
    objectMeta(obj, old, dns1123SubdomainErrors, true);
    std::set<std::string> keys;
    std::size_t total = 0;
    configData(obj, "data", "stringData", false, keys, total);
    std::set<std::string> stringKeys;
    configData(obj, "stringData", "data", true, stringKeys, total);
    if (total > 1024 * 1024) tooLong("data", 1024 * 1024);
    const std::string type = str(obj, "type");
    auto needKey = [&](const char* k) {
      if (!keys.contains(k) && !stringKeys.contains(k)) required(key("data", k));
    };
    if (type == "kubernetes.io/dockerconfigjson") needKey(".dockerconfigjson");
    if (type == "kubernetes.io/dockercfg") needKey(".dockercfg");
    if (type == "kubernetes.io/tls") {
      needKey("tls.crt");
      needKey("tls.key");
    }
    if (type == "kubernetes.io/basic-auth" && !keys.contains("username") && !keys.contains("password") &&
        !stringKeys.contains("username") && !stringKeys.contains("password")) {
      required("data[username]");
    }
    if (old && member(*old, "type") != member(obj, "type")) invalid("type", member(obj, "type"), "field is immutable");
    immutableData(obj, old, {"data"});
  }

  void node(const Json& obj, const Json* old) {
    objectMeta(obj, old, dns1123SubdomainErrors, false);
    const Json& spec = member(obj, "spec");
    std::string cidr = str(spec, "podCIDR");
    if (!cidr.empty() && !isCidr(cidr)) invalid("spec.podCIDR", cidr, "must be a valid CIDR");
    const Json& cidrs = member(spec, "podCIDRs");
    if (cidrs.is_array()) {
      for (std::size_t i = 0; i < cidrs.size(); ++i) {
        if (!cidrs[i].is_string() || !isCidr(cidrs[i].get<std::string>())) {
          invalid(idx("spec.podCIDRs", i), cidrs[i], "must be a valid CIDR");
        }
      }
    }
    const Json& taints = member(spec, "taints");
    if (taints.is_array()) {
      for (std::size_t i = 0; i < taints.size(); ++i) {
        std::string tf = idx("spec.taints", i);
        std::string k = str(taints[i], "key");
        if (k.empty()) required(tf + ".key");
        else for (const auto& e : qualifiedNameErrors(k)) invalid(tf + ".key", k, e);
        std::string v = str(taints[i], "value");
        for (const auto& e : labelValueErrors(v)) invalid(tf + ".value", v, e);
        supported(taints[i], "effect", tf + ".effect", {"NoSchedule", "PreferNoSchedule", "NoExecute"}, true);
      }
    }
    if (old) {
      std::string oldCidr = str(member(*old, "spec"), "podCIDR");
      if (!oldCidr.empty() && oldCidr != cidr) forbidden("spec.podCIDRs", "node updates may not change podCIDR except from \"\" to valid");
    }
  }

  void event(const Json& obj, const Json* old) {
    objectMeta(obj, old, dns1123SubdomainErrors, true);
    const Json& involved = member(obj, "involvedObject");
    std::string ns = namespaceOf(obj);
    std::string involvedNs = str(involved, "namespace");
    if (!involvedNs.empty() && !ns.empty() && involvedNs != ns) {
      invalid("involvedObject.namespace", involvedNs, "does not match event.namespace");
    }
    const Json& type = member(obj, "type");
    if (!type.is_null() && type != "Normal" && type != "Warning" && type != "") {
      notSupported("type", type, {"Normal", "Warning"});
    }
  }

  void lease(const Json& obj, const Json* old) {
    objectMeta(obj, old, dns1123SubdomainErrors, true);
    const Json& spec = member(obj, "spec");
    const Json& duration = member(spec, "leaseDurationSeconds");
    if (!duration.is_null() && (!duration.is_number_integer() || duration.get<long long>() <= 0)) {
      invalid("spec.leaseDurationSeconds", duration, "must be greater than 0");
    }
    const Json& transitions = member(spec, "leaseTransitions");
    if (!transitions.is_null() && (!transitions.is_number_integer() || transitions.get<long long>() < 0)) {
      invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0");
    }
  }

  void endpointPorts(const Json& ports, const std::string& field, bool requireNames) {
    if (ports.is_null()) return;
    if (!ports.is_array()) {
      invalid(field, ports, "must be a list");
      return;
    }
    std::set<std::string> names;
    for (std::size_t i = 0; i < ports.size(); ++i) {
      const Json& p = ports[i];
      std::string pf = idx(field, i);
      std::string name = str(p, "name");
      if (!name.empty()) nameSyntax(pf + ".name", name, dns1123LabelErrors);
      else if (requireNames && ports.size() > 1) required(pf + ".name");
      if (!names.insert(name).second) duplicate(pf + ".name", name);
      const Json& port = member(p, "port");
      if (!port.is_null()) portNumber(port, pf + ".port");
      else if (requireNames) required(pf + ".port");
      supported(p, "protocol", pf + ".protocol", {"SCTP", "TCP", "UDP"}, true);
    }
  }

  void endpointSlice(const Json& obj, const Json* old) {
    objectMeta(obj, old, dns1123SubdomainErrors, true);
    supported(obj, "addressType", "addressType", {"IPv4", "IPv6", "FQDN"}, true);
    const std::string type = str(obj, "addressType");
    const Json& endpoints = member(obj, "endpoints");
    listOf(obj, "endpoints", "endpoints");
    if (endpoints.is_array()) {
      if (endpoints.size() > 1000) {
        add("endpoints", fmt::format("Too many: {}: must have at most 1000 items", endpoints.size()), Cause::kTooMany);
      }
      for (std::size_t i = 0; i < endpoints.size(); ++i) {
        std::string ef = idx("endpoints", i);
        const Json& addrs = member(endpoints[i], "addresses");
        if (!addrs.is_array() || addrs.empty()) {
          required(ef + ".addresses", "must contain at least 1 address");
          continue;
        }
        if (addrs.size() > 100) {
          add(ef + ".addresses", fmt::format("Too many: {}: must have at most 100 items", addrs.size()), Cause::kTooMany);
        }
        for (std::size_t j = 0; j < addrs.size(); ++j) {
          std::string af = idx(ef + ".addresses", j);
          std::string a = addrs[j].is_string() ? addrs[j].get<std::string>() : "";
          if (type == "IPv4" && !isIPv4(a)) invalid(af, addrs[j], "must be a valid IPv4 address");
          else if (type == "IPv6" && !isIPv6(a)) invalid(af, addrs[j], "must be a valid IPv6 address");
          else if (type == "FQDN") nameSyntax(af, a, dns1123SubdomainErrors);
        }
        std::string hostname = str(endpoints[i], "hostname");
        if (!hostname.empty()) nameSyntax(ef + ".hostname", hostname, dns1123LabelErrors);
        std::string nodeName = str(endpoints[i], "nodeName");
        if (!nodeName.empty()) nameSyntax(ef + ".nodeName", nodeName, dns1123SubdomainErrors);
      }
    }
    endpointPorts(member(obj, "ports"), "ports", false);
    if (old && member(*old, "addressType") != member(obj, "addressType")) {
      invalid("addressType", member(obj, "addressType"), "field is immutable");
    }
  }

  void endpoints(const Json& obj, const Json* old) {
    objectMeta(obj, old, dns1123SubdomainErrors, true);
    const Json& subsets = member(obj, "subsets");
    listOf(obj, "subsets", "subsets");
    if (!subsets.is_array()) return;
    for (std::size_t i = 0; i < subsets.size(); ++i) {
      std::string sf = idx("subsets", i);
      for (const char* list : {"addresses", "notReadyAddresses"}) {
        const Json& addrs = member(subsets[i], list);
        if (!addrs.is_array()) continue;
        for (std::size_t j = 0; j < addrs.size(); ++j) {
          std::string ip = str(addrs[j], "ip");
          std::string af = idx(sf + "." + list, j) + ".ip";
          if (ip.empty()) required(af);
          else if (!isIP(ip)) invalid(af, ip, "must be a valid IP address");
        }
      }
      endpointPorts(member(subsets[i], "ports"), sf + ".ports", true);
    }
  }

  void hpa(const Json& obj, const Json* old) {
    objectMeta(obj, old, dns1123SubdomainErrors, true);
    const Json& spec = member(obj, "spec");
    const Json& ref = member(spec, "scaleTargetRef");
    if (str(ref, "kind").empty()) required("spec.scaleTargetRef.kind");
    std::string targetName = str(ref, "name");
    if (targetName.empty()) required("spec.scaleTargetRef.name");
    else nameSyntax("spec.scaleTargetRef.name", targetName, dns1123SubdomainErrors);
    long long minReplicas = intField(spec, "minReplicas", "spec.minReplicas", 1);
    if (minReplicas < 1) invalid("spec.minReplicas", minReplicas, "must be greater than or equal to 1");
    const Json& maxJson = member(spec, "maxReplicas");
    if (maxJson.is_null()) {
      required("spec.maxReplicas");
    } else {
      long long maxReplicas = intField(spec, "maxReplicas", "spec.maxReplicas", 1);
      if (maxReplicas < 1) invalid("spec.maxReplicas", maxReplicas, "must be greater than 0");
      else if (maxReplicas < minReplicas) {
        invalid("spec.maxReplicas", maxReplicas, "must be greater than or equal to `minReplicas`");
      }
    }
    const Json& metrics = member(spec, "metrics");
    if (metrics.is_array()) {
      for (std::size_t i = 0; i < metrics.size(); ++i) {
        std::string mf = idx("spec.metrics", i);
        supported(metrics[i], "type", mf + ".type", {"ContainerResource", "External", "Object", "Pods", "Resource"},
                  true);
        std::string type = str(metrics[i], "type");
        if (type == "Resource" || type == "ContainerResource") {
          const char* sub = type == "Resource" ? "resource" : "containerResource";
          const Json& r = member(metrics[i], sub);
          std::string rf = mf + "." + sub;
          if (!r.is_object()) {
            required(rf, "must populate information for the given metric source");
            continue;
          }
          if (str(r, "name").empty()) required(rf + ".name");
          if (type == "ContainerResource" && str(r, "container").empty()) required(rf + ".container");
          const Json& target = member(r, "target");
          supported(target, "type", rf + ".target.type", {"AverageValue", "Utilization", "Value"}, true);
          const Json& util = member(target, "averageUtilization");
          if (!util.is_null() && (!util.is_number_integer() || util.get<long long>() <= 0)) {
            invalid(rf + ".target.averageUtilization", util, "must be greater than 0");
          }
          for (const char* q : {"averageValue", "value"}) {
            const Json& v = member(target, q);
            if (v.is_null()) continue;
            auto parsed = Quantity::fromJson(v);
            if (!parsed) invalid(rf + ".target." + q, v, parsed.error().message);
            else if (parsed->sign() <= 0) invalid(rf + ".target." + q, v, "must be positive");
          }
        }
      }
    }
    const Json& behavior = member(spec, "behavior");
    for (const char* dir : {"scaleUp", "scaleDown"}) {
      const Json& rules = member(behavior, dir);
      if (!rules.is_object()) continue;
      std::string bf = fmt::format("spec.behavior.{}", dir);
      const Json& window = member(rules, "stabilizationWindowSeconds");
      if (!window.is_null() && (!window.is_number_integer() || window.get<long long>() < 0 || window.get<long long>() > 3600)) {
        invalid(bf + ".stabilizationWindowSeconds", window, "must be less than or equal to 3600");
      }
      supported(rules, "selectPolicy", bf + ".selectPolicy", {"Disabled", "Max", "Min"});
      const Json& policies = member(rules, "policies");
      if (policies.is_array()) {
        for (std::size_t i = 0; i < policies.size(); ++i) {
          std::string pf = idx(bf + ".policies", i);
          supported(policies[i], "type", pf + ".type", {"Percent", "Pods"}, true);
          long long value = intField(policies[i], "value", pf + ".value");
          if (value <= 0) invalid(pf + ".value", value, "must be greater than zero");
          long long period = intField(policies[i], "periodSeconds", pf + ".periodSeconds");
          if (period <= 0 || period > 1800) invalid(pf + ".periodSeconds", period, "must be greater than zero and less than or equal to 1800");
        }
      }
    }
  }

  void pod(const Json& obj, const Json* old) {
    objectMeta(obj, old, dns1123SubdomainErrors, true);
    podSpec(member(obj, "spec"), "spec", false);
    if (old) podSpecUpdate(member(obj, "spec"), member(*old, "spec"));
  }

  void namespaceObject(const Json& obj, const Json* old) {
    objectMeta(obj, old, dns1123LabelErrors, false);
    const Json& finalizers = member(member(obj, "spec"), "finalizers");
    if (finalizers.is_array()) {
      for (std::size_t i = 0; i < finalizers.size(); ++i) {
        if (!finalizers[i].is_string()) {
          invalid(idx("spec.finalizers", i), finalizers[i], "must be a string");
          continue;
        }
        std::string f = finalizers[i].get<std::string>();
        if (f != "kubernetes" && f.find('/') == std::string::npos) {
          invalid(idx("spec.finalizers", i), f, "name is neither a standard finalizer name nor is it fully qualified");
        }
      }
    }
  }

 private:
  void add(std::string field, std::string message, const char* reason) {
    causes.push_back(Cause{std::move(field), std::move(message), reason});
  }
};

}  // namespace

std::vector<Cause> validate(std::string_view resource, const Json& obj, const Json* old) {
  Validator v;
  if (!obj.is_object()) {
    v.invalid("", obj, "must be a JSON object");
    return std::move(v.causes);
  }
  std::string_view base = resourceBaseName(resource);
  if (base == "pods") v.pod(obj, old);
  else if (base == "services") v.service(obj, old);
  else if (base == "deployments") v.deployment(obj, old);
  else if (base == "replicasets") v.replicaSet(obj, old);
  else if (base == "configmaps") v.configMap(obj, old);
  else if (base == "secrets") v.secret(obj, old);
  else if (base == "namespaces") v.namespaceObject(obj, old);
  else if (base == "nodes") v.node(obj, old);
  else if (base == "events") v.event(obj, old);
  else if (base == "leases") v.lease(obj, old);
  else if (base == "endpointslices") v.endpointSlice(obj, old);
  else if (base == "endpoints") v.endpoints(obj, old);
  else if (base == "horizontalpodautoscalers") v.hpa(obj, old);
  else v.objectMeta(obj, old, dns1123SubdomainErrors, true);
  return std::move(v.causes);
}

std::string invalidMessage(std::string_view qualifiedKind, std::string_view name, const std::vector<Cause>& causes) {
  std::string list;
  for (std::size_t i = 0; i < causes.size(); ++i) {
    if (i) list += ", ";
    list += causes[i].toString();
  }
  if (causes.size() > 1) list = "[" + list + "]";
  return fmt::format("{} \"{}\" is invalid: {}", qualifiedKind, name, list);
}

namespace {

void podSpecWarnings(const Json& spec, const std::string& field, std::vector<std::string>& out) {
  if (!spec.is_object()) return;
  static const char* supportedVolumes[] = {"emptyDir", "hostPath", "configMap", "secret"};
  const Json& vols = member(spec, "volumes");
  if (vols.is_array()) {
    for (std::size_t i = 0; i < vols.size(); ++i) {
      if (!vols[i].is_object()) continue;
      for (auto& [k, v] : vols[i].items()) {
        if (k == "name") continue;
        bool ok = std::any_of(std::begin(supportedVolumes), std::end(supportedVolumes),
                              [&](const char* s) { return k == s; });
        if (!ok) {
          out.push_back(fmt::format("{}[{}].{}: volume type not supported by Ferry; the volume is not mounted",
                                    field + ".volumes", i, k));
        }
      }
    }
  }
  // Pod-level fields Ferry stores but does not act on.
  static const char* ignoredSpec[] = {"ephemeralContainers", "affinity", "topologySpreadConstraints", "runtimeClassName",
                                      "overhead", "readinessGates", "resourceClaims", "schedulingGates", "os",
                                      "hostUsers", "priorityClassName", "preemptionPolicy", "setHostnameAsFQDN",
                                      "shareProcessNamespace", "hostPID", "hostIPC"};
  for (const char* f : ignoredSpec) {
    const Json& v = member(spec, f);
    bool set = !v.is_null() && v != false && !(v.is_array() && v.empty()) && !(v.is_object() && v.empty());
    if (set) out.push_back(fmt::format("{}.{}: not supported by Ferry; accepted and ignored", field, f));
  }
  for (const char* list : {"containers", "initContainers"}) {
    const Json& cs = member(spec, list);
    if (!cs.is_array()) continue;
    for (std::size_t i = 0; i < cs.size(); ++i) {
      for (const char* f : {"volumeDevices", "resizePolicy"}) {
        const Json& v = member(cs[i], f);
        if (!v.is_null() && !(v.is_array() && v.empty())) {
          out.push_back(fmt::format("{}.{}[{}].{}: not supported by Ferry; accepted and ignored", field, list, i, f));
        }
      }
      const Json& sc = member(cs[i], "securityContext");
      for (const char* f : {"seLinuxOptions", "appArmorProfile", "windowsOptions", "procMount"}) {
        if (has(sc, f)) {
          out.push_back(fmt::format("{}.{}[{}].securityContext.{}: not supported by Ferry; accepted and ignored", field,
                                    list, i, f));
        }
      }
    }
  }
}

}  // namespace

std::vector<std::string> unsupportedFieldWarnings(std::string_view resource, const Json& obj) {
  std::vector<std::string> out;
  std::string_view base = resourceBaseName(resource);
  if (base == "pods") {
    podSpecWarnings(member(obj, "spec"), "spec", out);
  } else if (base == "deployments" || base == "replicasets") {
    podSpecWarnings(member(member(member(obj, "spec"), "template"), "spec"), "spec.template.spec", out);
  } else if (base == "services") {
    const Json& spec = member(obj, "spec");
    if (str(spec, "type") == "LoadBalancer") {
      out.push_back("spec.type: LoadBalancer has no load-balancer provider in Ferry; it is served as a NodePort service");
    }
    for (const char* f : {"loadBalancerSourceRanges", "loadBalancerIP", "loadBalancerClass", "trafficDistribution"}) {
      if (has(spec, f)) out.push_back(fmt::format("spec.{}: not supported by Ferry; accepted and ignored", f));
    }
    const Json& families = member(spec, "ipFamilies");
    if (families.is_array()) {
      for (const auto& f : families) {
        if (f == "IPv6")
          out.push_back("spec.ipFamilies: IPv6: pods in Ferry have IPv4 addresses only, so no IPv6 endpoints are made for a "
                        "selector; an IPv6 ClusterIP serves the addressType IPv6 EndpointSlices you create (proxy mode ebpf)");
      }
    }
  }
  return out;
}

void carryOverAllocatedFields(std::string_view resource, Json& obj, const Json& old) {
  if (resourceBaseName(resource) == "nodes" && obj.is_object()) {
    // The pod CIDR the server allocated stays when an update leaves it out.
    const Json& oldSpec = member(old, "spec");
    if (!str(oldSpec, "podCIDR").empty() && str(member(obj, "spec"), "podCIDR").empty()) {
      if (!obj["spec"].is_object()) obj["spec"] = Json::object();
      obj["spec"]["podCIDR"] = oldSpec["podCIDR"];
      if (has(oldSpec, "podCIDRs")) obj["spec"]["podCIDRs"] = oldSpec["podCIDRs"];
    }
    return;
  }
  if (resourceBaseName(resource) != "services" || !obj.is_object()) return;
  const Json& oldSpec = member(old, "spec");
  if (!oldSpec.is_object()) return;
  Json& spec = obj["spec"];
  if (!spec.is_object()) return;
  const std::string type = str(spec, "type");
  if (type == "ExternalName") return;
  for (const char* f : {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"}) {
    const Json& now = member(spec, f);
    bool empty = now.is_null() || (now.is_string() && now.get_ref<const std::string&>().empty()) ||
                 (now.is_array() && now.empty());
    if (empty && has(oldSpec, f)) spec[f] = oldSpec[f];
  }
  if (type == "NodePort" || type == "LoadBalancer") {
    const Json& oldPorts = member(oldSpec, "ports");
    Json& ports = spec["ports"];
    if (ports.is_array() && oldPorts.is_array()) {
      for (auto& p : ports) {
        if (!p.is_object() || (has(p, "nodePort") && p["nodePort"] != 0)) continue;
        for (const auto& op : oldPorts) {
          if (member(op, "port") == member(p, "port") && member(op, "protocol") == member(p, "protocol") &&
              has(op, "nodePort")) {
            p["nodePort"] = op["nodePort"];
            break;
          }
        }
      }
    }
    if (!has(spec, "healthCheckNodePort") && has(oldSpec, "healthCheckNodePort") &&
        str(spec, "externalTrafficPolicy") == "Local") {
      spec["healthCheckNodePort"] = oldSpec["healthCheckNodePort"];
    }
  }
}

}  // namespace ferry::api
