// main() for runtime kernel tests: `<test binary> __container-shim DIR` runs the shim,
// anything else runs the tests. ContainerRuntime's default shim command re-executes
// /proc/self/exe this way.
#include "agent/runtime/shim.h"

#include <gtest/gtest.h>

#include <cstring>

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], ferry::runtime::kShimSubcommand) == 0)
    return ferry::runtime::runContainerShim(argc - 2, argv + 2);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
