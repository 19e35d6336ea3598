// Patches never crash: the input is a JSON array [original, patch].
#include "api/patch.h"
#include "api/yaml.h"

#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto doc = ferry::api::parseJson(text);
  if (!doc || !doc->is_array() || doc->size() != 2) return 0;
  const auto& original = (*doc)[0];
  const auto& patch = (*doc)[1];
  for (const char* resource : {"pods", "deployments.apps", "services", "nodes"}) {
    (void)ferry::api::strategicMergePatch(resource, original, patch);
  }
  (void)ferry::api::jsonMergePatch(original, patch);
  (void)ferry::api::jsonPatch(original, patch);
  return 0;
}
