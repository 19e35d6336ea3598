// The systemd unit `ferry install` writes (pure: unit-tested and checked with
// `systemd-analyze verify`).
#pragma once

#include <string>
#include <vector>

namespace ferry::cmd {

struct UnitOptions {
  std::string role;    // server | agent
  std::string binary;  // absolute path of the ferry binary the unit runs
  std::vector<std::string> args;  // flags after the role
  std::string environmentFile;    // optional, "-" prefixed in the unit
};

std::string unitName(const std::string& role);  // ferry.service | ferry-agent.service
std::string renderUnit(const UnitOptions& options);
// Quotes one argument for an ExecStart= line (systemd.syntax(7)).
std::string quoteForExec(const std::string& arg);

}  // namespace ferry::cmd
