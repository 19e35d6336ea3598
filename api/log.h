// Logging to stderr in a form journald reads well: "<6>" priority prefixes
// (sd-daemon(3)) when stderr is the journal, plain level names on a terminal.
#pragma once

#include <spdlog/spdlog.h>

namespace ferry::log {

// Call once from main. `level` is one of trace, debug, info, warn, error.
void init(const std::string& level = "info");

using spdlog::debug;
using spdlog::error;
using spdlog::info;
using spdlog::trace;
using spdlog::warn;

}  // namespace ferry::log
