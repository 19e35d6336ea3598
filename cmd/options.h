// Flag tables for every subcommand: the one place defaults live and --help reads.
#pragma once

#include "agent/agent_config.h"
#include "api/error.h"
#include "controlplane-lite/server_config.h"

#include <functional>
#include <string>
#include <vector>

namespace ferry::cmd {

struct Flag {
  std::string name;  // without leading dashes
  std::string help;
  std::function<std::string()> current;                 // default/current value for --help
  std::function<Status(const std::string&)> set;        // parse and store
  bool isBool = false;
};

using FlagTable = std::vector<Flag>;

FlagTable serverFlags(cp::ServerConfig& server, agent::AgentConfig& agent, bool& noAgent);
FlagTable agentFlags(agent::AgentConfig& agent);

// Parses argv against `flags`; leftover positional arguments go to `positional`.
// An unknown flag or bad value is an error naming the flag.
Status parseFlags(const FlagTable& flags, const std::vector<std::string>& args, std::vector<std::string>& positional);
std::string flagHelp(const FlagTable& flags);

}  // namespace ferry::cmd
