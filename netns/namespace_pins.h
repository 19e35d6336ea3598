// Pod namespaces that outlive any process: each is pinned by a bind mount of its
// nsfs file onto a plain file (like `ip netns add`), so a pod needs no pause process.
// setns() is per thread, so everything that enters a namespace runs on a short-lived
// thread of its own and never on the caller's thread.
#pragma once

#include "api/error.h"

#include <functional>
#include <string>

namespace ferry::netns {

// Where a pod's namespaces are pinned. An empty path means "do not create that kind".
struct NamespacePins {
  std::string net{};  // e.g. <runDir>/netns/<pod-uid>
  std::string ipc{};  // e.g. <runDir>/ipcns/<pod-uid>
  std::string uts{};  // e.g. <runDir>/utsns/<pod-uid>
};

// Creates fresh namespaces of the kinds named in `pins` in one unshare() on a
// dedicated thread, sets `hostname` in the new UTS namespace (if any), and pins
// each one at its path (parent directories are created). On failure nothing is
// left behind.
Status createPinnedNamespaces(const NamespacePins& pins, const std::string& hostname = "");

// Unpins (lazy unmount) and deletes the pin file. A missing pin is not an error.
Status removePinnedNamespace(const std::string& pinPath);

// True when `pinPath` is a pinned namespace (an nsfs bind mount).
bool isPinnedNamespace(const std::string& pinPath);

// A pod's pins in one directory: <podDir>/net, <podDir>/ipc, <podDir>/uts. The directory
// is made a (private) mount of its own so that removing the pod is a single lazy unmount:
// every unmount waits for an RCU grace period (~1-3 ms here), three would triple that.
// `inside`, if given, runs on the creating thread while it is still in the new namespaces
// (the pod's network is configured there without another thread hand-off); its failure
// undoes everything.
Result<NamespacePins> createPodNamespaces(const std::string& podDir, const std::string& hostname,
                                          const std::function<Status()>& inside = {});
// Unmounts the pod directory with everything pinned in it and deletes it. A missing
// directory is not an error.
Status removePodNamespaces(const std::string& podDir);
// The pins createPodNamespaces makes under `podDir` (whether or not they exist).
NamespacePins podNamespacePins(const std::string& podDir);

// Runs `work` on a new thread that has entered the network namespace pinned (or
// otherwise named by an nsfs path such as /proc/<pid>/ns/net) at `netnsPath`,
// and returns its result. Sockets opened inside `work` stay bound to that namespace.
Status runInNetworkNamespace(const std::string& netnsPath, const std::function<Status()>& work);

}  // namespace ferry::netns
