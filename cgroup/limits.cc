#include "cgroup/limits.h"

#include <algorithm>

namespace ferry::cgroup {

std::string qosClassName(QosClass qos) {
  switch (qos) {
    case QosClass::Guaranteed: return "Guaranteed";
    case QosClass::Burstable: return "Burstable";
    case QosClass::BestEffort: return "BestEffort";
  }
  return "BestEffort";
}

uint64_t cpuSharesFromMilli(int64_t milliCpu) {
  if (milliCpu <= 0) return kMinCpuShares;
  uint64_t shares = static_cast<uint64_t>(milliCpu) * 1024 / 1000;
  return std::clamp<uint64_t>(shares, kMinCpuShares, kMaxCpuShares);
}

uint64_t cpuWeightFromShares(uint64_t shares) {
  shares = std::clamp<uint64_t>(shares, kMinCpuShares, kMaxCpuShares);
  return 1 + ((shares - 2) * 9999) / 262142;
}

int64_t cpuQuotaFromMilli(int64_t milliCpu, int64_t periodUs) {
  if (milliCpu <= 0) return kMinCpuQuotaUs;
  int64_t quota = milliCpu * periodUs / 1000;
  return std::max(quota, kMinCpuQuotaUs);
}

}  // namespace ferry::cgroup
