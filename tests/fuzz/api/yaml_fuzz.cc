// The YAML decoder never crashes, and Ferry's YAML writer output of whatever
// it decoded reads back as the same JSON.
#include "api/yaml.h"

#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto docs = ferry::api::parseYamlDocuments(text);
  if (!docs) return 0;
  for (const auto& doc : *docs) {
    std::string written = ferry::api::toYaml(doc);
    auto back = ferry::api::parseYaml(written);
    if (!back || *back != doc) {
      std::fprintf(stderr, "round trip changed the document:\n%s\n%s\n", doc.dump().c_str(), written.c_str());
      std::abort();
    }
  }
  return 0;
}
