#include "controlplane-lite/protobuf_body.h"

#include "api/base64.h"

#include <fmt/format.h>

#include <cstdint>
#include <vector>

namespace ferry::cp {

using api::Json;

namespace {

// How a field's value is written on the wire and shown in JSON.
enum class Kind {
  String,
  Bytes,        // []byte: base64 in JSON
  Int32,
  Int64,
  Bool,
  Message,
  StringMap,    // map<string, string>
  BytesMap,     // map<string, bytes>
  QuantityMap,  // map<string, resource.Quantity> (ResourceList)
  IntOrString,  // {1: type (0 int, 1 string), 2: intVal, 3: strVal}
  Quantity,     // {1: string}
  Time,         // {1: seconds, 2: nanos} -> RFC 3339
  Ignored,      // server-owned (status, managedFields): not taken from a request
};

struct MessageType;

struct Field {
  int number = 0;
  const char* name = "";
  Kind kind = Kind::String;
  bool repeated = false;
  const MessageType* type = nullptr;  // for Kind::Message
  // A pointer field in Go is on the wire only when set, so a zero value there
  // was meant (replicas: 0). Other scalars are always written; their zero
  // value means "unset", as in Go's JSON with omitempty.
  bool keepZero = false;
};

struct MessageType {
  const char* name = "";
  std::vector<Field> fields;
  const Field* find(int number) const {
    for (const auto& f : fields)
      if (f.number == number) return &f;
    return nullptr;
  }
};

Field str(int n, const char* name) { return {n, name, Kind::String}; }
Field strs(int n, const char* name) { return {n, name, Kind::String, true}; }
Field i32(int n, const char* name, bool keepZero = false) { return {n, name, Kind::Int32, false, nullptr, keepZero}; }
Field i64(int n, const char* name, bool keepZero = false) { return {n, name, Kind::Int64, false, nullptr, keepZero}; }
Field boolean(int n, const char* name, bool keepZero = false) { return {n, name, Kind::Bool, false, nullptr, keepZero}; }
Field msg(int n, const char* name, const MessageType& t) { return {n, name, Kind::Message, false, &t}; }
Field msgs(int n, const char* name, const MessageType& t) { return {n, name, Kind::Message, true, &t}; }
Field of(int n, const char* name, Kind k) { return {n, name, k}; }

// Field numbers from k8s.io/api and k8s.io/apimachinery generated.proto, for
// the fields `kubectl create <kind>` can set (and the zero-valued ones Go
// writes beside them).
struct Messages {
  MessageType objectMeta, ownerReference, labelSelector, labelSelectorRequirement;
  MessageType configMap, secret, namespaceSpec, namespaceKind, objectReference, localObjectReference, serviceAccount;
  MessageType servicePort, serviceSpec, service;
  MessageType containerPort, envVar, resourceRequirements, container, podSpec, podTemplateSpec;
  MessageType rollingUpdateDeployment, deploymentStrategy, deploymentSpec, deployment;
  MessageType crossVersionObjectReference, metricTarget, resourceMetricSource, metricSpec, hpaSpec, hpa;

  Messages() {
    ownerReference = {"OwnerReference",
                      {str(1, "kind"), str(3, "name"), str(4, "uid"), str(5, "apiVersion"),
                       boolean(6, "controller", true), boolean(7, "blockOwnerDeletion", true)}};
    objectMeta = {"ObjectMeta",
                  {str(1, "name"), str(2, "generateName"), str(3, "namespace"), str(4, "selfLink"), str(5, "uid"),
                   str(6, "resourceVersion"), i64(7, "generation"), of(8, "creationTimestamp", Kind::Time),
                   of(9, "deletionTimestamp", Kind::Time), i64(10, "deletionGracePeriodSeconds", true),
                   of(11, "labels", Kind::StringMap), of(12, "annotations", Kind::StringMap),
                   msgs(13, "ownerReferences", ownerReference), strs(14, "finalizers"),
                   of(17, "managedFields", Kind::Ignored)}};
    labelSelectorRequirement = {"LabelSelectorRequirement", {str(1, "key"), str(2, "operator"), strs(3, "values")}};
    labelSelector = {"LabelSelector",
                     {of(1, "matchLabels", Kind::StringMap), msgs(2, "matchExpressions", labelSelectorRequirement)}};

    configMap = {"ConfigMap",
                 {msg(1, "metadata", objectMeta), of(2, "data", Kind::StringMap), of(3, "binaryData", Kind::BytesMap),
                  boolean(4, "immutable", true)}};
    secret = {"Secret",
              {msg(1, "metadata", objectMeta), of(2, "data", Kind::BytesMap), str(3, "type"),
               of(4, "stringData", Kind::StringMap), boolean(5, "immutable", true)}};
    namespaceSpec = {"NamespaceSpec", {strs(1, "finalizers")}};
    namespaceKind = {"Namespace",
                     {msg(1, "metadata", objectMeta), msg(2, "spec", namespaceSpec), of(3, "status", Kind::Ignored)}};
    objectReference = {"ObjectReference",
                       {str(1, "kind"), str(2, "namespace"), str(3, "name"), str(4, "uid"), str(5, "apiVersion"),
                        str(6, "resourceVersion"), str(7, "fieldPath")}};
    localObjectReference = {"LocalObjectReference", {str(1, "name")}};
    serviceAccount = {"ServiceAccount",
                      {msg(1, "metadata", objectMeta), msgs(2, "secrets", objectReference),
                       msgs(3, "imagePullSecrets", localObjectReference),
                       boolean(4, "automountServiceAccountToken", true)}};

    servicePort = {"ServicePort",
                   {str(1, "name"), str(2, "protocol"), i32(3, "port"), of(4, "targetPort", Kind::IntOrString),
                    i32(5, "nodePort"), str(6, "appProtocol")}};
    serviceSpec = {"ServiceSpec",
                   {msgs(1, "ports", servicePort), of(2, "selector", Kind::StringMap), str(3, "clusterIP"),
                    str(4, "type"), strs(5, "externalIPs"), str(7, "sessionAffinity"), str(8, "loadBalancerIP"),
                    strs(9, "loadBalancerSourceRanges"), str(10, "externalName"), str(11, "externalTrafficPolicy"),
                    i32(12, "healthCheckNodePort"), boolean(13, "publishNotReadyAddresses")}};
    service = {"Service", {msg(1, "metadata", objectMeta), msg(2, "spec", serviceSpec), of(3, "status", Kind::Ignored)}};

    containerPort = {"ContainerPort",
                     {str(1, "name"), i32(2, "hostPort"), i32(3, "containerPort"), str(4, "protocol"), str(5, "hostIP")}};
    envVar = {"EnvVar", {str(1, "name"), str(2, "value")}};
    resourceRequirements = {"ResourceRequirements",
                            {of(1, "limits", Kind::QuantityMap), of(2, "requests", Kind::QuantityMap)}};
    container = {"Container",
                 {str(1, "name"), str(2, "image"), strs(3, "command"), strs(4, "args"), str(5, "workingDir"),
                  msgs(6, "ports", containerPort), msgs(7, "env", envVar), msg(8, "resources", resourceRequirements),
                  str(13, "terminationMessagePath"), str(14, "imagePullPolicy"), boolean(16, "stdin"),
                  boolean(17, "stdinOnce"), boolean(18, "tty"), str(20, "terminationMessagePolicy")}};
    podSpec = {"PodSpec",
               {msgs(2, "containers", container), str(3, "restartPolicy"),
                i64(4, "terminationGracePeriodSeconds", true), i64(5, "activeDeadlineSeconds", true),
                str(6, "dnsPolicy"), of(7, "nodeSelector", Kind::StringMap), str(8, "serviceAccountName"),
                str(9, "serviceAccount"), str(10, "nodeName"), boolean(11, "hostNetwork"), boolean(12, "hostPID"),
                boolean(13, "hostIPC"), msgs(15, "imagePullSecrets", localObjectReference), str(16, "hostname"),
                str(17, "subdomain"), str(19, "schedulerName"), msgs(20, "initContainers", container),
                boolean(21, "automountServiceAccountToken", true), str(24, "priorityClassName"),
                i32(25, "priority", true), boolean(30, "enableServiceLinks", true)}};
    podTemplateSpec = {"PodTemplateSpec", {msg(1, "metadata", objectMeta), msg(2, "spec", podSpec)}};

    rollingUpdateDeployment = {"RollingUpdateDeployment",
                               {of(1, "maxUnavailable", Kind::IntOrString), of(2, "maxSurge", Kind::IntOrString)}};
    deploymentStrategy = {"DeploymentStrategy", {str(1, "type"), msg(2, "rollingUpdate", rollingUpdateDeployment)}};
    deploymentSpec = {"DeploymentSpec",
                      {i32(1, "replicas", true), msg(2, "selector", labelSelector), msg(3, "template", podTemplateSpec),
                       msg(4, "strategy", deploymentStrategy), i32(5, "minReadySeconds"),
                       i32(6, "revisionHistoryLimit", true), boolean(7, "paused"),
                       i32(9, "progressDeadlineSeconds", true)}};
    deployment = {"Deployment",
                  {msg(1, "metadata", objectMeta), msg(2, "spec", deploymentSpec), of(3, "status", Kind::Ignored)}};
    addAutoscaling();
  }

  void addAutoscaling() {
    // autoscaling/v2 (what `kubectl autoscale` sends)
    crossVersionObjectReference = {"CrossVersionObjectReference", {str(1, "kind"), str(2, "name"), str(3, "apiVersion")}};
    metricTarget = {"MetricTarget",
                    {str(1, "type"), of(2, "value", Kind::Quantity), of(3, "averageValue", Kind::Quantity),
                     i32(4, "averageUtilization", true)}};
    resourceMetricSource = {"ResourceMetricSource", {str(1, "name"), msg(2, "target", metricTarget)}};
    metricSpec = {"MetricSpec", {str(1, "type"), msg(4, "resource", resourceMetricSource)}};
    hpaSpec = {"HorizontalPodAutoscalerSpec",
               {msg(1, "scaleTargetRef", crossVersionObjectReference), i32(2, "minReplicas", true),
                i32(3, "maxReplicas"), msgs(4, "metrics", metricSpec)}};
    hpa = {"HorizontalPodAutoscaler",
           {msg(1, "metadata", objectMeta), msg(2, "spec", hpaSpec), of(3, "status", Kind::Ignored)}};
  }

  const MessageType* forKind(const std::string& apiVersion, const std::string& kind) const {
    if (apiVersion == "v1") {
      if (kind == "ConfigMap") return &configMap;
      if (kind == "Secret") return &secret;
      if (kind == "Namespace") return &namespaceKind;
      if (kind == "ServiceAccount") return &serviceAccount;
      if (kind == "Service") return &service;
    }
    if (apiVersion == "apps/v1" && kind == "Deployment") return &deployment;
    if (apiVersion == "autoscaling/v2" && kind == "HorizontalPodAutoscaler") return &hpa;
    return nullptr;
  }
};

const Messages& messages() {
  static const Messages m;
  return m;
}

enum WireType { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

// One field as found on the wire: a varint, or the bytes of a length-delimited value.
struct WireField {
  int number = 0;
  int wireType = 0;
  std::uint64_t varint = 0;
  std::string_view bytes;
  bool isZero() const { return wireType == kLengthDelimited ? bytes.empty() : varint == 0; }
};

Result<std::uint64_t> readVarint(std::string_view data, std::size_t& pos) {
  std::uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= data.size()) return fail(EBADMSG, "truncated varint");
    auto byte = static_cast<unsigned char>(data[pos++]);
    value |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return value;
  }
  return fail(EBADMSG, "varint longer than 10 bytes");
}

// Every field of one message, in wire order. Fixed-width values (no
// Kubernetes field Ferry decodes has them) are kept as zero or non-zero.
Result<std::vector<WireField>> fieldsOf(std::string_view data) {
  std::vector<WireField> out;
  std::size_t pos = 0;
  while (pos < data.size()) {
    auto tag = readVarint(data, pos);
    if (!tag) return fail(tag.error());
    WireField f;
    auto number = *tag >> 3;
    if (number == 0 || number > 536870911) return fail(EBADMSG, fmt::format("field number {} is not valid", number));
    f.number = static_cast<int>(number);
    f.wireType = static_cast<int>(*tag & 7);
    switch (f.wireType) {
      case kVarint: {
        auto v = readVarint(data, pos);
        if (!v) return fail(v.error());
        f.varint = *v;
        break;
      }
      case kLengthDelimited: {
        auto length = readVarint(data, pos);
        if (!length) return fail(length.error());
        if (*length > data.size() - pos)
          return fail(EBADMSG, fmt::format("field {}: length {} runs past the end of the message", f.number, *length));
        f.bytes = data.substr(pos, *length);
        pos += *length;
        break;
      }
      case kFixed64:
      case kFixed32: {
        std::size_t n = f.wireType == kFixed64 ? 8 : 4;
        if (data.size() - pos < n) return fail(EBADMSG, "truncated fixed-width value");
        f.varint = data.substr(pos, n).find_first_not_of('\0') != std::string_view::npos;
        pos += n;
        break;
      }
      default:
        return fail(EBADMSG, fmt::format("field {}: wire type {} is not valid", f.number, f.wireType));
    }
    out.push_back(f);
  }
  return out;
}

// The field path for messages: "spec.template.spec.containers", or the top level.
std::string where(const std::string& path) { return path.empty() ? "(object)" : path; }

std::int32_t asInt32(std::uint64_t v) { return static_cast<std::int32_t>(static_cast<std::uint32_t>(v)); }

class Decoder {
 public:
  Result<Json> message(const MessageType& type, std::string_view data, const std::string& path) {
    if (++depth_ > 32) return fail(EBADMSG, where(path) + ": messages nested too deeply");
    auto fields = fieldsOf(data);
    if (!fields) return fail(fields.error().wrap(where(path)));
    Json out = Json::object();
    for (const auto& wire : *fields) {
      const Field* field = type.find(wire.number);
      if (!field) {
        if (!wire.isZero())
          return fail(EBADMSG, fmt::format("{}: field number {} of {} is set, and Ferry does not decode it from protobuf",
                                           where(path), wire.number, type.name));
        continue;
      }
      if (field->kind == Kind::Ignored) continue;
      std::string fieldPath = path.empty() ? field->name : path + "." + field->name;
      if (auto st = value(*field, wire, out, fieldPath); !st) return fail(st.error());
    }
    --depth_;
    return out;
  }

 private:
  Status value(const Field& f, const WireField& wire, Json& out, const std::string& path) {
    bool varintKind = f.kind == Kind::Int32 || f.kind == Kind::Int64 || f.kind == Kind::Bool;
    if (wire.wireType != (varintKind ? kVarint : kLengthDelimited))
      return fail(EBADMSG, fmt::format("{}: wire type {} does not fit the field", path, wire.wireType));
    auto place = [&](Json v) {
      if (f.repeated) {
        if (!out[f.name].is_array()) out[f.name] = Json::array();
        out[f.name].push_back(std::move(v));
      } else {
        out[f.name] = std::move(v);
      }
    };
    if (varintKind) {
      if (wire.varint == 0 && !f.keepZero) return {};
      if (f.kind == Kind::Bool) place(wire.varint != 0);
      else if (f.kind == Kind::Int32) place(asInt32(wire.varint));
      else place(static_cast<std::int64_t>(wire.varint));
      return {};
    }
    if (f.kind == Kind::String || f.kind == Kind::Bytes) {
      if (wire.bytes.empty() && !f.repeated) return {};
      place(f.kind == Kind::String ? Json(std::string(wire.bytes)) : Json(api::base64Encode(wire.bytes)));
      return {};
    }
    if (f.kind == Kind::StringMap || f.kind == Kind::BytesMap || f.kind == Kind::QuantityMap) {
      auto entry = mapEntry(f.kind, wire.bytes, path);
      if (!entry) return fail(entry.error());
      if (!out[f.name].is_object()) out[f.name] = Json::object();
      out[f.name][entry->first] = std::move(entry->second);
      return {};
    }
    Result<Json> decoded = f.kind == Kind::Message       ? message(*f.type, wire.bytes, path)
                           : f.kind == Kind::IntOrString ? intOrString(wire.bytes, path)
                           : f.kind == Kind::Quantity    ? quantity(wire.bytes, path)
                                                         : time(wire.bytes, path);
    if (!decoded) return fail(decoded.error());
    if (!decoded->is_null()) place(std::move(*decoded));  // a zero Time is null: left out
    return {};
  }

  // map<string, V> is a repeated {1: key, 2: value} message.
  Result<std::pair<std::string, Json>> mapEntry(Kind kind, std::string_view data, const std::string& path) {
    auto fields = fieldsOf(data);
    if (!fields) return fail(fields.error().wrap(path));
    std::string key;
    Json value = kind == Kind::QuantityMap ? Json("0") : Json("");
    for (const auto& f : *fields) {
      if (f.wireType != kLengthDelimited) continue;
      if (f.number == 1) {
        key = std::string(f.bytes);
      } else if (f.number == 2) {
        if (kind == Kind::BytesMap) {
          value = api::base64Encode(f.bytes);
        } else if (kind == Kind::QuantityMap) {
          auto q = quantity(f.bytes, path);
          if (!q) return fail(q.error());
          value = std::move(*q);
        } else {
          value = std::string(f.bytes);
        }
      }
    }
    return std::pair{std::move(key), std::move(value)};
  }

  // intstr.IntOrString {1: type (0 int, 1 string), 2: intVal, 3: strVal}
  Result<Json> intOrString(std::string_view data, const std::string& path) {
    auto fields = fieldsOf(data);
    if (!fields) return fail(fields.error().wrap(path));
    std::uint64_t type = 0, intVal = 0;
    std::string strVal;
    for (const auto& f : *fields) {
      if (f.number == 1 && f.wireType == kVarint) type = f.varint;
      if (f.number == 2 && f.wireType == kVarint) intVal = f.varint;
      if (f.number == 3 && f.wireType == kLengthDelimited) strVal = std::string(f.bytes);
    }
    if (type > 1) return fail(EBADMSG, fmt::format("{}: IntOrString type {} is neither 0 (int) nor 1 (string)", path, type));
    return type == 1 ? Json(strVal) : Json(asInt32(intVal));
  }

  // resource.Quantity {1: string}
  Result<Json> quantity(std::string_view data, const std::string& path) {
    auto fields = fieldsOf(data);
    if (!fields) return fail(fields.error().wrap(path));
    std::string text;
    for (const auto& f : *fields)
      if (f.number == 1 && f.wireType == kLengthDelimited) text = std::string(f.bytes);
    return Json(text);
  }

  // metav1.Time {1: seconds, 2: nanos}; the zero Time (what Go writes for an unset one) is null.
  Result<Json> time(std::string_view data, const std::string& path) {
    auto fields = fieldsOf(data);
    if (!fields) return fail(fields.error().wrap(path));
    std::uint64_t seconds = 0, nanos = 0;
    for (const auto& f : *fields) {
      if (f.number == 1 && f.wireType == kVarint) seconds = f.varint;
      if (f.number == 2 && f.wireType == kVarint) nanos = f.varint;
    }
    if (seconds == 0 && nanos == 0) return Json();
    return Json(api::toRfc3339(static_cast<std::int64_t>(seconds)));
  }

  int depth_ = 0;
};

}  // namespace

Result<Json> decodeProtobufObject(std::string_view body) {
  static constexpr std::string_view kMagic("k8s\0", 4);
  if (!body.starts_with(kMagic))
    return fail(EBADMSG, "protobuf body: does not start with the Kubernetes protobuf magic \"k8s\\0\"");
  // runtime.Unknown {1: typeMeta {1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding, 4: contentType}
  auto envelope = fieldsOf(body.substr(kMagic.size()));
  if (!envelope) return fail(envelope.error().wrap("protobuf body: envelope"));
  std::string apiVersion, kind, contentEncoding;
  std::string_view raw;
  for (const auto& f : *envelope) {
    if (f.wireType != kLengthDelimited) continue;
    if (f.number == 1) {
      auto typeMeta = fieldsOf(f.bytes);
      if (!typeMeta) return fail(typeMeta.error().wrap("protobuf body: typeMeta"));
      for (const auto& t : *typeMeta) {
        if (t.wireType != kLengthDelimited) continue;
        if (t.number == 1) apiVersion = std::string(t.bytes);
        if (t.number == 2) kind = std::string(t.bytes);
      }
    } else if (f.number == 2) {
      raw = f.bytes;
    } else if (f.number == 3) {
      contentEncoding = std::string(f.bytes);
    }
  }
  if (kind.empty() || apiVersion.empty()) return fail(EBADMSG, "protobuf body: the envelope names no apiVersion and kind");
  if (!contentEncoding.empty())
    return fail(EBADMSG, fmt::format("protobuf body: content encoding \"{}\" is not supported", contentEncoding));
  const MessageType* type = messages().forKind(apiVersion, kind);
  if (!type)
    return fail(ENOTSUP, fmt::format("protobuf body: Ferry decodes protobuf for ConfigMap, Secret, Namespace, "
                                     "ServiceAccount, Service, Deployment and HorizontalPodAutoscaler, not {} {}; "
                                     "send application/json",
                                     apiVersion, kind));
  Decoder decoder;
  auto object = decoder.message(*type, raw, "");
  if (!object) return fail(object.error().wrap(fmt::format("protobuf body: {} {}", apiVersion, kind)));
  (*object)["apiVersion"] = apiVersion;
  (*object)["kind"] = kind;
  return object;
}

}  // namespace ferry::cp
