// Documents kubectl reads before anything else: API discovery (aggregated v2
// and legacy), /version and the minimal OpenAPI v3 that lets `kubectl apply`
// run with its default --validate=strict.
#pragma once

#include "api/object.h"

#include <optional>
#include <string>

namespace ferry::cp {

inline constexpr const char* kAggregatedDiscoveryContentType =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
inline constexpr const char* kAggregatedDiscoveryContentTypeV2beta1 =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

// /version. The minor picks the client the kubectl dispatcher runs.
api::Json versionDocument();
// Aggregated discovery for /api (core only) or /apis (every other group).
api::Json aggregatedDiscovery(bool core, const std::string& apiVersion = "apidiscovery.k8s.io/v2");
// Legacy documents.
api::Json legacyApiVersions();       // /api
api::Json legacyApiGroupList();      // /apis
std::optional<api::Json> legacyApiGroup(const std::string& group);  // /apis/G
std::optional<api::Json> legacyResourceList(const std::string& group, const std::string& version);  // /api/v1, /apis/G/V

// /openapi/v3 and /openapi/v3/api/v1, /openapi/v3/apis/G/V.
api::Json openApiV3Root();
std::optional<api::Json> openApiV3GroupVersion(const std::string& group, const std::string& version);

}  // namespace ferry::cp
