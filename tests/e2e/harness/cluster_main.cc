// ferry-cluster: the e2e harness as a command, for `scripts/quickstart --nodes N`.
// Starts a Ferry cluster of N nodes on this machine — each node a network
// namespace with its own agent, joined by an underlay bridge; node 1 runs
// `ferry server` — imports a busybox image into every node, prints how to reach
// it with kubectl, and runs until SIGINT or SIGTERM, then removes everything it made.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/e2e/harness/cluster.h"

namespace {

int usage(const char* why) {
  std::fprintf(stderr, "ferry-cluster: %s\nusage: ferry-cluster --nodes N (1-9)\n", why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int nodes = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--nodes" && i + 1 < argc) {
      char* end = nullptr;
      long n = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || n < 1 || n > 9) return usage("--nodes needs a number from 1 to 9");
      nodes = static_cast<int>(n);
    } else {
      return usage(("unknown argument \"" + arg + "\"").c_str());
    }
  }
  if (nodes == 0) return usage("--nodes is required");

  // Block the stop signals before any thread starts, so sigwait below receives them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  ferry::e2e::Cluster cluster({.nodes = nodes});
  std::printf("ferry-cluster: starting %d node(s)...\n", nodes);
  std::fflush(stdout);
  if (auto err = cluster.start(); !err.empty()) {
    std::fprintf(stderr, "ferry-cluster: %s\n", err.c_str());
    return 1;
  }
  std::string image = ferry::e2e::makeBusyboxImage(cluster.workDir());
  if (!image.empty()) cluster.importImage(image);

  // kubectl must run inside node 1's namespace, where the API server listens.
  std::string wrapper = cluster.workDir() + "/kubectl";
  {
    std::ofstream out(wrapper);
    out << "#!/bin/sh\nexec ip netns exec " << cluster.nodeNamespace(1) << " kubectl --kubeconfig "
        << cluster.dataDir() << "/kubeconfig \"$@\"\n";
  }
  std::filesystem::permissions(wrapper, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                                            std::filesystem::perms::group_exec);
  std::printf("\nFerry is up: %d node(s), each its own network namespace (node 1: %s).\n", nodes,
              cluster.nodeNamespace(1).c_str());
  std::printf("  admin kubeconfig: %s/kubeconfig (use it inside %s)\n", cluster.dataDir().c_str(),
              cluster.nodeNamespace(1).c_str());
  std::printf("  try:              %s get nodes -o wide\n", wrapper.c_str());
  if (!image.empty()) std::printf("  image imported:   busybox:1.35 (docker.io/library/busybox:1.35, a static busybox)\n");
  std::printf("Stop with Ctrl-C: everything made for the cluster is removed.\n");
  std::fflush(stdout);

  int signal = 0;
  sigwait(&stop, &signal);
  std::printf("ferry-cluster: stopping (signal %d)\n", signal);
  std::fflush(stdout);
  return 0;  // ~Cluster removes the namespaces, cgroups, pins and the work dir
}
