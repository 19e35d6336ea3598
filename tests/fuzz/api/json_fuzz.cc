// The JSON decoder never crashes; a decoded object goes through defaulting,
// validation, warnings and QoS for every served kind without crashing.
#include "api/defaulting.h"
#include "api/qos.h"
#include "api/validation.h"
#include "api/yaml.h"

#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto doc = ferry::api::parseJson(text);
  if (!doc) return 0;
  static const char* resources[] = {"pods", "services", "deployments.apps", "replicasets.apps", "configmaps", "secrets",
                                    "namespaces", "nodes", "events", "leases.coordination.k8s.io",
                                    "endpointslices.discovery.k8s.io", "endpoints",
                                    "horizontalpodautoscalers.autoscaling"};
  const char* resource = resources[size % (sizeof resources / sizeof resources[0])];
  ferry::api::Json obj = *doc;
  ferry::api::applyDefaults(resource, obj);
  (void)ferry::api::validate(resource, obj, nullptr);
  (void)ferry::api::validate(resource, obj, &*doc);
  (void)ferry::api::unsupportedFieldWarnings(resource, obj);
  if (obj.is_object() && obj.contains("spec")) (void)ferry::api::qosClass(obj["spec"]);
  return 0;
}
