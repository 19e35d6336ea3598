// The BPF side of the proxy: loads bpf/service_lb.bpf.o, pins its maps and
// cgroup links under a bpffs directory (re-adopting them when already pinned)
// and writes Service frontends into the maps in make-before-break order.
// The only code in Ferry that calls libbpf.
#pragma once

#include "api/error.h"
#include "proxy/service_proxy.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

struct service_lb;
struct bpf_link;
struct lb4_key;
struct lb4_service;
struct lb4_backend;

namespace ferry::proxy {

class BpfServiceMaps {
 public:
  // Mounts bpffs at /sys/fs/bpf when absent, creates bpffsDir, loads the
  // programs with maps reused from (or pinned to) bpffsDir and attaches them to
  // cgroupV2Path (taking over pinned links and updating them to the new
  // programs). Rebuilds its view of what is programmed from the maps.
  static Result<std::unique_ptr<BpfServiceMaps>> open(const std::string& bpffsDir, const std::string& cgroupV2Path);
  ~BpfServiceMaps();  // closes descriptors; pinned maps and links stay

  // Makes the kernel serve `frontend` with `state` (backends "addr:port").
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
  using BackendAddr = std::tuple<uint32_t, uint16_t, uint8_t>;  // network-order address, port; protocol
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
  Status writeBackend(uint32_t id, const lb4_backend& value);
  Status resetCounter(uint32_t serviceId);
  Status writeSlot(const lb4_key& key, const lb4_service& value);
  Status writeEntry(const lb4_key& key, const lb4_service& value);
  Status deleteEntry(const lb4_key& key);
  Status deleteSlot(const lb4_key& key);
  Status deleteBackend(uint32_t id);
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
