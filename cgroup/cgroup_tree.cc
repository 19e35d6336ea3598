// Writes cgroupfs with plain file I/O rather than libcgroup: libcgroup's create adds
// "+controller" to every parent's cgroup.subtree_control up to the hierarchy root and
// never undoes it (see MACHINE.md), and the files written here are few and fixed.
// Plain writes keep "never write outside <root>" easy to see and to check.
#include "cgroup/cgroup_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <thread>

namespace ferry::cgroup {
namespace {

// ---- small file helpers ------------------------------------------------------------

Status writeFile(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return failErrno("open " + path);
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n < 0) return failErrno("write \"" + value + "\" to " + path, err);
  return {};
}

Result<std::string> readFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return failErrno("open " + path);
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return failErrno("read " + path, err);
    }
    if (n == 0) break;
    text.append(buf, n);
  }
  ::close(fd);
  return text;
}

Result<uint64_t> readNumber(const std::string& path) {
  auto text = readFile(path);
  if (!text) return fail(text.error());
  try {
    return std::stoull(*text);
  } catch (...) {
    return fail(EINVAL, path + ": not a number: \"" + *text + "\"");
  }
}

// "key value" lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
Result<uint64_t> readKey(const std::string& path, const std::string& key) {
  auto text = readFile(path);
  if (!text) return fail(text.error());
  std::istringstream in(*text);
  std::string name;
  uint64_t value = 0;
  while (in >> name >> value) {
    if (name == key) return value;
  }
  return fail(ENOENT, path + ": no key " + key);
}

Status makeDirectory(const std::string& path, bool* created = nullptr) {
  if (::mkdir(path.c_str(), 0755) == 0) {
    if (created) *created = true;
    return {};
  }
  if (errno == EEXIST) return {};
  return failErrno("mkdir " + path);
}

std::vector<std::string> subdirectories(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(path.c_str());
  if (!dir) return names;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_type != DT_DIR) continue;
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(dir);
  return names;
}

bool isDirectory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Removes `path` and its subdirectories bottom-up. rmdir is retried briefly because a
// just-killed task may still be leaving the cgroup.
Status removeTree(const std::string& path) {
  for (const std::string& child : subdirectories(path)) {
    if (Status s = removeTree(path + "/" + child); !s) return s;
  }
  for (int attempt = 0;; ++attempt) {
    if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return {};
    if (errno != EBUSY || attempt >= 200) return failErrno("rmdir " + path);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Relative cgroup paths come from Ferry itself, but a slip must never reach outside <root>.
Status checkRelative(const std::string& path, const std::string& field) {
  if (path.empty() || path.front() == '/' || path.back() == '/') {
    return fail(EINVAL, field + ": must be a relative cgroup path: \"" + path + "\"");
  }
  std::istringstream parts(path);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty() || part == "." || part == "..") {
      return fail(EINVAL, field + ": bad component in \"" + path + "\"");
    }
  }
  return {};
}

Status checkName(const std::string& name, const std::string& field) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    return fail(EINVAL, field + ": not a valid cgroup name: \"" + name + "\"");
  }
  return {};
}

}  // namespace

// ---- the tree ---------------------------------------------------------------------

// Where <root> is in each hierarchy; what the mode operations below need.
struct TreeLayout {
  CgroupMode mode = CgroupMode::Hybrid;
  std::string root;  // relative, e.g. "ferry"
  // <root> as an absolute directory in each hierarchy the tree is mirrored in;
  // in unified mode all of these are the same directory.
  std::string cpuRoot, cpuacctRoot, memoryRoot, pidsRoot;
  std::string unifiedRoot;  // empty on a v1-only host
  std::vector<std::string> hierarchyRoots;  // distinct, the order directories are made in
  std::vector<std::string> createdRoots;    // the ones open() made (destroy() removes them)

  std::string dir(const std::string& hierarchyRoot, const std::string& path) const {
    return path.empty() ? hierarchyRoot : hierarchyRoot + "/" + path;
  }
  // The hierarchy used to see which cgroups exist.
  const std::string& primaryRoot() const { return mode == CgroupMode::Unified ? unifiedRoot : memoryRoot; }
};

struct CgroupTree::Impl : TreeLayout {};

namespace {

// ---- one table of operations per mode (crun style): only these know file names ----

struct ModeOperations {
  Status (*applyLimits)(const TreeLayout& tree, const std::string& path, const Limits& limits);
  Result<CgroupStats> (*readStats)(const TreeLayout& tree, const std::string& path);
  // Called for a cgroup that will have children, so they get the controllers.
  Status (*delegateControllers)(const TreeLayout& tree, const std::string& path);
  // Called once for each new container cgroup.
  Status (*setupContainer)(const TreeLayout& tree, const std::string& path);
};

Status applyLimitsV2(const TreeLayout& t, const std::string& path, const Limits& limits) {
  std::string d = t.dir(t.unifiedRoot, path);
  std::string cpuMax = limits.cpuLimitMilli
                           ? std::to_string(cpuQuotaFromMilli(*limits.cpuLimitMilli)) + " " + std::to_string(kCpuPeriodUs)
                           : "max " + std::to_string(kCpuPeriodUs);
  if (Status s = writeFile(d + "/cpu.max", cpuMax); !s) return s;
  uint64_t weight = limits.cpuRequestMilli ? cpuWeightFromShares(cpuSharesFromMilli(*limits.cpuRequestMilli)) : 100;
  if (Status s = writeFile(d + "/cpu.weight", std::to_string(weight)); !s) return s;
  auto bytesOrMax = [](const std::optional<int64_t>& v) { return v ? std::to_string(*v) : std::string("max"); };
  if (Status s = writeFile(d + "/memory.max", bytesOrMax(limits.memoryLimitBytes)); !s) return s;
  if (Status s = writeFile(d + "/memory.min", std::to_string(limits.memoryMinBytes.value_or(0))); !s) return s;
  if (Status s = writeFile(d + "/memory.low", std::to_string(limits.memoryLowBytes.value_or(0))); !s) return s;
  // Without swap accounting off, a limited cgroup could swap instead of being OOM-killed.
  if (limits.memoryLimitBytes && ::access((d + "/memory.swap.max").c_str(), F_OK) == 0) {
    if (Status s = writeFile(d + "/memory.swap.max", "0"); !s) return s;
  }
  return writeFile(d + "/pids.max", bytesOrMax(limits.pidsMax));
}

Result<CgroupStats> readStatsV2(const TreeLayout& t, const std::string& path) {
  std::string d = t.dir(t.unifiedRoot, path);
  CgroupStats stats;
  auto usage = readKey(d + "/cpu.stat", "usage_usec");
  if (!usage) return fail(usage.error());
  stats.cpuUsageNs = *usage * 1000;
  stats.cpuPeriods = readKey(d + "/cpu.stat", "nr_periods").value_or(0);
  stats.cpuThrottledPeriods = readKey(d + "/cpu.stat", "nr_throttled").value_or(0);
  auto memory = readNumber(d + "/memory.current");
  if (!memory) return fail(memory.error());
  stats.memoryUsageBytes = *memory;
  auto inactive = readKey(d + "/memory.stat", "inactive_file");
  uint64_t inactiveFile = inactive ? *inactive : 0;
  stats.memoryWorkingSetBytes = stats.memoryUsageBytes > inactiveFile ? stats.memoryUsageBytes - inactiveFile : 0;
  auto kills = readKey(d + "/memory.events", "oom_kill");
  stats.oomKills = kills ? *kills : 0;
  return stats;
}

Status delegateV2(const TreeLayout& t, const std::string& path) {
  std::string d = t.dir(t.unifiedRoot, path);
  auto available = readFile(d + "/cgroup.controllers");
  if (!available) return fail(available.error());
  std::string enable;
  for (const char* controller : {"cpu", "memory", "pids"}) {
    std::istringstream in(*available);
    std::string name;
    while (in >> name) {
      if (name == controller) enable += std::string(enable.empty() ? "" : " ") + "+" + controller;
    }
  }
  if (enable.empty()) return {};
  return writeFile(d + "/cgroup.subtree_control", enable);
}

// An OOM kill takes the whole container, not just its biggest process (a shell would
// otherwise live on after its child was killed, and the container never be reported
// OOMKilled): the kubelet does the same on cgroup v2 since 1.28.
Status setupContainerV2(const TreeLayout& t, const std::string& path) {
  std::string file = t.dir(t.unifiedRoot, path) + "/memory.oom.group";
  if (::access(file.c_str(), F_OK) != 0) return {};  // kernels before 4.19
  return writeFile(file, "1");
}

Status applyLimitsV1(const TreeLayout& t, const std::string& path, const Limits& limits) {
  std::string cpu = t.dir(t.cpuRoot, path);
  if (Status s = writeFile(cpu + "/cpu.cfs_period_us", std::to_string(kCpuPeriodUs)); !s) return s;
  int64_t quota = limits.cpuLimitMilli ? cpuQuotaFromMilli(*limits.cpuLimitMilli) : -1;
  if (Status s = writeFile(cpu + "/cpu.cfs_quota_us", std::to_string(quota)); !s) return s;
  uint64_t shares = limits.cpuRequestMilli ? cpuSharesFromMilli(*limits.cpuRequestMilli) : 1024;
  if (Status s = writeFile(cpu + "/cpu.shares", std::to_string(shares)); !s) return s;
  std::string memory = t.dir(t.memoryRoot, path);
  if (Status s = writeFile(memory + "/memory.limit_in_bytes",
                           limits.memoryLimitBytes ? std::to_string(*limits.memoryLimitBytes) : "-1");
      !s) {
    return s;
  }
  // v1 has no memory.min/low equivalent worth using (soft_limit is a reclaim hint): skipped.
  std::string pids = t.dir(t.pidsRoot, path);
  return writeFile(pids + "/pids.max", limits.pidsMax ? std::to_string(*limits.pidsMax) : "max");
}

Result<CgroupStats> readStatsV1(const TreeLayout& t, const std::string& path) {
  CgroupStats stats;
  auto usage = readNumber(t.dir(t.cpuacctRoot, path) + "/cpuacct.usage");
  if (!usage) return fail(usage.error());
  stats.cpuUsageNs = *usage;
  stats.cpuPeriods = readKey(t.dir(t.cpuRoot, path) + "/cpu.stat", "nr_periods").value_or(0);
  stats.cpuThrottledPeriods = readKey(t.dir(t.cpuRoot, path) + "/cpu.stat", "nr_throttled").value_or(0);
  std::string memory = t.dir(t.memoryRoot, path);
  auto current = readNumber(memory + "/memory.usage_in_bytes");
  if (!current) return fail(current.error());
  stats.memoryUsageBytes = *current;
  auto inactive = readKey(memory + "/memory.stat", "total_inactive_file");
  uint64_t inactiveFile = inactive ? *inactive : 0;
  stats.memoryWorkingSetBytes = stats.memoryUsageBytes > inactiveFile ? stats.memoryUsageBytes - inactiveFile : 0;
  auto kills = readKey(memory + "/memory.oom_control", "oom_kill");
  stats.oomKills = kills ? *kills : 0;
  return stats;
}

Status delegateNothing(const TreeLayout&, const std::string&) { return {}; }
// v1 has no group OOM kill: the kernel picks one process, as the kubelet on v1.
Status setupNothing(const TreeLayout&, const std::string&) { return {}; }

const ModeOperations kUnifiedOperations{applyLimitsV2, readStatsV2, delegateV2, setupContainerV2};
const ModeOperations kHybridOperations{applyLimitsV1, readStatsV1, delegateNothing, setupNothing};

const ModeOperations& operationsFor(CgroupMode mode) {
  return mode == CgroupMode::Unified ? kUnifiedOperations : kHybridOperations;
}

// ---- mode detection -----------------------------------------------------------------

struct Mounts {
  std::string unified;                       // cgroup2 mount point under mountRoot
  std::map<std::string, std::string> v1;     // controller -> mount point
};

Result<Mounts> readMounts(const std::string& mountRoot) {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return failErrno("open /proc/self/mountinfo");
  Mounts mounts;
  std::string line;
  while (std::getline(in, line)) {
    // "id parent major:minor root mountpoint options [optional...] - fstype source superoptions"
    std::istringstream fields(line);
    std::string id, parent, device, root, mountPoint, options;
    fields >> id >> parent >> device >> root >> mountPoint >> options;
    std::string word;
    while (fields >> word && word != "-") {
    }
    std::string fsType, source, superOptions;
    fields >> fsType >> source >> superOptions;
    if (mountPoint != mountRoot && mountPoint.rfind(mountRoot + "/", 0) != 0) continue;
    if (fsType == "cgroup2") {
      if (mounts.unified.empty() || mountPoint == mountRoot) mounts.unified = mountPoint;
    } else if (fsType == "cgroup") {
      std::istringstream opts(superOptions);
      std::string opt;
      while (std::getline(opts, opt, ',')) {
        if (opt == "cpu" || opt == "cpuacct" || opt == "memory" || opt == "pids") mounts.v1[opt] = mountPoint;
      }
    }
  }
  return mounts;
}

}  // namespace

CgroupTree::CgroupTree(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CgroupTree::~CgroupTree() = default;

CgroupMode CgroupTree::mode() const { return impl_->mode; }

Result<std::unique_ptr<CgroupTree>> CgroupTree::open(const std::string& root, const std::string& mountRoot) {
  if (Status s = checkRelative(root, "cgroupRoot"); !s) return fail(s.error());
  auto mounts = readMounts(mountRoot);
  if (!mounts) return fail(mounts.error().wrap("detect cgroup mode"));

  auto impl = std::make_unique<Impl>();
  impl->root = root;
  if (mounts->unified == mountRoot) {
    impl->mode = CgroupMode::Unified;
    std::string r = mountRoot + "/" + root;
    impl->unifiedRoot = impl->cpuRoot = impl->cpuacctRoot = impl->memoryRoot = impl->pidsRoot = r;
    impl->hierarchyRoots = {r};
  } else {
    impl->mode = CgroupMode::Hybrid;
    for (const char* controller : {"cpu", "cpuacct", "memory", "pids"}) {
      if (!mounts->v1.count(controller)) {
        return fail(ENOTSUP, std::string("cgroup: no v1 hierarchy with the ") + controller +
                                 " controller under " + mountRoot + " and no cgroup2 mounted there");
      }
    }
    impl->cpuRoot = mounts->v1["cpu"] + "/" + root;
    impl->cpuacctRoot = mounts->v1["cpuacct"] + "/" + root;
    impl->memoryRoot = mounts->v1["memory"] + "/" + root;
    impl->pidsRoot = mounts->v1["pids"] + "/" + root;
    if (!mounts->unified.empty()) impl->unifiedRoot = mounts->unified + "/" + root;
    std::set<std::string> seen;
    for (const std::string* r : {&impl->memoryRoot, &impl->cpuRoot, &impl->cpuacctRoot, &impl->pidsRoot,
                                 &impl->unifiedRoot}) {
      if (!r->empty() && seen.insert(*r).second) impl->hierarchyRoots.push_back(*r);
    }
  }

  // <root> may be nested ("a/b"); only its last component is made here, so nothing is
  // ever created (or controllers enabled) in a directory Ferry does not own.
  for (const std::string& dir : impl->hierarchyRoots) {
    bool created = false;
    if (Status s = makeDirectory(dir, &created); !s) return fail(s.error().wrap("create cgroup root"));
    if (created) impl->createdRoots.push_back(dir);
  }
  if (Status s = operationsFor(impl->mode).delegateControllers(*impl, ""); !s) {
    return fail(s.error().wrap("enable controllers in cgroup root"));
  }
  return std::unique_ptr<CgroupTree>(new CgroupTree(std::move(impl)));
}

std::string CgroupTree::podPath(const std::string& podUid, QosClass qos) {
  switch (qos) {
    case QosClass::Guaranteed: return "pod" + podUid;
    case QosClass::Burstable: return "burstable/pod" + podUid;
    case QosClass::BestEffort: return "besteffort/pod" + podUid;
  }
  return "besteffort/pod" + podUid;
}

Result<std::string> CgroupTree::createPod(const std::string& podUid, QosClass qos, const Limits& limits) {
  if (Status s = checkName("pod" + podUid, "podUid"); !s) return fail(s.error());
  const ModeOperations& ops = operationsFor(impl_->mode);
  if (qos != QosClass::Guaranteed) {
    std::string qosDir = qos == QosClass::Burstable ? "burstable" : "besteffort";
    for (const std::string& root : impl_->hierarchyRoots) {
      if (Status s = makeDirectory(root + "/" + qosDir); !s) return fail(s.error().wrap("create QoS cgroup"));
    }
    if (Status s = ops.delegateControllers(*impl_, qosDir); !s) return fail(s.error().wrap("create QoS cgroup"));
  }
  std::string path = podPath(podUid, qos);
  for (const std::string& root : impl_->hierarchyRoots) {
    if (Status s = makeDirectory(root + "/" + path); !s) return fail(s.error().wrap("create pod cgroup"));
  }
  if (Status s = ops.delegateControllers(*impl_, path); !s) return fail(s.error().wrap("create pod cgroup " + path));
  if (Status s = ops.applyLimits(*impl_, path, limits); !s) return fail(s.error().wrap("limits of pod cgroup " + path));
  return path;
}

Result<std::string> CgroupTree::createContainer(const std::string& podPath, const std::string& containerName,
                                                const Limits& limits) {
  if (Status s = checkRelative(podPath, "podPath"); !s) return fail(s.error());
  if (Status s = checkName(containerName, "containerName"); !s) return fail(s.error());
  std::string path = podPath + "/" + containerName;
  for (const std::string& root : impl_->hierarchyRoots) {
    if (!isDirectory(root + "/" + podPath)) return fail(ENOENT, "pod cgroup " + podPath + " does not exist");
    if (Status s = makeDirectory(root + "/" + path); !s) return fail(s.error().wrap("create container cgroup"));
  }
  const ModeOperations& ops = operationsFor(impl_->mode);
  if (Status s = ops.setupContainer(*impl_, path); !s) return fail(s.error().wrap("container cgroup " + path));
  if (Status s = ops.applyLimits(*impl_, path, limits); !s) {
    return fail(s.error().wrap("limits of container cgroup " + path));
  }
  return path;
}

Status CgroupTree::setLimits(const std::string& path, const Limits& limits) {
  if (Status s = checkRelative(path, "path"); !s) return s;
  if (Status s = operationsFor(impl_->mode).applyLimits(*impl_, path, limits); !s) {
    return fail(s.error().wrap("limits of cgroup " + path));
  }
  return {};
}

std::vector<std::string> CgroupTree::procsFiles(const std::string& path) const {
  std::vector<std::string> files;
  for (const std::string& root : impl_->hierarchyRoots) files.push_back(impl_->dir(root, path) + "/cgroup.procs");
  return files;
}

std::string CgroupTree::unifiedDirectory(const std::string& path) const {
  if (impl_->unifiedRoot.empty()) return {};
  return impl_->dir(impl_->unifiedRoot, path);
}

Status CgroupTree::attach(const std::string& path, pid_t pid) {
  if (Status s = checkRelative(path, "path"); !s) return s;
  for (const std::string& file : procsFiles(path)) {
    if (Status s = writeFile(file, std::to_string(pid)); !s) {
      return fail(s.error().wrap("attach pid " + std::to_string(pid) + " to " + path));
    }
  }
  return {};
}

Result<CgroupStats> CgroupTree::stats(const std::string& path) {
  if (Status s = checkRelative(path, "path"); !s) return fail(s.error());
  auto stats = operationsFor(impl_->mode).readStats(*impl_, path);
  if (!stats) return fail(stats.error().wrap("stats of cgroup " + path));
  return stats;
}

Result<std::vector<pid_t>> CgroupTree::processes(const std::string& path) {
  std::vector<pid_t> pids;
  const std::string& root = impl_->unifiedRoot.empty() ? impl_->memoryRoot : impl_->unifiedRoot;
  std::function<Status(const std::string&)> collect = [&](const std::string& dir) -> Status {
    auto text = readFile(dir + "/cgroup.procs");
    if (!text) return text.error().code == ENOENT ? Status{} : fail(text.error());
    std::istringstream in(*text);
    pid_t pid;
    while (in >> pid) pids.push_back(pid);
    for (const std::string& child : subdirectories(dir)) {
      if (Status s = collect(dir + "/" + child); !s) return s;
    }
    return {};
  };
  if (Status s = collect(impl_->dir(root, path)); !s) return fail(s.error());
  return pids;
}

Status CgroupTree::freeze(const std::string& path) {
  if (impl_->unifiedRoot.empty()) return fail(ENOTSUP, "freeze: no cgroup v2 tree on this host");
  return writeFile(impl_->dir(impl_->unifiedRoot, path) + "/cgroup.freeze", "1");
}

Status CgroupTree::thaw(const std::string& path) {
  if (impl_->unifiedRoot.empty()) return fail(ENOTSUP, "thaw: no cgroup v2 tree on this host");
  return writeFile(impl_->dir(impl_->unifiedRoot, path) + "/cgroup.freeze", "0");
}

Status CgroupTree::killAll(const std::string& path) {
  if (Status s = checkRelative(path, "path"); !s) return s;
  auto initial = processes(path);
  if (!initial) return fail(initial.error().wrap("kill cgroup " + path));
  if (initial->empty()) return {};
  bool usedCgroupKill = false;
  if (!impl_->unifiedRoot.empty()) {
    std::string killFile = impl_->dir(impl_->unifiedRoot, path) + "/cgroup.kill";
    if (::access(killFile.c_str(), F_OK) == 0) usedCgroupKill = static_cast<bool>(writeFile(killFile, "1"));
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    auto pids = processes(path);
    if (!pids) return fail(pids.error().wrap("kill cgroup " + path));
    if (pids->empty()) return {};
    if (std::chrono::steady_clock::now() > deadline) {
      return fail(EBUSY, "kill cgroup " + path + ": " + std::to_string(pids->size()) + " processes remain");
    }
    // Without cgroup.kill (old kernels, v1-only hosts) fall back to signalling each pid.
    if (!usedCgroupKill) {
      for (pid_t pid : *pids) ::kill(pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
}

Status CgroupTree::remove(const std::string& path) {
  if (Status s = checkRelative(path, "path"); !s) return s;
  if (!isDirectory(impl_->dir(impl_->primaryRoot(), path))) {
    // Still sweep the other hierarchies: a half-made cgroup may exist in some of them.
    for (const std::string& root : impl_->hierarchyRoots) {
      if (Status s = removeTree(impl_->dir(root, path)); !s) return fail(s.error().wrap("remove cgroup " + path));
    }
    return {};
  }
  if (Status s = killAll(path); !s) return fail(s.error().wrap("remove cgroup " + path));
  for (const std::string& root : impl_->hierarchyRoots) {
    if (Status s = removeTree(impl_->dir(root, path)); !s) return fail(s.error().wrap("remove cgroup " + path));
  }
  return {};
}

Result<std::vector<std::string>> CgroupTree::listPodUids() {
  std::vector<std::string> uids;
  const std::string& root = impl_->primaryRoot();
  for (const std::string& parent : {std::string(), std::string("burstable"), std::string("besteffort")}) {
    for (const std::string& name : subdirectories(impl_->dir(root, parent))) {
      if (name.rfind("pod", 0) == 0 && name.size() > 3) uids.push_back(name.substr(3));
    }
  }
  return uids;
}

Status CgroupTree::destroy() {
  for (const std::string& top : subdirectories(impl_->primaryRoot())) {
    if (Status s = remove(top); !s) return fail(s.error().wrap("destroy cgroup root"));
  }
  for (const std::string& root : impl_->hierarchyRoots) {
    for (const std::string& child : subdirectories(root)) {
      if (Status s = removeTree(root + "/" + child); !s) return fail(s.error().wrap("destroy cgroup root"));
    }
  }
  for (const std::string& root : impl_->createdRoots) {
    if (Status s = removeTree(root); !s) return fail(s.error().wrap("destroy cgroup root"));
  }
  return {};
}

}  // namespace ferry::cgroup
