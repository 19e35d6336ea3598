// Label and field selector parsers never crash, and their printed form parses
// back to the same selector.
#include "api/selector.h"

#include <cstdlib>
#include <string_view>

using ferry::api::FieldSelector;
using ferry::api::LabelSelector;

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto s = LabelSelector::parse(text)) {
    std::string printed = s->toString();
    auto again = LabelSelector::parse(printed);
    if (!again || again->toString() != printed) std::abort();
    (void)s->matches({{"app", "web"}, {"tier", ""}});
  }
  if (auto f = FieldSelector::parse(text)) {
    auto again = FieldSelector::parse(f->toString());
    if (!again || again->toString() != f->toString()) std::abort();
    (void)f->matches(ferry::api::Json::parse(R"({"metadata":{"name":"a"},"spec":{"nodeName":"n"}})"));
  }
  return 0;
}
