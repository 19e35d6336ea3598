// main() of `ferry-shim`, the per-container supervisor as a small executable of its own:
// `ferry-shim __container-shim <state dir>` (the same arguments as the hidden subcommand
// of `ferry`, which stays as the fallback when ferry-shim is not beside it).
#include "agent/runtime/shim.h"

#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], ferry::runtime::kShimSubcommand) == 0)
    return ferry::runtime::runContainerShim(argc - 2, argv + 2);
  std::fprintf(stderr, "usage: %s %s STATE_DIR (started by the ferry agent)\n", argv[0], ferry::runtime::kShimSubcommand);
  return 2;
}
