#include "cmd/subcommands.h"

#include <fmt/format.h>

namespace ferry::cmd {

// Local image commands land with the runtime issue (#6).
int runImage(const std::vector<std::string>&) {
  fmt::print(stderr, "ferry image: not available in this build yet (issue 6)\n");
  return 3;
}

}  // namespace ferry::cmd
