// Base64 (RFC 4648, standard alphabet) as Kubernetes uses it: Secret data,
// kubeconfig *-data fields, dockerconfigjson auths, etcd's JSON gateway keys and values.
#pragma once

#include "api/error.h"

#include <string>
#include <string_view>

namespace ferry::api {

// Padding and line breaks are accepted; any other character outside the alphabet is an error.
Result<std::string> base64Decode(std::string_view text);

// Padded standard encoding, no line breaks (what JSON []byte fields and etcd's gateway carry).
std::string base64Encode(std::string_view bytes);

}  // namespace ferry::api
