// Base64 (RFC 4648, standard alphabet) as Kubernetes uses it: Secret data,
// kubeconfig *-data fields, dockerconfigjson auths.
#pragma once

#include "api/error.h"

#include <string>
#include <string_view>

namespace ferry::api {

// Padding and line breaks are accepted; any other character outside the alphabet is an error.
Result<std::string> base64Decode(std::string_view text);

}  // namespace ferry::api
