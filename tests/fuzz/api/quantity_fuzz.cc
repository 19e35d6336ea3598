// Quantity::parse never crashes, and what it prints parses back to the same value.
#include "api/quantity.h"

#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto q = ferry::api::Quantity::parse(text);
  if (!q) return 0;
  (void)q->value();
  (void)q->milliValue();
  std::string canonical = q->canonical();
  auto again = ferry::api::Quantity::parse(canonical);
  // Values survive printing; the text may change format (Kubernetes prints
  // -62.5Ki as -64000, which reads back as a decimal quantity).
  if (!again || *again != *q) std::abort();
  auto printed = ferry::api::Quantity::parse(q->toString());
  if (!printed || *printed != *q) std::abort();
  auto sum = q->add(*q);
  if (sum) {
    auto back = sum->subtract(*q);
    if (!back || *back != *q) std::abort();
  }
  return 0;
}
