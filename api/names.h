// Kubernetes' syntax rules for names, label keys and values, with the exact
// messages Kubernetes prints. Each returns the list of problems (empty = valid).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ferry::api {

std::vector<std::string> dns1123LabelErrors(std::string_view value);      // namespaces, container names
std::vector<std::string> dns1123SubdomainErrors(std::string_view value);  // most object names
std::vector<std::string> dns1035LabelErrors(std::string_view value);      // Service names
std::vector<std::string> qualifiedNameErrors(std::string_view value);     // label/annotation keys
std::vector<std::string> labelValueErrors(std::string_view value);
std::vector<std::string> portNameErrors(std::string_view value);          // IANA_SVC_NAME
std::vector<std::string> envVarNameErrors(std::string_view value);

}  // namespace ferry::api
