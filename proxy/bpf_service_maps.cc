#include "proxy/bpf_service_maps.h"

#include "api/log.h"
#include "lb_maps.h"
#include "service_lb.skel.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>

// The C++ side uses the structs of bpf/lb_maps.h directly; these pin the ABI
// (a test also compares each field offset with the object's BTF).
static_assert(sizeof(lb4_key) == 12);
static_assert(sizeof(lb4_service) == 20);
static_assert(sizeof(lb4_backend) == 8);
static_assert(sizeof(lb_affinity_key) == 16);
static_assert(sizeof(lb_affinity_value) == 16);
static_assert(sizeof(lb4_reverse_nat_key) == 16);
static_assert(sizeof(lb4_reverse_nat_value) == 8);
static_assert(sizeof(lb4_socket_service) == 16);
static_assert(sizeof(lb6_socket_service) == 40);
static_assert(sizeof(lb4_select_args) == 32);
static_assert(sizeof(lb6_key) == 24);
static_assert(sizeof(lb6_backend) == 20);
static_assert(sizeof(lb6_reverse_nat_key) == 32);
static_assert(sizeof(lb6_reverse_nat_value) == 20);
static_assert(sizeof(lb6_select_args) == 56);

namespace ferry::proxy {

namespace {

constexpr const char* kBpffsRoot = "/sys/fs/bpf";

int libbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  char buf[1024];
  vsnprintf(buf, sizeof buf, format, args);
  std::string line(buf);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  if (level == LIBBPF_WARN) log::warn("libbpf: {}", line);
  else log::debug("libbpf: {}", line);
  return 0;
}

Status ensureBpffs(const std::string& dir) {
  if (dir.rfind(kBpffsRoot, 0) == 0) {
    struct statfs fs {};
    if (statfs(kBpffsRoot, &fs) != 0) return failErrno(std::string("statfs ") + kBpffsRoot);
    if (fs.f_type != BPF_FS_MAGIC) {
      if (mount("bpf", kBpffsRoot, "bpf", 0, "mode=0700") != 0) return failErrno(std::string("mount bpffs at ") + kBpffsRoot);
      log::info("mounted bpffs at {}", kBpffsRoot);
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(ec.value(), "create " + dir + ": " + ec.message());
  return {};
}

Result<uint8_t> protocolNumber(const std::string& protocol) {
  if (protocol == "TCP") return IPPROTO_TCP;
  if (protocol == "UDP") return IPPROTO_UDP;
  return fail(EINVAL, "protocol: " + protocol + " is not TCP or UDP");
}

std::string protocolName(uint8_t p) { return p == IPPROTO_TCP ? "TCP" : p == IPPROTO_UDP ? "UDP" : std::to_string(p); }

struct IpAddress {
  uint8_t family = 0;              // AF_INET | AF_INET6
  std::array<uint8_t, 16> bytes{};  // network order; IPv4 in bytes 0..3
};

// An IPv4 address, or an IPv6 one (text with a ':').
Result<IpAddress> parseIP(const std::string& text, const char* field) {
  IpAddress a;
  a.family = text.find(':') == std::string::npos ? AF_INET : AF_INET6;
  if (inet_pton(a.family, text.c_str(), a.bytes.data()) != 1)
    return fail(EINVAL, fmt::format("{}: {} is not an {} address", field, text, a.family == AF_INET ? "IPv4" : "IPv6"));
  return a;
}

std::string ipText(uint8_t family, const void* bytes) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family, bytes, buf, sizeof buf);
  return buf;
}

std::string ipv4Text(uint32_t networkOrder) { return ipText(AF_INET, &networkOrder); }

// "addr:port" (IPv4) or "[addr]:port" (IPv6), as FrontendState::backends has them.
std::string endpointText(uint8_t family, const void* bytes, uint16_t networkPort) {
  std::string address = ipText(family, bytes);
  if (family == AF_INET6) address = "[" + address + "]";
  return fmt::format("{}:{}", address, ntohs(networkPort));
}

}  // namespace

// A frontend key of either family, with the slot settable in both.
struct BpfServiceMaps::MapKey {
  bool v6 = false;
  lb4_key k4{};
  lb6_key k6{};
  void setSlot(uint16_t slot) { k4.backend_slot = k6.backend_slot = slot; }
  uint16_t slot() const { return v6 ? k6.backend_slot : k4.backend_slot; }
  uint8_t protocol() const { return v6 ? k6.protocol : k4.protocol; }
  MapKey withSlot(uint16_t slot) const {
    MapKey k = *this;
    k.setSlot(slot);
    return k;
  }
};

namespace {

Result<BpfServiceMaps::MapKey> keyOf(const FrontendKey& f, uint16_t slot) {
  BpfServiceMaps::MapKey key;
  auto address = parseIP(f.address, "frontend address");
  if (!address) return fail(address.error());
  auto protocol = protocolNumber(f.protocol);
  if (!protocol) return fail(protocol.error());
  if (f.port <= 0 || f.port > 65535) return fail(EINVAL, fmt::format("frontend port: {} out of range", f.port));
  key.v6 = address->family == AF_INET6;
  if (key.v6) {
    memcpy(key.k6.address, address->bytes.data(), 16);
    key.k6.port = htons(static_cast<uint16_t>(f.port));
    key.k6.protocol = *protocol;
  } else {
    memcpy(&key.k4.address, address->bytes.data(), 4);
    key.k4.port = htons(static_cast<uint16_t>(f.port));
    key.k4.protocol = *protocol;
  }
  key.setSlot(slot);
  return key;
}

template <class Key, class Value>
std::vector<std::pair<Key, Value>> dumpMap(int fd) {
  std::vector<std::pair<Key, Value>> out;
  Key key{}, next{};
  const Key* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    Value v{};
    if (bpf_map_lookup_elem(fd, &next, &v) == 0) out.emplace_back(next, v);
    key = next;
    prev = &key;
  }
  return out;
}

// Reverse translation first, so no socket is ever translated without it.
struct ProgramSlot {
  const char* name;
  bpf_program* (*get)(service_lb*);
};
const ProgramSlot kPrograms[] = {
    {"recvmsg4", [](service_lb* s) { return s->progs.ferry_recvmsg4; }},
    {"getpeername4", [](service_lb* s) { return s->progs.ferry_getpeername4; }},
    {"recvmsg6", [](service_lb* s) { return s->progs.ferry_recvmsg6; }},
    {"getpeername6", [](service_lb* s) { return s->progs.ferry_getpeername6; }},
    {"connect4", [](service_lb* s) { return s->progs.ferry_connect4; }},
    {"sendmsg4", [](service_lb* s) { return s->progs.ferry_sendmsg4; }},
    {"connect6", [](service_lb* s) { return s->progs.ferry_connect6; }},
    {"sendmsg6", [](service_lb* s) { return s->progs.ferry_sendmsg6; }},
};

// Pins of an agent from before IPv6 lack the lb6 maps, and of one from before session 12
// lb4/lb6_socket_services: load creates and pins them. (Sockets connected under an older
// agent keep their entries in lb4_reverse_nat, which recvmsg/getpeername still read.)
std::vector<bpf_map*> pinnedMaps(service_lb* s) {
  return {s->maps.lb4_services, s->maps.lb4_backends, s->maps.lb_rr_counters, s->maps.lb_affinity,
          s->maps.lb4_reverse_nat, s->maps.lb6_services, s->maps.lb6_backends, s->maps.lb6_reverse_nat,
          s->maps.lb4_socket_services, s->maps.lb6_socket_services};
}

}  // namespace

struct BpfServiceMaps::PendingWrites {
  std::vector<uint32_t> backendIds, backendIds6;
  std::vector<lb4_backend> backends;
  std::vector<lb6_backend> backends6;
  std::vector<uint32_t> counterIds;
  std::vector<lb4_key> slotKeys, entryKeys;
  std::vector<lb6_key> slotKeys6, entryKeys6;
  std::vector<lb4_service> slots, entries, slots6, entries6;
  std::vector<lb4_key> entryDeletes, slotDeletes;
  std::vector<lb6_key> entryDeletes6, slotDeletes6;
  std::vector<uint32_t> backendDeletes, backendDeletes6;
  std::vector<uint32_t> freedBackendIds, freedServiceIds;
};

Result<std::unique_ptr<BpfServiceMaps>> BpfServiceMaps::open(const std::string& bpffsDir, const std::string& cgroupV2Path) {
  static std::once_flag printOnce;
  std::call_once(printOnce, [] { libbpf_set_print(libbpfPrint); });
  if (bpffsDir.empty()) return fail(EINVAL, "bpffsDir: empty");
  if (cgroupV2Path.empty()) return fail(EINVAL, "cgroupV2Path: empty");
  if (auto st = ensureBpffs(bpffsDir); !st) return fail(st.error());

  std::unique_ptr<BpfServiceMaps> m(new BpfServiceMaps());
  m->dir_ = bpffsDir;
  m->skel_ = service_lb__open();
  if (!m->skel_) return failErrno("open BPF object service_lb");
  // The selection test program is for BPF_PROG_TEST_RUN in tests only.
  bpf_program__set_autoload(m->skel_->progs.lb4_select_test, false);
  bpf_program__set_autoload(m->skel_->progs.lb6_select_test, false);
  for (bpf_map* map : pinnedMaps(m->skel_)) {
    std::string path = bpffsDir + "/" + bpf_map__name(map);
    if (bpf_map__set_pin_path(map, path.c_str()) != 0) return failErrno("pin path " + path);
  }
  // Load reuses maps already pinned (an agent restart) or creates and pins them.
  if (service_lb__load(m->skel_) != 0)
    return failErrno("load BPF programs service_lb (maps pinned in " + bpffsDir + " may have another layout)");

  int cgroupFd = ::open(cgroupV2Path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgroupFd < 0) return failErrno("open cgroup " + cgroupV2Path);
  for (const ProgramSlot& p : kPrograms) {
    bpf_program* prog = p.get(m->skel_);
    std::string path = bpffsDir + "/link_" + p.name;
    bpf_link* link = nullptr;
    if (access(path.c_str(), F_OK) == 0) {
      // Take over the pinned link and swap in the freshly loaded program: one
      // atomic replacement, the hook is never empty.
      link = bpf_link__open(path.c_str());
      if (!link) {
        int err = errno;
        close(cgroupFd);
        return failErrno("open pinned link " + path, err);
      }
      if (bpf_link__update_program(link, prog) != 0) {
        int err = errno;
        bpf_link__destroy(link);
        close(cgroupFd);
        return failErrno("update pinned link " + path, err);
      }
    } else {
      link = bpf_program__attach_cgroup(prog, cgroupFd);
      if (!link) {
        int err = errno;
        close(cgroupFd);
        return failErrno(fmt::format("attach {} to cgroup {}", p.name, cgroupV2Path), err);
      }
      if (bpf_link__pin(link, path.c_str()) != 0) {
        int err = errno;
        bpf_link__destroy(link);
        close(cgroupFd);
        return failErrno("pin link " + path, err);
      }
    }
    m->links_.emplace_back(path, link);
  }
  close(cgroupFd);
  if (auto st = m->adoptMaps(); !st) return fail(st.error().wrap("adopt pinned maps"));
  return m;
}

BpfServiceMaps::~BpfServiceMaps() {
  // Closing a pinned link's descriptor keeps it attached.
  for (auto& [_, link] : links_) bpf_link__destroy(link);
  if (skel_) service_lb__destroy(skel_);
}

Status BpfServiceMaps::adoptMaps() {
  auto adoptBackend = [&](uint32_t id, const BackendAddr& addr) {
    backendIds_[addr] = id;
    addBackend(id, addr, 0);
    nextBackendId_ = std::max(nextBackendId_, id + 1);
  };
  for (auto& [id, backend] : dumpMap<uint32_t, lb4_backend>(bpf_map__fd(skel_->maps.lb4_backends))) {
    BackendAddr addr{AF_INET, {}, backend.port, backend.protocol};
    memcpy(addr.address.data(), &backend.address, 4);
    adoptBackend(id, addr);
  }
  for (auto& [id, backend] : dumpMap<uint32_t, lb6_backend>(bpf_map__fd(skel_->maps.lb6_backends))) {
    BackendAddr addr{AF_INET6, {}, backend.port, backend.protocol};
    memcpy(addr.address.data(), backend.address, 16);
    adoptBackend(id, addr);
  }
  // Both families' entries by (family, address, port, protocol, slot).
  using EntryKey = std::tuple<uint8_t, std::array<uint8_t, 16>, uint16_t, uint8_t, uint16_t>;
  std::map<EntryKey, lb4_service> entries;
  for (auto& [key, value] : dumpMap<lb4_key, lb4_service>(bpf_map__fd(skel_->maps.lb4_services))) {
    std::array<uint8_t, 16> address{};
    memcpy(address.data(), &key.address, 4);
    entries[{AF_INET, address, key.port, key.protocol, key.backend_slot}] = value;
  }
  for (auto& [key, value] : dumpMap<lb6_key, lb4_service>(bpf_map__fd(skel_->maps.lb6_services))) {
    std::array<uint8_t, 16> address{};
    memcpy(address.data(), key.address, 16);
    entries[{AF_INET6, address, key.port, key.protocol, key.backend_slot}] = value;
  }
  auto mapKeyOf = [](const EntryKey& k) {
    auto& [family, address, port, protocol, slot] = k;
    MapKey key;
    key.v6 = family == AF_INET6;
    if (key.v6) {
      memcpy(key.k6.address, address.data(), 16);
      key.k6.port = port;
      key.k6.protocol = protocol;
    } else {
      memcpy(&key.k4.address, address.data(), 4);
      key.k4.port = port;
      key.k4.protocol = protocol;
    }
    key.setSlot(slot);
    return key;
  };
  for (auto& [k, value] : entries) {
    auto& [family, address, port, protocol, slot] = k;
    if (slot != 0) continue;
    FrontendKey f{ipText(family, address.data()), ntohs(port), protocolName(protocol)};
    Programmed p;
    p.serviceId = value.service_id;
    p.flags = value.flags;
    p.affinityTimeoutSec = value.affinity_timeout_sec;
    for (uint32_t i = 1; i <= value.count; ++i) {
      auto it = entries.find({family, address, port, protocol, static_cast<uint16_t>(i)});
      uint32_t id = it == entries.end() ? 0 : it->second.backend_id;
      p.slots.push_back(id);
      if (BackendRecord* b = liveBackend(id)) b->refs++;
    }
    nextServiceId_ = std::max(nextServiceId_, p.serviceId + 1);
    frontends_[f] = std::move(p);
  }
  // Slots past a frontend's count, or without a frontend: an interrupted update.
  for (auto& [k, value] : entries) {
    auto& [family, address, port, protocol, slot] = k;
    if (slot == 0) continue;
    auto head = entries.find({family, address, port, protocol, 0});
    if (head == entries.end() || slot > head->second.count) {
      MapKey key = mapKeyOf(k);
      if (key.v6) bpf_map_delete_elem(bpf_map__fd(skel_->maps.lb6_services), &key.k6);
      else bpf_map_delete_elem(bpf_map__fd(skel_->maps.lb4_services), &key.k4);
    }
  }
  log::info("proxy: adopted {} frontends and {} backends from {}", frontends_.size(), backendIds_.size(), dir_);
  return {};
}

Result<uint32_t> BpfServiceMaps::acquireBackend(const BackendAddr& addr) {
  if (auto it = backendIds_.find(addr); it != backendIds_.end()) {
    backends_[it->second].refs++;
    return it->second;
  }
  uint32_t id;
  if (!freeBackendIds_.empty()) {
    id = freeBackendIds_.back();
    freeBackendIds_.pop_back();
  } else {
    if (nextBackendId_ >= LB_MAX_BACKENDS) return fail(ENOSPC, "backend ids exhausted");
    id = nextBackendId_++;
  }
  if (auto st = writeBackend(id, addr); !st) return fail(st.error());
  backendIds_[addr] = id;
  addBackend(id, addr, 1);
  return id;
}

void BpfServiceMaps::releaseBackend(uint32_t id) {
  BackendRecord* b = liveBackend(id);
  if (!b) return;
  if (b->refs > 0) b->refs--;
  if (b->refs == 0) pendingBackendRelease_.push_back(id);
}

Status BpfServiceMaps::collectBackends() {
  for (uint32_t id = 0; id < backends_.size(); ++id)
    if (backends_[id].live && backends_[id].refs == 0) pendingBackendRelease_.push_back(id);
  return deletePendingBackends();
}

Status BpfServiceMaps::deletePendingBackends() {
  std::sort(pendingBackendRelease_.begin(), pendingBackendRelease_.end());
  pendingBackendRelease_.erase(std::unique(pendingBackendRelease_.begin(), pendingBackendRelease_.end()),
                               pendingBackendRelease_.end());
  for (uint32_t id : pendingBackendRelease_) {
    BackendRecord* b = liveBackend(id);
    if (!b || b->refs != 0) continue;  // taken again meanwhile
    if (auto st = deleteBackend(id, b->addr.family); !st) return st;
    backendIds_.erase(b->addr);
    *b = BackendRecord{};
    // In a batch the delete is still pending: the id is reusable only after it.
    if (batch_) batch_->freedBackendIds.push_back(id);
    else freeBackendIds_.push_back(id);
  }
  pendingBackendRelease_.clear();
  return {};
}

Status BpfServiceMaps::program(const FrontendKey& frontend, const FrontendState& state) {
  auto key0 = keyOf(frontend, 0);
  if (!key0) return fail(key0.error());
  // Formatted only on failure: a full sync calls this for every frontend.
  auto where = [&] { return fmt::format("frontend {}:{}/{}", frontend.address, frontend.port, frontend.protocol); };

  auto existing = frontends_.find(frontend);
  const bool isNew = existing == frontends_.end();
  Programmed before = isNew ? Programmed{} : existing->second;

  // 1. Backends first: every id a slot will name exists before the slot does.
  std::vector<uint32_t> wanted;
  std::set<uint32_t> wantedSet;
  for (const std::string& text : state.backends) {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) return fail(EINVAL, where() + ": backend " + text + ": want addr:port or [addr]:port");
    std::string host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    else if (host.find(':') != std::string::npos)
      return fail(EINVAL, where() + ": backend " + text + ": an IPv6 backend is written [addr]:port");
    auto address = parseIP(host, "backend address");
    if (!address) return fail(address.error().wrap(where()));
    if ((address->family == AF_INET6) != key0->v6)
      return fail(EINVAL, fmt::format("{}: backend {}: an {} frontend takes {} backends only", where(), text,
                                      key0->v6 ? "IPv6" : "IPv4", key0->v6 ? "IPv6" : "IPv4"));
    int port = std::atoi(text.c_str() + colon + 1);
    if (port <= 0 || port > 65535) return fail(EINVAL, where() + ": backend " + text + ": port out of range");
    auto id = acquireBackend({address->family, address->bytes, htons(static_cast<uint16_t>(port)), key0->protocol()});
    if (!id) return fail(id.error().wrap(where()));
    if (wantedSet.insert(*id).second) wanted.push_back(*id);
    else releaseBackend(*id);  // duplicate entry
  }

  // Stable slots: a backend that stays keeps its slot; new ones fill holes,
  // remaining holes are closed by moving the last slot in.
  constexpr uint32_t kHole = 0;
  std::vector<uint32_t> slots = before.slots;
  std::set<uint32_t> present;
  for (uint32_t& id : slots) {
    if (!wantedSet.count(id) || present.count(id)) id = kHole;
    else present.insert(id);
  }
  std::vector<uint32_t> additions;
  for (uint32_t id : wanted)
    if (!present.count(id)) additions.push_back(id);
  size_t next = 0;
  for (uint32_t& id : slots)
    if (id == kHole && next < additions.size()) id = additions[next++];
  while (next < additions.size()) slots.push_back(additions[next++]);
  for (size_t i = 0; i < slots.size();) {
    if (slots[i] != kHole) {
      ++i;
      continue;
    }
    while (!slots.empty() && slots.back() == kHole) slots.pop_back();
    if (i < slots.size()) {
      slots[i] = slots.back();
      slots.pop_back();
    }
  }

  Programmed after = before;
  if (isNew) {
    uint32_t id;
    if (!freeServiceIds_.empty()) {
      id = freeServiceIds_.back();
      freeServiceIds_.pop_back();
    } else {
      if (nextServiceId_ >= LB_MAX_SERVICE_IDS) return fail(ENOSPC, where() + ": service ids exhausted");
      id = nextServiceId_++;
    }
    if (auto st = resetCounter(id); !st) return fail(st.error().wrap(where()));
    after.serviceId = id;
  }
  after.flags = state.clientIPAffinity ? LB_SERVICE_CLIENT_IP_AFFINITY : 0;
  after.affinityTimeoutSec = state.clientIPAffinity ? static_cast<uint32_t>(std::max(0, state.affinityTimeoutSeconds)) : 0;
  after.slots = slots;

  // 2. Slots, before the count that exposes them.
  for (size_t i = 0; i < slots.size(); ++i) {
    if (i < before.slots.size() && before.slots[i] == slots[i]) continue;
    MapKey key = key0->withSlot(static_cast<uint16_t>(i + 1));
    lb4_service value{};
    value.backend_id = slots[i];
    value.service_id = after.serviceId;
    if (auto st = writeSlot(key, value); !st) return fail(st.error().wrap(where()));
  }
  // 3. The service entry.
  if (isNew || after.flags != before.flags || after.affinityTimeoutSec != before.affinityTimeoutSec ||
      slots.size() != before.slots.size()) {
    lb4_service value{};
    value.count = static_cast<uint32_t>(slots.size());
    value.service_id = after.serviceId;
    value.affinity_timeout_sec = after.affinityTimeoutSec;
    value.flags = after.flags;
    if (auto st = writeEntry(*key0, value); !st) return fail(st.error().wrap(where()));
  }
  frontends_[frontend] = after;
  // 4. Slots no longer counted, then backends nothing names any more.
  for (size_t i = slots.size(); i < before.slots.size(); ++i) {
    MapKey key = key0->withSlot(static_cast<uint16_t>(i + 1));
    if (auto st = deleteSlot(key); !st) return fail(st.error().wrap(where()));
  }
  for (uint32_t id : before.slots) releaseBackend(id);
  return deletePendingBackends();
}

Status BpfServiceMaps::remove(const FrontendKey& frontend) {
  auto it = frontends_.find(frontend);
  if (it == frontends_.end()) return {};
  auto key0 = keyOf(frontend, 0);
  if (!key0) return fail(key0.error());
  const std::string where = fmt::format("frontend {}:{}/{}", frontend.address, frontend.port, frontend.protocol);
  // Reverse order: the entry goes first, so no connect sees a partial Service.
  if (auto st = deleteEntry(*key0); !st) return fail(st.error().wrap(where));
  for (size_t i = 0; i < it->second.slots.size(); ++i) {
    MapKey key = key0->withSlot(static_cast<uint16_t>(i + 1));
    if (auto st = deleteSlot(key); !st) return fail(st.error().wrap(where));
  }
  for (uint32_t id : it->second.slots) releaseBackend(id);
  if (batch_) batch_->freedServiceIds.push_back(it->second.serviceId);
  else freeServiceIds_.push_back(it->second.serviceId);
  frontends_.erase(it);
  return deletePendingBackends();
}


Status BpfServiceMaps::writeBackend(uint32_t id, const BackendAddr& addr) {
  if (addr.family == AF_INET6) {
    lb6_backend value{};
    memcpy(value.address, addr.address.data(), 16);
    value.port = addr.port;
    value.protocol = addr.protocol;
    if (batch_) {
      batch_->backendIds6.push_back(id);
      batch_->backends6.push_back(value);
      return {};
    }
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.lb6_backends), &id, &value, BPF_ANY) != 0)
      return failErrno("write backend " + ipText(AF_INET6, addr.address.data()));
    return {};
  }
  lb4_backend value{};
  memcpy(&value.address, addr.address.data(), 4);
  value.port = addr.port;
  value.protocol = addr.protocol;
  if (batch_) {
    batch_->backendIds.push_back(id);
    batch_->backends.push_back(value);
    return {};
  }
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.lb4_backends), &id, &value, BPF_ANY) != 0)
    return failErrno("write backend " + ipv4Text(value.address));
  return {};
}

Status BpfServiceMaps::resetCounter(uint32_t serviceId) {
  if (batch_) {
    batch_->counterIds.push_back(serviceId);
    return {};
  }
  uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.lb_rr_counters), &serviceId, &zero, BPF_ANY) != 0)
    return failErrno("reset round-robin counter");
  return {};
}

Status BpfServiceMaps::writeSlot(const MapKey& key, const lb4_service& value) {
  if (batch_) {
    if (key.v6) {
      batch_->slotKeys6.push_back(key.k6);
      batch_->slots6.push_back(value);
    } else {
      batch_->slotKeys.push_back(key.k4);
      batch_->slots.push_back(value);
    }
    return {};
  }
  int rc = key.v6 ? bpf_map_update_elem(bpf_map__fd(skel_->maps.lb6_services), &key.k6, &value, BPF_ANY)
                  : bpf_map_update_elem(bpf_map__fd(skel_->maps.lb4_services), &key.k4, &value, BPF_ANY);
  if (rc != 0) return failErrno(fmt::format("write slot {}", key.slot()));
  return {};
}

Status BpfServiceMaps::writeEntry(const MapKey& key, const lb4_service& value) {
  if (batch_) {
    if (key.v6) {
      batch_->entryKeys6.push_back(key.k6);
      batch_->entries6.push_back(value);
    } else {
      batch_->entryKeys.push_back(key.k4);
      batch_->entries.push_back(value);
    }
    return {};
  }
  int rc = key.v6 ? bpf_map_update_elem(bpf_map__fd(skel_->maps.lb6_services), &key.k6, &value, BPF_ANY)
                  : bpf_map_update_elem(bpf_map__fd(skel_->maps.lb4_services), &key.k4, &value, BPF_ANY);
  if (rc != 0) return failErrno("write service entry");
  return {};
}

Status BpfServiceMaps::deleteEntry(const MapKey& key) {
  if (batch_) {
    if (key.v6) batch_->entryDeletes6.push_back(key.k6);
    else batch_->entryDeletes.push_back(key.k4);
    return {};
  }
  int rc = key.v6 ? bpf_map_delete_elem(bpf_map__fd(skel_->maps.lb6_services), &key.k6)
                  : bpf_map_delete_elem(bpf_map__fd(skel_->maps.lb4_services), &key.k4);
  if (rc != 0 && errno != ENOENT) return failErrno("delete service entry");
  return {};
}

Status BpfServiceMaps::deleteSlot(const MapKey& key) {
  if (batch_) {
    if (key.v6) batch_->slotDeletes6.push_back(key.k6);
    else batch_->slotDeletes.push_back(key.k4);
    return {};
  }
  int rc = key.v6 ? bpf_map_delete_elem(bpf_map__fd(skel_->maps.lb6_services), &key.k6)
                  : bpf_map_delete_elem(bpf_map__fd(skel_->maps.lb4_services), &key.k4);
  if (rc != 0 && errno != ENOENT) return failErrno(fmt::format("delete slot {}", key.slot()));
  return {};
}

Status BpfServiceMaps::deleteBackend(uint32_t id, uint8_t family) {
  if (batch_) {
    (family == AF_INET6 ? batch_->backendDeletes6 : batch_->backendDeletes).push_back(id);
    return {};
  }
  bpf_map* map = family == AF_INET6 ? skel_->maps.lb6_backends : skel_->maps.lb4_backends;
  if (bpf_map_delete_elem(bpf_map__fd(map), &id) != 0 && errno != ENOENT)
    return failErrno(fmt::format("delete backend {}", id));
  return {};
}

void BpfServiceMaps::beginBatch() {
  if (!batch_) batch_ = std::make_unique<PendingWrites>();
}

namespace {

template <class Key, class Value>
Status updateInBulk(int fd, const std::vector<Key>& keys, const std::vector<Value>& values, const char* what) {
  constexpr size_t kChunk = 16384;
  for (size_t offset = 0; offset < keys.size(); offset += kChunk) {
    __u32 count = static_cast<__u32>(std::min(kChunk, keys.size() - offset));
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    if (bpf_map_update_batch(fd, keys.data() + offset, values.data() + offset, &count, &opts) != 0)
      return failErrno(fmt::format("write {} {} in bulk", keys.size(), what));
  }
  return {};
}

template <class Key>
Status deleteEach(int fd, const std::vector<Key>& keys, const char* what) {
  for (const Key& key : keys)
    if (bpf_map_delete_elem(fd, &key) != 0 && errno != ENOENT) return failErrno(fmt::format("delete {}", what));
  return {};
}

}  // namespace

Status BpfServiceMaps::commitBatch() {
  if (!batch_) return {};
  std::unique_ptr<PendingWrites> b = std::move(batch_);
  int servicesFd = bpf_map__fd(skel_->maps.lb4_services);
  int backendsFd = bpf_map__fd(skel_->maps.lb4_backends);
  int services6Fd = bpf_map__fd(skel_->maps.lb6_services);
  int backends6Fd = bpf_map__fd(skel_->maps.lb6_backends);
  std::vector<uint32_t> zeros(b->counterIds.size(), 0);
  if (auto st = updateInBulk(backendsFd, b->backendIds, b->backends, "backends"); !st) return st;
  if (auto st = updateInBulk(backends6Fd, b->backendIds6, b->backends6, "IPv6 backends"); !st) return st;
  if (auto st = updateInBulk(bpf_map__fd(skel_->maps.lb_rr_counters), b->counterIds, zeros, "counters"); !st) return st;
  if (auto st = updateInBulk(servicesFd, b->slotKeys, b->slots, "slots"); !st) return st;
  if (auto st = updateInBulk(services6Fd, b->slotKeys6, b->slots6, "IPv6 slots"); !st) return st;
  if (auto st = updateInBulk(servicesFd, b->entryKeys, b->entries, "service entries"); !st) return st;
  if (auto st = updateInBulk(services6Fd, b->entryKeys6, b->entries6, "IPv6 service entries"); !st) return st;
  if (auto st = deleteEach(servicesFd, b->entryDeletes, "service entry"); !st) return st;
  if (auto st = deleteEach(services6Fd, b->entryDeletes6, "IPv6 service entry"); !st) return st;
  if (auto st = deleteEach(servicesFd, b->slotDeletes, "slot"); !st) return st;
  if (auto st = deleteEach(services6Fd, b->slotDeletes6, "IPv6 slot"); !st) return st;
  if (auto st = deleteEach(backendsFd, b->backendDeletes, "backend"); !st) return st;
  if (auto st = deleteEach(backends6Fd, b->backendDeletes6, "IPv6 backend"); !st) return st;
  freeBackendIds_.insert(freeBackendIds_.end(), b->freedBackendIds.begin(), b->freedBackendIds.end());
  freeServiceIds_.insert(freeServiceIds_.end(), b->freedServiceIds.begin(), b->freedServiceIds.end());
  return {};
}

std::vector<FrontendKey> BpfServiceMaps::frontends() const {
  std::vector<FrontendKey> out;
  for (const auto& [key, _] : frontends_) out.push_back(key);
  return out;
}

namespace {

// One family's frontends as ProgrammedState. Key: lb4_key or lb6_key; Backend:
// lb4_backend or lb6_backend; addressOf gives a pointer to an address's bytes.
template <class Key, class Backend, class AddressOf>
void readFamily(int servicesFd, int backendsFd, uint8_t family, AddressOf addressOf, ProgrammedState& out) {
  for (auto& [key, value] : dumpMap<Key, lb4_service>(servicesFd)) {
    if (key.backend_slot != 0) continue;
    FrontendState s;
    s.clientIPAffinity = value.flags & LB_SERVICE_CLIENT_IP_AFFINITY;
    s.affinityTimeoutSeconds = static_cast<int>(value.affinity_timeout_sec);
    for (uint32_t i = 1; i <= value.count; ++i) {
      Key slotKey = key;
      slotKey.backend_slot = static_cast<uint16_t>(i);
      lb4_service slot{};
      Backend backend{};
      if (bpf_map_lookup_elem(servicesFd, &slotKey, &slot) != 0) {
        s.backends.push_back("<missing slot>");
        continue;
      }
      if (bpf_map_lookup_elem(backendsFd, &slot.backend_id, &backend) != 0) {
        s.backends.push_back("<missing backend>");
        continue;
      }
      s.backends.push_back(endpointText(family, addressOf(backend), backend.port));
    }
    std::sort(s.backends.begin(), s.backends.end());
    out[{ipText(family, addressOf(key)), ntohs(key.port), protocolName(key.protocol)}] = std::move(s);
  }
}

}  // namespace

Result<ProgrammedState> BpfServiceMaps::read() const {
  ProgrammedState out;
  readFamily<lb4_key, lb4_backend>(bpf_map__fd(skel_->maps.lb4_services), bpf_map__fd(skel_->maps.lb4_backends), AF_INET,
                                   [](const auto& v) { return static_cast<const void*>(&v.address); }, out);
  readFamily<lb6_key, lb6_backend>(bpf_map__fd(skel_->maps.lb6_services), bpf_map__fd(skel_->maps.lb6_backends), AF_INET6,
                                   [](const auto& v) { return static_cast<const void*>(v.address); }, out);
  return out;
}

Result<uint64_t> BpfServiceMaps::mapMemoryBytes() const {
  uint64_t total = 0;
  for (bpf_map* map : pinnedMaps(skel_)) {
    std::ifstream info(fmt::format("/proc/self/fdinfo/{}", bpf_map__fd(map)));
    std::string field;
    uint64_t value = 0;
    while (info >> field) {
      if (field == "memlock:") {
        info >> value;
        total += value;
        break;
      }
    }
  }
  return total;
}

Status BpfServiceMaps::uninstall() {
  Status result;
  for (auto& [path, link] : links_) {
    bpf_link__unpin(link);
    bpf_link__destroy(link);  // the last reference: detaches
  }
  links_.clear();
  for (bpf_map* map : pinnedMaps(skel_)) {
    if (bpf_map__unpin(map, nullptr) != 0 && errno != ENOENT && result)
      result = failErrno(std::string("unpin map ") + bpf_map__name(map));
  }
  service_lb__destroy(skel_);
  skel_ = nullptr;
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  frontends_.clear();
  return result;
}

}  // namespace ferry::proxy
