// The BPF side of the proxy: loads bpf/service_lb.bpf.o, pins its maps and
// cgroup links under a bpffs directory (re-adopting them when already pinned)
// and writes Service frontends into the maps in make-before-break order.
// The only code in Ferry that calls libbpf.
#pragma once

#include "api/error.h"
#include "proxy/service_proxy.h"

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

struct service_lb;
struct bpf_link;
struct lb4_service;

namespace ferry::proxy {

class BpfServiceMaps {
 public:
  struct MapKey;  // internal: an lb4_key or an lb6_key (defined in bpf_service_maps.cc)

  // Mounts bpffs at /sys/fs/bpf when absent, creates bpffsDir, loads the
  // programs with maps reused from (or pinned to) bpffsDir and attaches them to
  // cgroupV2Path (taking over pinned links and updating them to the new
  // programs). Rebuilds its view of what is programmed from the maps.
  static Result<std::unique_ptr<BpfServiceMaps>> open(const std::string& bpffsDir, const std::string& cgroupV2Path);
  ~BpfServiceMaps();  // closes descriptors; pinned maps and links stay

  // Makes the kernel serve `frontend` with `state` (backends "addr:port", or
  // "[addr]:port" for IPv6). An IPv6 frontend goes to the lb6 maps and takes
  // IPv6 backends only; an IPv4 one IPv4 backends only.
  // Backends before slots before the count; reverse on removal; a backend that
  // stays keeps its slot (so ClientIP affinity to it survives).
  Status program(const FrontendKey& frontend, const FrontendState& state);
  Status remove(const FrontendKey& frontend);
  // Deletes every backend no frontend refers to any more (after adoption).
  Status collectBackends();

  // Between beginBatch() and commitBatch(), map writes are collected and then
  // applied in bulk (BPF batch operations), in the make-before-break order
  // across all frontends: backends, counters, slots, service entries; then
  // removed entries, slots, backends. For full syncs of many Services.
  void beginBatch();
  Status commitBatch();

  std::vector<FrontendKey> frontends() const;
  // Read back from the kernel maps, not from this object's memory.
  Result<ProgrammedState> read() const;
  // Bytes the maps use now (from the kernel's fdinfo memlock figures).
  Result<uint64_t> mapMemoryBytes() const;

  // Unpins and detaches everything; the object is unusable afterwards.
  Status uninstall();

 private:
  BpfServiceMaps() = default;
  // An endpoint as the maps hold it: family AF_INET (address in bytes 0..3)
  // or AF_INET6; address and port in network order.
  struct BackendAddr {
    uint8_t family = 0;
    std::array<uint8_t, 16> address{};
    uint16_t port = 0;
    uint8_t protocol = 0;
    auto operator<=>(const BackendAddr&) const = default;
  };
  struct Programmed {
    uint32_t serviceId = 0;
    uint16_t flags = 0;
    uint32_t affinityTimeoutSec = 0;
    std::vector<uint32_t> slots;  // backend ids, slot i+1
  };
  Status adoptMaps();
  Result<uint32_t> acquireBackend(const BackendAddr& addr);
  void releaseBackend(uint32_t id);
  Status deletePendingBackends();
  Status writeBackend(uint32_t id, const BackendAddr& addr);
  Status resetCounter(uint32_t serviceId);
  Status writeSlot(const MapKey& key, const lb4_service& value);
  Status writeEntry(const MapKey& key, const lb4_service& value);
  Status deleteEntry(const MapKey& key);
  Status deleteSlot(const MapKey& key);
  Status deleteBackend(uint32_t id, uint8_t family);
  struct PendingWrites;
  std::unique_ptr<PendingWrites> batch_;

  std::string dir_;
  service_lb* skel_ = nullptr;
  std::vector<std::pair<std::string, bpf_link*>> links_;
  std::map<FrontendKey, Programmed> frontends_;
  std::map<BackendAddr, uint32_t> backendIds_;
  // By backend id (ids are small and dense): a vector, not maps, because a
  // full sync of 100,000 Services holds 300,000 of them.
  struct BackendRecord {
    BackendAddr addr{};
    uint32_t refs = 0;  // slots naming it
    bool live = false;
  };
  std::vector<BackendRecord> backends_;
  BackendRecord* liveBackend(uint32_t id) { return id < backends_.size() && backends_[id].live ? &backends_[id] : nullptr; }
  void addBackend(uint32_t id, const BackendAddr& addr, uint32_t refs) {
    if (id >= backends_.size()) backends_.resize(id + 1);
    backends_[id] = BackendRecord{addr, refs, true};
  }
  std::vector<uint32_t> pendingBackendRelease_;
  uint32_t nextBackendId_ = 1;
  std::vector<uint32_t> freeBackendIds_;
  uint32_t nextServiceId_ = 1;
  std::vector<uint32_t> freeServiceIds_;
};

}  // namespace ferry::proxy
