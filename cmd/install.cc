#include "cmd/subcommands.h"

#include <fmt/format.h>

namespace ferry::cmd {

// The systemd install lands with the node-agent issue (#9); until then say so plainly.
int runInstall(const std::vector<std::string>&) {
  fmt::print(stderr, "ferry install: not available in this build yet (issue 9)\n");
  return 3;
}

int runUninstall(const std::vector<std::string>&) {
  fmt::print(stderr, "ferry uninstall: not available in this build yet (issue 9)\n");
  return 3;
}

}  // namespace ferry::cmd
