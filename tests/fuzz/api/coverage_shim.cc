// Coverage feedback for libFuzzer when the code under test is compiled by GCC.
//
// Ferry needs C++23's std::expected, which this machine's clang (14) cannot
// compile against libstdc++ 12, so the fuzz targets are built with GCC. GCC
// can emit -fsanitize-coverage=trace-pc (a call on every basic block) and
// trace-cmp (comparison operands, which libFuzzer consumes directly), but
// libFuzzer no longer accepts trace-pc. This file turns trace-pc calls into
// libFuzzer's "inline 8-bit counters": each edge (previous block, current
// block) hashes to one counter. It must be compiled without instrumentation.
#include <cstddef>
#include <cstdint>

extern "C" void __sanitizer_cov_8bit_counters_init(std::uint8_t* start, std::uint8_t* stop);

namespace {

constexpr std::size_t kCounters = 1 << 18;
alignas(64) std::uint8_t counters[kCounters];
thread_local std::uintptr_t previousBlock = 0;

struct RegisterCounters {
  RegisterCounters() { __sanitizer_cov_8bit_counters_init(counters, counters + kCounters); }
} registerCounters __attribute__((init_priority(101)));

}  // namespace

extern "C" __attribute__((no_sanitize("address", "undefined"))) void __sanitizer_cov_trace_pc() {
  std::uintptr_t block = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
  block = (block ^ (block >> 17)) * 0x9E3779B97F4A7C15ull;
  std::size_t edge = (block ^ previousBlock) & (kCounters - 1);
  previousBlock = block >> 1;
  ++counters[edge];
}

// GCC's trace-cmp also reports floating-point comparisons, which libFuzzer
// has no hook for; they carry no useful feedback for these parsers.
extern "C" void __sanitizer_cov_trace_cmpf(float, float) {}
extern "C" void __sanitizer_cov_trace_cmpd(double, double) {}
