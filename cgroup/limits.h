// Pod and container resource settings in Kubernetes units, and the kubelet's
// conversions into cgroup values. Pure functions: unit-tested without root.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace ferry::cgroup {

// Kubernetes QoS class; decides where a pod's cgroup lives (like the kubelet:
// Guaranteed pods directly under the root, the others under burstable/ or besteffort/).
enum class QosClass { Guaranteed, Burstable, BestEffort };

std::string qosClassName(QosClass qos);  // "Guaranteed", "Burstable", "BestEffort"

// Unset fields leave the cgroup's default (unlimited / default weight).
struct Limits {
  std::optional<int64_t> cpuLimitMilli{};     // limits.cpu in millicores   -> cpu.max / cfs_quota_us
  std::optional<int64_t> cpuRequestMilli{};   // requests.cpu in millicores -> cpu.weight / cpu.shares
  std::optional<int64_t> memoryLimitBytes{};  // limits.memory              -> memory.max / limit_in_bytes
  std::optional<int64_t> memoryMinBytes{};    // memory.min   (v2 only; ignored on v1)
  std::optional<int64_t> memoryLowBytes{};    // memory.low   (v2 only; ignored on v1)
  std::optional<int64_t> pidsMax{};           // pids.max
};

constexpr int64_t kCpuPeriodUs = 100000;    // the kubelet's default CFS period
constexpr int64_t kMinCpuQuotaUs = 1000;    // the kernel refuses quotas under 1 ms
constexpr uint64_t kMinCpuShares = 2;
constexpr uint64_t kMaxCpuShares = 262144;

// requests.cpu -> cpu.shares: milli * 1024 / 1000, at least 2 (kubelet MilliCPUToShares).
uint64_t cpuSharesFromMilli(int64_t milliCpu);
// cpu.shares -> cpu.weight: 1 + ((shares - 2) * 9999) / 262142 (kubelet/runc conversion).
uint64_t cpuWeightFromShares(uint64_t shares);
// limits.cpu -> CFS quota for `periodUs`: milli * period / 1000, at least 1 ms.
int64_t cpuQuotaFromMilli(int64_t milliCpu, int64_t periodUs = kCpuPeriodUs);

}  // namespace ferry::cgroup
