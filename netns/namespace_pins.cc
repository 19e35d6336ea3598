#include "netns/namespace_pins.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <filesystem>
#include <thread>
#include <vector>

namespace ferry::netns {
namespace {

constexpr long kNsfsMagic = 0x6e736673;  // NSFS_MAGIC from linux/magic.h

// Namespace changes are per thread; doing them on a throwaway thread keeps every
// other thread of the agent (and this caller) in its own namespaces.
Status runOnFreshThread(const std::function<Status()>& work) {
  Status result;
  std::thread worker([&] {
    try {
      result = work();
    } catch (const std::exception& e) {
      result = fail(EIO, std::string("exception: ") + e.what());
    }
  });
  worker.join();
  return result;
}

Status pinCurrentNamespace(const char* nsFile, const std::string& pinPath) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(pinPath).parent_path(), ec);
  if (ec) return fail(ec.value(), "create directory for " + pinPath + ": " + ec.message());
  int fd = ::open(pinPath.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd < 0) return failErrno("create pin file " + pinPath);
  ::close(fd);
  std::string source = std::string("/proc/thread-self/ns/") + nsFile;
  if (::mount(source.c_str(), pinPath.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    int err = errno;
    ::unlink(pinPath.c_str());
    return failErrno("bind mount " + source + " on " + pinPath, err);
  }
  return {};
}

}  // namespace

namespace {
Status createPinned(const NamespacePins& pins, const std::string& hostname, const std::function<Status()>& inside);
}

Status createPinnedNamespaces(const NamespacePins& pins, const std::string& hostname) {
  return createPinned(pins, hostname, {});
}

namespace {
Status createPinned(const NamespacePins& pins, const std::string& hostname, const std::function<Status()>& inside) {
  struct Kind {
    const std::string* path;
    int flag;
    const char* nsFile;
  };
  const Kind kinds[] = {{&pins.net, CLONE_NEWNET, "net"},
                        {&pins.ipc, CLONE_NEWIPC, "ipc"},
                        {&pins.uts, CLONE_NEWUTS, "uts"}};
  int flags = 0;
  for (const Kind& kind : kinds) {
    if (!kind.path->empty()) flags |= kind.flag;
  }
  if (flags == 0) return fail(EINVAL, "create namespaces: no pin path given");
  if (!hostname.empty() && pins.uts.empty()) return fail(EINVAL, "create namespaces: hostname needs a uts pin");

  return runOnFreshThread([&]() -> Status {
    if (::unshare(flags) != 0) return failErrno("unshare namespaces");
    if (!hostname.empty() && ::sethostname(hostname.data(), hostname.size()) != 0) {
      return failErrno("sethostname " + hostname);
    }
    std::vector<std::string> pinned;
    for (const Kind& kind : kinds) {
      if (kind.path->empty()) continue;
      Status status = pinCurrentNamespace(kind.nsFile, *kind.path);
      if (!status) {
        for (const std::string& done : pinned) (void)removePinnedNamespace(done);
        return fail(status.error().wrap(std::string("pin ") + kind.nsFile + " namespace"));
      }
      pinned.push_back(*kind.path);
    }
    if (inside) {
      Status status = inside();
      if (!status) {
        for (const std::string& done : pinned) (void)removePinnedNamespace(done);
        return status;
      }
    }
    return {};
  });
}
}  // namespace

Status removePinnedNamespace(const std::string& pinPath) {
  if (::umount2(pinPath.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return failErrno("unmount namespace pin " + pinPath);
  }
  if (::unlink(pinPath.c_str()) != 0 && errno != ENOENT) {
    return failErrno("remove namespace pin " + pinPath);
  }
  return {};
}

NamespacePins podNamespacePins(const std::string& podDir) {
  return {.net = podDir + "/net", .ipc = podDir + "/ipc", .uts = podDir + "/uts"};
}

Result<NamespacePins> createPodNamespaces(const std::string& podDir, const std::string& hostname,
                                          const std::function<Status()>& inside) {
  std::error_code ec;
  std::filesystem::create_directories(podDir, ec);
  if (ec) return fail(ec.value(), "create pod namespace directory " + podDir + ": " + ec.message());
  if (::mount(podDir.c_str(), podDir.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    int err = errno;
    ::rmdir(podDir.c_str());
    return failErrno("bind mount " + podDir + " on itself", err);
  }
  // Private: pins made inside must not propagate into other mount namespaces.
  if (::mount(nullptr, podDir.c_str(), nullptr, MS_PRIVATE, nullptr) != 0) {
    int err = errno;
    (void)removePodNamespaces(podDir);
    return failErrno("make " + podDir + " a private mount", err);
  }
  NamespacePins pins = podNamespacePins(podDir);
  if (Status s = createPinned(pins, hostname, inside); !s) {
    (void)removePodNamespaces(podDir);
    return fail(s.error());
  }
  return pins;
}

Status removePodNamespaces(const std::string& podDir) {
  // A lazy unmount takes the directory's mount and the pins inside it in one step.
  if (::umount2(podDir.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return failErrno("unmount pod namespaces " + podDir);
  }
  NamespacePins pins = podNamespacePins(podDir);
  for (const std::string& pin : {pins.net, pins.ipc, pins.uts}) {
    if (Status s = removePinnedNamespace(pin); !s) return s;  // pins made outside the group mount
  }
  if (::rmdir(podDir.c_str()) != 0 && errno != ENOENT) return failErrno("remove " + podDir);
  return {};
}

bool isPinnedNamespace(const std::string& pinPath) {
  struct statfs fs {};
  return ::statfs(pinPath.c_str(), &fs) == 0 && static_cast<long>(fs.f_type) == kNsfsMagic;
}

Status runInNetworkNamespace(const std::string& netnsPath, const std::function<Status()>& work) {
  int fd = ::open(netnsPath.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return failErrno("open network namespace " + netnsPath);
  Status result = runOnFreshThread([&]() -> Status {
    if (::setns(fd, CLONE_NEWNET) != 0) return failErrno("enter network namespace " + netnsPath);
    return work();
  });
  ::close(fd);
  return result;
}

}  // namespace ferry::netns
