#include "cmd/systemd_unit.h"

#include <fmt/format.h>

namespace ferry::cmd {

std::string unitName(const std::string& role) { return role == "server" ? "ferry.service" : "ferry-agent.service"; }

std::string quoteForExec(const std::string& arg) {
  bool plain = !arg.empty();
  for (char c : arg)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::string_view("-_./:=,@+").find(c) != std::string_view::npos))
      plain = false;
  if (plain) return arg;
  std::string out = "\"";
  for (char c : arg) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '$') out += '$';  // "$$" is a literal dollar
    if (c == '%') out += '%';  // "%%" is a literal percent
    out += c;
  }
  return out + "\"";
}

std::string renderUnit(const UnitOptions& o) {
  std::string exec = quoteForExec(o.binary) + " " + o.role;
  for (const auto& a : o.args) exec += " " + quoteForExec(a);
  return fmt::format(R"([Unit]
Description=Ferry {role}: a Kubernetes-compatible node
Documentation=file:///usr/share/doc/ferry/README.md
Wants=network-online.target
After=network-online.target

[Service]
# READY=1 is sent once the node is registered and its Service data path is programmed.
Type=notify
NotifyAccess=main
{env}ExecStart={exec}
# Pods live in cgroups below the unit's: systemd must leave that subtree to Ferry,
# and a restart of the unit must not kill them (the agent re-adopts them).
Delegate=yes
KillMode=process
Restart=always
RestartSec=5s
TimeoutStartSec=0
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity

[Install]
WantedBy=multi-user.target
)",
                     fmt::arg("role", o.role), fmt::arg("exec", exec),
                     fmt::arg("env", o.environmentFile.empty() ? "" : "EnvironmentFile=-" + o.environmentFile + "\n"));
}

}  // namespace ferry::cmd
