// Subcommands other than the two daemons. Each returns the process exit code.
#pragma once

#include <string>
#include <vector>

namespace ferry::cmd {

int runInstall(const std::vector<std::string>& args);    // install.cc
int runUninstall(const std::vector<std::string>& args);  // install.cc
int runImage(const std::vector<std::string>& args);      // image.cc

}  // namespace ferry::cmd
